package nodeconfig

import (
	"strconv"
	"strings"
)

func renderMaster(n *Node, c checked) error {
	for _, name := range certsMaster {
		addCert(n, c, name)
	}
	addFile(n, pathSAPublic, modePublic, c.in.ServiceAccount.Public)
	addFile(n, pathSAPrivate, modePrivate, c.in.ServiceAccount.Private)

	addFile(n, pathEtcdEnv, modePublic, []byte(etcdEnv(c)))
	n.Units = append(n.Units, Unit{Name: unitEtcd, Enabled: true, Contents: etcdUnit(c)})

	// The controller-manager and scheduler talk to the apiserver beside
	// them, over TLS: the insecure port 8080 is gone.
	local := "https://" + hostPort(c.ip.String(), uint16(c.apiPort))
	for _, k := range []struct{ path, user, cert string }{
		{pathControllerKC, "system:kube-controller-manager", CertControllerManager},
		{pathSchedulerKC, "system:kube-scheduler", CertScheduler},
	} {
		b, err := renderKubeconfig(c, local, k.user, k.cert)
		if err != nil {
			return err
		}
		addFile(n, k.path, modePrivate, b)
	}

	pods := []struct {
		path string
		f    func(checked) ([]byte, error)
	}{
		{pathAPIServerPod, apiserverPod},
		{pathCMPod, controllerManagerPod},
		{pathSchedPod, schedulerPod},
	}
	for _, p := range pods {
		b, err := p.f(c)
		if err != nil {
			return err
		}
		addFile(n, p.path, modePrivate, b)
	}
	return nil
}

// etcdEnv is the member's configuration as ETCD_* variables (each maps to
// the etcd flag of the same name). Clients and peers both use TLS with
// client-cert auth against the etcd CA.
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

func etcdUnit(c checked) string {
	return `[Unit]
Description=etcd member of Kubernetes cluster ` + c.clusterName + `
Documentation=https://etcd.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
EnvironmentFile=` + pathEtcdEnv + `
ExecStart=` + c.etcdPath + `
Restart=always
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

var (
	mountSSL   = hostMount{name: "k8s-certs", path: sslDir, typ: "Directory", readOnly: true}
	mountCerts = hostMount{name: "ca-certs", path: "/etc/ssl/certs", typ: "DirectoryOrCreate", readOnly: true}
)

// apiserverFlags are right for v1.27 and later: no insecure port, admission
// plugins through --enable-admission-plugins, and a service-account key pair
// of its own with an issuer.
func apiserverFlags(c checked) []string {
	return []string{
		"kube-apiserver",
		"--advertise-address=" + c.ip.String(),
		"--secure-port=" + strconv.Itoa(c.apiPort),
		// Privileged pods (flannel, kube-proxy) are refused otherwise.
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
	}
}

func apiserverPod(c checked) ([]byte, error) {
	return staticPod(c, "kube-apiserver", "kube-apiserver", apiserverFlags(c),
		[]hostMount{mountSSL, mountCerts},
		httpsProbe(c.ip.String(), c.apiPort, "/livez"), "250m", false)
}

// controllerManagerFlags: no --cluster-signing-* flags, because the CA key
// never leaves the bootsrv server; bootsrv issues every node cert, so the
// CSR signer is not needed.
func controllerManagerFlags(c checked) []string {
	return []string{
		"kube-controller-manager",
		"--kubeconfig=" + pathControllerKC,
		"--authentication-kubeconfig=" + pathControllerKC,
		"--authorization-kubeconfig=" + pathControllerKC,
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + pathCA,
		"--cluster-name=" + c.clusterName,
		// A /24 of the pod network per node, which flannel and the
		// kubelet then use.
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

func controllerManagerPod(c checked) ([]byte, error) {
	kc := hostMount{name: "kubeconfig", path: pathControllerKC, typ: "File", readOnly: true}
	return staticPod(c, "kube-controller-manager", "kube-controller-manager", controllerManagerFlags(c),
		[]hostMount{mountSSL, mountCerts, kc},
		httpsProbe("127.0.0.1", 10257, "/healthz"), "200m", false)
}

func schedulerFlags() []string {
	return []string{
		"kube-scheduler",
		"--kubeconfig=" + pathSchedulerKC,
		"--authentication-kubeconfig=" + pathSchedulerKC,
		"--authorization-kubeconfig=" + pathSchedulerKC,
		"--bind-address=127.0.0.1",
		"--leader-elect=true",
	}
}

func schedulerPod(c checked) ([]byte, error) {
	kc := hostMount{name: "kubeconfig", path: pathSchedulerKC, typ: "File", readOnly: true}
	return staticPod(c, "kube-scheduler", "kube-scheduler", schedulerFlags(),
		[]hostMount{mountSSL, kc},
		httpsProbe("127.0.0.1", 10259, "/healthz"), "100m", false)
}
