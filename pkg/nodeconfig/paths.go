package nodeconfig

import (
	"fmt"
	"path"
	"sort"
)

// Where things live on the node. Paths do not depend on the machine, so the
// set a role generates is known before any machine exists (PathsForRole).
const (
	sslDir       = "/etc/kubernetes/ssl"
	manifestsDir = "/etc/kubernetes/manifests"

	pathMasterMarker  = "/etc/sysconfig/kubernetes-masters"
	pathWorkerMarker  = "/etc/sysconfig/kubernetes-minions"
	pathCA            = sslDir + "/ca.pem"
	pathEtcdCA        = sslDir + "/etcd-ca.pem"
	pathSAPublic      = sslDir + "/sa.pub"
	pathSAPrivate     = sslDir + "/sa.key"
	pathFlannelEnv    = "/etc/flannel/options.env"
	pathKubeletConfig = "/etc/kubernetes/kubelet-config.yaml"
	pathKubeletKC     = "/etc/kubernetes/kubelet.conf"

	pathEtcdEnv      = "/etc/etcd/etcd.env"
	pathEtcdData     = "/var/lib/etcd"
	pathControllerKC = "/etc/kubernetes/controller-manager.conf"
	pathSchedulerKC  = "/etc/kubernetes/scheduler.conf"
	pathAPIServerPod = manifestsDir + "/kube-apiserver.yaml"
	pathCMPod        = manifestsDir + "/kube-controller-manager.yaml"
	pathSchedPod     = manifestsDir + "/kube-scheduler.yaml"

	pathKubeProxyKC     = "/etc/kubernetes/kube-proxy.conf"
	pathKubeProxyConfig = "/etc/kubernetes/kube-proxy-config.yaml"
	pathKubeProxyPod    = manifestsDir + "/kube-proxy.yaml"
)

// Units Render installs.
const (
	unitKubelet = "kubelet.service"
	unitEtcd    = "etcd.service"
)

// Certificate names, as keys of Input.Certs.
const (
	CertKubelet                = "kubelet"
	CertKubeProxy              = "kube-proxy"
	CertAPIServer              = "apiserver"
	CertAPIServerKubeletClient = "apiserver-kubelet-client"
	CertControllerManager      = "controller-manager"
	CertScheduler              = "scheduler"
	CertEtcdServer             = "etcd-server"
	CertEtcdPeer               = "etcd-peer"
	CertEtcdClient             = "etcd-client" // the apiserver's, to etcd
	CertEtcdClientFlannel      = "etcd-client-flannel"
)

var (
	certsBoth   = []string{CertKubelet, CertEtcdClientFlannel}
	certsMaster = []string{CertAPIServer, CertAPIServerKubeletClient, CertControllerManager, CertScheduler, CertEtcdServer, CertEtcdPeer, CertEtcdClient}
	certsWorker = []string{CertKubeProxy}
)

// CertsForRole names the certificates (keys of Input.Certs) a node of role
// needs. The kubelet and kube-proxy certs are signed by the cluster CA, the
// etcd-* ones by the etcd CA.
func CertsForRole(role string) ([]string, error) {
	var out []string
	switch role {
	case RoleMaster:
		out = append(append(out, certsBoth...), certsMaster...)
	case RoleWorker:
		out = append(append(out, certsBoth...), certsWorker...)
	default:
		return nil, errRole(role)
	}
	sort.Strings(out)
	return out, nil
}

// certPath and keyPath are where a named certificate and its key go.
func certPath(name string) string { return path.Join(sslDir, name+".pem") }
func keyPath(name string) string  { return path.Join(sslDir, name+"-key.pem") }

// PathsForRole lists, sorted, the file paths every node of role gets, so a
// profile's own files can be checked for clashes before any machine exists.
func PathsForRole(role string) ([]string, error) {
	certs, err := CertsForRole(role)
	if err != nil {
		return nil, err
	}
	out := []string{pathCA, pathEtcdCA, pathFlannelEnv, pathKubeletConfig, pathKubeletKC}
	for _, c := range certs {
		out = append(out, certPath(c), keyPath(c))
	}
	switch role {
	case RoleMaster:
		out = append(out, pathMasterMarker, pathSAPublic, pathSAPrivate, pathEtcdEnv,
			pathControllerKC, pathSchedulerKC, pathAPIServerPod, pathCMPod, pathSchedPod)
	case RoleWorker:
		out = append(out, pathWorkerMarker, pathKubeProxyKC, pathKubeProxyConfig, pathKubeProxyPod)
	}
	sort.Strings(out)
	return out, nil
}

// UnitsForRole lists, sorted, the systemd units every node of role gets.
func UnitsForRole(role string) ([]string, error) {
	switch role {
	case RoleMaster:
		return []string{unitEtcd, unitKubelet}, nil
	case RoleWorker:
		return []string{unitKubelet}, nil
	}
	return nil, errRole(role)
}

func errRole(role string) error {
	return fmt.Errorf("unknown role %q: want %q or %q", role, RoleMaster, RoleWorker)
}
