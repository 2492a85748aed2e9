package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// Ports of the exchange.
const (
	ServerPort    = 67
	ClientPort    = 68
	ProxyBootPort = 4011 // PXE boot server port, where proxyDHCP clients ask for the file
)

// LeaseView is the lease state Decide reads; it never changes it. The
// server applies the Decision's action afterwards.
type LeaseView interface {
	// ForMAC returns mac's lease: bound (even if expired, so a returning
	// client gets its old address back) or a live offer.
	ForMAC(mac string) (lease.Lease, bool)
	// OwnerOf returns who holds ip now: a MAC, "declined", or "" if free.
	OwnerOf(ip netip.Addr) string
}

// Input is everything a decision depends on besides the request.
type Input struct {
	Client   Client
	Machine  *model.Machine // nil: no record for this MAC
	Settings *Settings
	Leases   LeaseView
	// Candidate is the free pool address the lease table would give this
	// client (see Candidates), or none: allocation reads the table and
	// moves its cursor, so it happens before Decide, not in it.
	Candidate netip.Addr
	// Server is bootsrv's address on the interface the request came in
	// on: the server identifier and next-server of replies.
	Server netip.Addr
	Port   int            // the port the request came in on (67 or 4011)
	Peer   netip.AddrPort // where it came from
	Now    time.Time
}

// Action is the change to the lease table a decision asks for.
type Action int

const (
	ActNone     Action = iota
	ActOffer           // hold IP for MAC until the REQUEST
	ActBind            // bind IP to MAC until Expiry, durably, before the ACK is sent
	ActRelease         // free IP
	ActDecline         // mark IP bad until Expiry
	ActWithdraw        // drop the offer of IP: the client took another server's
)

func (a Action) String() string {
	return [...]string{"none", "offer", "bind", "release", "decline", "withdraw"}[a]
}

// Decision is the outcome for one request.
type Decision struct {
	Reply *dhcpv4.DHCPv4 // nil: stay silent
	To    netip.AddrPort // where Reply goes

	Action   Action
	IP       netip.Addr
	Expiry   time.Time
	Hostname string

	File   string // boot file handed out, for logs and events
	Reason string // why, in a few words, for the log line
	// Code is the decision in one word from a fixed set (offer, ack, nak,
	// ignored, pool-exhausted, ...): the metrics' label, where Reason,
	// which names addresses, would not do.
	Code string
	// Event is the event type to record on the machine ("" none);
	// Discover asks to create the record of an unknown machine.
	Event    string
	Discover bool
}

// silent is a decision to send nothing; code names why for the metrics
// (a small fixed set), the reason says it for the log.
func silent(code, format string, a ...any) Decision {
	return Decision{Code: code, Reason: fmt.Sprintf(format, a...)}
}

// Event types recorded on machines. An ACK moves the machine to the dhcp
// state; the other steps are history.
const (
	EventOffer   = "dhcp-offer"
	EventNak     = "dhcp-nak"
	EventRelease = "dhcp-release"
	EventDecline = "dhcp-decline"
	EventAckOnly = "dhcp-ack" // ACK to a provisioned machine: no state change
)

// DeclineHold is how long an address a client declined stays out of the pool.
const DeclineHold = 10 * time.Minute

// Decide computes the answer to one request. It is pure: the same request
// and input give the same decision, and nothing is written.
func Decide(req *dhcpv4.DHCPv4, in Input) Decision {
	s := in.Settings
	switch s.Mode {
	case ModeFull:
		return decideFull(req, in)
	case ModeProxy:
		return decideProxy(req, in)
	}
	return silent("mode-off", "dhcp mode %s", s.Mode)
}

// known: the MAC has a record with a reserved address.
func known(m *model.Machine) bool { return m != nil && m.IP != "" }

// answerable says whether bootsrv may answer this client at all, and why not.
// A client that holds a lease or a live offer here is answered whatever it
// sends: a discovered machine's OS renews the pool address its firmware got
// without any PXE marker. Ignored clients still never take a pool address,
// since a lease is only ever granted to a client answerable without one.
func answerable(in Input) (bool, string) {
	if known(in.Machine) {
		return true, ""
	}
	if in.Settings.Mode == ModeFull && in.Leases != nil {
		if _, ok := in.Leases.ForMAC(in.Client.MAC); ok {
			return true, ""
		}
	}
	// A discovered machine has a record but no reserved address.
	who := "unknown MAC"
	if in.Machine != nil {
		who = "MAC has no reservation"
	}
	if in.Settings.Unknown != UnknownDiscover {
		return false, who + " (--unknown ignore)"
	}
	if !in.Client.Booting() {
		if in.Machine != nil {
			return false, who + " and is not a PXE client"
		}
		return false, who + " is not a PXE client"
	}
	return true, ""
}

