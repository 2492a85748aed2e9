// Package nodeconfig renders the Kubernetes content of one machine's
// Ignition: the files and systemd units that turn a booted machine into a
// master or worker node of the cluster. Every node: its binaries (fetched
// from bootsrv and checked by hash), certificates, containerd's config and
// registry mirror, the kubelet, kube-proxy, flanneld and the CNI config,
// kernel modules and sysctls. Masters add etcd, the apiserver,
// controller-manager and scheduler, CoreDNS and the addons that go with
// them. Everything runs as a systemd unit from a verified binary, so no
// image is needed for the cluster itself. What every profile gets whatever
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

	"github.com/bootsrv/bootsrv/pkg/render"
)

// Roles Render knows. A "custom" profile carries no Kubernetes content and
// must not be rendered here.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
)

// Defaults used when the Input leaves a field empty.
const (
	DefaultAPIServerPort = 6443
	DefaultBinDir        = "/opt/bin"
	// DefaultResolvConf is the kubelet's upstream resolv.conf on hosts
	// without systemd-resolved.
	DefaultResolvConf = "/etc/resolv.conf"
	// DefaultContainerRuntimeEndpoint is containerd's socket, which Flatcar
	// and Fedora CoreOS both ship.
	DefaultContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"
	// DefaultSandboxImage is containerd's pause image, pulled through the
	// site's mirror of registry.k8s.io.
	DefaultSandboxImage = "registry.k8s.io/pause:3.10"
)

// Input is everything Render needs, as plain values.
type Input struct {
	Cluster Cluster
	Machine Machine
	Host    Host
	// Masters is every master machine of the cluster, this one included
	// when it is a master. Workers need it too: CoreDNS runs on the masters.
	Masters []Member

	// CA is the cluster CA certificate (PEM); EtcdCA the separate etcd CA;
	// FrontProxyCA the aggregation layer's (masters only).
	CA           []byte
	EtcdCA       []byte
	FrontProxyCA []byte
	// Certs holds the machine's certificates and keys by name; CertsForRole
	// lists the names each role needs.
	Certs map[string]CertKey
	// ServiceAccount is the cluster's service-account key pair, needed by
	// masters only (it must be its own pair, not the apiserver's key).
	ServiceAccount KeyPair

	// Binaries holds, by name, every executable BinariesForRole lists for
	// the machine's role: where Ignition fetches it and its hash.
	Binaries map[string]Binary

	// RenewURL is where the node fetches its current certificates (with a
	// token of its own): a timer checks it twice a day and, when bootsrv
	// has renewed them, puts them in place and restarts what uses them.
	// Empty: no renewal timer.
	RenewURL string
}

// Host is what differs between the operating systems a node runs.
type Host struct {
	// BinDir is where the node's programs go: /opt/bin on Flatcar (its /usr
	// is read-only), /usr/local/bin on Fedora CoreOS. Empty: DefaultBinDir.
	BinDir string
	// ResolvConf is the kubelet's upstream resolver file. On hosts with
	// systemd-resolved it must be /run/systemd/resolve/resolv.conf, or
	// CoreDNS forwards to 127.0.0.53 and loops. Empty: DefaultResolvConf.
	ResolvConf string
	// ContainerdConfigDropin: the OS's containerd.service does not read
	// /etc/containerd/config.toml by itself (Flatcar's uses its own config
	// under /usr), so a drop-in points it there.
	ContainerdConfigDropin bool
}

// Binary is one executable the node fetches from bootsrv.
type Binary struct {
	// URL is where Ignition downloads it; Hash is "sha512-HEX", which
	// Ignition checks before it writes the file.
	URL  string
	Hash string
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
	// KubernetesVersion is a release such as "v1.37.2"; it must be
	// v1.MinMinor or later.
	KubernetesVersion string
	// ContainerRuntimeEndpoint is the CRI socket; empty means containerd's.
	ContainerRuntimeEndpoint string
	// RegistryMirror is the site's registry (https://HOST[:PORT]) that
	// mirrors registry.k8s.io, docker.io and the others, each under a path
	// named for its upstream (MIRROR/registry.k8s.io/pause:3.10); empty
	// means nodes pull from the upstreams themselves. RegistryCA is the PEM
	// CA that signed the mirror's certificate, if not a public one.
	RegistryMirror string
	RegistryCA     []byte
	// SandboxImage is containerd's pause image; empty: DefaultSandboxImage.
	SandboxImage string
	// Upstream DNS servers CoreDNS forwards to; empty: the master's
	// resolv.conf.
	UpstreamDNS []string
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

// File, Unit and Dropin are the Ignition renderer's own: what nodeconfig
// makes goes into a machine's config as it is.
type (
	File   = render.File
	Unit   = render.Unit
	Dropin = render.Dropin
)

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
	if c.role == RoleMaster {
		err = renderMaster(&n, c)
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

// CertificateFiles are the node's TLS files alone (the CAs it trusts, its
// certificates and keys, a master's service-account pair), at the paths
// Render writes them: what a running node replaces when its certificates
// are renewed. It needs only in's role, CAs, certificates and keys.
func CertificateFiles(in Input) ([]File, error) {
	role := in.Machine.Role
	names, err := CertsForRole(role)
	if err != nil {
		return nil, err
	}
	type pemFile struct {
		path, what string
		b          []byte
		mode       int
		types      []string
	}
	files := []pemFile{{pathCA, "CA certificate", in.CA, modePublic, []string{"CERTIFICATE"}}}
	if role == RoleMaster {
		files = append(files,
			pemFile{pathEtcdCA, "etcd CA certificate", in.EtcdCA, modePublic, []string{"CERTIFICATE"}},
			pemFile{pathFrontProxyCA, "front-proxy CA certificate", in.FrontProxyCA, modePublic, []string{"CERTIFICATE"}},
			pemFile{pathSAPublic, "service-account public key", in.ServiceAccount.Public, modePublic, []string{"PUBLIC KEY", "RSA PUBLIC KEY"}},
			pemFile{pathSAPrivate, "service-account private key", in.ServiceAccount.Private, modePrivate, keyTypes})
	}
	for _, name := range names {
		ck, ok := in.Certs[name]
		if !ok {
			return nil, fmt.Errorf("a %s needs certificate %q, which is missing", role, name)
		}
		files = append(files,
			pemFile{certPath(name), "certificate " + name, ck.Cert, modePublic, []string{"CERTIFICATE"}},
			pemFile{keyPath(name), "key of certificate " + name, ck.Key, modePrivate, keyTypes})
	}
	var n Node
	for _, f := range files {
		if err := checkPEM(f.what, f.b, f.types...); err != nil {
			return nil, err
		}
		addFile(&n, f.path, f.mode, f.b)
	}
	sort.Slice(n.Files, func(i, j int) bool { return n.Files[i].Path < n.Files[j].Path })
	return n.Files, nil
}
