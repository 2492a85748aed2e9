package nodeconfig

import (
	"fmt"
	"net/netip"
	"strings"
)

// File modes: private keys and files naming secrets are the owner's only;
// certificates and plain config are world-readable.
const (
	modePublic  = 0o644
	modePrivate = 0o600
)

func addFile(n *Node, p string, mode int, b []byte) {
	n.Files = append(n.Files, File{Path: p, Mode: mode, Contents: b})
}

func addCert(n *Node, c checked, name string) {
	ck := c.in.Certs[name]
	addFile(n, certPath(name), modePublic, ck.Cert)
	addFile(n, keyPath(name), modePrivate, ck.Key)
}

// etcdClientURLs is every master's etcd client URL, comma-separated, in the
// masters' order.
func etcdClientURLs(c checked) string {
	urls := make([]string, 0, len(c.masters))
	for _, m := range c.masters {
		urls = append(urls, "https://"+hostPort(m.IP, 2379))
	}
	return strings.Join(urls, ",")
}

func hostPort(ip string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), port).String()
}

// kubeconfig is the clientcmd v1 Config, with paths to files rather than
// embedded data: the PEMs are written once under /etc/kubernetes/ssl and a
// re-issued cert needs no kubeconfig change.
type kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Users          []namedUser    `json:"users"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
}

type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server               string `json:"server"`
		CertificateAuthority string `json:"certificate-authority"`
	} `json:"cluster"`
}

type namedUser struct {
	Name string `json:"name"`
	User struct {
		ClientCertificate string `json:"client-certificate"`
		ClientKey         string `json:"client-key"`
	} `json:"user"`
}

type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

func renderKubeconfig(c checked, server, user, cert string) ([]byte, error) {
	kc := kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: "default"}
	var cl namedCluster
	cl.Name = c.clusterName
	cl.Cluster.Server = server
	cl.Cluster.CertificateAuthority = pathCA
	var u namedUser
	u.Name = user
	u.User.ClientCertificate = certPath(cert)
	u.User.ClientKey = keyPath(cert)
	var cx namedContext
	cx.Name = "default"
	cx.Context.Cluster = c.clusterName
	cx.Context.User = user
	kc.Clusters, kc.Users, kc.Contexts = []namedCluster{cl}, []namedUser{u}, []namedContext{cx}
	b, err := toYAML(kc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig for %s: %w", user, err)
	}
	return b, nil
}

// kubeletConfig is the part of kubelet.config.k8s.io/v1beta1
// KubeletConfiguration that bootsrv sets. ReadOnlyPort has no omitempty so
// that the 0 (port closed) is written out for the reader to see.
type kubeletConfig struct {
	APIVersion     string `json:"apiVersion"`
	Kind           string `json:"kind"`
	Authentication struct {
		Anonymous struct {
			Enabled bool `json:"enabled"`
		} `json:"anonymous"`
		Webhook struct {
			Enabled bool `json:"enabled"`
		} `json:"webhook"`
		X509 struct {
			ClientCAFile string `json:"clientCAFile"`
		} `json:"x509"`
	} `json:"authentication"`
	Authorization struct {
		Mode string `json:"mode"`
	} `json:"authorization"`
	ReadOnlyPort             int32    `json:"readOnlyPort"`
	ClusterDNS               []string `json:"clusterDNS"`
	ClusterDomain            string   `json:"clusterDomain"`
	StaticPodPath            string   `json:"staticPodPath"`
	TLSCertFile              string   `json:"tlsCertFile"`
	TLSPrivateKeyFile        string   `json:"tlsPrivateKeyFile"`
	RotateCertificates       bool     `json:"rotateCertificates"`
	CgroupDriver             string   `json:"cgroupDriver"`
	ContainerRuntimeEndpoint string   `json:"containerRuntimeEndpoint"`
	RegisterWithTaints       []taint  `json:"registerWithTaints,omitempty"`
}

type taint struct {
	Key    string `json:"key"`
	Effect string `json:"effect"`
}

// ControlPlaneTaint keeps ordinary pods off masters; it replaced the removed
// --register-schedulable=false.
const ControlPlaneTaint = "node-role.kubernetes.io/control-plane"

func renderKubeletConfig(c checked) ([]byte, error) {
	var k kubeletConfig
	k.APIVersion, k.Kind = "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"
	// Without a config file the kubelet lets anonymous requests in and
	// opens the unauthenticated read-only port 10255: close both.
	k.Authentication.Anonymous.Enabled = false
	k.Authentication.Webhook.Enabled = true
	k.Authentication.X509.ClientCAFile = pathCA
	k.Authorization.Mode = "Webhook"
	k.ReadOnlyPort = 0
	// --cluster-dns and --cluster-domain moved here from flags.
	k.ClusterDNS = []string{c.dns.String()}
	k.ClusterDomain = c.domain
	k.StaticPodPath = manifestsDir
	// The kubelet cert from bootsrv serves as well (its SANs hold the
	// node's IP and name), so the apiserver can verify the kubelet against
	// the cluster CA; bootsrv re-issues it, the kubelet does not rotate it.
	k.TLSCertFile, k.TLSPrivateKeyFile = certPath(CertKubelet), keyPath(CertKubelet)
	k.RotateCertificates = false
	// Flatcar and Fedora CoreOS run cgroup v2 under systemd, and their
	// containerd uses the systemd cgroup driver.
	k.CgroupDriver = "systemd"
	k.ContainerRuntimeEndpoint = c.cri
	if c.role == RoleMaster {
		k.RegisterWithTaints = []taint{{Key: ControlPlaneTaint, Effect: "NoSchedule"}}
	}
	b, err := toYAML(k)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	return b, nil
}

// kubeletFlags are the kubelet's command-line flags. Only flags the current
// kubelet still takes: --api-servers, --register-schedulable,
// --configure-cbr0, --allow-privileged, --network-plugin are gone and
// --cluster-dns/--cluster-domain live in the config file now.
func kubeletFlags(c checked) []string {
	f := []string{
		"--config=" + pathKubeletConfig,
		"--kubeconfig=" + pathKubeletKC,
		// The node name must equal the CN of the kubelet cert
		// (system:node:<hostname>) for the Node authorizer.
		"--hostname-override=" + c.hostname,
		"--node-ip=" + c.ip.String(),
	}
	if len(c.labels) > 0 {
		f = append(f, "--node-labels="+strings.Join(c.labels, ","))
	}
	return f
}

func kubeletUnit(c checked) string {
	return `[Unit]
