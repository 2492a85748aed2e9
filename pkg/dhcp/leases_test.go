package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func openStore(t *testing.T, dir string) *state.DB {
	t.Helper()
	st, err := state.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var (
	ipA = netip.MustParseAddr("10.99.0.100")
	ipB = netip.MustParseAddr("10.99.0.101")
)

func TestLeasesSurviveRestartAndRelease(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	st := openStore(t, dir)
	l, err := lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(l, "aa:00:00:00:00:01", Decision{Action: ActOffer, IP: ipA, Expiry: t0.Add(offerHold)}); err != nil {
		t.Fatal(err)
	}
	// The offer holds the address against others, but is not durable.
	if err := Apply(l, "aa:00:00:00:00:02", Decision{Action: ActOffer, IP: ipA, Expiry: t0.Add(offerHold)}); err == nil {
		t.Fatal("second offer of a held address succeeded")
	}
	if err := Apply(l, "aa:00:00:00:00:01", Decision{Action: ActBind, IP: ipA, Expiry: t0.Add(time.Hour), Hostname: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(l, "aa:00:00:00:00:03", Decision{Action: ActOffer, IP: ipB, Expiry: t0.Add(offerHold)}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	l, err = lease.Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	le, ok := l.Bound("aa:00:00:00:00:01")
	if !ok || le.IP != ipA || le.Hostname != "n1" || !le.Expiry.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after restart: %+v %v", le, ok)
	}
	if o := l.OwnerOf(ipB); o != "" {
		t.Fatalf("an offer survived the restart: %s", o)
	}
	if ip, ok := l.LeasedIP("aa:00:00:00:00:01"); !ok || ip != ipA {
		t.Fatalf("LeasedIP = %v %v", ip, ok)
	}
	if mac, ok := l.LeasedMAC(ipA); !ok || mac != "aa:00:00:00:00:01" {
		t.Fatalf("LeasedMAC = %v %v", mac, ok)
	}
	if _, ok := l.LeasedMAC(ipB); ok {
		t.Fatal("an offered address counts as leased")
	}
	clk.add(2 * time.Hour)
	if _, ok := l.LeasedIP("aa:00:00:00:00:01"); ok {
		t.Fatal("an expired lease counts as leased")
	}
	clk.add(-2 * time.Hour)
	if err := Apply(l, "aa:00:00:00:00:02", Decision{Action: ActRelease, IP: ipA}); err == nil {
		t.Fatal("another MAC released the lease")
	}
	if err := Apply(l, "aa:00:00:00:00:01", Decision{Action: ActRelease, IP: ipA}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	l, _ = lease.Open(st, clk.now)
	if _, ok := l.ForMAC("aa:00:00:00:00:01"); ok || l.OwnerOf(ipA) != "" {
		t.Fatal("released lease came back after restart")
	}
	_ = st.View(func(tx state.Tx) error {
		if n := tx.Sizes().Leases + tx.Sizes().LeaseIndex; n != 0 {
			t.Errorf("%d lease keys left after release", n)
		}
		return nil
	})
}

func TestLeasesExpireAndDecline(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, _ := lease.Open(st, clk.now)
	sub := &testSettings(ModeFull, UnknownDiscover).Subnets[0]
	sub.Pool = lease.Pool{Start: ipA, End: ipB} // two addresses
	if err := Apply(l, "aa:00:00:00:00:01", Decision{Action: ActBind, IP: ipA, Expiry: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if ip, ok := l.Candidate("aa:00:00:00:00:02", sub.Pool); !ok || ip != ipB {
		t.Fatalf("candidate %v %v, want %v", ip, ok, ipB)
	}
	if err := Apply(l, "aa:00:00:00:00:02", Decision{Action: ActBind, IP: ipB, Expiry: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Candidate("aa:00:00:00:00:03", sub.Pool); ok {
		t.Fatal("full pool gave a candidate")
	}
	// DECLINE: the address is bad for DeclineHold, for everyone.
	if err := Apply(l, "aa:00:00:00:00:02", Decision{Action: ActDecline, IP: ipB, Expiry: t0.Add(DeclineHold)}); err != nil {
		t.Fatal(err)
	}
	if o := l.OwnerOf(ipB); o != model.LeaseDeclined {
		t.Fatalf("declined address owner %q", o)
	}
	clk.add(2 * time.Minute) // A's lease expired; B still declined
	if ip, ok := l.Candidate("aa:00:00:00:00:03", sub.Pool); !ok || ip != ipA {
		t.Fatalf("candidate after expiry %v %v, want %v", ip, ok, ipA)
	}
	// The expired client still finds its lease and, while free, keeps it.
	if le, ok := l.ForMAC("aa:00:00:00:00:01"); !ok || le.IP != ipA {
		t.Fatalf("expired lease lookup %+v %v", le, ok)
	}
	if err := Apply(l, "aa:00:00:00:00:03", Decision{Action: ActBind, IP: ipA, Expiry: clk.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.ForMAC("aa:00:00:00:00:01"); ok {
		t.Fatal("the old owner still sees the address another client now holds")
	}
	clk.add(DeclineHold)
	if o := l.OwnerOf(ipB); o != "" {
		t.Fatalf("declined address not free after the hold: %q", o)
	}
}

func TestCandidateSkipsReservations(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	if err := st.Update(func(tx state.Tx) error {
		return tx.PutMachine(model.Machine{MAC: "52:54:00:00:00:10", IP: ipA.String(), Hostname: "r1"})
	}); err != nil {
		t.Fatal(err)
	}
	l, _ := lease.Open(st, (&clock{t: t0}).now)
	sub := &testSettings(ModeFull, UnknownDiscover).Subnets[0]
	if ip, ok := l.Candidate("aa:00:00:00:00:01", sub.Pool); !ok || ip != ipB {
		t.Fatalf("candidate %v, want %v (skipping the reservation)", ip, ipB)
	}
}

// TestFlood: DISCOVERs from many random MACs neither take addresses when
// ignored, nor keep the pool once their offers lapse when discovered.
func TestFlood(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, _ := lease.Open(st, clk.now)
	run := func(s *Settings, n int) (offers int) {
		for i := range n {
			hw := net.HardwareAddr{0x02, 0, byte(i >> 16), byte(i >> 8), byte(i), 0x01}
			req := pkt{hw: hw, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI}.build(t)
			c, err := Inspect(req)
			if err != nil {
				t.Fatal(err)
			}
			d := decideLikeServer(req, Input{Client: c, Settings: s, Leases: l, Server: srvIP, Port: ServerPort, Now: clk.now()})
			if d.Action != ActNone {
				if err := Apply(l, c.MAC, d); err != nil {
					t.Fatal(err)
				}
			}
			if d.Reply != nil {
				offers++
			}
		}
		return offers
	}
	if n := run(testSettings(ModeFull, UnknownIgnore), 3000); n != 0 || len(l.All()) != 0 {
		t.Fatalf("ignore: %d offers, %d leases", n, len(l.All()))
	}
	s := testSettings(ModeFull, UnknownDiscover)
	if n := run(s, 150); n != 100 {
		t.Fatalf("discover: %d offers from a pool of 100", n)
	}
	clk.add(offerHold + time.Second)
	if n := run(s, 50); n != 50 {
		t.Fatalf("after the offers lapsed: %d offers, want 50", n)
	}
	_ = st.View(func(tx state.Tx) error {
		if n := tx.Sizes().Leases; n != 0 {
			t.Errorf("%d durable leases from DISCOVERs alone", n)
		}
		return nil
	})
}

// TestConcurrentBinds: many clients binding at once (group commit) each get
// their own address, and every lease is on disk.
func TestConcurrentBinds(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	l, _ := lease.Open(st, time.Now)
	sub := &testSettings(ModeFull, UnknownDiscover).Subnets[0]
	var wg sync.WaitGroup
	got := make([]netip.Addr, 80)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("aa:00:00:00:01:%02x", i)
			for {
				ip, ok := l.Candidate(mac, sub.Pool)
				if !ok {
					t.Error("pool exhausted")
					return
				}
				if Apply(l, mac, Decision{Action: ActOffer, IP: ip, Expiry: time.Now().Add(time.Minute)}) != nil {
					continue
				}
				if err := Apply(l, mac, Decision{Action: ActBind, IP: ip, Expiry: time.Now().Add(time.Hour)}); err != nil {
					t.Error(err)
				}
				got[i] = ip
				return
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, ip := range got {
		if seen[ip] {
			t.Fatalf("address %s given twice", ip)
		}
		seen[ip] = true
	}
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	_ = st.View(func(tx state.Tx) error {
		if n := tx.Sizes().Leases; n != len(got) {
			t.Errorf("%d leases on disk, want %d", n, len(got))
		}
		return nil
	})
}