// subnetOf is the subnet a request is served from: the relay's, else the
// one of the interface it came in on.
func subnetOf(in Input) (*Subnet, netip.Addr, bool) {
	via := in.Server
	if in.Client.GIAddr.IsValid() {
		via = in.Client.GIAddr
	}
	sub, ok := in.Settings.SubnetFor(via)
	return sub, via, ok
}

// NeedsPool says whether Decide will want a pool address for this request,
// and from which pool: a DISCOVER in full mode from an answerable client
// with no reservation and no usable lease. The server then asks the lease
// table for a candidate (Input.Candidate) before deciding.
func NeedsPool(in Input) (lease.Pool, bool) {
	if in.Settings.Mode != ModeFull || in.Client.Type != dhcpv4.MessageTypeDiscover || in.Port == ProxyBootPort || known(in.Machine) {
		return lease.Pool{}, false
	}
	if ok, _ := answerable(in); !ok {
		return lease.Pool{}, false
	}
	sub, _, ok := subnetOf(in)
	if !ok || !sub.Pool.Valid() {
		return lease.Pool{}, false
	}
	if l, ok := in.Leases.ForMAC(in.Client.MAC); ok && sub.Pool.Contains(l.IP) && free(in, l.IP) {
		return lease.Pool{}, false
	}
	return sub.Pool, true
}

func decideFull(req *dhcpv4.DHCPv4, in Input) Decision {
	c := in.Client
	if ok, why := answerable(in); !ok {
		return silent("ignored", "%s", why)
	}
	if in.Port == ProxyBootPort {
		return silent("wrong-port", "request on port %d in full mode", ProxyBootPort)
	}
	sub, via, ok := subnetOf(in)
	if !ok {
		return silent("no-subnet", "no subnet for %s", via)
	}
	var reserved netip.Addr
	if known(in.Machine) {
		ip, err := netip.ParseAddr(in.Machine.IP)
		if err != nil || !sub.Prefix.Contains(ip) {
			return silent("reservation-outside-subnet", "reserved address %s is not in subnet %s", in.Machine.IP, sub.Prefix)
		}
		// Handed out, it would take the network's gateway or bootsrv
		// itself off the air for every machine: refused, whatever the
		// record says (machine add refuses the gateway; the server's
		// address is only known here).
		switch {
		case ip == in.Server:
			return silent("reservation-is-server", "reserved address %s is bootsrv's own address on this network: give machine %s another with `bootsrv machine add --replace`", ip, c.MAC)
		case sub.Router.IsValid() && ip == sub.Router:
			return silent("reservation-is-router", "reserved address %s is the subnet's router: give machine %s another with `bootsrv machine add --replace`", ip, c.MAC)
		}
		reserved = ip
	}
	switch c.Type {
	case dhcpv4.MessageTypeDiscover:
		return decideDiscover(req, in, sub, reserved)
	case dhcpv4.MessageTypeRequest:
		return decideRequest(req, in, sub, reserved)
	case dhcpv4.MessageTypeRelease:
		return decideRelease(in)
	case dhcpv4.MessageTypeDecline:
		return decideDecline(in)
	case dhcpv4.MessageTypeInform:
		return decideInform(req, in, sub)
	}
	return silent("unsupported-type", "message type %s", c.Type)
}

// decideDiscover offers the reservation, else the lease the client held,
// else the pool's candidate.
func decideDiscover(req *dhcpv4.DHCPv4, in Input, sub *Subnet, reserved netip.Addr) Decision {
	c := in.Client
	ip := reserved
	if !ip.IsValid() {
		if l, ok := in.Leases.ForMAC(c.MAC); ok && sub.Pool.Contains(l.IP) && free(in, l.IP) {
			ip = l.IP
		} else if ip = in.Candidate; !ip.IsValid() || !sub.Pool.Contains(ip) {
			if !sub.Pool.Valid() {
				return silent("no-pool", "no address: not a known machine and no --dhcp-range")
			}
			return silent("pool-exhausted", "pool %s exhausted", sub.Pool)
		}
	} else if !free(in, ip) {
		return silent("reservation-held", "reserved address %s is held by %s", ip, in.Leases.OwnerOf(ip))
	}
	boot, err := chooseBoot(c, in.Machine, in.Settings, in.Server)
	if err != nil {
		return silent("no-boot-file", "%v", err)
	}
	d := in.grant(req, dhcpv4.MessageTypeOffer, sub, ip, boot)
	d.Action, d.Expiry = ActOffer, in.Now.Add(offerHold)
	d.Event, d.Reason, d.Code = EventOffer, "offer", "offer"
	return d
}