Description=Kubernetes kubelet (node ` + c.hostname + `)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStartPre=/usr/bin/mkdir -p ` + manifestsDir + ` /var/lib/kubelet
ExecStart=` + c.kubeletPath + ` \
  ` + strings.Join(kubeletFlags(c), " \\\n  ") + `
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
`
}

func renderCommon(n *Node, c checked) error {
	// The role marker, as the seed guides' scripts test for it; it also
	// tells an operator on the box what the node is and where its API is.
	marker, other := pathWorkerMarker, "minion"
	if c.role == RoleMaster {
		marker, other = pathMasterMarker, "master"
	}
	ips := make([]string, 0, len(c.masters))
	for _, m := range c.masters {
		ips = append(ips, m.IP)
	}
	addFile(n, marker, modePublic, []byte(fmt.Sprintf(
		"# Written by bootsrv: this machine is a Kubernetes %s.\nKUBERNETES_ROLE=%s\nKUBERNETES_CLUSTER=%s\nKUBERNETES_API_SERVER=%s\nKUBERNETES_MASTERS=%s\n",
		other, c.role, c.clusterName, c.apiEndpoint, strings.Join(ips, ","))))

	addFile(n, pathCA, modePublic, c.in.CA)
	addFile(n, pathEtcdCA, modePublic, c.in.EtcdCA)
	addCert(n, c, CertKubelet)
	addCert(n, c, CertEtcdClientFlannel)

	// flanneld maps FLANNELD_* to its flags; in etcd mode it reads the
	// network config from the masters' etcd over TLS with its own client
	// cert (signed by the etcd CA).
	addFile(n, pathFlannelEnv, modePublic, []byte(
		"FLANNELD_IFACE="+c.iface+"\n"+
			"FLANNELD_ETCD_ENDPOINTS="+etcdClientURLs(c)+"\n"+
			"FLANNELD_ETCD_CAFILE="+pathEtcdCA+"\n"+
			"FLANNELD_ETCD_CERTFILE="+certPath(CertEtcdClientFlannel)+"\n"+
			"FLANNELD_ETCD_KEYFILE="+keyPath(CertEtcdClientFlannel)+"\n"))

	kc, err := renderKubeconfig(c, c.apiEndpoint, "system:node:"+c.hostname, CertKubelet)
	if err != nil {
		return err
	}
	addFile(n, pathKubeletKC, modePrivate, kc)
	cfg, err := renderKubeletConfig(c)
	if err != nil {
		return err
	}
	addFile(n, pathKubeletConfig, modePrivate, cfg)
	n.Units = append(n.Units, Unit{Name: unitKubelet, Enabled: true, Contents: kubeletUnit(c)})
	return nil
}
