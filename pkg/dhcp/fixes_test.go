package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/store"
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

// Offers that lapse, or whose address goes to another MAC, leave no index
// entry behind.
func TestLapsedOffersLeaveNoIndex(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings(ModeFull, UnknownDiscover)
	s.Subnets[0].Pool = lease.Pool{Start: ipA, End: ipA} // one address
	for i := range 5000 {
		mac := fmt.Sprintf("02:00:%02x:%02x:00:00", i>>8, i&0xff)
		ip, ok := l.Candidate(mac, s.Subnets[0].Pool)
		if !ok {
			t.Fatalf("no candidate at %d", i)
		}
		if err := Apply(l, mac, Decision{Action: ActOffer, IP: ip, Expiry: clk.now().Add(offerHold)}); err != nil {
			t.Fatal(err)
		}
		clk.add(offerHold + time.Second)
	}
	n := l.Stats().OfferIndex + l.Stats().BoundIndex
	if n > 1 || len(l.All()) > 1 {
		t.Errorf("pool of 1 address after 5000 lapsed offers: %d index entries, %d leases", n, len(l.All()))
	}
	// A lapsed offer is forgotten when its MAC comes back, too.
	if _, ok := l.ForMAC("02:00:13:87:00:00"); ok {
		t.Error("lapsed offer still returned")
	}
	n = l.Stats().OfferIndex
	if n != 0 {
		t.Errorf("%d offer entries after the last offer lapsed and was looked up", n)
	}
}

// failStore fails every Batch while fail is set.
type failStore struct {
	store.Store
	fail bool
}

func (f *failStore) Batch(fn func(store.Tx) error) error {
	if f.fail {
		return errors.New("disk full")
	}
	return f.Store.Batch(fn)
}

// A bind whose write fails leaves memory as it was: no "bound" that the
// file does not hold, and the old lease still in place.
func TestBindWriteFailureRestoresMemory(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	fs := &failStore{Store: st.Engine()}
	l, err := lease.Open(state.New(fs), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	mac := "aa:00:00:00:00:01"
	for _, d := range []Decision{
		{Action: ActOffer, IP: ipA, Expiry: t0.Add(offerHold)},
		{Action: ActBind, IP: ipA, Expiry: t0.Add(time.Hour)},
		{Action: ActOffer, IP: ipB, Expiry: t0.Add(offerHold)},
	} {
		if err := Apply(l, mac, d); err != nil {
			t.Fatal(err)
		}
	}
	before := l.All()
	fs.fail = true
	if err := Apply(l, mac, Decision{Action: ActBind, IP: ipB, Expiry: t0.Add(time.Hour)}); err == nil {
		t.Fatal("bind succeeded with a failing store")
	}
	if le, ok := l.Bound(mac); !ok || le.IP != ipA {
		t.Errorf("after a failed bind, Bound = %+v %v, want %s", le, ok, ipA)
	}
	if _, ok := l.LeasedMAC(ipB); ok {
		t.Errorf("after a failed bind, %s counts as leased", ipB)
	}
	if le, ok := l.ForMAC(mac); !ok || le.IP != ipB || le.State != model.LeaseOffered {
		t.Errorf("after a failed bind, ForMAC = %+v %v, want the offer of %s", le, ok, ipB)
	}
	if after := l.All(); fmt.Sprint(sortLeases(after)) != fmt.Sprint(sortLeases(before)) {
		t.Errorf("leases changed by a failed bind:\nbefore %+v\nafter  %+v", before, after)
	}
	// Release and decline are undone the same way.
	if err := Apply(l, mac, Decision{Action: ActRelease, IP: ipA}); err == nil {
		t.Fatal("release succeeded with a failing store")
	}
	if le, ok := l.Bound(mac); !ok || le.IP != ipA {
		t.Errorf("after a failed release, Bound = %+v %v", le, ok)
	}
	// And the same bind goes through once the store works.
	fs.fail = false
	if err := Apply(l, mac, Decision{Action: ActBind, IP: ipB, Expiry: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if le, ok := l.Bound(mac); !ok || le.IP != ipB || l.OwnerOf(ipA) != "" {
		t.Errorf("after the bind: Bound = %+v %v, %s held by %q", le, ok, ipA, l.OwnerOf(ipA))
	}
}

func sortLeases(ls []lease.Lease) []lease.Lease {
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			if ls[j].IP.Less(ls[i].IP) {
				ls[i], ls[j] = ls[j], ls[i]
			}
		}
	}
	return ls
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

// An expired lease taken over by another client leaves no index entry of
// its old owner, in memory or (after a restart) in the file.
func TestTakenOverLeaseLeavesNoIndex(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	st := openStore(t, dir)
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := "aa:00:00:00:00:01", "aa:00:00:00:00:02"
	apply := func(mac string, d Decision) {
		t.Helper()
		if err := Apply(l, mac, d); err != nil {
			t.Fatal(err)
		}
	}
	apply(m1, Decision{Action: ActOffer, IP: ipA, Expiry: clk.now().Add(offerHold)})
	apply(m1, Decision{Action: ActBind, IP: ipA, Expiry: clk.now().Add(time.Hour)})
	clk.add(2 * time.Hour)
	apply(m2, Decision{Action: ActOffer, IP: ipA, Expiry: clk.now().Add(offerHold)})
	apply(m2, Decision{Action: ActBind, IP: ipA, Expiry: clk.now().Add(time.Hour)})
	if _, ok := l.ForMAC(m1); ok {
		t.Error("the old owner still has the address")
	}
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	if l, err = lease.Open(st, clk.now); err != nil {
		t.Fatal(err)
	}
	if n := l.Stats().BoundIndex; n != 1 {
		t.Errorf("%d bound-index entries loaded, want only the new owner's (the old owner's loaded again?)", n)
	}
	var keys []string
	st.View(func(tx state.Tx) error {
		return tx.BoundLeases(func(mac string, _ netip.Addr) error { keys = append(keys, mac); return nil })
	})
	if fmt.Sprint(keys) != "["+m2+"]" {
		t.Errorf("index in the file: %v, want only %s", keys, m2)
	}
	if le, ok := l.Bound(m2); !ok || le.IP != ipA {
		t.Errorf("new owner after restart: %+v %v", le, ok)
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
