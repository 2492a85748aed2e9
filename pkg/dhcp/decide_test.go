package dhcp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
)

var (
	srvIP   = netip.MustParseAddr("10.99.0.1")
	t0      = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	knownHW = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x10}
	otherHW = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x99}
)

func testSettings(mode Mode, unknown Unknown) *Settings {
	s := Settings{
		Mode: mode, Unknown: unknown, LeaseTime: time.Hour,
		Subnets: []Subnet{{
			Prefix: netip.MustParsePrefix("10.99.0.0/24"),
			Router: netip.MustParseAddr("10.99.0.1"),
			DNS:    []netip.Addr{netip.MustParseAddr("10.99.0.1")},
			Domain: "lab.example",
			Pool:   lease.Pool{Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.199")},
		}},
	}.WithDefaults()
	return &s
}

func knownMachine() *model.Machine {
	return &model.Machine{MAC: knownHW.String(), Hostname: "node1", IP: "10.99.0.10", Profile: "worker", State: model.StateRegistered}
}

// fakeLeases is a LeaseView over maps.
type fakeLeases struct {
	byMAC map[string]lease.Lease
	owner map[netip.Addr]string
	cand  netip.Addr
}

func (f *fakeLeases) ForMAC(mac string) (lease.Lease, bool) { l, ok := f.byMAC[mac]; return l, ok }
func (f *fakeLeases) OwnerOf(ip netip.Addr) string          { return f.owner[ip] }

func noLeases() *fakeLeases {
	return &fakeLeases{byMAC: map[string]lease.Lease{}, owner: map[netip.Addr]string{}, cand: netip.MustParseAddr("10.99.0.100")}
}

type pkt struct {
	hw        net.HardwareAddr
	mt        dhcpv4.MessageType
	arch      int // -1: none
	vendor    string
	ipxe      bool
	giaddr    string
	ciaddr    string
	requested string
	serverID  string
}

func (p pkt) build(t testing.TB) *dhcpv4.DHCPv4 {
	hw := p.hw
	if hw == nil {
		hw = knownHW
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(p.mt)}
	if p.arch >= 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(p.arch >> 8), byte(p.arch)}))
	}
	if p.vendor != "" {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte(p.vendor)))
	}
	if p.ipxe {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")),
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e}))
	}
	if p.giaddr != "" {
		mods = append(mods, dhcpv4.WithGatewayIP(net.ParseIP(p.giaddr)))
	}
	if p.ciaddr != "" {
		mods = append(mods, dhcpv4.WithClientIP(net.ParseIP(p.ciaddr)))
	}
	if p.requested != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(p.requested))))
	}
	if p.serverID != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(p.serverID))))
	}
	d, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip through bytes, as the server sees it.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	vcBIOS  = "PXEClient:Arch:00000:UNDI:002001"
	vcUEFI  = "PXEClient:Arch:00007:UNDI:003000"
	vcARM   = "PXEClient:Arch:00011:UNDI:003000"
	vcHTTP  = "HTTPClient:Arch:00016:UNDI:003000"
	vcIPXE  = "PXEClient:Arch:00000:UNDI:002001"
	bcastTo = "255.255.255.255:68"
)

type want struct {
	silent   bool
	reason   string // substring of the reason, for silent decisions
	mt       dhcpv4.MessageType
	yiaddr   string
	file     string
	vendor   string // option 60 echoed; "-" none
	to       string
	action   Action
	discover bool
	event    string
	proxy    bool // option 43 discovery control present
	ipxeOpt  bool // option 175 no-pxedhcp present
}

