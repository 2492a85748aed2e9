package httpd

import (
	"net/netip"
	"sync"
	"time"
)

// refusals bounds the refused requests one address may make to the doors
// that hold secrets or change state (/ipxe, /ignition, /report, /certs):
// each refusal takes a token from the address's bucket (refusalBurst,
// refilled one per refusalEvery), and an address with none left is
// answered 429 before any work is done: no token check, no state read,
// no log line. A machine that boots normally is never refused; a
// misconfigured one retrying every few seconds stays under it.
type refusals struct {
	every time.Duration
	burst float64
	max   int
	now   func() time.Time

	mu   sync.Mutex
	addr map[netip.Addr]*refusalBucket
}

type refusalBucket struct {
	tokens float64
	last   time.Time
}

const (
	refusalBurst = 20
	refusalEvery = time.Second
	refusalAddrs = 16384
)

func newRefusals() *refusals {
	return &refusals{every: refusalEvery, burst: refusalBurst, max: refusalAddrs, now: time.Now, addr: map[netip.Addr]*refusalBucket{}}
}

// blocked says whether ip has no refusals left, and when it will have one.
func (r *refusals) blocked(ip netip.Addr) (bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.addr[ip]
	if b == nil {
		return false, 0
	}
	r.refill(b)
	if b.tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - b.tokens) * float64(r.every))
}

// refused counts a refusal of ip.
func (r *refusals) refused(ip netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.addr[ip]
	if b == nil {
		if len(r.addr) >= r.max {
			r.evict()
		}
		b = &refusalBucket{tokens: r.burst, last: r.now()}
		r.addr[ip] = b
	}
	r.refill(b)
	if b.tokens >= 1 {
		b.tokens--
	} else {
		b.tokens = 0
	}
}

func (r *refusals) refill(b *refusalBucket) {
	now := r.now()
	b.tokens = min(r.burst, b.tokens+float64(now.Sub(b.last))/float64(r.every))
	b.last = now
}

// evict drops the addresses whose buckets are full again (they owe
// nothing); if none is, the whole table, which only gives every address
// its burst back: spoofed sources cannot grow it without bound.
func (r *refusals) evict() {
	for ip, b := range r.addr {
		r.refill(b)
		if b.tokens >= r.burst {
			delete(r.addr, ip)
		}
	}
	if len(r.addr) >= r.max {
		clear(r.addr)
	}
}
