package nodeconfig

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/k8snames"
)

// MinMinor is the oldest Kubernetes 1.x minor Render writes for: the
// kubelet reads containerRuntimeEndpoint from its config file since v1.27,
// and everything else rendered here (registerWithTaints, the
// control-plane taint, --service-account-signing-key-file) is older.
const MinMinor = 27

// checked is Input after validation, with parsed values.
type checked struct {
	in       Input
	hostname string
	ip       netip.Addr
	iface    string
	role     string
	labels   []string // "k=v", sorted
	masters  []Member // sorted by hostname, IPs normalized

	clusterName string
	apiEndpoint string // https://IP:port, the cluster's API endpoint
	apiPort     int
	podNet      netip.Prefix
	svcRange    netip.Prefix
	dns         netip.Addr
	domain      string
	version     string
	cri         string
	mirror      string // https://host[:port], no trailing slash; "" for none
	sandbox     string
	host        Host
	binDir      string
	resolvConf  string
	bins        []Need
}

// bin is the path of one of the node's programs.
func (c checked) bin(name string) string {
	for _, b := range c.bins {
		if b.Name == name {
			return binaryPath(c.binDir, b)
		}
	}
	panic("nodeconfig: binary " + name + " is not in BinariesForRole") // a bug here, not bad input
}

var (
	// dnsLabelRe is one RFC 1123 label; node names are DNS subdomains of
	// such labels, lower case, as the Node object's name requires.
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// versionRe is a Kubernetes release tag; it becomes an image tag, so
	// build metadata ("+...") is refused (a tag cannot hold '+').
	versionRe = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)
	ifaceRe   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)
	imageRe   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9._:/@]*[a-z0-9])?$`)
	mirrorRe  = regexp.MustCompile(`^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)
	hashRe    = regexp.MustCompile(`^sha512-[0-9a-f]{128}$`)
	absPathRe = regexp.MustCompile(`^/[A-Za-z0-9._/+-]+$`)
	criRe     = regexp.MustCompile(`^unix:///[A-Za-z0-9._/+-]+$`)
)

func validHostname(s string) error {
	switch k8snames.Hostname(s) {
	case k8snames.HostnameEmpty:
		return errors.New("is empty")
	case k8snames.HostnameTooLong:
		return fmt.Errorf("%q is longer than 253 characters", s)
	case k8snames.HostnameBadLabel:
		return fmt.Errorf("%q is not a lower-case DNS name (Kubernetes node names are RFC 1123 subdomains)", s)
	}
	return nil
}

func parseIP(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, fmt.Errorf("%s is empty", field)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IP address", field, s)
	}
	return a.Unmap(), nil
}

func parsePrefix(field, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("%s is empty", field)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q is not a CIDR range: %w", field, s, err)
	}
	return p.Masked(), nil
}

// parseVersion accepts "v1.37.2" (or "1.37.2", or with a pre-release) and
// returns it with its "v", as Kubernetes release tags are written.
func parseVersion(s string) (string, error) {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("kubernetes version %q is not a release such as v1.37.2", s)
	}
	major, _ := strconv.Atoi(m[1])
	minor, err := strconv.Atoi(m[2])
	if err != nil || major != 1 || minor < MinMinor {
		return "", fmt.Errorf("kubernetes version %q is not supported: bootsrv writes configs for v1.%d or later", s, MinMinor)
	}
	return "v" + strings.TrimPrefix(s, "v"), nil
}

