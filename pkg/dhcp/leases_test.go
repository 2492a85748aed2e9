package dhcp

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/lease"
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
