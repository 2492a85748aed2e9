package model

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/fault/faulttest"
)

func TestNormalizeMAC(t *testing.T) {
	good := []struct{ in, want string }{
		{"52:54:00:12:34:56", "52:54:00:12:34:56"},
		{"AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"},
		{"aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"},
		{"aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff"},
		{"AABB.CCDD.EEFF", "aa:bb:cc:dd:ee:ff"},
		{"AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"},
		{"aabbccddeeff", "aa:bb:cc:dd:ee:ff"},
		{"AABBCCDDEEFF", "aa:bb:cc:dd:ee:ff"},
		{"  52:54:00:12:34:56\n", "52:54:00:12:34:56"},
	}
	for _, tc := range good {
		got, err := NormalizeMAC(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, sub string }{
		{"", `"" is not a MAC address`},
		{"garbage", `"garbage" is not a MAC address`},
		{"zz:bb:cc:dd:ee:ff", `"zz:bb:cc:dd:ee:ff" is not a MAC address`},
		{"aa:bb:cc:dd:ee", "is not a MAC address"},
		{"aabbccddeef", "is not a MAC address"},                                                     // 11 hex digits
		{"aabbccddeeff00", "is not a MAC address"},                                                  // 14 hex digits
		{"aa:bb:cc:dd:ee:ff:00:11", `"aa:bb:cc:dd:ee:ff:00:11" is not a 6-byte Ethernet MAC`},       // EUI-64
		{"aa-bb-cc-dd-ee-ff-00-11", `"aa-bb-cc-dd-ee-ff-00-11" is not a 6-byte Ethernet MAC`},       // EUI-64
		{"aabb.ccdd.eeff.0011", `is not a 6-byte Ethernet MAC`},                                     // EUI-64
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "is not a 6-byte Ethernet"}, // InfiniBand
	}
	for _, tc := range bad {
		got, err := NormalizeMAC(tc.in)
		if got != "" {
			t.Errorf("NormalizeMAC(%q) = %q, want empty on error", tc.in, got)
		}
		faulttest.Want(t, err, fault.KindInvalid, tc.sub)
	}
}

