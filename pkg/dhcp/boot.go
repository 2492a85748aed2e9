package dhcp

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// bootChoice is the boot information for one client.
type bootChoice struct {
	file        string // "" for a client that did not ask to boot
	vendorClass string // echoed in option 60: PXEClient or HTTPClient
	ipxe        bool
}

// chooseBoot picks the file a client boots next:
//   - iPXE (user class or option 175) gets the HTTP URL of the boot script,
//     never an iPXE binary again, or it would loop forever;
//   - UEFI HTTP Boot (option 60 HTTPClient, or arch 15/16/19) gets a full
//     http:// URL and HTTPClient echoed;
//   - firmware PXE gets the first-stage iPXE binary for its arch, over TFTP.
//
// A machine's BootFile overrides the table for its firmware stage.
func chooseBoot(c Client, m *model.Machine, s *Settings, server netip.Addr) (bootChoice, error) {
	switch {
	case c.IPXE:
		return bootChoice{file: s.httpBase(server) + s.ScriptPath, ipxe: true}, nil
	case !c.Booting():
		return bootChoice{}, nil
	}
	http := c.HTTPClient || (c.HasArch && httpBootArch(c.Arch))
	var file string
	if m != nil && m.BootFile != "" {
		file = m.BootFile
	} else if !c.HasArch {
		return bootChoice{}, fmt.Errorf("PXE client %s sent no architecture (option 93)", c.MAC)
	} else if f, ok := s.BootFiles[c.Arch]; ok {
		file = f
	} else {
		return bootChoice{}, fmt.Errorf("no boot file for architecture %d (%s) of %s: bootsrv has files for %s; add one with --dhcp-boot-file %d=FILE",
			c.Arch, c.ArchName(), c.MAC, archCodes(s.BootFiles), c.Arch)
	}
	if http {
		if strings.HasPrefix(file, "/") {
			file = s.httpBase(server) + file
		}
		if !strings.HasPrefix(file, "http://") && !strings.HasPrefix(file, "https://") {
			return bootChoice{}, fmt.Errorf("UEFI HTTP Boot client %s needs an http:// URL, and its boot file is %q", c.MAC, file)
		}
		return bootChoice{file: file, vendorClass: "HTTPClient"}, nil
	}
	if strings.Contains(file, "://") {
		return bootChoice{}, fmt.Errorf("PXE client %s (%s) loads files over TFTP, and its boot file is the URL %q", c.MAC, c.ArchName(), file)
	}
	vc := ""
	if c.PXE {
		vc = "PXEClient"
	}
	return bootChoice{file: file, vendorClass: vc}, nil
}

// ipxeNoPXEDHCP is option 175 with sub-option 176 (no-pxedhcp) = 1: iPXE
// then skips its ~3 s wait for proxyDHCP offers.
var ipxeNoPXEDHCP = []byte{176, 1, 1}

// pxeDiscoveryControl is option 43 with PXE sub-option 6 (discovery
// control) = 8: use the boot file of this offer, discover no boot servers.
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

// apply writes the boot information into a reply: the file in option 67
// and the BOOTP file field, the server in siaddr and option 66 (U-Boot and
// some ROMs read only the header).
func (b bootChoice) apply(r *dhcpv4.DHCPv4, server netip.Addr) {
	if b.file == "" {
		return
	}
	r.ServerIPAddr = server.AsSlice()
	r.BootFileName = b.file
	r.UpdateOption(dhcpv4.OptBootFileName(b.file))
	r.UpdateOption(dhcpv4.OptTFTPServerName(server.String()))
	if b.vendorClass != "" {
		r.UpdateOption(dhcpv4.OptClassIdentifier(b.vendorClass))
	}
	if b.vendorClass == "PXEClient" {
		// A PXEClient offer without PXE vendor options is a "BINL" offer to
		// EDK2/OVMF, which then wants a boot server on port 4011 and gives
		// up ("PXE-E16: No valid offer received"). Discovery control 8:
		// boot the file named here.
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
	}
	if b.ipxe {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoPXEDHCP))
	}
}
