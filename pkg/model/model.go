// Package model is bootsrv's vocabulary: the cluster, its profiles and its
// machines, their events and states, and the rules every write of them must
// pass (normalization, validation, the machines and profiles file formats).
// It is pure: no state, no sockets. Everything above it (the state store,
// the inventory, the boot chain, the doors) speaks these types.
package model

import (
	"net/netip"
	"sort"
	"time"
)

// Roles a profile can have.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
	RoleCustom = "custom"
)

// Operating systems a profile can boot.
const (
	OSFlatcar = "flatcar"
	OSFCOS    = "fcos"
	OSCustom  = "custom"
	// OSLab is the QEMU lab's tiny OS (busybox and the real Ignition
	// binary in an initrd): serial console, Ignition on the metal platform.
	OSLab = "lab"
)

// Install modes of a profile.
const (
	InstallLive = "live"
	InstallDisk = "disk"
)

// Provisioning states of a machine, in journey order, plus failed.
// "registered" is a machine an operator added that has not been seen yet.
const (
	StateRegistered = "registered"
	StateDiscovered = "discovered"
	StateDHCP       = "dhcp"
	StatePXE        = "pxe"
	StateIPXE       = "ipxe"
	StateKernel     = "kernel"
	StateIgnition   = "ignition"
	// StateInstalled: the live image wrote the OS to disk; the installed
	// system has not reported its first boot yet.
	StateInstalled   = "installed"
	StateProvisioned = "provisioned"
	StateFailed      = "failed"
)

// Network is the provisioning network machines boot on.
type Network struct {
	Subnet  string   `json:"subnet" yaml:"subnet"`
	Gateway string   `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty" yaml:"dns,omitempty"`
}

// Cluster is the one Kubernetes cluster a bootsrv provisions.
type Cluster struct {
	Name                string `json:"name" yaml:"name"`
	APIServer           string `json:"api_server" yaml:"api_server"`
	PodNetwork          string `json:"pod_network" yaml:"pod_network"`
	ServiceRange        string `json:"service_range" yaml:"service_range"`
	KubernetesServiceIP string `json:"kubernetes_service_ip" yaml:"kubernetes_service_ip"`
	DNSServiceIP        string `json:"dns_service_ip" yaml:"dns_service_ip"`
	Domain              string `json:"domain" yaml:"domain"`
	KubernetesVersion   string `json:"kubernetes_version" yaml:"kubernetes_version"`
	// The other releases a node runs, imported with `bootsrv assets import`.
	EtcdVersion       string `json:"etcd_version" yaml:"etcd_version"`
	CNIPluginsVersion string `json:"cni_plugins_version" yaml:"cni_plugins_version"`
	FlannelVersion    string `json:"flannel_version" yaml:"flannel_version"`
	FlannelCNIVersion string `json:"flannel_cni_version" yaml:"flannel_cni_version"`
	CoreDNSVersion    string `json:"coredns_version" yaml:"coredns_version"`
	// Arch is the nodes' CPU architecture, as release files name it.
	Arch string `json:"arch" yaml:"arch"`
	// RegistryMirror is the site's registry (https://HOST[:PORT]) holding
	// registry.k8s.io, docker.io, quay.io, ghcr.io and gcr.io images under
	// a path named for each (MIRROR/registry.k8s.io/pause:3.10); RegistryCA
	// the PEM CA of its certificate when it is not a public one.
	RegistryMirror string   `json:"registry_mirror,omitempty" yaml:"registry_mirror,omitempty"`
	RegistryCA     string   `json:"registry_ca,omitempty" yaml:"registry_ca,omitempty"`
	SandboxImage   string   `json:"sandbox_image" yaml:"sandbox_image"`
	SSHKeys        []string `json:"ssh_keys,omitempty" yaml:"ssh_keys,omitempty"`
	Network        Network  `json:"network" yaml:"network"`
	// KeyAlgorithm is ecdsa-p256 (default) or rsa2048, for every key
	// bootsrv makes; CertValidityDays how long node certificates last.
	KeyAlgorithm     string    `json:"key_algorithm" yaml:"key_algorithm"`
	CertValidityDays int       `json:"cert_validity_days" yaml:"cert_validity_days"`
	CreatedAt        time.Time `json:"created_at" yaml:"created_at"`
}