func TestDecide(t *testing.T) {
	pxeFile := func(f string) string { return f }
	override := knownMachine()
	override.BootFile = "snponly.efi"
	provisioned := knownMachine()
	provisioned.State = model.StateProvisioned
	discovered := &model.Machine{MAC: otherHW.String(), State: model.StateDiscovered}
	held := noLeases()
	held.owner[netip.MustParseAddr("10.99.0.10")] = "aa:aa:aa:aa:aa:aa"
	offered := noLeases()
	offered.byMAC[otherHW.String()] = lease.Lease{IP: netip.MustParseAddr("10.99.0.150"), MAC: otherHW.String(), State: model.LeaseOffered, Expiry: t0.Add(time.Minute)}
	offered.owner[netip.MustParseAddr("10.99.0.150")] = otherHW.String()
	bound := noLeases()
	bound.byMAC[knownHW.String()] = lease.Lease{IP: netip.MustParseAddr("10.99.0.10"), MAC: knownHW.String(), State: model.LeaseBound, Expiry: t0.Add(time.Hour)}
	bound.owner[netip.MustParseAddr("10.99.0.10")] = knownHW.String()
	exhausted := noLeases()
	exhausted.cand = netip.Addr{}

	cases := []struct {
		name    string
		mode    Mode
		unknown Unknown
		m       *model.Machine
		leases  *fakeLeases
		port    int
		p       pkt
		w       want
	}{
		{name: "BIOS known", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: pxeFile("undionly.kpxe"), vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "UEFI x86-64 known", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "ipxe.efi", vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "UEFI EBC code 9", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 9, vendor: vcUEFI},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "ipxe.efi", vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "ARM64 known", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 11, vendor: vcARM},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "ipxe-arm64.efi", vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "UEFI HTTP Boot", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 16, vendor: vcHTTP},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "http://10.99.0.1:8080/assets/ipxe/ipxe.efi", vendor: "HTTPClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "iPXE after chainload gets the script", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcIPXE, ipxe: true},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "http://10.99.0.1:8080/boot.ipxe", vendor: "-", to: bcastTo, action: ActOffer, event: EventOffer, ipxeOpt: true}},
		{name: "iPXE with an override still gets the script", m: override, p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI, ipxe: true},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "http://10.99.0.1:8080/boot.ipxe", vendor: "-", to: bcastTo, action: ActOffer, event: EventOffer, ipxeOpt: true}},
		{name: "per-machine override", m: override, p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "snponly.efi", vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "plain DHCP client known", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: -1},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "", vendor: "-", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "relayed", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS, giaddr: "10.99.0.254"},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.10", file: "undionly.kpxe", vendor: "PXEClient", to: "10.99.0.254:67", action: ActOffer, event: EventOffer}},
		{name: "relayed from a subnet bootsrv does not serve", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS, giaddr: "192.0.2.1"},
			w: want{silent: true, reason: "no subnet for 192.0.2.1"}},
		{name: "unknown, ignore", p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{silent: true, reason: "--unknown ignore"}},
		{name: "unknown, discover", unknown: UnknownDiscover, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.100", file: "ipxe.efi", vendor: "PXEClient", to: bcastTo, action: ActOffer, discover: true, event: EventOffer}},
		{name: "discovered machine keeps its offer", unknown: UnknownDiscover, m: discovered, leases: offered, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "10.99.0.150", file: "undionly.kpxe", vendor: "PXEClient", to: bcastTo, action: ActOffer, event: EventOffer}},
		{name: "unknown, discover, pool exhausted", unknown: UnknownDiscover, leases: exhausted, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI},
			w: want{silent: true, reason: "exhausted"}},
		{name: "unknown non-PXE client, discover", unknown: UnknownDiscover, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: -1},
			w: want{silent: true, reason: "not a PXE client"}},
		{name: "unknown arch code", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 99, vendor: "PXEClient:Arch:00099"},
			w: want{silent: true, reason: "no boot file for architecture 99"}},
		{name: "IA32 UEFI declined", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 6, vendor: "PXEClient:Arch:00006"},
			w: want{silent: true, reason: "architecture 6 (efi-ia32)"}},
		{name: "reserved address held by another MAC", m: knownMachine(), leases: held, p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{silent: true, reason: "held by aa:aa:aa:aa:aa:aa"}},
		{name: "off", mode: ModeOff, m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{silent: true, reason: "off"}},

		// REQUEST and friends.
		{name: "REQUEST selecting", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.10", serverID: "10.99.0.1"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "10.99.0.10", file: "undionly.kpxe", vendor: "PXEClient", to: bcastTo, action: ActBind, event: model.StateDHCP}},
		{name: "REQUEST renewing", m: knownMachine(), leases: bound, p: pkt{mt: dhcpv4.MessageTypeRequest, arch: -1, ciaddr: "10.99.0.10"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "10.99.0.10", vendor: "-", to: "10.99.0.10:68", action: ActBind, event: model.StateDHCP}},
		{name: "REQUEST rebinding relayed", m: knownMachine(), leases: bound, p: pkt{mt: dhcpv4.MessageTypeRequest, arch: -1, ciaddr: "10.99.0.10", giaddr: "10.99.0.254"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "10.99.0.10", vendor: "-", to: "10.99.0.254:67", action: ActBind, event: model.StateDHCP}},
		{name: "REQUEST pool client after offer", unknown: UnknownDiscover, m: discovered, leases: offered, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.150", serverID: "10.99.0.1"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "10.99.0.150", file: "undionly.kpxe", vendor: "PXEClient", to: bcastTo, action: ActBind, event: model.StateDHCP}},
		{name: "REQUEST provisioned machine keeps its state", m: provisioned, p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.10", serverID: "10.99.0.1"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "10.99.0.10", file: "undionly.kpxe", vendor: "PXEClient", to: bcastTo, action: ActBind, event: EventAckOnly}},
		{name: "REQUEST for an address that is not the client's", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.11", serverID: "10.99.0.1"},
			w: want{mt: dhcpv4.MessageTypeNak, vendor: "-", to: bcastTo, event: EventNak}},
		{name: "REQUEST naming another server", m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.10", serverID: "10.99.0.2"},
			w: want{silent: true, reason: "chose server 10.99.0.2"}},
		{name: "REQUEST for an address another client holds", m: knownMachine(), leases: held, p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.10", serverID: "10.99.0.1"},
			w: want{mt: dhcpv4.MessageTypeNak, vendor: "-", to: bcastTo, event: EventNak}},
		{name: "INIT-REBOOT of a stranger's lease", unknown: UnknownDiscover, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.150"},
			w: want{silent: true, reason: "no lease"}},
		{name: "REQUEST unknown, ignore", p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: -1, requested: "10.99.0.150", serverID: "10.99.0.1"},
			w: want{silent: true, reason: "--unknown ignore"}},
		{name: "RELEASE", m: knownMachine(), leases: bound, p: pkt{mt: dhcpv4.MessageTypeRelease, arch: -1, ciaddr: "10.99.0.10", serverID: "10.99.0.1"},
			w: want{silent: true, reason: "release", action: ActRelease, event: EventRelease}},
		{name: "RELEASE of another address", m: knownMachine(), leases: bound, p: pkt{mt: dhcpv4.MessageTypeRelease, arch: -1, ciaddr: "10.99.0.11", serverID: "10.99.0.1"},
			w: want{silent: true, reason: "does not hold"}},
		{name: "DECLINE", m: knownMachine(), leases: bound, p: pkt{mt: dhcpv4.MessageTypeDecline, arch: -1, requested: "10.99.0.10", serverID: "10.99.0.1"},
			w: want{silent: true, reason: "decline", action: ActDecline, event: EventDecline}},

		// proxyDHCP.
		{name: "proxy BIOS known", mode: ModeProxy, m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "undionly.kpxe", vendor: "PXEClient", to: bcastTo, event: EventOffer, proxy: true}},
		{name: "proxy iPXE", mode: ModeProxy, m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI, ipxe: true},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "http://10.99.0.1:8080/boot.ipxe", vendor: "PXEClient", to: bcastTo, event: EventOffer, proxy: true, ipxeOpt: true}},
		{name: "proxy unknown, ignore", mode: ModeProxy, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
			w: want{silent: true, reason: "--unknown ignore"}},
		{name: "proxy unknown, discover", mode: ModeProxy, unknown: UnknownDiscover, p: pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 11, vendor: vcARM},
			w: want{mt: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "ipxe-arm64.efi", vendor: "PXEClient", to: bcastTo, discover: true, event: EventOffer, proxy: true}},
		{name: "proxy non-PXE client", mode: ModeProxy, m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeDiscover, arch: -1},
			w: want{silent: true, reason: "not a PXE client"}},
		{name: "proxy REQUEST on 67 is the DHCP server's", mode: ModeProxy, m: knownMachine(), p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "192.168.1.5", serverID: "192.168.1.1"},
			w: want{silent: true, reason: "for the DHCP server"}},
		{name: "proxy REQUEST on 4011", mode: ModeProxy, m: knownMachine(), port: ProxyBootPort, p: pkt{mt: dhcpv4.MessageTypeRequest, arch: 7, vendor: vcUEFI, ciaddr: "192.168.1.5"},
			w: want{mt: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", file: "ipxe.efi", vendor: "PXEClient", to: "192.168.1.5:4011", event: model.StateDHCP, proxy: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mode, unknown := tc.mode, tc.unknown
			if mode == "" {
				mode = ModeFull
			}
			if unknown == "" {
				unknown = UnknownIgnore
			}
			leases := tc.leases
			if leases == nil {
				leases = noLeases()
			}
			port := tc.port
			if port == 0 {
				port = ServerPort
			}
			req := tc.p.build(t)
			c, err := Inspect(req)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			peer := netip.AddrPortFrom(netip.IPv4Unspecified(), ClientPort)
			if c.CIAddr.IsValid() {
				peer = netip.AddrPortFrom(c.CIAddr, uint16(port))
			}
			d := decideLikeServer(req, Input{Client: c, Machine: tc.m, Settings: testSettings(mode, unknown), Leases: leases,
				Server: srvIP, Port: port, Peer: peer, Now: t0})
			check(t, d, tc.w)
		})
	}
}

