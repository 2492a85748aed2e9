package nodeconfig

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/kubeconfig"
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

// renderKubeconfig is a component's kubeconfig, with paths to files
// rather than embedded data: the PEMs are written once under
// /etc/kubernetes/ssl and a re-issued cert needs no kubeconfig change.
func renderKubeconfig(c checked, server, user, cert string) ([]byte, error) {
	return kubeconfig.New(c.clusterName, kubeconfig.Cluster{Server: server, CertificateAuthority: pathCA},
		user, kubeconfig.User{ClientCertificate: certPath(cert), ClientKey: keyPath(cert)}, "default").Marshal()
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
	ResolvConf               string   `json:"resolvConf"`
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
	// What pods' DNS forwards to beyond the cluster: on systemd-resolved
	// hosts the real upstream list, not the 127.0.0.53 stub (a loop).
	k.ResolvConf = c.resolvConf
	// The kubelet cert from bootsrv serves as well (its SANs hold the
	// node's IP and name), so the apiserver can verify the kubelet against
	// the cluster CA; bootsrv renews it, the kubelet does not rotate it.
	k.TLSCertFile, k.TLSPrivateKeyFile = certPath(CertKubelet), keyPath(CertKubelet)
	k.RotateCertificates = false
	// Flatcar and Fedora CoreOS run cgroup v2 under systemd, and
	// containerd here uses the systemd cgroup driver too.
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

// unitSpec is a long-running service started from one of the node's
// binaries.
type unitSpec struct {
	name, description, doc string
	after                  []string
	binary                 string // a Need name
	flags                  []string
	env                    []string // KEY=VALUE
	envFile                string
	pre                    []string // ExecStartPre command lines
	typ                    string   // systemd Type=, "" for simple
	// oneshot runs once to success: Type=oneshot, retried on failure
	// (Restart=always is not allowed for oneshot units).
	oneshot bool
}

func (u unitSpec) render(c checked) Unit {
	var b strings.Builder
	b.WriteString("[Unit]\nDescription=" + u.description + "\n")
	if u.doc != "" {
		b.WriteString("Documentation=" + u.doc + "\n")
	}
	after := append([]string{"network-online.target"}, u.after...)
	b.WriteString("Wants=" + strings.Join(after, " ") + "\nAfter=" + strings.Join(after, " ") + "\n\n[Service]\n")
	restart := "always"
	if u.oneshot {
		b.WriteString("Type=oneshot\nRemainAfterExit=yes\n")
		restart = "on-failure"
	} else if u.typ != "" {
		b.WriteString("Type=" + u.typ + "\n")
	}
	if u.envFile != "" {
		b.WriteString("EnvironmentFile=" + u.envFile + "\n")
	}
	for _, e := range u.env {
		b.WriteString("Environment=" + e + "\n")
	}
	for _, p := range u.pre {
		b.WriteString("ExecStartPre=" + p + "\n")
	}
	b.WriteString("ExecStart=" + c.bin(u.binary))
	for _, f := range u.flags {
		b.WriteString(" \\\n  " + f)
	}
	b.WriteString("\nRestart=" + restart + "\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n")
	return Unit{Name: u.name, Enabled: true, Contents: b.String()}
}

func kubeletUnit(c checked) Unit {
	return unitSpec{
		name: unitKubelet, description: "Kubernetes kubelet (node " + c.hostname + ")",
		doc:   "https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
		after: []string{"containerd.service"}, binary: "kubelet", flags: kubeletFlags(c),
		pre: []string{"/bin/mkdir -p /var/lib/kubelet"},
	}.render(c)
}

// kubeProxyConfig is the part of kubeproxy.config.k8s.io/v1alpha1
// KubeProxyConfiguration that bootsrv sets.
type kubeProxyConfig struct {
	APIVersion       string `json:"apiVersion"`
	Kind             string `json:"kind"`
	ClientConnection struct {
		Kubeconfig string `json:"kubeconfig"`
	} `json:"clientConnection"`
	HostnameOverride string `json:"hostnameOverride"`
	Mode             string `json:"mode"`
	// ClusterCIDR tells kube-proxy which traffic is from pods, so it
	// masquerades traffic to Services from outside the pod network.
	ClusterCIDR string `json:"clusterCIDR"`
}

func renderKubeProxy(n *Node, c checked) error {
	kc, err := renderKubeconfig(c, c.apiEndpoint, "system:kube-proxy", CertKubeProxy)
	if err != nil {
		return err
	}
	addFile(n, pathKubeProxyKC, modePrivate, kc)
	var k kubeProxyConfig
	k.APIVersion, k.Kind = "kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"
	k.ClientConnection.Kubeconfig = pathKubeProxyKC
	k.HostnameOverride = c.hostname
	k.Mode = "iptables"
	k.ClusterCIDR = c.podNet.String()
	b, err := toYAML(k)
	if err != nil {
		return fmt.Errorf("kube-proxy config: %w", err)
	}
	addFile(n, pathKubeProxyConfig, modePublic, b)
	n.Units = append(n.Units, unitSpec{
		name: unitKubeProxy, description: "Kubernetes kube-proxy (node " + c.hostname + ")",
		doc:    "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/",
		binary: "kube-proxy", flags: []string{"--config=" + pathKubeProxyConfig},
	}.render(c))
	return nil
}

// flannel in kube-subnet-mgr mode: the one subnet allocator is the
// controller-manager (--allocate-node-cidrs), flanneld reads its node's
// podCIDR from the API with the kubelet's identity (which may read Nodes
// and patch only its own), and writes /run/flannel/subnet.env for the
// flannel CNI plugin. No etcd access is needed on any node but masters.
func renderFlannel(n *Node, c checked) error {
	addFile(n, pathFlannelEnv, modePublic, []byte(
		"# Written by bootsrv: flanneld's flags, as FLANNELD_<FLAG>.\n"+
			"FLANNELD_IFACE="+c.iface+"\n"+
			"FLANNELD_KUBE_SUBNET_MGR=true\n"+
			"FLANNELD_KUBECONFIG_FILE="+pathKubeletKC+"\n"+
			"FLANNELD_NET_CONFIG_PATH="+pathFlannelNet+"\n"+
			// Traffic from pods to outside the pod network leaves with the
			// node's address.
			"FLANNELD_IP_MASQ=true\n"+
			"FLANNELD_SUBNET_FILE=/run/flannel/subnet.env\n"+
			"NODE_NAME="+c.hostname+"\n"))
	net, err := json.Marshal(map[string]any{"Network": c.podNet.String(), "Backend": map[string]string{"Type": "vxlan"}})
	if err != nil {
		return err
	}
	addFile(n, pathFlannelNet, modePublic, append(net, '\n'))
	// cniVersion 0.4.0: the newest the flannel plugin speaks.
	conf, err := json.MarshalIndent(map[string]any{
		"name":       "cbr0",
		"cniVersion": "0.4.0",
		"plugins": []any{
			map[string]any{"type": "flannel", "delegate": map[string]any{"hairpinMode": true, "isDefaultGateway": true}},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
	if err != nil {
		return err
	}
	addFile(n, pathCNIConf, modePublic, append(conf, '\n'))
	n.Units = append(n.Units, unitSpec{
		name: unitFlanneld, description: "flannel pod network (node " + c.hostname + ")",
		doc:   "https://github.com/flannel-io/flannel",
		after: []string{"kubelet.service"}, binary: "flanneld", envFile: pathFlannelEnv,
		pre: []string{"/bin/mkdir -p /run/flannel"},
	}.render(c))
	return nil
}

// renderContainerd writes containerd's config (format version 2, which
// containerd 1.6 and 1.7 read and 2.x migrates): the systemd cgroup driver
// the kubelet uses, the CNI dirs, the sandbox image, and registry hosts
// from /etc/containerd/certs.d, where each upstream gets a hosts.toml that
// sends pulls to the site's mirror.
func renderContainerd(n *Node, c checked) {
	cri := `[plugins."io.containerd.grpc.v1.cri"]`
	cfg := "# Written by bootsrv.\nversion = 2\n\n" +
		cri + "\n  sandbox_image = " + strconv.Quote(c.sandbox) + "\n\n" +
		`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]` + "\n  runtime_type = \"io.containerd.runc.v2\"\n\n" +
		`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]` + "\n  SystemdCgroup = true\n\n" +
		`[plugins."io.containerd.grpc.v1.cri".cni]` + "\n  bin_dir = \"" + cniBin + "\"\n  conf_dir = \"/etc/cni/net.d\"\n\n" +
		`[plugins."io.containerd.grpc.v1.cri".registry]` + "\n  config_path = \"" + pathCertsD + "\"\n"
	addFile(n, pathContainerd, modePublic, []byte(cfg))
	if c.host.ContainerdConfigDropin {
		n.Units = append(n.Units, Unit{Name: unitContainerd, Dropins: []Dropin{{Name: "10-bootsrv.conf", Contents: "[Service]\n" +
			"# The OS's unit runs containerd with its own config; use bootsrv's.\n" +
			"ExecStart=\nExecStart=/usr/bin/containerd --config " + pathContainerd + "\n"}}})
	}
	if c.mirror == "" {
		return
	}
	if len(c.in.Cluster.RegistryCA) > 0 {
		addFile(n, pathRegistryCA, modePublic, c.in.Cluster.RegistryCA)
	}
	for _, up := range registryUpstreams {
		server := "https://" + up
		if up == "docker.io" {
			server = "https://registry-1.docker.io"
		}
		// override_path: the mirror keeps each upstream's images under a
		// path of its own (MIRROR/v2/registry.k8s.io/pause/...).
		h := "# Written by bootsrv: pull " + up + " images from the site's mirror.\n" +
			"server = " + strconv.Quote(server) + "\n\n" +
			"[host." + strconv.Quote(c.mirror+"/v2/"+up) + "]\n" +
			"  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
		if len(c.in.Cluster.RegistryCA) > 0 {
			h += "  ca = " + strconv.Quote(pathRegistryCA) + "\n"
		}
		addFile(n, hostsTOMLPath(up), modePublic, []byte(h))
	}
}

// renderHostPrep: the kernel modules and sysctls a node with a bridged pod
// network needs (overlay for containerd's snapshotter; br_netfilter so that
// iptables sees bridged traffic, which kube-proxy's Service rules need).
func renderHostPrep(n *Node) {
	addFile(n, pathModules, modePublic, []byte("# Written by bootsrv.\noverlay\nbr_netfilter\n"))
	addFile(n, pathSysctl, modePublic, []byte("# Written by bootsrv.\n"+
		"net.ipv4.ip_forward = 1\n"+
		"net.bridge.bridge-nf-call-iptables = 1\n"+
		"net.bridge.bridge-nf-call-ip6tables = 1\n"))
}

func renderBinaries(n *Node, c checked) {
	for _, b := range c.bins {
		bin := c.in.Binaries[b.Name]
		n.Files = append(n.Files, File{Path: binaryPath(c.binDir, b), Mode: 0o755, Source: bin.URL, Hash: bin.Hash})
	}
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

	renderBinaries(n, c)
	renderHostPrep(n)
	renderContainerd(n, c)
	addFile(n, pathCA, modePublic, c.in.CA)
	for _, name := range certsBoth {
		addCert(n, c, name)
	}
	kc, err := renderKubeconfig(c, c.apiEndpoint, "system:node:"+c.hostname, CertKubelet)
	if err != nil {
		return err
	}
	addFile(n, pathKubeletKC, modePrivate, kc)
	cfg, err := renderKubeletConfig(c)
	if err != nil {
		return err
	}
	addFile(n, pathKubeletConfig, modePublic, cfg)
	n.Units = append(n.Units, kubeletUnit(c))
	if err := renderKubeProxy(n, c); err != nil {
		return err
	}
	renderRenewal(n, c)
	return renderFlannel(n, c)
}

// Certificate renewal on a running node: bootsrv re-issues a node's set 30
// days before it expires (or when an operator runs `bootsrv certs renew`);
// the node's timer fetches the set as a tar of the files at their paths
// and, when anything differs from what is on disk, writes it and restarts
// the units that read it. No reinstall, and the CA keys stay on bootsrv.
const (
	pathCertsEnv    = "/etc/bootsrv/certs.env"
	pathRenewScript = "/etc/bootsrv/renew-certs.sh"
	unitRenew       = "bootsrv-renew-certs.service"
	unitRenewTimer  = "bootsrv-renew-certs.timer"
)

func renderRenewal(n *Node, c checked) {
	if c.in.RenewURL == "" {
		return
	}
	addFile(n, pathCertsEnv, modePrivate, []byte("BOOTSRV_CERTS_URL="+strconv.Quote(c.in.RenewURL)+"\n"))
	units := []string{unitKubelet, unitKubeProxy, unitFlanneld}
	if c.role == RoleMaster {
		units = append(units, unitEtcd, unitAPIServer, unitCM, unitScheduler, unitCoreDNS)
	}
	addFile(n, pathRenewScript, 0o755, []byte(`#!/bin/sh
# Written by bootsrv: fetch this node's certificates from bootsrv; when they
# differ from those on disk (bootsrv renewed them), install them and restart
# what uses them.
set -eu
. `+pathCertsEnv+`
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
have=$(sha256sum `+certPath(CertKubelet)+` 2>/dev/null | cut -d' ' -f1) || have=
code=$(curl -fsS --retry 5 --retry-delay 10 -o "$t/certs.tar" -w '%{http_code}' "$BOOTSRV_CERTS_URL&have=$have")
if [ "$code" = 204 ]; then
	echo "bootsrv: certificates are current"
	exit 0
fi
mkdir "$t/new"
tar -xf "$t/certs.tar" -C "$t/new"
changed=
for f in $(tar -tf "$t/certs.tar"); do
	[ -f "$t/new/$f" ] || continue
	cmp -s "$t/new/$f" "/$f" || changed="$changed /$f"
done
if [ -z "$changed" ]; then
	echo "bootsrv: certificates are current"
	exit 0
fi
tar -xpf "$t/certs.tar" -C /
echo "bootsrv: renewed:$changed; restarting `+strings.Join(units, " ")+`"
systemctl try-restart `+strings.Join(units, " ")+`
`))
	n.Units = append(n.Units,
		Unit{Name: unitRenew, Contents: "[Unit]\nDescription=Install this node's renewed certificates from bootsrv\n" +
			"Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=/bin/sh " + pathRenewScript + "\n"},
		Unit{Name: unitRenewTimer, Enabled: true, Contents: "[Unit]\nDescription=Check twice a day for renewed certificates from bootsrv\n\n" +
			"[Timer]\nOnBootSec=15min\nOnUnitActiveSec=12h\nRandomizedDelaySec=1h\n\n[Install]\nWantedBy=timers.target\n"})
}