// decideRequest ACKs the address the client was offered or holds, NAKs
// another, and withdraws an offer the client passed over.
func decideRequest(req *dhcpv4.DHCPv4, in Input, sub *Subnet, reserved netip.Addr) Decision {
	c := in.Client
	if c.ServerID.IsValid() && c.ServerID != in.Server {
		if l, ok := in.Leases.ForMAC(c.MAC); ok && l.State == model.LeaseOffered {
			// Our offer lost: free its address now, not when it lapses.
			return Decision{Action: ActWithdraw, IP: l.IP,
				Code: "withdraw", Reason: fmt.Sprintf("client chose server %s: offer of %s withdrawn", c.ServerID, l.IP)}
		}
		return silent("other-server", "client chose server %s", c.ServerID)
	}
	want := c.Requested
	if !want.IsValid() {
		want = c.CIAddr
	}
	if !want.IsValid() {
		return silent("no-address-requested", "REQUEST names no address")
	}
	expect := reserved
	if !expect.IsValid() {
		if l, ok := in.Leases.ForMAC(c.MAC); ok {
			expect = l.IP
		}
	}
	switch {
	case !expect.IsValid() && !c.ServerID.IsValid():
		// INIT-REBOOT or RENEWING with no record here: another
		// server's client, or a lease long gone; stay silent.
		return silent("no-lease", "no lease for %s", c.MAC)
	case want != expect:
		return in.nak(req, fmt.Sprintf("requested %s, client's address is %s", want, orNone(expect)))
	case !free(in, want):
		return in.nak(req, fmt.Sprintf("%s is held by %s", want, in.Leases.OwnerOf(want)))
	case !sub.Prefix.Contains(want):
		return in.nak(req, fmt.Sprintf("%s is not in subnet %s", want, sub.Prefix))
	}
	boot, err := chooseBoot(c, in.Machine, in.Settings, in.Server)
	if err != nil {
		return silent("no-boot-file", "%v", err)
	}
	d := in.grant(req, dhcpv4.MessageTypeAck, sub, want, boot)
	d.Action, d.Expiry = ActBind, in.Now.Add(in.Settings.LeaseTime)
	d.Event, d.Reason, d.Code = model.StateDHCP, "ack", "ack"
	if in.Machine != nil && in.Machine.State == model.StateProvisioned {
		// A provisioned machine rebooting stays provisioned.
		d.Event = EventAckOnly
	}
	return d
}

// decideRelease frees the address the client gives back.
func decideRelease(in Input) Decision {
	c := in.Client
	if c.ServerID.IsValid() && c.ServerID != in.Server {
		return silent("other-server", "RELEASE for server %s", c.ServerID)
	}
	if l, ok := in.Leases.ForMAC(c.MAC); ok && l.IP == c.CIAddr {
		return Decision{Action: ActRelease, IP: l.IP, Code: "release", Reason: "release", Event: EventRelease}
	}
	return silent("not-held", "RELEASE of %s, which %s does not hold", orNone(c.CIAddr), c.MAC)
}

// decideDecline takes an address the client found in use out of the pool.
func decideDecline(in Input) Decision {
	c := in.Client
	if c.ServerID.IsValid() && c.ServerID != in.Server {
		return silent("other-server", "DECLINE for server %s", c.ServerID)
	}
	if l, ok := in.Leases.ForMAC(c.MAC); ok && l.IP == c.Requested {
		return Decision{Action: ActDecline, IP: l.IP, Expiry: in.Now.Add(DeclineHold),
			Code: "decline", Reason: "decline: address in use", Event: EventDecline}
	}
	return silent("not-held", "DECLINE of %s, which %s does not hold", orNone(c.Requested), c.MAC)
}

// decideInform answers a client with an address of its own with options only.
func decideInform(req *dhcpv4.DHCPv4, in Input, sub *Subnet) Decision {
	c := in.Client
	if !c.CIAddr.IsValid() {
		return silent("no-ciaddr", "INFORM without ciaddr")
	}
	boot, err := chooseBoot(c, in.Machine, in.Settings, in.Server)
	if err != nil {
		return silent("no-boot-file", "%v", err)
	}
	d := in.grant(req, dhcpv4.MessageTypeAck, sub, netip.Addr{}, boot)
	d.Reason, d.Code = "inform", "inform"
	return d

}

// offerHold is how long an offered address waits for its REQUEST. OVMF
// takes about 4 s between OFFER and REQUEST; a minute is generous.
const offerHold = time.Minute

// free: nobody else holds ip.
func free(in Input, ip netip.Addr) bool {
	o := in.Leases.OwnerOf(ip)
	return o == "" || o == in.Client.MAC
}

func orNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

