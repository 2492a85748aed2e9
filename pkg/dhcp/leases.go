package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/store"
)

// Buckets of the leases (see pkg/store): ip -> Lease, mac -> ip.
const (
	bucketLeases   = "leases"
	bucketLeaseMAC = "idx_lease_mac"
	bucketIPIndex  = "idx_ip" // ip -> mac of machines with a reserved address
)

// ErrTaken means another client holds the address.
var ErrTaken = errors.New("address is held by another client")

// Leases is the lease table: in memory for lookups on every packet, and
// durable in bbolt for bound and declined addresses. Offers live only in
// memory (they last a minute). A running server is the only writer of the
// state file (it holds its lock), so memory is authoritative and the file
// is its durable copy, written with group commit (store.Batch).
type Leases struct {
	st  store.Store
	now func() time.Time

	mu     sync.Mutex
	byIP   map[netip.Addr]*Lease
	byMAC  map[string]netip.Addr
	cursor map[netip.Addr]uint32 // next pool offset to try, by pool start
}

// OpenLeases loads the lease table from st.
func OpenLeases(st store.Store, now func() time.Time) (*Leases, error) {
	if now == nil {
		now = time.Now
	}
	l := &Leases{st: st, now: now, byIP: map[netip.Addr]*Lease{}, byMAC: map[string]netip.Addr{}, cursor: map[netip.Addr]uint32{}}
	err := st.View(func(tx store.Tx) error {
		if err := tx.Scan(bucketLeases, nil, func(k, v []byte) error {
			var le Lease
			if err := json.Unmarshal(v, &le); err != nil {
				return fmt.Errorf("lease %s: %w", k, err)
			}
			l.byIP[le.IP] = &le
			return nil
		}); err != nil {
			return err
		}
		return tx.Scan(bucketLeaseMAC, nil, func(k, v []byte) error {
			ip, err := netip.ParseAddr(string(v))
			if err != nil {
				return fmt.Errorf("lease index %s: %w", k, err)
			}
			l.byMAC[string(k)] = ip
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	return l, nil
}

// live: the lease still holds its address at t.
func (le *Lease) live(t time.Time) bool { return le != nil && t.Before(le.Expiry) }

// ForMAC implements LeaseView: mac's bound lease (even expired) or live offer.
func (l *Leases) ForMAC(mac string) (Lease, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ip, ok := l.byMAC[mac]
	if !ok {
		return Lease{}, false
	}
	le := l.byIP[ip]
	if le == nil || le.MAC != mac || (le.State == LeaseOffered && !le.live(now)) {
		return Lease{}, false
	}
	return *le, true
}

// Bound returns mac's unexpired bound lease: what other servers (HTTP)
// check a client's source address against.
func (l *Leases) Bound(mac string) (Lease, bool) {
	le, ok := l.ForMAC(mac)
	if !ok || le.State != LeaseBound || !le.live(l.now()) {
		return Lease{}, false
	}
	return le, true
}

// LeasedIP implements profiles.LeaseView: the address mac holds now.
func (l *Leases) LeasedIP(mac string) (netip.Addr, bool) {
	le, ok := l.Bound(mac)
	return le.IP, ok
}

// LeasedMAC implements profiles.LeaseView: who holds ip now.
func (l *Leases) LeasedMAC(ip netip.Addr) (string, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byIP[ip]
	if le == nil || le.State != LeaseBound || !le.live(now) {
		return "", false
	}
	return le.MAC, true
}

// OwnerOf implements LeaseView.
func (l *Leases) OwnerOf(ip netip.Addr) string {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ownerLocked(ip, now)
}

func (l *Leases) ownerLocked(ip netip.Addr, now time.Time) string {
	le := l.byIP[ip]
	if !le.live(now) {
		return ""
	}
	if le.State == LeaseDeclined {
		return LeaseDeclined
	}
	return le.MAC
}

// Candidate implements LeaseView: the next free address of sub's pool,
// skipping addresses reserved for machines. It moves an allocation cursor
// (a hint, not state) so that concurrent DISCOVERs from different clients
// get different addresses.
func (l *Leases) Candidate(mac string, sub *Subnet) (netip.Addr, bool) {
	p := sub.Pool
	size := uint32(p.Size())
	if size == 0 {
		return netip.Addr{}, false
	}
	now := l.now()
	base := u32(p.Start)
	for tried := uint32(0); tried < size; {
		var ip netip.Addr
		found := false
		l.mu.Lock()
		for ; tried < size; tried++ {
			off := l.cursor[p.Start] % size
			l.cursor[p.Start] = off + 1
			a := fromU32(base + off)
			if o := l.ownerLocked(a, now); o == "" || o == mac {
				ip, found = a, true
				tried++
				break
			}
		}
		l.mu.Unlock()
		if !found {
			break
		}
		if !l.reserved(ip) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// reserved reports whether a machine record owns ip.
func (l *Leases) reserved(ip netip.Addr) bool {
	var r bool
	_ = l.st.View(func(tx store.Tx) error {
		r = tx.Get(bucketIPIndex, []byte(ip.String())) != nil
		return nil
	})
	return r
}

// Apply carries out a decision's lease action for mac. A bind returns only
// once the lease is durable, so an ACK is never sent for a lease a crash
// could lose.
func (l *Leases) Apply(mac string, d Decision) error {
	switch d.Action {
	case ActNone:
		return nil
	case ActOffer:
		return l.offer(mac, d.IP, d.Expiry)
	case ActBind:
		return l.bind(mac, d.IP, d.Expiry, d.Hostname)
	case ActRelease:
		return l.release(mac, d.IP)
	case ActDecline:
		return l.decline(mac, d.IP, d.Expiry)
	}
	return fmt.Errorf("unknown lease action %d", d.Action)
}

func (l *Leases) offer(mac string, ip netip.Addr, until time.Time) error {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if o := l.ownerLocked(ip, now); o != "" && o != mac {
		return fmt.Errorf("offer %s to %s: %w (%s)", ip, mac, ErrTaken, o)
	}
	if le := l.byIP[ip]; le != nil && le.MAC == mac && le.State == LeaseBound {
		l.byMAC[mac] = ip // its own bound lease: keep it bound
		return nil
	}
	l.dropOfferLocked(mac, ip)
	l.byIP[ip] = &Lease{IP: ip, MAC: mac, Expiry: until, State: LeaseOffered}
	l.byMAC[mac] = ip
	return nil
}

// dropOfferLocked forgets an offer mac holds on another address.
func (l *Leases) dropOfferLocked(mac string, keep netip.Addr) {
	if old, ok := l.byMAC[mac]; ok && old != keep {
		if le := l.byIP[old]; le != nil && le.MAC == mac && le.State == LeaseOffered {
			delete(l.byIP, old)
		}
	}
}

func (l *Leases) bind(mac string, ip netip.Addr, until time.Time, host string) error {
	now := l.now()
	ips := []netip.Addr{ip}
	macs := []string{mac}
	l.mu.Lock()
	if o := l.ownerLocked(ip, now); o != "" && o != mac {
		l.mu.Unlock()
		return fmt.Errorf("bind %s to %s: %w (%s)", ip, mac, ErrTaken, o)
	}
	if le := l.byIP[ip]; le != nil && le.MAC != "" && le.MAC != mac {
		// An expired lease of another client: that client loses it.
		if l.byMAC[le.MAC] == ip {
			delete(l.byMAC, le.MAC)
		}
		macs = append(macs, le.MAC)
	}
	if old, ok := l.byMAC[mac]; ok && old != ip {
		// The client moved: its old address is free again.
		if le := l.byIP[old]; le != nil && le.MAC == mac {
			delete(l.byIP, old)
			ips = append(ips, old)
		}
	}
	l.byIP[ip] = &Lease{IP: ip, MAC: mac, Expiry: until, State: LeaseBound, Hostname: host}
	l.byMAC[mac] = ip
	l.mu.Unlock()
	return l.persist(ips, macs)
}

func (l *Leases) release(mac string, ip netip.Addr) error {
	l.mu.Lock()
	le := l.byIP[ip]
	if le == nil || le.MAC != mac {
		l.mu.Unlock()
		return fmt.Errorf("release %s by %s: it does not hold it", ip, mac)
	}
	delete(l.byIP, ip)
	if l.byMAC[mac] == ip {
		delete(l.byMAC, mac)
	}
	l.mu.Unlock()
	return l.persist([]netip.Addr{ip}, []string{mac})
}

func (l *Leases) decline(mac string, ip netip.Addr, until time.Time) error {
	l.mu.Lock()
	le := l.byIP[ip]
	if le == nil || le.MAC != mac {
		l.mu.Unlock()
		return fmt.Errorf("decline %s by %s: it does not hold it", ip, mac)
	}
	l.byIP[ip] = &Lease{IP: ip, Expiry: until, State: LeaseDeclined}
	if l.byMAC[mac] == ip {
		delete(l.byMAC, mac)
	}
	l.mu.Unlock()
	return l.persist([]netip.Addr{ip}, []string{mac})
}

// persist writes the current in-memory state of ips and macs. It reads
// memory inside the transaction, so whichever commit lands last writes the
// latest state, and a Batch retry is harmless.
func (l *Leases) persist(ips []netip.Addr, macs []string) error {
	err := l.st.Batch(func(tx store.Tx) error {
		for _, ip := range ips {
			k := []byte(ip.String())
			l.mu.Lock()
			var le Lease
			le0 := l.byIP[ip]
			keep := le0 != nil && le0.State != LeaseOffered
			if keep {
				le = *le0
			}
			l.mu.Unlock()
			if !keep {
				if err := tx.Delete(bucketLeases, k); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(le)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketLeases, k, v); err != nil {
				return err
			}
		}
		for _, mac := range macs {
			l.mu.Lock()
			ip, ok := l.byMAC[mac]
			le := l.byIP[ip]
			ok = ok && le != nil && le.MAC == mac && le.State == LeaseBound
			l.mu.Unlock()
			if !ok {
				if err := tx.Delete(bucketLeaseMAC, []byte(mac)); err != nil {
					return err
				}
				continue
			}
			if err := tx.Put(bucketLeaseMAC, []byte(mac), []byte(ip.String())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store leases: %w", err)
	}
	return nil
}

// All returns a copy of every lease, for listings.
func (l *Leases) All() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Lease, 0, len(l.byIP))
	for _, le := range l.byIP {
		out = append(out, *le)
	}
	return out
}
