// Package nodeconfig renders the Kubernetes content of one machine's
// Ignition: the files and systemd units that turn a booted machine into a
// master or worker node of the cluster (certificates, flannel's options.env,
// the kubelet and its KubeletConfiguration, etcd and the control-plane static
// pods on masters, kube-proxy on workers). What every profile gets whatever
// its role (hostname, SSH keys, the first-boot report) is the caller's.
//
// It is pure: values in, a Node out. It does no I/O, reads no store and
// generates no keys; certificates and keys come in as PEM bytes. The result
// is independent of Ignition so that the caller converts it to whichever
// Ignition spec it serves.
package nodeconfig

import (
	"fmt"
	"sort"
)

// Roles Render knows. A "custom" profile carries no Kubernetes content and
// must not be rendered here.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
)

// Defaults used when the Input leaves a field empty.
const (
	DefaultAPIServerPort   = 6443
	DefaultImageRepository = "registry.k8s.io"
	DefaultKubeletPath     = "/opt/bin/kubelet"
	DefaultEtcdPath        = "/opt/bin/etcd"
	// DefaultContainerRuntimeEndpoint is containerd's socket, which Flatcar
	// and Fedora CoreOS both ship.
	DefaultContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"
)

// Input is everything Render needs, as plain values.
type Input struct {
	Cluster Cluster
	Machine Machine
	// Masters is every master machine of the cluster, this one included
	// when it is a master. Workers need it too: flannel reaches etcd on the
	// masters.
	Masters []Member

	// CA is the cluster CA certificate (PEM); EtcdCA the separate etcd CA.
	CA     []byte
	EtcdCA []byte
	// Certs holds the machine's certificates and keys by name; CertsForRole
	// lists the names each role needs.
	Certs map[string]CertKey
	// ServiceAccount is the cluster's service-account key pair, needed by
	// masters only (it must be its own pair, not the apiserver's key).
	ServiceAccount KeyPair

	// KubeletPath and EtcdPath are the binaries on the node; empty means
	// DefaultKubeletPath and DefaultEtcdPath.
	KubeletPath string
	EtcdPath    string
}

// Cluster holds the cluster facts Render uses.
type Cluster struct {
	Name string
	// APIServer is the IP of the API endpoint every kubelet and kube-proxy
	// talks to (a master or a load balancer in front of the masters).
	APIServer     string
	APIServerPort int // 0 means DefaultAPIServerPort
	PodNetwork    string
	ServiceRange  string
	DNSServiceIP  string
	Domain        string
	// KubernetesVersion is a release such as "v1.37.2"; it names the
	// control-plane images and must be v1.MinMinor or later.
	KubernetesVersion string
	// ImageRepository replaces registry.k8s.io, for airgapped sites.
	ImageRepository string
	// ContainerRuntimeEndpoint is the CRI socket; empty means containerd's.
	ContainerRuntimeEndpoint string
}

// Machine is the machine being rendered.
type Machine struct {
	Hostname string
	IP       string
	// Iface is FLANNELD_IFACE: an interface name or an IP; empty means IP.
	Iface  string
	Role   string
	Labels map[string]string
}

// Member is one master of the cluster.
type Member struct {
	Hostname string
	IP       string
}

// CertKey is one certificate and its private key, both PEM.
type CertKey struct {
	Cert []byte
	Key  []byte
}

// KeyPair is a bare key pair, both PEM (public key as "PUBLIC KEY").
type KeyPair struct {
	Public  []byte
	Private []byte
}

// Node is the rendered content, free of Ignition types.
type Node struct {
	Files []File
	Units []Unit
}

// File is one file to write. Mode is the permission bits (0644, 0600).
type File struct {
	Path     string
	Mode     int
	Contents []byte
}

// Unit is one systemd unit to install (and enable when Enabled).
type Unit struct {
	Name     string
	Enabled  bool
	Contents string
	Dropins  []Dropin
}

// Dropin is a systemd drop-in of a Unit.
type Dropin struct {
	Name     string
	Contents string
}

// Render computes the Kubernetes content of in.Machine's Ignition. Every
// error names the field at fault.
func Render(in Input) (Node, error) {
	c, err := check(in)
	if err != nil {
		return Node{}, fmt.Errorf("render node config for %q: %w", in.Machine.Hostname, err)
	}
	var n Node
	if err := renderCommon(&n, c); err != nil {
		return Node{}, fmt.Errorf("render node config for %s: %w", c.hostname, err)
	}
	switch c.role {
	case RoleMaster:
		err = renderMaster(&n, c)
	case RoleWorker:
		err = renderWorker(&n, c)
	}
	if err != nil {
		return Node{}, fmt.Errorf("render node config for %s: %w", c.hostname, err)
	}
	sort.Slice(n.Files, func(i, j int) bool { return n.Files[i].Path < n.Files[j].Path })
	sort.Slice(n.Units, func(i, j int) bool { return n.Units[i].Name < n.Units[j].Name })
	return n, nil
}

// GeneratedPaths lists the file paths of n, sorted, so that a caller can
// refuse an operator's file that would overwrite one.
func GeneratedPaths(n Node) []string {
	out := make([]string, 0, len(n.Files))
	for _, f := range n.Files {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

// GeneratedUnits lists the unit names of n, sorted.
func GeneratedUnits(n Node) []string {
	out := make([]string, 0, len(n.Units))
	for _, u := range n.Units {
		out = append(out, u.Name)
	}
	sort.Strings(out)
	return out
}