func checkLabels(m map[string]string) ([]string, error) {
	out := make([]string, 0, len(m))
	for k, v := range m {
		switch problem, prefix, _ := k8snames.Label(k, v); problem {
		case k8snames.LabelBadPrefix:
			return nil, fmt.Errorf("label key %q: prefix %q is not a DNS subdomain", k, prefix)
		case k8snames.LabelBadName:
			return nil, fmt.Errorf("label key %q is not a valid label name", k)
		case k8snames.LabelBadValue:
			return nil, fmt.Errorf("label %s: value %q is not a valid label value", k, v)
		case k8snames.LabelKubeletRefuses:
			return nil, fmt.Errorf("label %q: the kubelet refuses to set labels under kubernetes.io/k8s.io itself (node-role.kubernetes.io/* included); use a label of your own domain", k)
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// checkPEM makes sure b holds a PEM block of one of the wanted types, so
// that a swapped cert and key is caught here rather than on the node.
func checkPEM(what string, b []byte, types ...string) error {
	if len(b) == 0 {
		return fmt.Errorf("%s is missing", what)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return fmt.Errorf("%s is not PEM", what)
	}
	for _, t := range types {
		if blk.Type == t {
			return nil
		}
	}
	return fmt.Errorf("%s is a PEM %q, want %s", what, blk.Type, strings.Join(types, " or "))
}

var keyTypes = []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"}

func check(in Input) (checked, error) {
	c := checked{in: in}
	var err error
	m := in.Machine
	if err := validHostname(m.Hostname); err != nil {
		return c, fmt.Errorf("machine hostname %w", err)
	}
	c.hostname = m.Hostname
	if c.ip, err = parseIP("machine IP", m.IP); err != nil {
		return c, err
	}
	switch m.Role {
	case RoleMaster, RoleWorker:
		c.role = m.Role
	default:
		return c, fmt.Errorf("machine role: %w", errRole(m.Role))
	}
	c.iface = m.Iface
	if c.iface == "" {
		c.iface = c.ip.String()
	}
	if !ifaceRe.MatchString(c.iface) {
		return c, fmt.Errorf("machine iface %q is neither an interface name nor an IP (FLANNELD_IFACE takes one of these)", c.iface)
	}
	if c.labels, err = checkLabels(m.Labels); err != nil {
		return c, fmt.Errorf("machine labels: %w", err)
	}

	cl := in.Cluster
	if !dnsLabelRe.MatchString(cl.Name) {
		return c, fmt.Errorf("cluster name %q is not a DNS label", cl.Name)
	}
	c.clusterName = cl.Name
	api, err := parseIP("cluster API server", cl.APIServer)
	if err != nil {
		return c, err
	}
	c.apiPort = cl.APIServerPort
	if c.apiPort == 0 {
		c.apiPort = DefaultAPIServerPort
	}
	if c.apiPort < 1 || c.apiPort > 65535 {
		return c, fmt.Errorf("cluster API server port %d is out of range", c.apiPort)
	}
	c.apiEndpoint = "https://" + netip.AddrPortFrom(api, uint16(c.apiPort)).String()
	if c.podNet, err = parsePrefix("cluster pod network", cl.PodNetwork); err != nil {
		return c, err
	}
	// The controller-manager hands each node a /24 (--node-cidr-mask-size
	// 24) and refuses a cluster CIDR more than 16 bits shorter than that.
	if !c.podNet.Addr().Is4() || c.podNet.Bits() > 24 || c.podNet.Bits() < 8 {
		return c, fmt.Errorf("cluster pod network %s must be an IPv4 range from /8 to /24: every node gets a /24 of it", c.podNet)
	}
	if c.svcRange, err = parsePrefix("cluster service range", cl.ServiceRange); err != nil {
		return c, err
	}
	if c.dns, err = parseIP("cluster DNS service IP", cl.DNSServiceIP); err != nil {
		return c, err
	}
	if !c.svcRange.Contains(c.dns) {
		return c, fmt.Errorf("cluster DNS service IP %s is outside the service range %s", c.dns, c.svcRange)
	}
	c.domain = strings.TrimSuffix(cl.Domain, ".")
	if err := validHostname(c.domain); err != nil {
		return c, fmt.Errorf("cluster domain %w", err)
	}
	if c.version, err = parseVersion(cl.KubernetesVersion); err != nil {
		return c, err
	}
	c.mirror = strings.TrimSuffix(cl.RegistryMirror, "/")
	if err := CheckRegistry(c.mirror, cl.RegistryCA); err != nil {
		return c, err
	}
	c.sandbox = cl.SandboxImage
	if c.sandbox == "" {
		c.sandbox = DefaultSandboxImage
	}
	if !imageRe.MatchString(c.sandbox) {
		return c, fmt.Errorf("cluster sandbox image %q is not an image reference such as registry.k8s.io/pause:3.10", c.sandbox)
	}
	for _, d := range cl.UpstreamDNS {
		if _, err := parseIP("cluster upstream DNS", d); err != nil {
			return c, err
		}
	}
	c.cri = cl.ContainerRuntimeEndpoint
	if c.cri == "" {
		c.cri = DefaultContainerRuntimeEndpoint
	}
	if !criRe.MatchString(c.cri) {
		return c, fmt.Errorf("cluster container runtime endpoint %q is not unix:///path", c.cri)
	}
	if c.masters, err = checkMasters(in.Masters); err != nil {
		return c, err
	}
	if c.role == RoleMaster {
		found := false
		for _, mb := range c.masters {
			if mb.Hostname == c.hostname {
				if mb.IP != c.ip.String() {
					return c, fmt.Errorf("masters list has %s at %s, but the machine's IP is %s", mb.Hostname, mb.IP, c.ip)
				}
				found = true
			}
		}
		if !found {
			return c, fmt.Errorf("masters list does not name this master (%s): ETCD_INITIAL_CLUSTER must include it", c.hostname)
		}
	}

	c.host = in.Host
	c.binDir, c.resolvConf = in.Host.BinDir, in.Host.ResolvConf
	if c.binDir == "" {
		c.binDir = DefaultBinDir
	}
	if c.resolvConf == "" {
		c.resolvConf = DefaultResolvConf
	}
	if !absPathRe.MatchString(c.binDir) || !absPathRe.MatchString(c.resolvConf) {
		return c, fmt.Errorf("host binary dir %q and resolv.conf %q must be plain absolute paths", c.binDir, c.resolvConf)
	}
	c.bins, _ = BinariesForRole(c.role)
	for _, b := range c.bins {
		bin, ok := in.Binaries[b.Name]
		if !ok {
			return c, fmt.Errorf("a %s needs the binary %s (release %s), which is missing", c.role, b.Name, b.Component)
		}
		if !strings.HasPrefix(bin.URL, "http://") && !strings.HasPrefix(bin.URL, "https://") {
			return c, fmt.Errorf("binary %s: URL %q is not http(s)", b.Name, bin.URL)
		}
		if !hashRe.MatchString(bin.Hash) {
			return c, fmt.Errorf("binary %s: hash %q is not sha512-<128 hex digits>", b.Name, bin.Hash)
		}
	}

	if err := checkPEM("CA certificate", in.CA, "CERTIFICATE"); err != nil {
		return c, err
	}
	if c.role == RoleMaster {
		if err := checkPEM("etcd CA certificate", in.EtcdCA, "CERTIFICATE"); err != nil {
			return c, err
		}
		if err := checkPEM("front-proxy CA certificate", in.FrontProxyCA, "CERTIFICATE"); err != nil {
			return c, err
		}
	}
	names, _ := CertsForRole(c.role)
	for _, n := range names {
		ck, ok := in.Certs[n]
		if !ok {
			return c, fmt.Errorf("a %s needs certificate %q, which is missing", c.role, n)
		}
		if err := checkPEM("certificate "+n, ck.Cert, "CERTIFICATE"); err != nil {
			return c, err
		}
		if err := checkPEM("key of certificate "+n, ck.Key, keyTypes...); err != nil {
			return c, err
		}
	}
	if c.role == RoleMaster {
		if err := checkPEM("service-account public key", in.ServiceAccount.Public, "PUBLIC KEY", "RSA PUBLIC KEY"); err != nil {
			return c, err
		}
		if err := checkPEM("service-account private key", in.ServiceAccount.Private, keyTypes...); err != nil {
			return c, err
		}
	}
	return c, nil
}

func checkMasters(ms []Member) ([]Member, error) {
	if len(ms) == 0 {
		return nil, errors.New("masters list is empty: etcd and CoreDNS need at least one master")
	}
	out := make([]Member, 0, len(ms))
	names, ips := map[string]bool{}, map[string]bool{}
	for _, m := range ms {
		if err := validHostname(m.Hostname); err != nil {
			return nil, fmt.Errorf("master hostname %w", err)
		}
		ip, err := parseIP("master "+m.Hostname+" IP", m.IP)
		if err != nil {
			return nil, err
		}
		if names[m.Hostname] || ips[ip.String()] {
			return nil, fmt.Errorf("masters list names %s (%s) twice", m.Hostname, ip)
		}
		names[m.Hostname], ips[ip.String()] = true, true
		out = append(out, Member{Hostname: m.Hostname, IP: ip.String()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out, nil
}

// CheckRegistry checks a cluster's registry mirror and its CA, so that a
// cluster is refused at init rather than every render failing later.
func CheckRegistry(mirror string, ca []byte) error {
	mirror = strings.TrimSuffix(mirror, "/")
	if mirror != "" && !mirrorRe.MatchString(mirror) {
		return fmt.Errorf("cluster registry mirror %q is not a registry URL such as https://HOST[:PORT] (no path, no user)", mirror)
	}
	if len(ca) > 0 {
		if mirror == "" {
			return errors.New("cluster registry CA is set but no registry mirror is")
		}
		if err := checkPEM("cluster registry CA", ca, "CERTIFICATE"); err != nil {
			return err
		}
	}
	return nil
}
