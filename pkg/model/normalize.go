package model

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/release"
	"github.com/bootsrv/bootsrv/pkg/render"
)

// Defaults from the seed guides (see shared/REFERENCE.md).
const (
	DefaultPodNetwork        = "10.2.0.0/16"
	DefaultServiceRange      = "10.3.0.0/24"
	DefaultDNSServiceIP      = "10.3.0.10"
	DefaultDomain            = "cluster.local"
	DefaultKubernetesVersion = "v1.37.2"
	DefaultEtcdVersion       = "v3.6.16"
	DefaultCNIPluginsVersion = "v1.10.0"
	DefaultFlannelVersion    = "v0.28.10"
	DefaultFlannelCNIVersion = "v0.9.1"
	DefaultCoreDNSVersion    = "v1.15.0"
	DefaultArch              = "amd64"
	DefaultInstallDevice     = "/dev/sda"
)

// NormalizeCluster fills defaults into c and checks it as a whole: every
// address parses, the pod, service and node networks do not overlap, the
// service IPs lie in the service range, the gateway in the subnet.
func NormalizeCluster(c Cluster) (Cluster, error) {
	// The slices are rewritten below: work on copies, not the caller's.
	c.Network.DNS = slices.Clone(c.Network.DNS)
	c.SSHKeys = slices.Clone(c.SSHKeys)
	if err := ValidName("cluster", c.Name); err != nil {
		return c, fault.WithField("name", err)
	}
	api, err := parseIPv4("api_server", c.APIServer)
	if err != nil {
		return c, err
	}
	c.APIServer = api.String()
	if c.PodNetwork == "" {
		c.PodNetwork = DefaultPodNetwork
	}
	if c.ServiceRange == "" {
		c.ServiceRange = DefaultServiceRange
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if _, err := NormalizeHostname(c.Domain); err != nil {
		return c, fault.Fields([]string{"domain"}, "domain %q is not a valid DNS domain", c.Domain)
	}
	if c.KeyAlgorithm == "" {
		c.KeyAlgorithm = "ecdsa-p256"
	}
	if c.KeyAlgorithm != "ecdsa-p256" && c.KeyAlgorithm != "rsa2048" {
		return c, fault.Fields([]string{"key_algorithm"}, "key_algorithm %q: use ecdsa-p256 or rsa2048", c.KeyAlgorithm)
	}
	if c.CertValidityDays == 0 {
		c.CertValidityDays = 365
	}
	if c.CertValidityDays < 31 || c.CertValidityDays > 3650 {
		return c, fault.Fields([]string{"cert_validity_days"}, "cert_validity_days %d: use 31 to 3650 days (certificates are renewed 30 days before they expire)", c.CertValidityDays)
	}
	for _, v := range []struct {
		field, def string
		p          *string
	}{
		{"kubernetes_version", DefaultKubernetesVersion, &c.KubernetesVersion},
		{"etcd_version", DefaultEtcdVersion, &c.EtcdVersion},
		{"cni_plugins_version", DefaultCNIPluginsVersion, &c.CNIPluginsVersion},
		{"flannel_version", DefaultFlannelVersion, &c.FlannelVersion},
		{"flannel_cni_version", DefaultFlannelCNIVersion, &c.FlannelCNIVersion},
		{"coredns_version", DefaultCoreDNSVersion, &c.CoreDNSVersion},
	} {
		if *v.p == "" {
			*v.p = v.def
		}
		if !strings.HasPrefix(*v.p, "v") {
			*v.p = "v" + *v.p
		}
		if !release.IsVersion(*v.p) { // a version no release file could be imported under
			return c, fault.Fields([]string{v.field}, "%s %q is not a release version such as %s", v.field, *v.p, v.def)
		}
	}
	if c.Arch == "" {
		c.Arch = DefaultArch
	}
	if c.Arch != "amd64" && c.Arch != "arm64" {
		return c, fault.Fields([]string{"arch"}, "arch %q: use amd64 or arm64", c.Arch)
	}
	if c.SandboxImage == "" {
		c.SandboxImage = nodeconfig.DefaultSandboxImage
	}
	c.RegistryMirror = strings.TrimSuffix(c.RegistryMirror, "/")
	if err := nodeconfig.CheckRegistry(c.RegistryMirror, []byte(c.RegistryCA)); err != nil {
		return c, fault.Fields([]string{"registry_mirror", "registry_ca"}, "registry_mirror, registry_ca: %v", err)
	}
	pods, err := parsePrefix("pod_network", c.PodNetwork)
	if err != nil {
		return c, err
	}
	svc, err := parsePrefix("service_range", c.ServiceRange)
	if err != nil {
		return c, err
	}
	if svc.Bits() > 30 {
		return c, fault.Fields([]string{"service_range"}, "service_range %s is too small: it needs room for the Kubernetes and DNS service IPs (/30 or larger)", svc)
	}
	var subnet netip.Prefix
	if c.Network.Subnet == "" {
		subnet = netip.PrefixFrom(api, 24).Masked()
	} else if subnet, err = parsePrefix("network.subnet", c.Network.Subnet); err != nil {
		return c, err
	}
	c.Network.Subnet = subnet.String()
	c.PodNetwork, c.ServiceRange = pods.String(), svc.String()

	if pods.Overlaps(svc) {
		return c, fault.Fields([]string{"pod_network", "service_range"}, "pod_network %s overlaps service_range %s: pick ranges that do not overlap (defaults: pods %s, services %s)", pods, svc, DefaultPodNetwork, DefaultServiceRange)
	}
	if pods.Overlaps(subnet) {
		return c, fault.Fields([]string{"pod_network"}, "pod_network %s overlaps the node network %s: pick a pod network that does not contain your machines' addresses", pods, subnet)
	}
	if svc.Overlaps(subnet) {
		return c, fault.Fields([]string{"service_range"}, "service_range %s overlaps the node network %s: pick a service range that does not contain your machines' addresses", svc, subnet)
	}
	if !subnet.Contains(api) && c.Network.Subnet != "" {
		// The API endpoint may be a load balancer outside the node network;
		// it must still not sit in a cluster-internal range.
		if pods.Contains(api) || svc.Contains(api) {
			return c, fault.Fields([]string{"api_server"}, "api_server %s lies in the pod or service range: give the master's address on the node network", api)
		}
	}

	if c.KubernetesServiceIP == "" {
		c.KubernetesServiceIP = firstHost(svc).String()
	}
	kip, err := parseIPv4("kubernetes_service_ip", c.KubernetesServiceIP)
	if err != nil {
		return c, err
	}
	if !svc.Contains(kip) {
		return c, fault.Fields([]string{"kubernetes_service_ip", "service_range"}, "kubernetes_service_ip %s is outside service_range %s", kip, svc)
	}
	if c.DNSServiceIP == "" {
		c.DNSServiceIP = defaultDNSIP(svc, kip).String()
	}
	dip, err := parseIPv4("dns_service_ip", c.DNSServiceIP)
	if err != nil {
		return c, err
	}
	if !svc.Contains(dip) {
		return c, fault.Fields([]string{"dns_service_ip", "service_range"}, "dns_service_ip %s is outside service_range %s: pick an address inside it (the guides use %s)", dip, svc, DefaultDNSServiceIP)
	}
	if dip == kip {
		return c, fault.Fields([]string{"dns_service_ip"}, "dns_service_ip %s is the Kubernetes service IP: pick another address in %s", dip, svc)
	}
	c.KubernetesServiceIP, c.DNSServiceIP = kip.String(), dip.String()

	if c.Network.Gateway != "" {
		gw, err := parseIPv4("network.gateway", c.Network.Gateway)
		if err != nil {
			return c, err
		}
		if !subnet.Contains(gw) {
			return c, fault.Fields([]string{"network.gateway"}, "network.gateway %s is outside the provisioning subnet %s", gw, subnet)
		}
		c.Network.Gateway = gw.String()
	}
	for i, d := range c.Network.DNS {
		a, err := parseIPv4("network.dns", d)
		if err != nil {
			return c, err
		}
		c.Network.DNS[i] = a.String()
	}
	for i, k := range c.SSHKeys {
		k = strings.TrimSpace(k)
		if f := strings.Fields(k); len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			return c, fault.Fields([]string{"ssh_keys"}, "SSH key %d is not an OpenSSH public key line (type, base64 key, optional comment): fix it in ssh_keys", i+1)
		}
		c.SSHKeys[i] = k
	}
	c.SSHKeys = Dedupe(c.SSHKeys)
	return c, nil
}

