package httpd

import (
	"net/netip"
	"testing"
	"time"
)

func TestRefusalsBucket(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	r := newRefusals()
	r.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for i := range refusalBurst {
		if bl, _ := r.blocked(a); bl {
			t.Fatalf("blocked after %d refusals, want %d allowed", i, refusalBurst)
		}
		r.refused(a)
	}
	bl, wait := r.blocked(a)
	if !bl || wait <= 0 || wait > refusalEvery {
		t.Fatalf("after the burst: blocked %v, retry in %s; want blocked, within %s", bl, wait, refusalEvery)
	}
	if bl, _ := r.blocked(b); bl {
		t.Error("another address is blocked by a's refusals")
	}
	now = now.Add(refusalEvery)
	if bl, _ := r.blocked(a); bl {
		t.Error("still blocked after one refill interval")
	}
	// Bounded: a flood of addresses never grows the table past max.
	r.max = 100
	for i := range 1000 {
		r.refused(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	if len(r.addr) > r.max {
		t.Errorf("%d addresses tracked, want at most %d", len(r.addr), r.max)
	}
}
