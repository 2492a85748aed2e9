package lease

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/store"
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
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ipA = netip.MustParseAddr("10.99.0.100")
	ipB = netip.MustParseAddr("10.99.0.101")
)

// testSubnet is a pool as the DHCP tests' subnet has it.
type testSubnet struct{ Pool Pool }

func testPool() *testSubnet {
	return &testSubnet{Pool: Pool{Start: ipA, End: netip.MustParseAddr("10.99.0.199")}}
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

func sortLeases(ls []Lease) []Lease {
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			if ls[j].IP.Less(ls[i].IP) {
				ls[i], ls[j] = ls[j], ls[i]
			}
		}
	}
	return ls
}

func TestLeasesSurviveRestartAndRelease(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	st := openStore(t, dir)
	l, err := Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Offer("aa:00:00:00:00:01", ipA, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The offer holds the address against others, but is not durable.
	if err := l.Offer("aa:00:00:00:00:02", ipA, t0.Add(time.Minute)); err == nil {
		t.Fatal("second offer of a held address succeeded")
	}
	if err := l.Bind("aa:00:00:00:00:01", ipA, t0.Add(time.Hour), "n1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Offer("aa:00:00:00:00:03", ipB, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	l, err = Open(st, clk.now)
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
	if err := l.Release("aa:00:00:00:00:02", ipA); err == nil {
		t.Fatal("another MAC released the lease")
	}
	if err := l.Release("aa:00:00:00:00:01", ipA); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	l, _ = Open(st, clk.now)
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
	l, _ := Open(st, clk.now)
	sub := testPool()
	sub.Pool = Pool{Start: ipA, End: ipB} // two addresses
	if err := l.Bind("aa:00:00:00:00:01", ipA, t0.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	if ip, ok := l.Candidate("aa:00:00:00:00:02", sub.Pool); !ok || ip != ipB {
		t.Fatalf("candidate %v %v, want %v", ip, ok, ipB)
	}
	if err := l.Bind("aa:00:00:00:00:02", ipB, t0.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Candidate("aa:00:00:00:00:03", sub.Pool); ok {
		t.Fatal("full pool gave a candidate")
	}
	// DECLINE: the address is bad for 10*time.Minute, for everyone.
	if err := l.Decline("aa:00:00:00:00:02", ipB, t0.Add(10*time.Minute)); err != nil {
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
	if err := l.Bind("aa:00:00:00:00:03", ipA, clk.now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.ForMAC("aa:00:00:00:00:01"); ok {
		t.Fatal("the old owner still sees the address another client now holds")
	}
	clk.add(10 * time.Minute)
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
	l, _ := Open(st, (&clock{t: t0}).now)
	sub := testPool()
	if ip, ok := l.Candidate("aa:00:00:00:00:01", sub.Pool); !ok || ip != ipB {
		t.Fatalf("candidate %v, want %v (skipping the reservation)", ip, ipB)
	}
}

// TestConcurrentBinds: many clients binding at once (group commit) each get
// their own address, and every lease is on disk.
func TestConcurrentBinds(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	l, _ := Open(st, time.Now)
	sub := testPool()
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
				if l.Offer(mac, ip, time.Now().Add(time.Minute)) != nil {
					continue
				}
				if err := l.Bind(mac, ip, time.Now().Add(time.Hour), ""); err != nil {
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

// Offers that lapse, or whose address goes to another MAC, leave no index
// entry behind.
func TestLapsedOffersLeaveNoIndex(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	l, err := Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	one := Pool{Start: ipA, End: ipA} // one address
	for i := range 5000 {
		mac := fmt.Sprintf("02:00:%02x:%02x:00:00", i>>8, i&0xff)
		ip, ok := l.Candidate(mac, one)
		if !ok {
			t.Fatalf("no candidate at %d", i)
		}
		if err := l.Offer(mac, ip, clk.now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.add(time.Minute + time.Second)
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

// A bind whose write fails leaves memory as it was: no "bound" that the
// file does not hold, and the old lease still in place.
func TestBindWriteFailureRestoresMemory(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, t.TempDir())
	defer st.Close()
	fs := &failStore{Store: st.Engine()}
	l, err := Open(state.New(fs), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	mac := "aa:00:00:00:00:01"
	for _, step := range []func() error{
		func() error { return l.Offer(mac, ipA, t0.Add(time.Minute)) },
		func() error { return l.Bind(mac, ipA, t0.Add(time.Hour), "") },
		func() error { return l.Offer(mac, ipB, t0.Add(time.Minute)) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	before := l.All()
	fs.fail = true
	if err := l.Bind(mac, ipB, t0.Add(time.Hour), ""); err == nil {
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
	if err := l.Release(mac, ipA); err == nil {
		t.Fatal("release succeeded with a failing store")
	}
	if le, ok := l.Bound(mac); !ok || le.IP != ipA {
		t.Errorf("after a failed release, Bound = %+v %v", le, ok)
	}
	// And the same bind goes through once the store works.
	fs.fail = false
	if err := l.Bind(mac, ipB, t0.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if le, ok := l.Bound(mac); !ok || le.IP != ipB || l.OwnerOf(ipA) != "" {
		t.Errorf("after the bind: Bound = %+v %v, %s held by %q", le, ok, ipA, l.OwnerOf(ipA))
	}
}

// An expired lease taken over by another client leaves no index entry of
// its old owner, in memory or (after a restart) in the file.
func TestTakenOverLeaseLeavesNoIndex(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	st := openStore(t, dir)
	l, err := Open(st, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := "aa:00:00:00:00:01", "aa:00:00:00:00:02"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Offer(m1, ipA, clk.now().Add(time.Minute)))
	must(l.Bind(m1, ipA, clk.now().Add(time.Hour), ""))
	clk.add(2 * time.Hour)
	must(l.Offer(m2, ipA, clk.now().Add(time.Minute)))
	must(l.Bind(m2, ipA, clk.now().Add(time.Hour), ""))
	if _, ok := l.ForMAC(m1); ok {
		t.Error("the old owner still has the address")
	}
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	if l, err = Open(st, clk.now); err != nil {
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