func check(t *testing.T, d Decision, w want) {
	t.Helper()
	if d.Action != w.action {
		t.Errorf("action = %v, want %v (%s)", d.Action, w.action, d.Reason)
	}
	if d.Event != w.event {
		t.Errorf("event = %q, want %q", d.Event, w.event)
	}
	if d.Discover != w.discover {
		t.Errorf("discover = %v, want %v", d.Discover, w.discover)
	}
	if w.silent {
		if d.Reply != nil {
			t.Fatalf("got %s, want silence (%s)", d.Reply.MessageType(), w.reason)
		}
		if !bytes.Contains([]byte(d.Reason), []byte(w.reason)) {
			t.Errorf("reason = %q, want it to mention %q", d.Reason, w.reason)
		}
		return
	}
	if d.Reply == nil {
		t.Fatalf("silent (%s), want %s", d.Reason, w.mt)
	}
	// What goes on the wire, decoded again.
	r, err := dhcpv4.FromBytes(d.Reply.ToBytes())
	if err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	if r.OpCode != dhcpv4.OpcodeBootReply || r.MessageType() != w.mt {
		t.Fatalf("reply op %v type %v, want BootReply %v", r.OpCode, r.MessageType(), w.mt)
	}
	if got := d.To.String(); got != w.to {
		t.Errorf("sent to %s, want %s", got, w.to)
	}
	if !r.ServerIdentifier().Equal(srvIP.AsSlice()) {
		t.Errorf("server id = %v", r.ServerIdentifier())
	}
	if w.mt == dhcpv4.MessageTypeNak {
		return
	}
	if got := r.YourIPAddr.String(); got != w.yiaddr {
		t.Errorf("yiaddr = %s, want %s", got, w.yiaddr)
	}
	if r.BootFileName != w.file || r.BootFileNameOption() != w.file {
		t.Errorf("file header %q, option 67 %q, want %q", r.BootFileName, r.BootFileNameOption(), w.file)
	}
	if w.file != "" {
		if !r.ServerIPAddr.Equal(srvIP.AsSlice()) || r.TFTPServerName() != srvIP.String() {
			t.Errorf("siaddr %v, option 66 %q, want %s in both", r.ServerIPAddr, r.TFTPServerName(), srvIP)
		}
	}
	vc := r.ClassIdentifier()
	if w.vendor == "-" {
		if vc != "" {
			t.Errorf("option 60 = %q, want none", vc)
		}
	} else if vc != w.vendor {
		t.Errorf("option 60 = %q, want %q", vc, w.vendor)
	}
	// Proxy offers always carry discovery control 8; full-mode offers to
	// firmware PXE clients (option 60 PXEClient echoed) carry it too, or
	// EDK2 takes them for BINL offers and looks for port 4011.
	want43 := w.proxy || vc == "PXEClient"
	if got := bytes.Equal(r.Options.Get(dhcpv4.OptionVendorSpecificInformation), []byte{6, 1, 8, 255}); got != want43 {
		t.Errorf("option 43 discovery control present = %v, want %v", got, want43)
	}
	if got := bytes.Equal(r.Options.Get(dhcpv4.GenericOptionCode(175)), []byte{176, 1, 1}); got != w.ipxeOpt {
		t.Errorf("option 175.176 present = %v, want %v", got, w.ipxeOpt)
	}
	if w.yiaddr != "0.0.0.0" {
		if lt := r.IPAddressLeaseTime(0); lt != time.Hour {
			t.Errorf("lease time = %v", lt)
		}
		if t1, t2 := r.IPAddressRenewalTime(0), r.IPAddressRebindingTime(0); t1 != 30*time.Minute || t2 != 3150*time.Second {
			t.Errorf("T1/T2 = %v/%v", t1, t2)
		}
		if r.SubnetMask().String() != "ffffff00" || len(r.Router()) != 1 || len(r.DNS()) != 1 || r.DomainName() != "lab.example" {
			t.Errorf("mask %v router %v dns %v domain %q", r.SubnetMask(), r.Router(), r.DNS(), r.DomainName())
		}
	} else if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("proxy reply carries a lease time")
	}
}

