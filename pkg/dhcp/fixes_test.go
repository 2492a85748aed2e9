package dhcp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// A discovered machine (a record without a reserved address) that got a
// pool address while PXE booting keeps being answered once its OS takes
// over: RENEWING, the OS's own DISCOVER (no PXE markers) and INIT-REBOOT.
func TestDiscoveredMachineKeepsPoolLease(t *testing.T) {
	disc := &model.Machine{MAC: otherHW.String(), State: model.StateDHCP}
	ip := netip.MustParseAddr("10.99.0.150")
	lv := noLeases()
	lv.byMAC[otherHW.String()] = lease.Lease{IP: ip, MAC: otherHW.String(), State: model.LeaseBound, Expiry: t0.Add(time.Hour)}
	lv.owner[ip] = otherHW.String()
	for _, unknown := range []Unknown{UnknownDiscover, UnknownIgnore} {
		for _, p := range []pkt{
			{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: -1, ciaddr: "10.99.0.150"},
			{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: -1, vendor: "bootsrv-lab"},
			{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: -1, requested: "10.99.0.150"},
		} {
			req := p.build(t)
			c, err := Inspect(req)
			if err != nil {
				t.Fatal(err)
			}
			d := decideLikeServer(req, Input{Client: c, Machine: disc, Settings: testSettings(ModeFull, unknown), Leases: lv, Server: srvIP, Port: ServerPort, Now: t0})
			if d.Reply == nil {
				t.Errorf("%s %s from a discovered machine holding %s: silent (%s)", unknown, p.mt, ip, d.Reason)
				continue
			}
			if got := netip.MustParseAddr(d.Reply.YourIPAddr.String()); got != ip || d.IP != ip {
				t.Errorf("%s %s: yiaddr %s, decision ip %s, want %s", unknown, p.mt, got, d.IP, ip)
			}
		}
	}
	// Without a lease it stays silent, and the log says why in its terms.
	req := pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: -1}.build(t)
	c, _ := Inspect(req)
	d := decideLikeServer(req, Input{Client: c, Machine: disc, Settings: testSettings(ModeFull, UnknownDiscover), Leases: noLeases(), Server: srvIP, Port: ServerPort, Now: t0})
	if d.Reply != nil || d.Reason != "MAC has no reservation and is not a PXE client" {
		t.Errorf("no lease: reply %v, reason %q", d.Reply != nil, d.Reason)
	}
	d = decideLikeServer(req, Input{Client: c, Machine: disc, Settings: testSettings(ModeFull, UnknownIgnore), Leases: noLeases(), Server: srvIP, Port: ServerPort, Now: t0})
	if d.Reply != nil || strings.Contains(d.Reason, "unknown MAC") {
		t.Errorf("ignore, no lease: reply %v, reason %q", d.Reply != nil, d.Reason)
	}
}

// The same through the real lease table: DORA as a PXE client with
// --unknown discover, then the OS renews without PXE markers.
func TestDiscoveredMachineRenewsThroughLeases(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings(ModeFull, UnknownDiscover)
	disc := &model.Machine{MAC: otherHW.String(), State: model.StateDiscovered}
	step := func(p pkt) Decision {
		t.Helper()
		req := p.build(t)
		c, err := Inspect(req)
		if err != nil {
			t.Fatal(err)
		}
		d := decideLikeServer(req, Input{Client: c, Machine: disc, Settings: s, Leases: l, Server: srvIP, Port: ServerPort, Now: clk.now()})
		if err := Apply(l, c.MAC, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := step(pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI})
	ip := d.IP
	step(pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: 7, vendor: vcUEFI, requested: ip.String(), serverID: srvIP.String()})
	clk.add(30 * time.Minute)
	d = step(pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: -1, ciaddr: ip.String()})
	if d.Reply == nil || d.Reply.MessageType() != dhcpv4.MessageTypeAck || d.IP != ip {
		t.Fatalf("renewal from the OS: %v (%s)", d.Reply != nil, d.Reason)
	}
	if le, ok := l.Bound(otherHW.String()); !ok || le.IP != ip || !le.Expiry.Equal(clk.now().Add(time.Hour)) {
		t.Fatalf("after renewal: %+v %v", le, ok)
	}
}

