package nodeconfig

import (
	"fmt"
	"path"
	"sort"
)

// Where things live on the node. Paths do not depend on the machine, so the
// set a role generates is known before any machine exists (PathsForRole);
// only the binaries' directory depends on the OS (Host.BinDir).
const (
	sslDir   = "/etc/kubernetes/ssl"
	addonDir = "/etc/kubernetes/addons"
	cniBin   = "/opt/cni/bin"

	pathMasterMarker  = "/etc/sysconfig/kubernetes-masters"
	pathWorkerMarker  = "/etc/sysconfig/kubernetes-minions"
	pathCA            = sslDir + "/ca.pem"
	pathEtcdCA        = sslDir + "/etcd-ca.pem"
	pathFrontProxyCA  = sslDir + "/front-proxy-ca.pem"
	pathSAPublic      = sslDir + "/sa.pub"
	pathSAPrivate     = sslDir + "/sa.key"
	pathFlannelEnv    = "/etc/flannel/options.env"
	pathFlannelNet    = "/etc/kube-flannel/net-conf.json"
	pathCNIConf       = "/etc/cni/net.d/10-flannel.conflist"
	pathKubeletConfig = "/etc/kubernetes/kubelet-config.yaml"
	pathKubeletKC     = "/etc/kubernetes/kubelet.conf"
	pathModules       = "/etc/modules-load.d/kubernetes.conf"
	pathSysctl        = "/etc/sysctl.d/90-kubernetes.conf"
	pathContainerd    = "/etc/containerd/config.toml"
	pathCertsD        = "/etc/containerd/certs.d"
	pathRegistryCA    = pathCertsD + "/mirror-ca.pem"

	pathKubeProxyKC     = "/etc/kubernetes/kube-proxy.conf"
	pathKubeProxyConfig = "/etc/kubernetes/kube-proxy-config.yaml"

	pathEtcdEnv      = "/etc/etcd/etcd.env"
	pathEtcdData     = "/var/lib/etcd"
	pathControllerKC = "/etc/kubernetes/controller-manager.conf"
	pathSchedulerKC  = "/etc/kubernetes/scheduler.conf"
	pathCoreDNSKC    = "/etc/kubernetes/coredns.conf"
	pathCorefile     = "/etc/coredns/Corefile"
	pathAddonsKC     = "/etc/kubernetes/addons.conf"
)

// Units Render installs.
const (
	unitKubelet    = "kubelet.service"
	unitKubeProxy  = "kube-proxy.service"
	unitFlanneld   = "flanneld.service"
	unitContainerd = "containerd.service" // the OS's; only a drop-in of ours
	unitEtcd       = "etcd.service"
	unitAPIServer  = "kube-apiserver.service"
	unitCM         = "kube-controller-manager.service"
	unitScheduler  = "kube-scheduler.service"
	unitCoreDNS    = "coredns.service"
	unitAddons     = "kube-addons.service"
)

// Certificate names, as keys of Input.Certs (pki's names).
const (
	CertKubelet                = "kubelet"
	CertKubeProxy              = "kube-proxy"
	CertAPIServer              = "apiserver"
	CertAPIServerKubeletClient = "apiserver-kubelet-client"
	CertFrontProxyClient       = "front-proxy-client"
	CertControllerManager      = "controller-manager"
	CertScheduler              = "scheduler"
	CertEtcdServer             = "etcd-server"
	CertEtcdPeer               = "etcd-peer"
	CertEtcdClient             = "etcd-client" // the apiserver's, to etcd
	CertCoreDNS                = "coredns"
	CertAddons                 = "addons"
)

var (
	// A worker holds nothing that reads Secrets or reaches etcd: its
	// kubelet's identity (confined by the Node authorizer, and used by
	// flanneld too) and kube-proxy's.
	certsBoth   = []string{CertKubelet, CertKubeProxy}
	certsMaster = []string{CertAPIServer, CertAPIServerKubeletClient, CertFrontProxyClient, CertControllerManager,
		CertScheduler, CertEtcdServer, CertEtcdPeer, CertEtcdClient, CertCoreDNS, CertAddons}
)

// CertsForRole names the certificates (keys of Input.Certs) a node of role
// needs. The etcd-* ones are signed by the etcd CA, front-proxy-client by
// the front-proxy CA, the rest by the cluster CA.
func CertsForRole(role string) ([]string, error) {
	var out []string
	switch role {
	case RoleMaster:
		out = append(append(out, certsBoth...), certsMaster...)
	case RoleWorker:
		out = append(out, certsBoth...)
	default:
		return nil, errRole(role)
	}
	sort.Strings(out)
	return out, nil
}