// defaultDNSIP picks the cluster DNS service IP for a service range given
// without --dns-ip: the guides' 10.3.0.10 for the default range, else the
// range's 10th host (base + 10) when it fits below the last address, else
// its second host; never the Kubernetes service IP kip.
func defaultDNSIP(svc netip.Prefix, kip netip.Addr) netip.Addr {
	if def := netip.MustParseAddr(DefaultDNSServiceIP); svc.String() == DefaultServiceRange && def != kip {
		return def
	}
	base := svc.Masked().Addr()
	last := LastAddr(svc)
	host := func(n uint32) netip.Addr {
		b := base.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += n
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	usable := func(a netip.Addr) bool { return svc.Contains(a) && a.Less(last) && a != kip }
	if a := host(10); usable(a) {
		return a
	}
	// A small range: its second host, or the first free one after it.
	for n := uint32(2); ; n++ {
		a := host(n)
		if !svc.Contains(a) {
			break
		}
		if usable(a) {
			return a
		}
	}
	return firstHost(svc)
}

// NormalizeProfile fills defaults into p and checks it on its own.
func NormalizeProfile(p Profile) (Profile, error) {
	p.Name = strings.TrimSpace(p.Name)
	if err := ValidName("profile", p.Name); err != nil {
		return p, fault.At(p.Source, err)
	}
	switch p.Role {
	case RoleMaster, RoleWorker, RoleCustom:
	case "":
		return p, fault.At(p.Source, fault.Invalidf("profile %s has no role: give --role master, worker or custom", p.Name))
	default:
		return p, fault.At(p.Source, fault.Invalidf("profile %s: role %q is not one of master, worker, custom", p.Name, p.Role))
	}
	switch p.OS {
	case OSFlatcar, OSFCOS, OSCustom, OSLab:
	case "":
		p.OS = OSFlatcar
	default:
		return p, fault.At(p.Source, fault.Invalidf("profile %s: os %q is not one of flatcar, fcos, lab, custom", p.Name, p.OS))
	}
	switch p.Install {
	case "":
		p.Install = InstallLive
	case InstallLive, InstallDisk:
	default:
		return p, fault.At(p.Source, fault.Invalidf("profile %s: install %q is not live or disk", p.Name, p.Install))
	}
	if p.Install == InstallDisk {
		if p.OS != OSFlatcar && p.OS != OSFCOS {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: install: disk needs os flatcar or fcos (their live images install themselves); use install: live for os %s", p.Name, p.OS))
		}
		if p.InstallDevice == "" {
			p.InstallDevice = DefaultInstallDevice
		}
		if !strings.HasPrefix(p.InstallDevice, "/dev/") || strings.ContainsAny(p.InstallDevice, " \t\n\"'") {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: install_device %q is not a device path such as /dev/sda", p.Name, p.InstallDevice))
		}
	} else if p.InstallDevice != "" {
		return p, fault.At(p.Source, fault.Invalidf("profile %s: install_device is set but install is live: say install: disk", p.Name))
	}
	for _, u := range append([]string{p.Kernel}, p.Initrds...) {
		if strings.ContainsAny(u, " \t\n\"'") {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: %q is not a usable kernel/initrd location: no spaces or quotes", p.Name, u))
		}
	}
	for _, a := range p.Args {
		if strings.ContainsAny(a, "\n\r") {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: kernel arg %q contains a line break", p.Name, a))
		}
	}
	if err := ValidateIgnitionSnippet(p.Ignition); err != nil {
		return p, fault.At(p.Source, fault.Invalidf("profile %s: %s", p.Name, err))
	}
	if strings.TrimSpace(p.Ignition) != "" {
		paths, units := GeneratedFor(p.Role, p.OS)
		clash, err := render.SnippetClashes(p.Ignition, paths, units)
		if err != nil {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: ignition snippet: %v", p.Name, err))
		}
		if len(clash) > 0 {
			return p, fault.At(p.Source, fault.Invalidf("profile %s: the ignition snippet writes what bootsrv generates for a %s (%s): move your content to other paths or units", p.Name, p.Role, strings.Join(clash, ", ")))
		}
	}
	return p, nil
}

// NormalizeMachine checks m against the cluster's provisioning subnet and
// fills the iface default (its IP). Uniqueness against other machines is
// checked by the service, in the transaction.
func NormalizeMachine(m Machine, subnet netip.Prefix) (Machine, error) {
	mac, err := NormalizeMAC(m.MAC)
	if err == nil {
		hw, _ := net.ParseMAC(mac)
		err = MachineMAC(hw)
	}
	if err != nil {
		return m, fault.At(m.Source, fault.InField("mac", err))
	}
	m.MAC = mac
	if m.Hostname, err = NormalizeHostname(m.Hostname); err != nil {
		return m, fault.At(m.Source, fault.InField("hostname", err))
	}
	if strings.TrimSpace(m.IP) == "" {
		return m, fault.At(m.Source, fault.Invalidf("field ip: machine %s has no IP: give one with --ip", m.MAC))
	}
	ip, err := parseIPv4("ip", m.IP)
	if err != nil {
		return m, fault.At(m.Source, fault.InField("ip", err))
	}
	if !subnet.Contains(ip) {
		return m, fault.At(m.Source, fault.Invalidf("field ip: %s is outside the provisioning subnet %s: give an address inside it, or change the cluster's --subnet", ip, subnet))
	}
	if ip == subnet.Addr() || ip == LastAddr(subnet) {
		return m, fault.At(m.Source, fault.Invalidf("field ip: %s is the network or broadcast address of %s", ip, subnet))
	}
	m.IP = ip.String()
	if m.Iface == "" {
		m.Iface = m.IP
	}
	if err := validIface(m.Iface); err != nil {
		return m, fault.At(m.Source, fault.InField("iface", err))
	}
	if m.Profile == "" {
		return m, fault.At(m.Source, fault.Invalidf("field profile: machine %s has no profile: give one with --profile", m.MAC))
	}
	for k, v := range m.Labels {
		if err := ValidLabel(k, v); err != nil {
			return m, fault.At(m.Source, fault.InField("labels", err))
		}
	}
	return m, nil
}

// LastAddr is the broadcast address of p, its last.
func LastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		a[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(a)
}