func TestNormalizeHostname(t *testing.T) {
	good := []struct{ in, want string }{
		{"node1", "node1"},
		{"Node-1.Rack2.EXAMPLE", "node-1.rack2.example"},
		{" worker-01 ", "worker-01"},
		{"1", "1"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63)},
	}
	for _, tc := range good {
		got, err := NormalizeHostname(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHostname(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, sub string }{
		{"", "hostname is empty"},
		{"   ", "hostname is empty"},
		{"-node", `"-node" is not a valid DNS name`},
		{"node-", `"node-" is not a valid DNS name`},
		{"node_1", `"node_1" is not a valid DNS name`},
		{"node 1", `"node 1" is not a valid DNS name`},
		{"node..rack", "is not a valid DNS name"},
		{"node.", "is not a valid DNS name"},
		{strings.Repeat("a", 64), "is not a valid DNS name"},
		{strings.Repeat("a.", 127) + "ab", "longer than 253"},
	}
	for _, tc := range bad {
		_, err := NormalizeHostname(tc.in)
		faulttest.Want(t, err, fault.KindInvalid, tc.sub)
	}
}

func TestParseLabel(t *testing.T) {
	good := []struct{ in, k, v string }{
		{"rack=r1", "rack", "r1"},
		{"example.com/rack=r1", "example.com/rack", "r1"},
		{"gpu=", "gpu", ""},
		{"node.kubernetes.io/exclude-from-external-load-balancers=true", "node.kubernetes.io/exclude-from-external-load-balancers", "true"},
		{"Zone=EU_west.1", "Zone", "EU_west.1"},
	}
	for _, tc := range good {
		k, v, err := ParseLabel(tc.in)
		if err != nil || k != tc.k || v != tc.v {
			t.Errorf("ParseLabel(%q) = %q, %q, %v; want %q, %q", tc.in, k, v, err, tc.k, tc.v)
		}
	}
	bad := []struct{ in, sub string }{
		{"rack", `label "rack" is not key=value`},
		{"=r1", `label "=r1" is not key=value`},
		{"node-role.kubernetes.io/master=", `label key "node-role.kubernetes.io/master": the kubelet refuses`},
		{"node-role.kubernetes.io/worker=true", "node-role.kubernetes.io"},
		{"foo.kubernetes.io/x=y", `label key "foo.kubernetes.io/x"`},
		{"rack=two words", `label rack value "two words" is not valid`},
		{"rack=-r1", `value "-r1" is not valid`},
		{"-rack=r1", `label key "-rack" is not valid`},
		{"Example.com/rack=r1", `prefix "Example.com" is not a DNS subdomain`},
		{strings.Repeat("k", 64) + "=v", "is not valid"},
	}
	for _, tc := range bad {
		_, _, err := ParseLabel(tc.in)
		faulttest.Want(t, err, fault.KindInvalid, tc.sub)
	}
}

// TestValidLabelKubeletRules holds the rule the kubelet applies to
// --node-labels (k8s.io/kubernetes cmd/kubelet/app/options: a key in the
// kubernetes.io or k8s.io namespaces, or a subdomain of them, is refused
// unless kubeletapis.IsKubeletLabel accepts it: the kubelet.kubernetes.io and
// node.kubernetes.io namespaces and their subdomains, and a fixed list of
// well-known keys). A label the kubelet refuses keeps the node from ever
// starting, so bootsrv must refuse it at `machine add`.
func TestValidLabelKubeletRules(t *testing.T) {
	cases := []struct {
		key    string
		wantOK bool
	}{
		{"node-role.kubernetes.io/master", false},
		{"node.kubernetes.io/pool", true},
		{"kubelet.kubernetes.io/pool", true},    // allowed namespace
		{"sub.node.kubernetes.io/pool", true},   // subdomain of an allowed namespace
		{"kubernetes.io/pool", false},           // kubernetes.io itself
		{"k8s.io/pool", false},                  // k8s.io itself
		{"foo.k8s.io/pool", false},              // a k8s.io subdomain
		{"topology.kubernetes.io/zone", true},   // a well-known kubelet label
		{"node.kubernetes.io.evil.com/x", true}, // not a kubernetes.io name at all
		{"node.kubernetes.iox.kubernetes.io/x", false},
	}
	for _, tc := range cases {
		err := ValidLabel(tc.key, "v")
		if (err == nil) == tc.wantOK {
			continue
		}
		t.Run(tc.key, func(t *testing.T) {
			t.Errorf("ValidLabel(%q) = %v, want ok=%v (kubelet --node-labels rule)", tc.key, err, tc.wantOK)
		})
	}
}

func TestNormalizeClusterDefaults(t *testing.T) {
	c, err := NormalizeCluster(Cluster{Name: "lab", APIServer: "192.168.1.10"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"pod network":    {c.PodNetwork, "10.2.0.0/16"},
		"service range":  {c.ServiceRange, "10.3.0.0/24"},
		"k8s service IP": {c.KubernetesServiceIP, "10.3.0.1"},
		"DNS service IP": {c.DNSServiceIP, "10.3.0.10"},
		"domain":         {c.Domain, "cluster.local"},
		"subnet":         {c.Network.Subnet, "192.168.1.0/24"},
		"version":        {c.KubernetesVersion, DefaultKubernetesVersion},
		"api server":     {c.APIServer, "192.168.1.10"},
		// The releases the nodes run (issue 10), as releasetest writes them.
		"etcd":          {c.EtcdVersion, "v3.6.16"},
		"cni plugins":   {c.CNIPluginsVersion, "v1.10.0"},
		"flannel":       {c.FlannelVersion, "v0.28.10"},
		"flannel cni":   {c.FlannelCNIVersion, "v0.9.1"},
		"coredns":       {c.CoreDNSVersion, "v1.15.0"},
		"arch":          {c.Arch, "amd64"},
		"sandbox image": {c.SandboxImage, "registry.k8s.io/pause:3.10"},
		"mirror":        {c.RegistryMirror, ""},
	}
	for what, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", what, gw[0], gw[1])
		}
	}

	// The Kubernetes service IP follows the service range.
	c, err = NormalizeCluster(Cluster{Name: "lab", APIServer: "172.16.5.4", ServiceRange: "10.96.0.0/12", DNSServiceIP: "10.96.0.10",
		Domain: "Lab.Example.", KubernetesVersion: "1.37.2", EtcdVersion: "3.6.17", Arch: "arm64", RegistryMirror: "https://mirror.lab:5000/", Network: Network{Subnet: "172.16.0.0/16", Gateway: "172.16.0.1", DNS: []string{"1.1.1.1"}},
		SSHKeys: []string{"ssh-ed25519 AAAAC3Nza op@host ", "ssh-ed25519 AAAAC3Nza op@host"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.KubernetesServiceIP != "10.96.0.1" || c.Domain != "lab.example" || c.KubernetesVersion != "v1.37.2" || c.Network.Subnet != "172.16.0.0/16" ||
		c.EtcdVersion != "v3.6.17" || c.Arch != "arm64" || c.RegistryMirror != "https://mirror.lab:5000" {
		t.Errorf("got %+v", c)
	}
	if len(c.SSHKeys) != 1 || c.SSHKeys[0] != "ssh-ed25519 AAAAC3Nza op@host" {
		t.Errorf("SSH keys not trimmed and deduplicated: %q", c.SSHKeys)
	}
}

func TestNormalizeClusterBad(t *testing.T) {
	base := func() Cluster { return Cluster{Name: "lab", APIServer: "192.168.1.10"} }
	cases := []struct {
		name string
		mod  func(*Cluster)
		subs []string
	}{
		{"bad name", func(c *Cluster) { c.Name = "My Lab" }, []string{`cluster name "My Lab" is not valid`}},
		{"api not an IP", func(c *Cluster) { c.APIServer = "master1" }, []string{`api_server "master1" is not an IPv4 address`}},
		{"api IPv6", func(c *Cluster) { c.APIServer = "fd00::1" }, []string{`api_server "fd00::1" is not an IPv4 address`}},
		{"pods overlap services", func(c *Cluster) { c.PodNetwork = "10.3.0.0/16" },
			[]string{"pod_network 10.3.0.0/16 overlaps service_range 10.3.0.0/24"}},
		{"pods overlap nodes", func(c *Cluster) { c.PodNetwork = "192.168.0.0/16" },
			[]string{"pod_network 192.168.0.0/16 overlaps the node network 192.168.1.0/24"}},
		{"services overlap nodes", func(c *Cluster) { c.ServiceRange = "192.168.1.0/24"; c.DNSServiceIP = "192.168.1.10" },
			[]string{"service_range 192.168.1.0/24 overlaps the node network 192.168.1.0/24"}},
		{"explicit subnet overlaps services", func(c *Cluster) { c.Network.Subnet = "10.0.0.0/8" },
			[]string{"overlaps the node network 10.0.0.0/8"}},
		{"dns ip outside service range", func(c *Cluster) { c.DNSServiceIP = "10.4.0.10" },
			[]string{"dns_service_ip 10.4.0.10 is outside service_range 10.3.0.0/24"}},
		{"dns ip is the k8s service ip", func(c *Cluster) { c.DNSServiceIP = "10.3.0.1" },
			[]string{"dns_service_ip 10.3.0.1 is the Kubernetes service IP"}},
		{"k8s service ip outside", func(c *Cluster) { c.KubernetesServiceIP = "10.9.0.1" },
			[]string{"kubernetes_service_ip 10.9.0.1 is outside service_range 10.3.0.0/24"}},
		{"pod network host bits", func(c *Cluster) { c.PodNetwork = "10.2.0.1/16" },
			[]string{`pod_network "10.2.0.1/16" has host bits set: did you mean 10.2.0.0/16?`}},
		{"service range host bits", func(c *Cluster) { c.ServiceRange = "10.3.0.5/24" },
			[]string{`service_range "10.3.0.5/24" has host bits set: did you mean 10.3.0.0/24?`}},
		{"subnet host bits", func(c *Cluster) { c.Network.Subnet = "192.168.1.10/24" },
			[]string{`network.subnet "192.168.1.10/24" has host bits set: did you mean 192.168.1.0/24?`}},
		{"pod network not CIDR", func(c *Cluster) { c.PodNetwork = "10.2.0.0" },
			[]string{`pod_network "10.2.0.0" is not an IPv4 network in CIDR form`}},
		{"service range too small", func(c *Cluster) { c.ServiceRange = "10.3.0.0/31"; c.DNSServiceIP = "10.3.0.1" },
			[]string{"service_range 10.3.0.0/31 is too small"}},
		{"gateway outside subnet", func(c *Cluster) { c.Network.Gateway = "192.168.2.1" },
			[]string{"network.gateway 192.168.2.1 is outside the provisioning subnet 192.168.1.0/24"}},
		{"gateway not an IP", func(c *Cluster) { c.Network.Gateway = "router" }, []string{`network.gateway "router" is not an IPv4 address`}},
		{"dns server not an IP", func(c *Cluster) { c.Network.DNS = []string{"1.1.1.1", "dns.example"} },
			[]string{`network.dns "dns.example" is not an IPv4 address`}},
		{"bad ssh key", func(c *Cluster) { c.SSHKeys = []string{"ssh-ed25519 AAAA ok", "not-a-key"} },
			[]string{"SSH key 2 is not an OpenSSH public key line"}},
		{"ssh key without type", func(c *Cluster) { c.SSHKeys = []string{"AAAAC3NzaC1lZDI1NTE5 op@host"} },
			[]string{"SSH key 1 is not an OpenSSH public key line"}},
		{"bad domain", func(c *Cluster) { c.Domain = "cluster_local" }, []string{`domain "cluster_local" is not a valid DNS domain`}},
		{"api in pod range with explicit subnet", func(c *Cluster) { c.APIServer = "10.2.0.5"; c.Network.Subnet = "192.168.1.0/24" },
			[]string{"api_server 10.2.0.5 lies in the pod or service range"}},
		{"etcd version not a release", func(c *Cluster) { c.EtcdVersion = "latest" }, []string{`etcd_version "vlatest" is not a release version such as v3.6.16`}},
		{"kubernetes version with a path", func(c *Cluster) { c.KubernetesVersion = "v1.37.2/../x" }, []string{"kubernetes_version", "is not a release version"}},
		{"coredns version short", func(c *Cluster) { c.CoreDNSVersion = "1.15" }, []string{`coredns_version "v1.15" is not a release version`}},
		{"bad arch", func(c *Cluster) { c.Arch = "x86_64" }, []string{`arch "x86_64": use amd64 or arm64`}},
		{"mirror without scheme", func(c *Cluster) { c.RegistryMirror = "mirror.example:5000" }, []string{`registry mirror "mirror.example:5000" is not a registry URL such as https://HOST[:PORT]`}},
		{"mirror with a path", func(c *Cluster) { c.RegistryMirror = "https://mirror.example:5000/k8s" }, []string{`registry mirror "https://mirror.example:5000/k8s" is not a registry URL`}},
		{"mirror with a user", func(c *Cluster) { c.RegistryMirror = "https://user@mirror.example" }, []string{`"https://user@mirror.example" is not a registry URL`}},
		{"registry ca without mirror", func(c *Cluster) { c.RegistryCA = "secret" }, []string{"registry CA is set but no registry mirror is"}},
		{"registry ca not PEM", func(c *Cluster) { c.RegistryMirror = "https://mirror.example:5000"; c.RegistryCA = "secret" }, []string{"registry CA is not PEM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			_, err := NormalizeCluster(c)
			faulttest.Want(t, err, fault.KindInvalid, tc.subs...)
			// Every refusal names the field at fault, so each door can
			// word it (the CLI with its flag, a file with its key).
			if fault.FieldOf(err) == "" {
				t.Errorf("error %q names no field", err)
			}
		})
	}
}

func TestNormalizeProfile(t *testing.T) {
	p, err := NormalizeProfile(Profile{Name: " worker ", Role: RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "worker" || p.OS != OSFlatcar {
		t.Errorf("got name %q os %q, want worker flatcar", p.Name, p.OS)
	}
	// Live (diskless) unless the profile says disk; disk installs to
	// /dev/sda unless it names its device.
	if p.Install != InstallLive || p.InstallDevice != "" {
		t.Errorf("default install %q device %q, want live and no device", p.Install, p.InstallDevice)
	}
	for _, c := range []struct {
		p   Profile
		dev string
	}{
		{Profile{Name: "d", Role: RoleWorker, OS: OSFlatcar, Install: InstallDisk}, DefaultInstallDevice},
		{Profile{Name: "d", Role: RoleWorker, OS: OSFCOS, Install: InstallDisk, InstallDevice: "/dev/nvme0n1"}, "/dev/nvme0n1"},
	} {
		got, err := NormalizeProfile(c.p)
		if err != nil || got.Install != InstallDisk || got.InstallDevice != c.dev {
			t.Errorf("%s disk profile: install %q device %q (%v), want disk on %s", c.p.OS, got.Install, got.InstallDevice, err, c.dev)
		}
	}
	if DefaultInstallDevice != "/dev/sda" {
		t.Errorf("DefaultInstallDevice %q", DefaultInstallDevice)
	}
	okIgn := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","mode":420,"contents":{"source":"data:,hi"}}]}}`
	if _, err := NormalizeProfile(Profile{Name: "m", Role: RoleMaster, OS: OSFCOS, Ignition: okIgn}); err != nil {
		t.Errorf("valid Ignition refused: %v", err)
	}
	if _, err := NormalizeProfile(Profile{Name: "m", Role: RoleMaster, Ignition: `{"ignition":{"version":"3.0.0"}}`}); err != nil {
		t.Errorf("spec 3.0 Ignition refused: %v", err)
	}

	cases := []struct {
		name string
		p    Profile
		subs []string
	}{
		{"no role", Profile{Name: "w"}, []string{"profile w has no role: give --role master, worker or custom"}},
		{"bad role", Profile{Name: "w", Role: "boss"}, []string{`profile w: role "boss" is not one of master, worker, custom`}},
		{"bad os", Profile{Name: "w", Role: RoleWorker, OS: "ubuntu"}, []string{`profile w: os "ubuntu" is not one of flatcar, fcos`}},
		{"bad name", Profile{Name: "Worker Nodes", Role: RoleWorker}, []string{`profile name "Worker Nodes" is not valid`}},
		{"empty name", Profile{Role: RoleWorker}, []string{`profile name "" is not valid`}},
		{"kernel with space", Profile{Name: "w", Role: RoleWorker, Kernel: "http://x/vmlinuz initrd=foo"}, []string{"is not a usable kernel/initrd location"}},
		{"initrd with quote", Profile{Name: "w", Role: RoleWorker, Initrds: []string{`http://x/"a`}}, []string{"is not a usable kernel/initrd location"}},
		{"arg with newline", Profile{Name: "w", Role: RoleWorker, Args: []string{"console=ttyS0\nboot"}}, []string{"kernel arg", "contains a line break"}},
		{"ignition not JSON", Profile{Name: "w", Role: RoleWorker, Ignition: "{"}, []string{"profile w: ignition snippet is not a valid Ignition config"}},
		{"ignition spec 2", Profile{Name: "w", Role: RoleWorker, Ignition: `{"ignition":{"version":"2.2.0"}}`},
			[]string{"profile w: ignition snippet is not a valid Ignition config", "unsupported config version"}},
		{"ignition unknown key warns", Profile{Name: "w", Role: RoleWorker, Ignition: `{"ignition":{"version":"3.4.0"},"foo":1}`},
			[]string{"profile w: ignition snippet has warnings", "unused key foo"}},
		{"ignition setuid mode warns", Profile{Name: "w", Role: RoleWorker,
			Ignition: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","mode":2644}]}}`},
			[]string{"ignition snippet has warnings", "$.storage.files.0.mode"}},
		{"source prefixed", Profile{Name: "w", Role: "boss", Source: "profiles.yaml:7"}, []string{"profiles.yaml:7: profile w: role"}},
		// Only the OSes whose live image installs itself install to disk.
		{"disk on lab", Profile{Name: "w", Role: RoleWorker, OS: OSLab, Install: InstallDisk},
			[]string{"profile w: install: disk needs os flatcar or fcos", "use install: live for os lab"}},
		{"disk on custom", Profile{Name: "w", Role: RoleWorker, OS: OSCustom, Install: InstallDisk},
			[]string{"install: disk needs os flatcar or fcos", "use install: live for os custom"}},
		{"device without disk", Profile{Name: "w", Role: RoleWorker, InstallDevice: "/dev/sdb"},
			[]string{"profile w: install_device is set but install is live", "say install: disk"}},
		{"device with live", Profile{Name: "w", Role: RoleWorker, Install: InstallLive, InstallDevice: "/dev/sdb"},
			[]string{"install_device is set but install is live"}},
		{"bad install", Profile{Name: "w", Role: RoleWorker, Install: "usb"}, []string{`profile w: install "usb" is not live or disk`}},
		{"device not under /dev", Profile{Name: "w", Role: RoleWorker, Install: InstallDisk, InstallDevice: "sda"},
			[]string{`install_device "sda" is not a device path such as /dev/sda`}},
		{"device with space", Profile{Name: "w", Role: RoleWorker, Install: InstallDisk, InstallDevice: "/dev/sda coreos.inst.skip_reboot"},
			[]string{"is not a device path"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NormalizeProfile(tc.p)
			faulttest.Want(t, err, fault.KindInvalid, tc.subs...)
		})
	}
}

func TestNormalizeMachine(t *testing.T) {
	subnet := netip.MustParsePrefix("192.168.1.0/24")
	m, err := NormalizeMachine(Machine{MAC: "52-54-00-AA-00-01", Hostname: "Node1", IP: " 192.168.1.11 ", Profile: "worker",
		Labels: map[string]string{"rack": "r1"}}, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if m.MAC != "52:54:00:aa:00:01" || m.Hostname != "node1" || m.IP != "192.168.1.11" || m.Iface != "192.168.1.11" {
		t.Errorf("got %+v", m)
	}
	for _, iface := range []string{"eth0", "ens3f0", "bond0.100", "enp0s31f6", "192.168.1.11", "10.0.0.5"} {
		m, err := NormalizeMachine(Machine{MAC: "52:54:00:aa:00:01", Hostname: "n", IP: "192.168.1.11", Profile: "w", Iface: iface}, subnet)
		if err != nil || m.Iface != iface {
			t.Errorf("iface %q: got %q, %v", iface, m.Iface, err)
		}
	}

	ok := func() Machine {
		return Machine{MAC: "52:54:00:aa:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Source: "rack.csv:4"}
	}
	cases := []struct {
		name string
		mod  func(*Machine)
		subs []string
	}{
		{"bad mac", func(m *Machine) { m.MAC = "52:54:00" }, []string{"rack.csv:4: field mac:", `"52:54:00" is not a MAC address`}},
		{"eui-64", func(m *Machine) { m.MAC = "52:54:00:aa:00:01:02:03" }, []string{"rack.csv:4: field mac:", "6-byte"}},
		{"zero mac", func(m *Machine) { m.MAC = "00:00:00:00:00:00" }, []string{"rack.csv:4: field mac:", "all-zero MAC"}},
		{"broadcast mac", func(m *Machine) { m.MAC = "FF-FF-FF-FF-FF-FF" }, []string{"rack.csv:4: field mac:", "ff:ff:ff:ff:ff:ff is the broadcast MAC"}},
		{"multicast mac", func(m *Machine) { m.MAC = "01:00:5e:00:00:01" }, []string{"rack.csv:4: field mac:", "multicast MAC"}},
		{"ipv6 multicast mac", func(m *Machine) { m.MAC = "33:33:00:00:00:01" }, []string{"rack.csv:4: field mac:", "multicast MAC"}},
		{"bad hostname", func(m *Machine) { m.Hostname = "node_1" }, []string{"rack.csv:4: field hostname:", `"node_1"`}},
		{"no hostname", func(m *Machine) { m.Hostname = "" }, []string{"rack.csv:4: field hostname: hostname is empty"}},
		{"no ip", func(m *Machine) { m.IP = "" }, []string{"rack.csv:4: field ip: machine 52:54:00:aa:00:01 has no IP"}},
		{"bad ip", func(m *Machine) { m.IP = "192.168.1.300" }, []string{"rack.csv:4: field ip:", `"192.168.1.300" is not an IPv4 address`}},
		{"ipv6", func(m *Machine) { m.IP = "fd00::5" }, []string{"rack.csv:4: field ip:", "is not an IPv4 address"}},
		{"ip outside subnet", func(m *Machine) { m.IP = "192.168.2.11" },
			[]string{"rack.csv:4: field ip: 192.168.2.11 is outside the provisioning subnet 192.168.1.0/24"}},
		{"network address", func(m *Machine) { m.IP = "192.168.1.0" }, []string{"field ip: 192.168.1.0 is the network or broadcast address of 192.168.1.0/24"}},
		{"broadcast address", func(m *Machine) { m.IP = "192.168.1.255" }, []string{"field ip: 192.168.1.255 is the network or broadcast address"}},
		{"iface ipv6", func(m *Machine) { m.Iface = "fe80::1" }, []string{"rack.csv:4: field iface:", `iface "fe80::1" is not an IPv4 address`}},
		{"iface too long", func(m *Machine) { m.Iface = "enp0s31f6-too-long" }, []string{"rack.csv:4: field iface:", "is neither an interface name"}},
		{"iface with space", func(m *Machine) { m.Iface = "eth 0" }, []string{"field iface:", `iface "eth 0" is neither`}},
		{"iface with slash", func(m *Machine) { m.Iface = "192.168.1.11/24" }, []string{"field iface:", "is neither"}},
		{"no profile", func(m *Machine) { m.Profile = "" }, []string{"rack.csv:4: field profile: machine 52:54:00:aa:00:01 has no profile"}},
		{"bad label", func(m *Machine) { m.Labels = map[string]string{"node-role.kubernetes.io/master": ""} }, []string{"rack.csv:4: field labels:", "node-role.kubernetes.io"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := ok()
			tc.mod(&m)
			_, err := NormalizeMachine(m, subnet)
			faulttest.Want(t, err, fault.KindInvalid, tc.subs...)
		})
	}

	// The edges of a small subnet are refused too, its last host is not.
	small := netip.MustParsePrefix("10.0.0.8/29")
	for _, ip := range []string{"10.0.0.8", "10.0.0.15"} {
		_, err := NormalizeMachine(Machine{MAC: "52:54:00:aa:00:01", Hostname: "n", IP: ip, Profile: "w"}, small)
		faulttest.Want(t, err, fault.KindInvalid, "network or broadcast")
	}
	if _, err := NormalizeMachine(Machine{MAC: "52:54:00:aa:00:01", Hostname: "n", IP: "10.0.0.14", Profile: "w"}, small); err != nil {
		t.Errorf("last host of /29 refused: %v", err)
	}
}

// TestNormalizeClusterServiceRangeOnly: a user who moves the service range
// and gives no DNS IP should get a DNS IP inside the new range (its .10),
// not an error about a --dns-ip they never typed.
func TestNormalizeClusterServiceRangeOnly(t *testing.T) {
	c, err := NormalizeCluster(Cluster{Name: "lab", APIServer: "192.168.1.10", ServiceRange: "10.96.0.0/12"})
	if err != nil {
		t.Fatalf("--service-range 10.96.0.0/12 alone is refused: %v", err)
	}
	if c.KubernetesServiceIP != "10.96.0.1" || c.DNSServiceIP != "10.96.0.10" {
		t.Errorf("got k8s %s dns %s, want 10.96.0.1 10.96.0.10", c.KubernetesServiceIP, c.DNSServiceIP)
	}
}