// Profile is what a class of machines boots and becomes.
type Profile struct {
	Name    string   `json:"name" yaml:"name"`
	Role    string   `json:"role" yaml:"role"`
	OS      string   `json:"os" yaml:"os"`
	Kernel  string   `json:"kernel,omitempty" yaml:"kernel,omitempty"`
	Initrds []string `json:"initrds,omitempty" yaml:"initrds,omitempty"`
	Args    []string `json:"args,omitempty" yaml:"args,omitempty"`
	// Install is "live" (diskless: every network boot runs the same config
	// again, never "boot from disk") or "disk" (the live image installs the
	// OS to InstallDevice and the installed system's first boot makes the
	// machine provisioned; later netboots are sent to the disk).
	Install       string `json:"install" yaml:"install"`
	InstallDevice string `json:"install_device,omitempty" yaml:"install_device,omitempty"`
	// Ignition is an Ignition config (JSON, spec 3.0 to 3.4) merged into
	// what bootsrv generates for the machine.
	Ignition string `json:"ignition,omitempty" yaml:"ignition,omitempty"`

	// Source names where the profile was read from ("file.yaml:3"), so
	// that errors point at it. Not stored.
	Source string `json:"source,omitempty" yaml:"-"`
}

// Machine is one physical (or virtual) server, keyed by its MAC.
type Machine struct {
	MAC      string            `json:"mac" yaml:"mac"`
	Hostname string            `json:"hostname" yaml:"hostname"`
	IP       string            `json:"ip" yaml:"ip"`
	Iface    string            `json:"iface" yaml:"iface"`
	Profile  string            `json:"profile" yaml:"profile"`
	Labels   map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// BootFile overrides the first-stage file DHCP hands this machine's
	// firmware (a TFTP file name, or an http:// URL for UEFI HTTP Boot).
	BootFile string `json:"boot_file,omitempty" yaml:"boot_file,omitempty"`

	State   string    `json:"state" yaml:"state"`
	StateAt time.Time `json:"state_at,omitzero" yaml:"state_at,omitempty"`
	// Reprovision asks that the next network boot installs again instead
	// of booting from disk; Generation counts installs, so tokens of an
	// earlier install stop working.
	Reprovision bool   `json:"reprovision,omitempty" yaml:"reprovision,omitempty"`
	Generation  uint64 `json:"generation,omitempty" yaml:"generation,omitempty"`
	// Reports counts the reports the machine made; an Ignition token names
	// the count at its issue, so a report ends every token handed out
	// before it (the token sits on the node's /proc/cmdline, readable by
	// any user there, and the config holds the node's private keys).
	Reports   uint64    `json:"reports,omitempty" yaml:"reports,omitempty"`
	LastEvent string    `json:"last_event,omitempty" yaml:"last_event,omitempty"`
	UpdatedAt time.Time `json:"updated_at" yaml:"updated_at"`
	CreatedAt time.Time `json:"created_at" yaml:"created_at"`

	// What the firmware told about itself, for discovered machines and as
	// a record for known ones.
	Arch        string `json:"arch,omitempty" yaml:"arch,omitempty"`
	UUID        string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	VendorClass string `json:"vendor_class,omitempty" yaml:"vendor_class,omitempty"`

	// Event sequence bounds: events [EventFirst, EventNext) are kept.
	EventFirst uint64 `json:"event_first,omitempty" yaml:"-"`
	EventNext  uint64 `json:"event_next,omitempty" yaml:"-"`

	Source string `json:"source,omitempty" yaml:"-"`
}

// Event is one timestamped step of a machine's journey.
type Event struct {
	Time   time.Time         `json:"time" yaml:"time"`
	Type   string            `json:"type" yaml:"type"`
	Detail string            `json:"detail,omitempty" yaml:"detail,omitempty"`
	Fields map[string]string `json:"fields,omitempty" yaml:"fields,omitempty"`
}

// MaxEvents is how many events a machine keeps; older ones are dropped.
const MaxEvents = 200

// SortMachines orders machines by hostname, then MAC, for display.
func SortMachines(ms []Machine) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Hostname != ms[j].Hostname {
			return ms[i].Hostname < ms[j].Hostname
		}
		return ms[i].MAC < ms[j].MAC
	})
}

// Firmware is what a booting machine said about itself (DHCP options 93,
// 97 and 60).
type Firmware struct {
	Arch        string `json:"arch,omitempty"`
	UUID        string `json:"uuid,omitempty"`
	VendorClass string `json:"vendor_class,omitempty"`
}

// Lease is one address bound (or offered) to one MAC by bootsrv's DHCP.
type Lease struct {
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"` // "" for a declined address
	Expiry   time.Time  `json:"expiry"`
	State    string     `json:"state"`
	Hostname string     `json:"hostname,omitempty"`
}

// Lease states.
const (
	LeaseOffered  = "offered"  // held in memory between OFFER and REQUEST
	LeaseBound    = "bound"    // ACKed and durable
	LeaseDeclined = "declined" // a client found the address in use
)