func decideProxy(req *dhcpv4.DHCPv4, in Input) Decision {
	c := in.Client
	if !c.Booting() {
		return silent("not-pxe", "proxy mode: not a PXE client")
	}
	if ok, why := answerable(in); !ok {
		return silent("ignored", "%s", why)
	}
	var mt dhcpv4.MessageType
	switch {
	case c.Type == dhcpv4.MessageTypeDiscover && in.Port != ProxyBootPort:
		mt = dhcpv4.MessageTypeOffer
	case c.Type == dhcpv4.MessageTypeRequest && in.Port == ProxyBootPort:
		mt = dhcpv4.MessageTypeAck
	case c.Type == dhcpv4.MessageTypeRequest:
		return silent("not-for-proxy", "proxy mode: address REQUEST is for the DHCP server")
	default:
		return silent("unsupported-type", "proxy mode: %s not served", c.Type)
	}
	boot, err := chooseBoot(c, in.Machine, in.Settings, in.Server)
	if err != nil {
		return silent("no-boot-file", "%v", err)
	}
	r := in.newReply(req, mt)
	if boot.vendorClass == "" {
		// A proxy offer must say PXEClient, or PXE ROMs (and iPXE)
		// ignore it; apply then adds discovery control 8: boot from the
		// file given here, do not go on to discover boot servers (port
		// 4011 is still answered for clients that do).
		boot.vendorClass = "PXEClient"
	}
	boot.apply(r, in.Server)
	d := Decision{Reply: r, To: in.dest(mt), File: boot.file, Reason: "proxy " + strings.ToLower(mt.String()), Code: "proxy-" + strings.ToLower(mt.String())}
	d.Discover = in.Machine == nil
	if mt == dhcpv4.MessageTypeOffer {
		d.Event = EventOffer
	} else {
		d.Event = model.StateDHCP
		if in.Machine != nil && in.Machine.State == model.StateProvisioned {
			d.Event = EventAckOnly
		}
	}
	return d
}

// grant builds an OFFER or ACK handing out ip (none for INFORM) on sub.
func (in Input) grant(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, sub *Subnet, ip netip.Addr, boot bootChoice) Decision {
	s := in.Settings
	r := in.newReply(req, mt)
	if ip.IsValid() {
		r.YourIPAddr = ip.AsSlice()
		lt := uint32(s.LeaseTime / time.Second)
		r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.LeaseTime))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRenewTimeValue, be32(lt/2)))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRebindingTimeValue, be32(lt/8*7)))
	}
	r.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(sub.Prefix.Bits(), 32)))
	if sub.Router.IsValid() {
		r.UpdateOption(dhcpv4.OptRouter(sub.Router.AsSlice()))
	}
	if len(sub.DNS) > 0 {
		ips := make([]net.IP, len(sub.DNS))
		for i, a := range sub.DNS {
			ips[i] = a.AsSlice()
		}
		r.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	if sub.Domain != "" {
		r.UpdateOption(dhcpv4.OptDomainName(sub.Domain))
	}
	var host string
	if in.Machine != nil && in.Machine.Hostname != "" {
		host = in.Machine.Hostname
		r.UpdateOption(dhcpv4.OptHostName(host))
	}
	boot.apply(r, in.Server)
	d := Decision{Reply: r, To: in.dest(mt), IP: ip, Hostname: host, File: boot.file}
	d.Discover = in.Machine == nil
	return d
}

func (in Input) nak(req *dhcpv4.DHCPv4, why string) Decision {
	r := in.newReply(req, dhcpv4.MessageTypeNak)
	r.UpdateOption(dhcpv4.OptMessage(why))
	// A NAK goes to the relay or to everyone: the client's address is wrong.
	return Decision{Reply: r, To: in.dest(dhcpv4.MessageTypeNak), Code: "nak", Reason: "nak: " + why, Event: EventNak}
}

// newReply starts a reply to req, copying what RFC 2131/3046/6842 say to copy.
func (in Input) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       make(dhcpv4.Options, 16),
	}
	if mt == dhcpv4.MessageTypeAck && in.Client.CIAddr.IsValid() {
		r.ClientIPAddr = in.Client.CIAddr.AsSlice()
	}
	r.UpdateOption(dhcpv4.OptMessageType(mt))
	r.UpdateOption(dhcpv4.OptServerIdentifier(in.Server.AsSlice()))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return r
}

// dest is where a reply of type mt goes: to the relay; to the PXE client
// that asked on port 4011; to a client that already has an address; else
// broadcast, because a client with no address yet has no ARP entry to
// unicast to (iPXE does not set the broadcast flag, but still needs it).
func (in Input) dest(mt dhcpv4.MessageType) netip.AddrPort {
	c := in.Client
	switch {
	case c.GIAddr.IsValid():
		return netip.AddrPortFrom(c.GIAddr, ServerPort)
	case in.Port == ProxyBootPort && in.Peer.IsValid():
		return in.Peer
	case mt != dhcpv4.MessageTypeNak && c.CIAddr.IsValid():
		return netip.AddrPortFrom(c.CIAddr, ClientPort)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }
