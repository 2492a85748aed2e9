package dhcp

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// Client is what a request says about the machine that sent it.
type Client struct {
	MAC  string // lower-case colon form, as machines are keyed
	Type dhcpv4.MessageType

	// Arch is option 93's first value; HasArch says whether it was sent.
	Arch    uint16
	HasArch bool
	// UUID is the SMBIOS UUID from option 97, in the byte order the OS
	// reports (the first three fields arrive little-endian), or "".
	UUID        string
	VendorClass string // option 60 as sent
	PXE         bool   // option 60 starts with PXEClient
	HTTPClient  bool   // option 60 starts with HTTPClient (UEFI HTTP Boot)
	IPXE        bool   // user class "iPXE" or option 175 present

	Requested netip.Addr // option 50
	ServerID  netip.Addr // option 54
	CIAddr    netip.Addr
	GIAddr    netip.Addr
}

// Booting reports whether the client asked to network-boot: only such
// clients get boot information, and only they are answered for unknown MACs.
func (c Client) Booting() bool { return c.PXE || c.HTTPClient || c.IPXE || c.HasArch }

// ArchName is a short name for the client's firmware, for logs and the
// machine record ("" when the client sent no option 93).
func (c Client) ArchName() string {
	if !c.HasArch {
		return ""
	}
	switch c.Arch {
	case 0:
		return "bios"
	case 6:
		return "efi-ia32"
	case 7, 9:
		return "efi-x86_64"
	case 11:
		return "efi-arm64"
	case 15:
		return "efi-ia32-http"
	case 16:
		return "efi-x86_64-http"
	case 19:
		return "efi-arm64-http"
	}
	return fmt.Sprintf("arch-%d", c.Arch)
}

// ErrBadRequest marks a packet that is not a DHCP request bootsrv can act
// on; such packets are logged at debug and dropped.
var ErrBadRequest = errors.New("bad DHCP request")

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

// maxPacket is the largest request accepted. Real clients send well under
// 1500 bytes (an Ethernet frame); anything larger is dropped rather than
// parsed.
const maxPacket = 1500

// Parse decodes and inspects a raw request.
func Parse(b []byte) (*dhcpv4.DHCPv4, Client, error) {
	if len(b) > maxPacket {
		return nil, Client{}, badf("packet of %d bytes is larger than %d", len(b), maxPacket)
	}
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		return nil, Client{}, badf("decode %d bytes: %v", len(b), err)
	}
	c, err := Inspect(req)
	return req, c, err
}

// Inspect checks that req is a client request bootsrv can act on and
// extracts what it says about the client.
func Inspect(req *dhcpv4.DHCPv4) (Client, error) {
	var c Client
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return c, badf("op %d is not BOOTREQUEST", req.OpCode)
	}
	if req.HWType != iana.HWTypeEthernet {
		return c, badf("htype %d is not Ethernet", req.HWType)
	}
	if len(req.ClientHWAddr) != 6 {
		return c, badf("hlen %d is not 6", len(req.ClientHWAddr))
	}
	if err := model.MachineMAC(req.ClientHWAddr); err != nil {
		return c, badf("chaddr: %v", err)
	}
	c.MAC = req.ClientHWAddr.String()
	mt := req.Options.Get(dhcpv4.OptionDHCPMessageType)
	if len(mt) != 1 {
		return c, badf("%s: no DHCP message type (BOOTP is not served)", c.MAC)
	}
	c.Type = dhcpv4.MessageType(mt[0])
	switch c.Type {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease,
		dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform:
	default:
		return c, badf("%s: message type %s is not a client request", c.MAC, c.Type)
	}
	if v := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); v != nil {
		// Option 93 is a list of 16-bit codes; the first is the firmware's own.
		if len(v) < 2 || len(v)%2 != 0 {
			return c, badf("%s: option 93 has length %d", c.MAC, len(v))
		}
		c.Arch, c.HasArch = uint16(v[0])<<8|uint16(v[1]), true
	}
	c.UUID = parseUUID(req.Options.Get(dhcpv4.OptionClientMachineIdentifier))
	c.VendorClass = printable(req.Options.Get(dhcpv4.OptionClassIdentifier))
	c.PXE = strings.HasPrefix(c.VendorClass, "PXEClient")
	c.HTTPClient = strings.HasPrefix(c.VendorClass, "HTTPClient")
	c.IPXE = isIPXE(req)
	var ok bool
	if c.Requested, ok = optIP(req, dhcpv4.OptionRequestedIPAddress); !ok {
		return c, badf("%s: option 50 is not an IPv4 address", c.MAC)
	}
	if c.ServerID, ok = optIP(req, dhcpv4.OptionServerIdentifier); !ok {
		return c, badf("%s: option 54 is not an IPv4 address", c.MAC)
	}
	c.CIAddr = headerIP(req.ClientIPAddr)
	c.GIAddr = headerIP(req.GatewayIPAddr)
	return c, nil
}

// isIPXE: iPXE sends user class 77 as the raw bytes "iPXE" (not RFC 3004
// length-prefixed), and option 175 with its feature flags.
func isIPXE(req *dhcpv4.DHCPv4) bool {
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) {
		return true
	}
	uc := req.Options.Get(dhcpv4.OptionUserClassInformation)
	if string(uc) == "iPXE" {
		return true
	}
	// RFC 3004 form: length-prefixed strings.
	for len(uc) > 0 {
		n := int(uc[0])
		if n == 0 || 1+n > len(uc) {
			break
		}
		if string(uc[1:1+n]) == "iPXE" {
			return true
		}
		uc = uc[1+n:]
	}
	return false
}

// parseUUID reads option 97 (type 0, then 16 bytes). Some ROMs send none or
// a broken one: that is accepted and gives "". The first three fields of
// the SMBIOS UUID arrive little-endian; they are swapped so the result
// matches what the OS (and QEMU's -uuid) reports.
func parseUUID(v []byte) string {
	if len(v) != 17 || v[0] != 0 {
		return ""
	}
	u := v[1:]
	var b [16]byte
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	copy(b[8:], u[8:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// printable keeps an option string safe for logs and the machine record.
func printable(b []byte) string {
	if len(b) > 128 {
		b = b[:128]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

func optIP(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) (netip.Addr, bool) {
	v := req.Options.Get(code)
	if v == nil {
		return netip.Addr{}, true
	}
	if len(v) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

// headerIP turns a header address into a netip.Addr; 0.0.0.0 is "unset".
func headerIP(ip net.IP) netip.Addr {
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}
	}
	a := netip.AddrFrom4([4]byte(ip4))
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