// A reservation of bootsrv's own address or of the router is never handed
// out, for a DISCOVER or a REQUEST, and the reason names the fix.
func TestReservationOfServerOrRouterRefused(t *testing.T) {
	settings := testSettings(ModeFull, UnknownIgnore)
	settings.Subnets[0].Router = netip.MustParseAddr("10.99.0.254")
	for _, tc := range []struct{ ip, code, reason string }{
		{"10.99.0.1", "reservation-is-server", "bootsrv's own address"},
		{"10.99.0.254", "reservation-is-router", "the subnet's router"},
	} {
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
			m := knownMachine()
			m.IP = tc.ip
			req := pkt{mt: mt, arch: 0, vendor: vcBIOS}.build(t)
			c, _ := Inspect(req)
			d := decideLikeServer(req, Input{Client: c, Machine: m, Settings: settings, Leases: noLeases(), Server: srvIP, Port: 67, Now: t0})
			if d.Reply != nil || d.Action != ActNone || d.Code != tc.code || !strings.Contains(d.Reason, tc.reason) || !strings.Contains(d.Reason, "machine add --replace") {
				t.Errorf("%s for a reservation of %s: reply %v, action %v, code %q, reason %q; want silence, %s, naming %q and the fix",
					mt, tc.ip, d.Reply != nil, d.Action, d.Code, d.Reason, tc.code, tc.reason)
			}
		}
	}
}

func TestHostnameInReply(t *testing.T) {
	req := pkt{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS}.build(t)
	c, _ := Inspect(req)
	d := decideLikeServer(req, Input{Client: c, Machine: knownMachine(), Settings: testSettings(ModeFull, UnknownIgnore), Leases: noLeases(), Server: srvIP, Port: 67, Now: t0})
	if d.Reply == nil || d.Reply.HostName() != "node1" {
		t.Fatalf("hostname option missing: %v", d.Reason)
	}
	if d.Expiry != t0.Add(offerHold) || d.IP != netip.MustParseAddr("10.99.0.10") {
		t.Errorf("offer hold %v %v", d.IP, d.Expiry)
	}
}

func TestInspectFirmware(t *testing.T) {
	uuid := []byte{0, 0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x47, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}
	for _, tc := range []struct {
		name  string
		mods  []dhcpv4.Modifier
		check func(Client) bool
	}{
		{"uuid little-endian fields swapped", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)},
			func(c Client) bool { return c.UUID == "11223344-5566-4788-99aa-bbccddeeff00" }},
		{"broken option 97 accepted", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{1, 2, 3})},
			func(c Client) bool { return c.UUID == "" }},
		{"RFC 3004 user class iPXE", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("\x04iPXE"))},
			func(c Client) bool { return c.IPXE }},
		{"other user class", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("gPXE"))},
			func(c Client) bool { return !c.IPXE && !c.Booting() }},
		{"HTTPClient", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte(vcHTTP))},
			func(c Client) bool { return c.HTTPClient && !c.PXE && c.VendorClass == vcHTTP }},
		{"vendor class made printable", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte("PXE\x00Client\n"))},
			func(c Client) bool { return c.VendorClass == "PXEClient" }},
		{"arch list: first wins", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7, 0, 0})},
			func(c Client) bool { return c.HasArch && c.Arch == 7 && c.ArchName() == "efi-x86_64" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(knownHW), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)}, tc.mods...)...)
			_, c, err := Parse(d.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("client = %+v", c)
			}
		})
	}
}