// A machine with a bound pool lease that is given a reservation moves to
// it on its next DORA; the old pool address is freed, in memory and in the
// file.
func TestMoveToReservationFreesPoolLease(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	st := openStore(t, dir)
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	mac := "aa:00:00:00:00:01"
	res := netip.MustParseAddr("10.99.0.10")
	for _, d := range []Decision{
		{Action: ActOffer, IP: ipA, Expiry: t0.Add(offerHold)},
		{Action: ActBind, IP: ipA, Expiry: t0.Add(time.Hour)},
		{Action: ActOffer, IP: res, Expiry: t0.Add(offerHold)},
	} {
		if err := Apply(l, mac, d); err != nil {
			t.Fatal(err)
		}
	}
	// Between the offer and the REQUEST the pool lease is still its own.
	if o := l.OwnerOf(ipA); o != mac {
		t.Errorf("during the move, %s is held by %q", ipA, o)
	}
	if ip, ok := l.LeasedIP(mac); !ok || ip != ipA {
		t.Errorf("during the move, LeasedIP = %v %v", ip, ok)
	}
	if err := Apply(l, mac, Decision{Action: ActBind, IP: res, Expiry: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, l *lease.Table) {
		t.Helper()
		if o := l.OwnerOf(ipA); o != "" {
			t.Errorf("%s: old pool address %s still held by %q", when, ipA, o)
		}
		if m, ok := l.LeasedMAC(ipA); ok {
			t.Errorf("%s: LeasedMAC(%s) = %s", when, ipA, m)
		}
		if le, ok := l.Bound(mac); !ok || le.IP != res {
			t.Errorf("%s: Bound = %+v %v, want %s", when, le, ok, res)
		}
		if n := len(l.All()); n != 1 {
			t.Errorf("%s: %d leases, want 1: %+v", when, n, l.All())
		}
	}
	check("in memory", l)
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	l, err = lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	check("after restart", l)
}

// A REQUEST naming another server withdraws our offer at once.
func TestRequestForOtherServerWithdrawsOffer(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings(ModeFull, UnknownDiscover)
	decide := func(p pkt) Decision {
		t.Helper()
		req := p.build(t)
		c, err := Inspect(req)
		if err != nil {
			t.Fatal(err)
		}
		d := decideLikeServer(req, Input{Client: c, Settings: s, Leases: l, Server: srvIP, Port: ServerPort, Now: clk.now()})
		if err := Apply(l, c.MAC, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := decide(pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI})
	ip := d.IP
	if l.OwnerOf(ip) != otherHW.String() {
		t.Fatalf("offer of %s not held", ip)
	}
	d = decide(pkt{hw: otherHW, mt: dhcpv4.MessageTypeRequest, arch: 7, vendor: vcUEFI, requested: "10.99.0.77", serverID: "10.99.0.2"})
	if d.Reply != nil || d.Action != ActWithdraw || d.IP != ip || !strings.Contains(d.Reason, "chose server 10.99.0.2") {
		t.Fatalf("decision %+v", d)
	}
	if o := l.OwnerOf(ip); o != "" {
		t.Errorf("after the client chose another server, %s is still held by %q", ip, o)
	}
	if _, ok := l.ForMAC(otherHW.String()); ok {
		t.Error("the withdrawn offer is still the client's")
	}
	// A bound lease is never withdrawn that way.
	knownLease := noLeases()
	knownLease.byMAC[knownHW.String()] = lease.Lease{IP: netip.MustParseAddr("10.99.0.10"), MAC: knownHW.String(), State: model.LeaseBound, Expiry: t0.Add(time.Hour)}
	req := pkt{mt: dhcpv4.MessageTypeRequest, arch: 0, vendor: vcBIOS, requested: "10.99.0.10", serverID: "10.99.0.2"}.build(t)
	c, _ := Inspect(req)
	if d := decideLikeServer(req, Input{Client: c, Machine: knownMachine(), Settings: s, Leases: knownLease, Server: srvIP, Port: ServerPort, Now: t0}); d.Action != ActNone {
		t.Errorf("bound lease: action %v", d.Action)
	}
}

// A pool that holds the router's or the server's own address is refused.
func TestPoolHoldingRouterOrServerRefused(t *testing.T) {
	sub := testSettings(ModeFull, UnknownDiscover).Subnets[0]
	sub.Router = netip.MustParseAddr("10.99.0.150")
	if err := sub.Check(); err == nil || !strings.Contains(err.Error(), "router 10.99.0.150") {
		t.Errorf("pool holding the router: %v", err)
	}
	sub.Router = netip.MustParseAddr("10.99.0.254")
	if err := sub.Check(); err != nil {
		t.Errorf("router outside the pool: %v", err)
	}
	s := testSettings(ModeFull, UnknownDiscover)
	if err := s.CheckServerAddr("eth1", netip.MustParseAddr("10.99.0.120")); err == nil || !strings.Contains(err.Error(), "10.99.0.120, the address of --interface eth1") {
		t.Errorf("pool holding the server: %v", err)
	}
	if err := s.CheckServerAddr("eth1", srvIP); err != nil {
		t.Errorf("server outside the pool: %v", err)
	}
	if _, err := SubnetFromCluster(model.Cluster{Network: model.Network{Subnet: "10.99.0.0/24", Gateway: "10.99.0.100"}}, s.Subnets[0].Pool); err == nil {
		t.Error("cluster gateway inside --dhcp-range accepted")
	}
}

// Serve refuses to start when the pool holds the address of the interface
// it answers on.
func TestIntegrationPoolHoldsServerAddress(t *testing.T) {
	need(t, "ip")
	l := newLab(t, "s")
	run(t, "ip", "-n", l.srvNS, "addr", "del", "10.77.0.1/24", "dev", l.srvIf)
	run(t, "ip", "-n", l.srvNS, "addr", "add", "10.77.0.120/24", "dev", l.srvIf)
	err := l.startServer("MODE=full", "UNKNOWN=discover", "RANGE=10.77.0.100-10.77.0.150")
	if err == nil {
		l.stopServer()
		t.Fatal("server started with its own address in the pool")
	}
	if want := "contains 10.77.0.120, the address of --interface " + l.srvIf; !strings.Contains(err.Error(), want) {
		t.Fatalf("start: %v\nwant it to say %q", err, want)
	}
}
