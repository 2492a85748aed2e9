package dhcp

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// Mode is how bootsrv takes part in DHCP on the provisioning network.
type Mode string

const (
	// ModeFull: bootsrv owns the addresses (reservations and a pool).
	ModeFull Mode = "full"
	// ModeProxy: another server owns addresses; bootsrv answers PXE
	// clients with boot information only (proxyDHCP).
	ModeProxy Mode = "proxy"
	// ModeOff: no DHCP at all; an existing server points at bootsrv.
	ModeOff Mode = "off"
)

// ParseMode reads --dhcp-mode.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeFull, ModeProxy, ModeOff:
		return m, nil
	case "":
		return ModeFull, nil
	}
	return "", fmt.Errorf("--dhcp-mode %q: use full, proxy or off", s)
}

// Unknown is what happens to a MAC no machine record has.
type Unknown string

const (
	// UnknownIgnore: unknown MACs get no answer and take no address.
	UnknownIgnore Unknown = "ignore"
	// UnknownDiscover: unknown PXE clients are answered (with a pool
	// address in full mode) and recorded as discovered machines.
	UnknownDiscover Unknown = "discover"
)

// ParseUnknown reads --unknown.
func ParseUnknown(s string) (Unknown, error) {
	switch u := Unknown(strings.ToLower(strings.TrimSpace(s))); u {
	case UnknownIgnore, UnknownDiscover:
		return u, nil
	case "":
		return UnknownIgnore, nil
	}
	return "", fmt.Errorf("--unknown %q: use ignore or discover", s)
}

// ParseRange reads --dhcp-range START-END.
func ParseRange(s string) (lease.Pool, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return lease.Pool{}, fmt.Errorf("--dhcp-range %q: use START-END, such as 10.99.0.100-10.99.0.199", s)
	}
	var r lease.Pool
	var err error
	if r.Start, err = netip.ParseAddr(strings.TrimSpace(a)); err != nil || !r.Start.Is4() {
		return lease.Pool{}, fmt.Errorf("--dhcp-range %q: %q is not an IPv4 address", s, a)
	}
	if r.End, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil || !r.End.Is4() {
		return lease.Pool{}, fmt.Errorf("--dhcp-range %q: %q is not an IPv4 address", s, b)
	}
	if !r.Valid() {
		return lease.Pool{}, fmt.Errorf("--dhcp-range %q: the start is after the end", s)
	}
	return r, nil
}

// Subnet is one network bootsrv hands addresses on, reached directly or
// through a relay whose giaddr lies in it.
type Subnet struct {
	Prefix netip.Prefix
	Router netip.Addr
	DNS    []netip.Addr
	Domain string
	Pool   lease.Pool // zero: reservations only
}

// Check reports a subnet whose parts do not fit together.
func (s Subnet) Check() error {
	if !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() {
		return fmt.Errorf("subnet %s is not an IPv4 network", s.Prefix)
	}
	if s.Router.IsValid() && !s.Prefix.Contains(s.Router) {
		return fmt.Errorf("router %s is outside subnet %s", s.Router, s.Prefix)
	}
	if s.Pool != (lease.Pool{}) {
		if !s.Pool.Valid() || !s.Prefix.Contains(s.Pool.Start) || !s.Prefix.Contains(s.Pool.End) {
			return fmt.Errorf("--dhcp-range %s is not inside subnet %s", s.Pool, s.Prefix)
		}
		if s.Pool.Start == s.Prefix.Masked().Addr() || s.Pool.End == model.LastAddr(s.Prefix) {
			return fmt.Errorf("--dhcp-range %s includes the network or broadcast address of %s", s.Pool, s.Prefix)
		}
		if s.Pool.Contains(s.Router) {
			return fmt.Errorf("--dhcp-range %s contains the router %s: a client would be handed the gateway's address; give a range without it", s.Pool, s.Router)
		}
	}
	return nil
}

// CheckServerAddr reports a pool that contains addr, the address of the
// interface bootsrv answers on: a client would be handed the server's own
// address.
func (s *Settings) CheckServerAddr(iface string, addr netip.Addr) error {
	if sub, ok := s.SubnetFor(addr); ok && sub.Pool.Contains(addr) {
		return fmt.Errorf("dhcp --dhcp-range %s contains %s, the address of --interface %s: a client would be handed bootsrv's own address; give a range without it", sub.Pool, addr, iface)
	}
	return nil
}

// DefaultBootFiles maps option 93 codes to the first-stage file (see
// shared/REFERENCE.md). TFTP names are served by pkg/tftp; entries starting
// with "/" are paths on bootsrv's HTTP server, for UEFI HTTP Boot. IA32
// UEFI (6) is left out on purpose: such clients are declined with a log
// line unless an operator adds a file for it.
var DefaultBootFiles = map[uint16]string{
	0:  "undionly.kpxe",
	7:  "ipxe.efi",
	9:  "ipxe.efi",
	11: "ipxe-arm64.efi",
	15: "/assets/ipxe/ipxe-i386.efi",
	16: "/assets/ipxe/ipxe.efi",
	19: "/assets/ipxe/ipxe-arm64.efi",
}

// httpBootArch reports the option 93 codes of UEFI HTTP Boot clients.
func httpBootArch(a uint16) bool { return a == 15 || a == 16 || a == 19 }

// ParseBootFiles reads --dhcp-boot-file overrides of the form ARCH=FILE
// (ARCH being an option 93 code) on top of DefaultBootFiles.
func ParseBootFiles(specs []string) (map[uint16]string, error) {
	out := make(map[uint16]string, len(DefaultBootFiles)+len(specs))
	for k, v := range DefaultBootFiles {
		out[k] = v
	}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		n, err := strconv.ParseUint(strings.TrimSpace(k), 10, 16)
		if !ok || err != nil {
			return nil, fmt.Errorf("--dhcp-boot-file %q: use ARCH=FILE with ARCH an option 93 code, such as 7=snponly.efi", s)
		}
		if v = strings.TrimSpace(v); v == "" {
			delete(out, uint16(n)) // ARCH= declines that firmware
			continue
		}
		out[uint16(n)] = v
	}
	return out, nil
}

// Settings is everything Decide needs besides the request itself.
type Settings struct {
	Mode    Mode
	Unknown Unknown
	Subnets []Subnet

	LeaseTime time.Duration
	// HTTPPort is where bootsrv's HTTP server listens on the same
	// address as DHCP; HTTPHost overrides that address in URLs.
	HTTPPort int
	HTTPHost string
	// ScriptPath is the iPXE script iPXE clients are sent to.
	ScriptPath string
	// BootFiles maps option 93 codes to first-stage files.
	BootFiles map[uint16]string
}

// WithDefaults fills zero fields with bootsrv's defaults.
func (s Settings) WithDefaults() Settings {
	if s.Mode == "" {
		s.Mode = ModeFull
	}
	if s.Unknown == "" {
		s.Unknown = UnknownIgnore
	}
	if s.LeaseTime <= 0 {
		s.LeaseTime = time.Hour
	}
	if s.HTTPPort == 0 {
		s.HTTPPort = 8080
	}
	if s.ScriptPath == "" {
		s.ScriptPath = "/boot.ipxe"
	}
	if s.BootFiles == nil {
		s.BootFiles = DefaultBootFiles
	}
	return s
}

// Check reports settings that cannot work together.
func (s Settings) Check() error {
	if _, err := ParseMode(string(s.Mode)); err != nil {
		return err
	}
	if _, err := ParseUnknown(string(s.Unknown)); err != nil {
		return err
	}
	for i, a := range s.Subnets {
		if err := a.Check(); err != nil {
			return err
		}
		for _, b := range s.Subnets[:i] {
			if a.Prefix.Overlaps(b.Prefix) {
				return fmt.Errorf("subnets %s and %s overlap", a.Prefix, b.Prefix)
			}
		}
	}
	return nil
}

// SubnetFor returns the subnet that contains a (the relay's giaddr, or the
// address of the interface the request came in on).
func (s *Settings) SubnetFor(a netip.Addr) (*Subnet, bool) {
	for i := range s.Subnets {
		if s.Subnets[i].Prefix.Contains(a) {
			return &s.Subnets[i], true
		}
	}
	return nil, false
}

// httpBase is the URL prefix of bootsrv's HTTP server as seen by a client
// that reached DHCP on server.
func (s *Settings) httpBase(server netip.Addr) string {
	host := s.HTTPHost
	if host == "" {
		host = server.String()
	}
	if s.HTTPPort == 80 {
		return "http://" + host
	}
	return "http://" + host + ":" + strconv.Itoa(s.HTTPPort)
}

// archCodes lists the table's codes in order, for messages.
func archCodes(m map[uint16]string) string {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, int(k))
	}
	sort.Ints(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = strconv.Itoa(k)
	}
	return strings.Join(parts, ",")
}