// TestBadInput: each malformed packet is refused by Parse (and so logged at
// debug and dropped by the server) without a panic.
func TestBadInput(t *testing.T) {
	good, _ := dhcpv4.New(dhcpv4.WithHwAddr(knownHW), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte(vcBIOS)))
	gb := good.ToBytes()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), gb...)) }
	optStart := 240
	cases := map[string][]byte{
		"empty":         {},
		"truncated":     gb[:100],
		"no cookie":     gb[:236],
		"oversized":     append(append([]byte(nil), gb...), make([]byte, 2000)...),
		"op is reply":   mut(func(b []byte) []byte { b[0] = 2; return b }),
		"htype 6":       mut(func(b []byte) []byte { b[1] = 6; return b }),
		"hlen 16":       mut(func(b []byte) []byte { b[2] = 16; return b }),
		"hlen 0":        mut(func(b []byte) []byte { b[2] = 0; return b }),
		"bad cookie":    mut(func(b []byte) []byte { b[236] = 0; return b }),
		"lying length":  append(gb[:optStart:optStart], 53, 1, 1, 60, 200, 'P', 'X'),
		"no end option": append(gb[:optStart:optStart], 53, 1, 1),
		"no message type": func() []byte {
			d, _ := dhcpv4.New(dhcpv4.WithHwAddr(knownHW))
			d.Options.Del(dhcpv4.OptionDHCPMessageType)
			return d.ToBytes()
		}(),
		"server message type": func() []byte {
			d, _ := dhcpv4.New(dhcpv4.WithHwAddr(knownHW), dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
			return d.ToBytes()
		}(),
		"message type length 2": append(gb[:optStart:optStart], 53, 2, 1, 1, 255),
		"arch odd length":       append(gb[:optStart:optStart], 53, 1, 1, 93, 3, 0, 0, 7, 255),
		"requested ip 3 bytes":  append(gb[:optStart:optStart], 53, 1, 3, 50, 3, 10, 0, 0, 255),
		"server id 5 bytes":     append(gb[:optStart:optStart], 53, 1, 3, 54, 5, 10, 0, 0, 1, 1, 255),
		// chaddr starts at byte 28: no card sends from these.
		"zero chaddr":      mut(func(b []byte) []byte { copy(b[28:34], make([]byte, 6)); return b }),
		"broadcast chaddr": mut(func(b []byte) []byte { copy(b[28:34], []byte{255, 255, 255, 255, 255, 255}); return b }),
		"multicast chaddr": mut(func(b []byte) []byte { copy(b[28:34], []byte{1, 0, 0x5e, 0, 0, 1}); return b }),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := Parse(b)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("Parse = %v, want ErrBadRequest", err)
			}
		})
	}
	if _, _, err := Parse(gb); err != nil {
		t.Fatalf("good packet refused: %v", err)
	}
}

