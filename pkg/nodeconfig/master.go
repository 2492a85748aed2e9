package nodeconfig

import (
	"strconv"
	"strings"
)

func renderMaster(n *Node, c checked) error {
	for _, name := range certsMaster {
		addCert(n, c, name)
	}
	addFile(n, pathEtcdCA, modePublic, c.in.EtcdCA)
	addFile(n, pathFrontProxyCA, modePublic, c.in.FrontProxyCA)
	addFile(n, pathSAPublic, modePublic, c.in.ServiceAccount.Public)
	addFile(n, pathSAPrivate, modePrivate, c.in.ServiceAccount.Private)

	addFile(n, pathEtcdEnv, modePublic, []byte(etcdEnv(c)))
	n.Units = append(n.Units, etcdUnit(c))

	// The controller-manager, scheduler, CoreDNS and the addon applier talk
	// to the apiserver beside them, over TLS: the insecure port is gone.
	local := "https://" + hostPort(c.ip.String(), uint16(c.apiPort))
	for _, k := range []struct{ path, user, cert string }{
		{pathControllerKC, "system:kube-controller-manager", CertControllerManager},
		{pathSchedulerKC, "system:kube-scheduler", CertScheduler},
		{pathCoreDNSKC, "system:coredns", CertCoreDNS},
		{pathAddonsKC, "system:bootsrv-addons", CertAddons},
	} {
		b, err := renderKubeconfig(c, local, k.user, k.cert)
		if err != nil {
			return err
		}
		addFile(n, k.path, modePrivate, b)
	}
	n.Units = append(n.Units,
		unitSpec{name: unitAPIServer, description: "Kubernetes API server (master " + c.hostname + ")",
			doc:   "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
			after: []string{"etcd.service"}, binary: "kube-apiserver", flags: apiserverFlags(c)}.render(c),
		unitSpec{name: unitCM, description: "Kubernetes controller manager (master " + c.hostname + ")",
			doc:   "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
			after: []string{"kube-apiserver.service"}, binary: "kube-controller-manager", flags: controllerManagerFlags(c)}.render(c),
		unitSpec{name: unitScheduler, description: "Kubernetes scheduler (master " + c.hostname + ")",
			doc:   "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
			after: []string{"kube-apiserver.service"}, binary: "kube-scheduler", flags: schedulerFlags()}.render(c),
	)
	return renderDNS(n, c)
}

// etcdEnv is the member's configuration as ETCD_* variables (each maps to
// the etcd flag of the same name). Clients and peers both use TLS with
// client-cert auth against the etcd CA, which signs nothing a worker holds.
func etcdEnv(c checked) string {
	ip := c.ip.String()
	peers := make([]string, 0, len(c.masters))
	for _, m := range c.masters {
		peers = append(peers, m.Hostname+"=https://"+hostPort(m.IP, 2380))
	}
	kv := [][2]string{
		{"ETCD_NAME", c.hostname},
		{"ETCD_DATA_DIR", pathEtcdData},
		{"ETCD_LISTEN_CLIENT_URLS", "https://" + hostPort(ip, 2379)},
		{"ETCD_ADVERTISE_CLIENT_URLS", "https://" + hostPort(ip, 2379)},
		{"ETCD_LISTEN_PEER_URLS", "https://" + hostPort(ip, 2380)},
		{"ETCD_INITIAL_ADVERTISE_PEER_URLS", "https://" + hostPort(ip, 2380)},
		{"ETCD_INITIAL_CLUSTER", strings.Join(peers, ",")},
		{"ETCD_INITIAL_CLUSTER_STATE", "new"},
		{"ETCD_INITIAL_CLUSTER_TOKEN", c.clusterName},
		{"ETCD_CERT_FILE", certPath(CertEtcdServer)},
		{"ETCD_KEY_FILE", keyPath(CertEtcdServer)},
		{"ETCD_TRUSTED_CA_FILE", pathEtcdCA},
		{"ETCD_CLIENT_CERT_AUTH", "true"},
		{"ETCD_PEER_CERT_FILE", certPath(CertEtcdPeer)},
		{"ETCD_PEER_KEY_FILE", keyPath(CertEtcdPeer)},
		{"ETCD_PEER_TRUSTED_CA_FILE", pathEtcdCA},
		{"ETCD_PEER_CLIENT_CERT_AUTH", "true"},
	}
	var b strings.Builder
	b.WriteString("# Written by bootsrv: etcd member " + c.hostname + " of cluster " + c.clusterName + ".\n")
	for _, p := range kv {
		b.WriteString(p[0] + "=" + p[1] + "\n")
	}
	return b.String()
}