// Release components, as pkg/release names them.
const (
	ComponentKubernetes = "kubernetes"
	ComponentEtcd       = "etcd"
	ComponentCNI        = "cni-plugins"
	ComponentFlannel    = "flannel"
	ComponentFlannelCNI = "flannel-cni"
	ComponentCoreDNS    = "coredns"
)

// Need is one binary a node runs: which release file it comes from and
// whether it is a program (Host.BinDir) or a CNI plugin (/opt/cni/bin).
type Need struct {
	Component string
	Name      string
	CNI       bool
}

var (
	binsBoth = []Need{
		{ComponentKubernetes, "kubelet", false},
		{ComponentKubernetes, "kube-proxy", false},
		{ComponentFlannel, "flanneld", false},
		{ComponentFlannelCNI, "flannel", true},
		{ComponentCNI, "bridge", true},
		{ComponentCNI, "host-local", true},
		{ComponentCNI, "loopback", true},
		{ComponentCNI, "portmap", true},
	}
	binsMaster = []Need{
		{ComponentKubernetes, "kube-apiserver", false},
		{ComponentKubernetes, "kube-controller-manager", false},
		{ComponentKubernetes, "kube-scheduler", false},
		{ComponentKubernetes, "kubectl", false},
		{ComponentEtcd, "etcd", false},
		{ComponentEtcd, "etcdctl", false},
		{ComponentCoreDNS, "coredns", false},
	}
)

// BinariesForRole lists the binaries a node of role runs, sorted by name.
// Names are unique across components.
func BinariesForRole(role string) ([]Need, error) {
	var out []Need
	switch role {
	case RoleMaster:
		out = append(append(out, binsBoth...), binsMaster...)
	case RoleWorker:
		out = append(out, binsBoth...)
	default:
		return nil, errRole(role)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func binaryPath(binDir string, n Need) string {
	if n.CNI {
		return path.Join(cniBin, n.Name)
	}
	return path.Join(binDir, n.Name)
}

// certPath and keyPath are where a named certificate and its key go.
func certPath(name string) string { return path.Join(sslDir, name+".pem") }
func keyPath(name string) string  { return path.Join(sslDir, name+"-key.pem") }

// registryUpstreams are the registries a node's containerd reaches through
// the site's mirror when the cluster names one.
var registryUpstreams = []string{"registry.k8s.io", "docker.io", "quay.io", "ghcr.io", "gcr.io"}

func hostsTOMLPath(upstream string) string { return path.Join(pathCertsD, upstream, "hosts.toml") }

// PathsForRole lists, sorted, the file paths every node of role gets with
// binaries in binDir ("" for DefaultBinDir), so a profile's own files can
// be checked for clashes before any machine exists. The registry files,
// which depend on the cluster, are left out.
func PathsForRole(role, binDir string) ([]string, error) {
	certs, err := CertsForRole(role)
	if err != nil {
		return nil, err
	}
	if binDir == "" {
		binDir = DefaultBinDir
	}
	bins, _ := BinariesForRole(role)
	out := []string{pathCA, pathFlannelEnv, pathFlannelNet, pathCNIConf, pathKubeletConfig, pathKubeletKC,
		pathModules, pathSysctl, pathContainerd, pathKubeProxyKC, pathKubeProxyConfig}
	for _, c := range certs {
		out = append(out, certPath(c), keyPath(c))
	}
	for _, b := range bins {
		out = append(out, binaryPath(binDir, b))
	}
	switch role {
	case RoleMaster:
		out = append(out, pathMasterMarker, pathEtcdCA, pathFrontProxyCA, pathSAPublic, pathSAPrivate, pathEtcdEnv,
			pathControllerKC, pathSchedulerKC, pathCoreDNSKC, pathCorefile, pathAddonsKC)
		for _, a := range addonNames {
			out = append(out, path.Join(addonDir, a))
		}
	case RoleWorker:
		out = append(out, pathWorkerMarker)
	}
	sort.Strings(out)
	return out, nil
}

// UnitsForRole lists, sorted, the systemd units every node of role gets.
func UnitsForRole(role string) ([]string, error) {
	both := []string{unitFlanneld, unitKubeProxy, unitKubelet}
	var out []string
	switch role {
	case RoleMaster:
		out = append(both, unitEtcd, unitAPIServer, unitCM, unitScheduler, unitCoreDNS, unitAddons)
	case RoleWorker:
		out = both
	default:
		return nil, errRole(role)
	}
	sort.Strings(out)
	return out, nil
}

func errRole(role string) error {
	return fmt.Errorf("unknown role %q: want %q or %q", role, RoleMaster, RoleWorker)
}

// RenewalPaths and RenewalUnits are what Render adds when Input.RenewURL is
// set, for the same up-front clash checks as PathsForRole.
func RenewalPaths() []string { return []string{pathCertsEnv, pathRenewScript} }
func RenewalUnits() []string { return []string{unitRenew, unitRenewTimer} }