// FuzzDecide: no input crashes Parse or Decide, and every reply encodes to
// a packet that decodes again.
func FuzzDecide(f *testing.F) {
	for _, p := range []pkt{
		{mt: dhcpv4.MessageTypeDiscover, arch: 0, vendor: vcBIOS},
		{mt: dhcpv4.MessageTypeDiscover, arch: 16, vendor: vcHTTP, giaddr: "10.99.0.254"},
		{mt: dhcpv4.MessageTypeRequest, arch: 7, vendor: vcUEFI, ipxe: true, requested: "10.99.0.10", serverID: "10.99.0.1"},
		{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: -1, ciaddr: "10.99.0.150"},
		{mt: dhcpv4.MessageTypeRelease, arch: -1, ciaddr: "10.99.0.10"},
		{mt: dhcpv4.MessageTypeDecline, arch: -1, requested: "10.99.0.10"},
	} {
		f.Add(p.build(f).ToBytes(), uint8(0))
	}
	modes := []Mode{ModeFull, ModeProxy}
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		req, c, err := Parse(b)
		if err != nil {
			return
		}
		var m *model.Machine
		if sel&1 != 0 {
			m = knownMachine()
			m.MAC = c.MAC
		}
		unknown := UnknownIgnore
		if sel&2 != 0 {
			unknown = UnknownDiscover
		}
		leases := noLeases()
		if sel&4 != 0 {
			leases.byMAC[c.MAC] = lease.Lease{IP: netip.MustParseAddr("10.99.0.150"), MAC: c.MAC, State: model.LeaseBound, Expiry: t0}
		}
		port := ServerPort
		if sel&8 != 0 {
			port = ProxyBootPort
		}
		d := decideLikeServer(req, Input{Client: c, Machine: m, Settings: testSettings(modes[sel>>4&1], unknown),
			Leases: leases, Server: srvIP, Port: port, Peer: netip.MustParseAddrPort("10.99.0.150:68"), Now: t0})
		if d.Reply == nil {
			return
		}
		if _, err := dhcpv4.FromBytes(d.Reply.ToBytes()); err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		if d.Action == ActBind && m == nil && unknown == UnknownIgnore && sel&4 == 0 {
			// (A client that already holds a lease renews it.)
			t.Fatalf("ignored unknown client got a lease")
		}
	})
}

// decideLikeServer is what the server does around Decide: it asks the lease table
// (or the fake's fixed candidate) for a pool address when Decide will want
// one, then decides.
func decideLikeServer(req *dhcpv4.DHCPv4, in Input) Decision {
	if pool, ok := NeedsPool(in); ok {
		switch l := in.Leases.(type) {
		case *lease.Table:
			in.Candidate, _ = l.Candidate(in.Client.MAC, pool)
		case *fakeLeases:
			in.Candidate = l.cand
		}
	}
	return Decide(req, in)
}