func etcdUnit(c checked) Unit {
	return unitSpec{name: unitEtcd, description: "etcd member of Kubernetes cluster " + c.clusterName,
		doc: "https://etcd.io/docs/", binary: "etcd", envFile: pathEtcdEnv, typ: "notify"}.render(c)
}

// apiserverFlags are right for v1.27 and later: no insecure port, admission
// plugins through --enable-admission-plugins, a service-account key pair of
// its own with an issuer, and the aggregation layer.
func apiserverFlags(c checked) []string {
	return []string{
		"--advertise-address=" + c.ip.String(),
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--client-ca-file=" + pathCA,
		"--tls-cert-file=" + certPath(CertAPIServer),
		"--tls-private-key-file=" + keyPath(CertAPIServer),
		"--etcd-servers=" + etcdClientURLs(c),
		"--etcd-cafile=" + pathEtcdCA,
		"--etcd-certfile=" + certPath(CertEtcdClient),
		"--etcd-keyfile=" + keyPath(CertEtcdClient),
		"--kubelet-client-certificate=" + certPath(CertAPIServerKubeletClient),
		"--kubelet-client-key=" + keyPath(CertAPIServerKubeletClient),
		// Kubelets serve with bootsrv's certs (SANs: node IP and name), so
		// they can be verified rather than trusted blindly.
		"--kubelet-certificate-authority=" + pathCA,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-cluster-ip-range=" + c.svcRange.String(),
		"--service-account-issuer=https://kubernetes.default.svc." + c.domain,
		"--service-account-key-file=" + pathSAPublic,
		"--service-account-signing-key-file=" + pathSAPrivate,
		// The aggregation layer: aggregated API servers trust the user
		// headers of a client whose cert comes from the front-proxy CA and
		// is named front-proxy-client.
		"--requestheader-client-ca-file=" + pathFrontProxyCA,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + certPath(CertFrontProxyClient),
		"--proxy-client-key-file=" + keyPath(CertFrontProxyClient),
	}
}

// controllerManagerFlags: no --cluster-signing-* flags, because the CA key
// never leaves the bootsrv server; bootsrv issues and renews every node
// cert, so the CSR signer is not needed.
func controllerManagerFlags(c checked) []string {
	return []string{
		"--kubeconfig=" + pathControllerKC,
		"--authentication-kubeconfig=" + pathControllerKC,
		"--authorization-kubeconfig=" + pathControllerKC,
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + pathCA,
		"--requestheader-client-ca-file=" + pathFrontProxyCA,
		"--cluster-name=" + c.clusterName,
		// The one pod-subnet allocator: a /24 of the pod network per node,
		// which flannel (kube-subnet-mgr) and the kubelet then use.
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + c.podNet.String(),
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range=" + c.svcRange.String(),
		"--service-account-private-key-file=" + pathSAPrivate,
		"--root-ca-file=" + pathCA,
		"--use-service-account-credentials=true",
		"--leader-elect=true",
	}
}

func schedulerFlags() []string {
	return []string{
		"--kubeconfig=" + pathSchedulerKC,
		"--authentication-kubeconfig=" + pathSchedulerKC,
		"--authorization-kubeconfig=" + pathSchedulerKC,
		"--bind-address=127.0.0.1",
		"--leader-elect=true",
	}
}
