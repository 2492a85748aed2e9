// Package lease is the DHCP lease table, below both the DHCP server (which
// offers and binds) and the core (which checks that a token comes from the
// address a machine holds). It is built first and handed to both: neither
// reaches into the other for it.
package lease

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// ErrTaken means another client holds the address.
var ErrTaken = errors.New("address is held by another client")

// Lease is one address held by one MAC; its states are model.Lease*.
type Lease = model.Lease

// Table is the lease table: in memory for lookups on every packet, and
// durable in the state for bound and declined addresses. Offers live only
// in memory (they last a minute). With a bbolt file the running server is
// the only writer (it holds its lock), so memory is authoritative and the
// file its durable copy, written with group commit (store.Batch). With a
// shared store (etcd) other servers bind too: every bind checks, in its
// transaction, that the store holds no live lease of another client on
// the address, and the table learns other servers' leases from the
// store's watch.
//
// A MAC has at most one bound lease and at most one offer, indexed apart:
// a machine that holds a pool address and is offered its reservation keeps
// the pool address until the new one is bound, and then loses it.
type Table struct {
	st  *state.DB
	now func() time.Time

	mu     sync.Mutex
	byIP   map[netip.Addr]*Lease
	bound  map[string]netip.Addr // mac -> its bound lease (the durable idx_lease_mac)
	offers map[string]netip.Addr // mac -> its offer (memory only)
	cursor map[netip.Addr]uint32 // next pool offset to try, by pool start
	// deferred: reservations bound while a shared store was unavailable,
	// to be written when it is back (by address).
	deferred map[netip.Addr]string
	// Changes of this server being committed, by address and MAC: the
	// watch leaves them alone until they land.
	pendingIP  map[netip.Addr]int
	pendingMAC map[string]int
}

// Open loads the lease table from st.
func Open(st *state.DB, now func() time.Time) (*Table, error) {
	if now == nil {
		now = time.Now
	}
	l := &Table{st: st, now: now, byIP: map[netip.Addr]*Lease{}, bound: map[string]netip.Addr{},
		offers: map[string]netip.Addr{}, cursor: map[netip.Addr]uint32{}, deferred: map[netip.Addr]string{},
		pendingIP: map[netip.Addr]int{}, pendingMAC: map[string]int{}}
	err := st.View(func(tx state.Tx) error {
		if err := tx.Leases(func(le Lease) error {
			l.byIP[le.IP] = &le
			return nil
		}); err != nil {
			return err
		}
		return tx.BoundLeases(func(mac string, ip netip.Addr) error {
			l.bound[mac] = ip
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	st.WatchLeases(func(ip netip.Addr, _ Lease, _ bool) { l.learn(ip) })
	// Index entries whose address went to another client since (an
	// expired lease taken over) are dropped, here and in the file.
	var stale []string
	for mac, ip := range l.bound {
		if le := l.byIP[ip]; le == nil || le.MAC != mac || le.State != model.LeaseBound {
			delete(l.bound, mac)
			stale = append(stale, mac)
		}
	}
	if len(stale) > 0 {
		// Best effort: memory is right either way, and the next load retries.
		_ = st.Update(func(tx state.Tx) error {
			for _, mac := range stale {
				if err := tx.DeleteBoundLease(mac); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return l, nil
}

// learn brings ip's entry up to what the shared store holds now: the
// watch calls it for every lease any server changed. It reads the store's
// current copy rather than the change itself, so a late echo of an older
// write never undoes a newer one; addresses and MACs with a change of
// this server's in flight are left to that change (its transaction checks
// the store). An offer held here gives way to a lease bound elsewhere.
func (l *Table) learn(ip netip.Addr) {
	var le Lease
	var ok, indexed bool
	_ = l.st.View(func(tx state.Tx) error {
		le, ok, _ = tx.Lease(ip)
		if ok && le.MAC != "" {
			at, has := tx.BoundLease(le.MAC)
			indexed = has && at == ip
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pendingIP[ip] > 0 || (ok && l.pendingMAC[le.MAC] > 0) {
		return
	}
	cur := l.byIP[ip]
	if cur != nil && cur.State == model.LeaseOffered && (!ok || le.MAC == cur.MAC || !live(&le, l.now())) {
		return // our offer stands until its REQUEST
	}
	if cur != nil && cur.MAC != "" && (!ok || le.MAC != cur.MAC) {
		if l.bound[cur.MAC] == ip {
			delete(l.bound, cur.MAC)
		}
		if l.offers[cur.MAC] == ip {
			delete(l.offers, cur.MAC)
		}
	}
	if !ok {
		delete(l.byIP, ip)
		return
	}
	l.byIP[ip] = &le
	if le.State == model.LeaseBound && indexed {
		l.bound[le.MAC] = ip
	}
}

// live: the lease still holds its address at t.
func live(le *Lease, t time.Time) bool { return le != nil && t.Before(le.Expiry) }

// ForMAC is mac's live offer if it has one (that is the
// address its next REQUEST names), else its bound lease (even expired, so a
// returning client gets its old address back).
func (l *Table) ForMAC(mac string) (Lease, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip, ok := l.offers[mac]; ok {
		le := l.byIP[ip]
		if le != nil && le.MAC == mac && le.State == model.LeaseOffered && live(le, now) {
			return *le, true
		}
		delete(l.offers, mac) // lapsed, or its address went to another client
	}
	if ip, ok := l.bound[mac]; ok {
		if le := l.byIP[ip]; le != nil && le.MAC == mac && le.State == model.LeaseBound {
			return *le, true
		}
	}
	return Lease{}, false
}

// Bound returns mac's unexpired bound lease: what other servers (HTTP)
// check a client's source address against. An offer of another address
// (a move to a reservation under way) does not hide it.
func (l *Table) Bound(mac string) (Lease, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ip, ok := l.bound[mac]
	if !ok {
		return Lease{}, false
	}
	le := l.byIP[ip]
	if le == nil || le.MAC != mac || le.State != model.LeaseBound || !live(le, now) {
		return Lease{}, false
	}
	return *le, true
}

// LeasedIP is the address mac holds now. A nil table (DHCP off) leases
// nothing, so the boot chain can hold one either way.
func (l *Table) LeasedIP(mac string) (netip.Addr, bool) {
	if l == nil {
		return netip.Addr{}, false
	}
	le, ok := l.Bound(mac)
	return le.IP, ok
}

// LeasedMAC is who holds ip now (nobody, in a nil table).
func (l *Table) LeasedMAC(ip netip.Addr) (string, bool) {
	if l == nil {
		return "", false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byIP[ip]
	if le == nil || le.State != model.LeaseBound || !live(le, now) {
		return "", false
	}
	return le.MAC, true
}

// OwnerOf returns who holds ip now: a MAC, "declined", or "" if free.
func (l *Table) OwnerOf(ip netip.Addr) string {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ownerLocked(ip, now)
}

func (l *Table) ownerLocked(ip netip.Addr, now time.Time) string {
	le := l.byIP[ip]
	if !live(le, now) {
		return ""
	}
	if le.State == model.LeaseDeclined {
		return model.LeaseDeclined
	}
	return le.MAC
}

// Candidate is the next free address of pool for mac, skipping addresses
// reserved for machines. It moves an allocation cursor (a hint, not state)
// so that concurrent DISCOVERs from different clients get different
// addresses; the DHCP server asks it before deciding, so that the decision
// itself stays pure.
func (l *Table) Candidate(mac string, p Pool) (netip.Addr, bool) {
	size := uint32(p.Size())
	if size == 0 {
		return netip.Addr{}, false
	}
	if !l.st.Available() {
		// No new pool address can be made durable (nor checked against
		// other servers' leases) until the store is back.
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
func (l *Table) reserved(ip netip.Addr) bool { return l.reservedFor(ip) != "" }

// Offer holds ip for mac until the REQUEST (in memory only: an offer
// lasts a minute). It fails with ErrTaken when another client holds ip.
func (l *Table) Offer(mac string, ip netip.Addr, until time.Time) error {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if o := l.ownerLocked(ip, now); o != "" && o != mac {
		return fmt.Errorf("offer %s to %s: %w (%s)", ip, mac, ErrTaken, o)
	}
	j := newJournal()
	l.dropOfferLocked(j, mac, ip)
	if le := l.byIP[ip]; le != nil && le.MAC == mac && le.State == model.LeaseBound {
		return nil // its own bound lease: keep it bound
	}
	l.forgetOtherLocked(j, mac, ip)
	l.setIPLocked(j, ip, &Lease{IP: ip, MAC: mac, Expiry: until, State: model.LeaseOffered})
	setMACLocked(l.offers, j.offers, mac, ip)
	return nil
}

// dropOfferLocked forgets the offer mac holds on an address other than keep.
func (l *Table) dropOfferLocked(j *journal, mac string, keep netip.Addr) {
	old, ok := l.offers[mac]
	if !ok || old == keep {
		return
	}
	setMACLocked(l.offers, j.offers, mac, netip.Addr{})
	if le := l.byIP[old]; le != nil && le.MAC == mac && le.State == model.LeaseOffered {
		l.setIPLocked(j, old, nil)
	}
}

// forgetOtherLocked drops the index entries of another client whose lapsed
// offer or expired lease on ip is about to be replaced, so that the indexes
// do not keep every MAC ever seen.
func (l *Table) forgetOtherLocked(j *journal, mac string, ip netip.Addr) {
	le := l.byIP[ip]
	if le == nil || le.MAC == "" || le.MAC == mac {
		return
	}
	if l.offers[le.MAC] == ip {
		setMACLocked(l.offers, j.offers, le.MAC, netip.Addr{})
	}
	if l.bound[le.MAC] == ip {
		setMACLocked(l.bound, j.bound, le.MAC, netip.Addr{})
	}
}

// Bind binds ip to mac until until, and returns only once the lease is
// durable, so that an ACK is never sent for a lease a crash could lose.
func (l *Table) Bind(mac string, ip netip.Addr, until time.Time, host string) error {
	now := l.now()
	l.mu.Lock()
	if o := l.ownerLocked(ip, now); o != "" && o != mac {
		l.mu.Unlock()
		return fmt.Errorf("bind %s to %s: %w (%s)", ip, mac, ErrTaken, o)
	}
	j := newJournal()
	// An expired lease (or lapsed offer) of another client: it loses it.
	l.forgetOtherLocked(j, mac, ip)
	// Its offer is now bound (or was elsewhere and is dropped).
	l.dropOfferLocked(j, mac, ip)
	setMACLocked(l.offers, j.offers, mac, netip.Addr{})
	if old, ok := l.bound[mac]; ok && old != ip {
		// The client moved (to its reservation, say): its old address is
		// free again.
		if le := l.byIP[old]; le != nil && le.MAC == mac {
			l.setIPLocked(j, old, nil)
		}
	}
	l.setIPLocked(j, ip, &Lease{IP: ip, MAC: mac, Expiry: until, State: model.LeaseBound, Hostname: host})
	setMACLocked(l.bound, j.bound, mac, ip)
	l.pendingLocked(j)
	l.mu.Unlock()
	// A shared store without quorum: mac's own reservation is answered
	// from what this server holds (no other client can be given it), and
	// written when the store is back.
	reservation := l.reservedFor(ip) == mac
	if !l.st.Available() && reservation {
		l.deferBind(j, ip, mac)
		return nil
	}
	err := l.commit(j)
	if err != nil && reservation && errors.Is(err, state.ErrUnavailable) {
		// The store went away during this commit (undone in memory):
		// bind it again, deferred.
		l.mu.Lock()
		if o := l.ownerLocked(ip, now); o == "" || o == mac {
			j2 := newJournal()
			l.setIPLocked(j2, ip, &Lease{IP: ip, MAC: mac, Expiry: until, State: model.LeaseBound, Hostname: host})
			setMACLocked(l.bound, j2.bound, mac, ip)
			l.deferred[ip] = mac
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
	}
	return err
}

// deferBind keeps j's bind of ip in memory, to be written once the store
// is back.
func (l *Table) deferBind(j *journal, ip netip.Addr, mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deferred[ip] = mac
	l.donePendingLocked(j)
}

// Deferred is how many reservations bound during a store outage wait to
// be written.
func (l *Table) Deferred() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.deferred)
}

// FlushDeferred writes the reservations bound while the store was
// unavailable, once it is back; it returns how many it wrote.
func (l *Table) FlushDeferred() (int, error) {
	l.mu.Lock()
	if len(l.deferred) == 0 || !l.st.Available() {
		l.mu.Unlock()
		return 0, nil
	}
	ips := make([]netip.Addr, 0, len(l.deferred))
	macs := make([]string, 0, len(l.deferred))
	for ip, mac := range l.deferred {
		ips, macs = append(ips, ip), append(macs, mac)
	}
	l.mu.Unlock()
	if err := l.persist(ips, macs); err != nil {
		return 0, err
	}
	l.mu.Lock()
	for _, ip := range ips {
		delete(l.deferred, ip)
	}
	l.mu.Unlock()
	return len(ips), nil
}

// reservedFor is the MAC whose machine record reserves ip ("": none).
func (l *Table) reservedFor(ip netip.Addr) string {
	var mac string
	_ = l.st.View(func(tx state.Tx) error {
		mac = tx.MachineByIP(ip.String())
		return nil
	})
	return mac
}

// Withdraw drops mac's offer of ip: the client took another server's.
func (l *Table) Withdraw(mac string, ip netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.offers[mac] != ip {
		return nil
	}
	l.dropOfferLocked(newJournal(), mac, netip.Addr{})
	return nil
}

// Release frees ip, which mac holds.
func (l *Table) Release(mac string, ip netip.Addr) error {
	l.mu.Lock()
	le := l.byIP[ip]
	if le == nil || le.MAC != mac {
		l.mu.Unlock()
		return fmt.Errorf("release %s by %s: it does not hold it", ip, mac)
	}
	j := newJournal()
	l.setIPLocked(j, ip, nil)
	if l.bound[mac] == ip {
		setMACLocked(l.bound, j.bound, mac, netip.Addr{})
	}
	if l.offers[mac] == ip {
		setMACLocked(l.offers, j.offers, mac, netip.Addr{})
	}
	l.pendingLocked(j)
	l.mu.Unlock()
	return l.commit(j)
}

// Decline marks ip, which mac found in use, bad until until.
func (l *Table) Decline(mac string, ip netip.Addr, until time.Time) error {
	l.mu.Lock()
	le := l.byIP[ip]
	if le == nil || le.MAC != mac {
		l.mu.Unlock()
		return fmt.Errorf("decline %s by %s: it does not hold it", ip, mac)
	}
	j := newJournal()
	l.setIPLocked(j, ip, &Lease{IP: ip, Expiry: until, State: model.LeaseDeclined})
	if l.bound[mac] == ip {
		setMACLocked(l.bound, j.bound, mac, netip.Addr{})
	}
	if l.offers[mac] == ip {
		setMACLocked(l.offers, j.offers, mac, netip.Addr{})
	}
	l.pendingLocked(j)
	l.mu.Unlock()
	return l.commit(j)
}

// journal records the entries one change touched, before and after, so
// that a change whose write fails can be undone in memory: memory must
// never say "bound" for a lease the file does not hold.
type journal struct {
	ips    map[netip.Addr]*ipChange
	bound  map[string]*macChange
	offers map[string]*macChange
}

type ipChange struct{ before, after *Lease }

// macChange: an invalid address is "no entry".
type macChange struct{ before, after netip.Addr }

func newJournal() *journal {
	return &journal{ips: map[netip.Addr]*ipChange{}, bound: map[string]*macChange{}, offers: map[string]*macChange{}}
}

// setIPLocked sets (nil: deletes) byIP[ip], noting the change in j.
func (l *Table) setIPLocked(j *journal, ip netip.Addr, le *Lease) {
	c := j.ips[ip]
	if c == nil {
		c = &ipChange{before: l.byIP[ip]}
		j.ips[ip] = c
	}
	c.after = le
	if le == nil {
		delete(l.byIP, ip)
	} else {
		l.byIP[ip] = le
	}
}

// setMACLocked sets (invalid ip: deletes) m[mac], noting the change in cs.
func setMACLocked(m map[string]netip.Addr, cs map[string]*macChange, mac string, ip netip.Addr) {
	c := cs[mac]
	if c == nil {
		c = &macChange{before: m[mac]}
		cs[mac] = c
	}
	c.after = ip
	if ip.IsValid() {
		m[mac] = ip
	} else {
		delete(m, mac)
	}
}

// pendingLocked marks j's addresses and MACs as being committed, before
// the table's lock is let go, so that the watch cannot overwrite them
// between the change in memory and its transaction.
func (l *Table) pendingLocked(j *journal) {
	for ip := range j.ips {
		l.pendingIP[ip]++
	}
	for mac := range j.bound {
		l.pendingMAC[mac]++
	}
}

// donePendingLocked ends what pendingLocked marked.
func (l *Table) donePendingLocked(j *journal) {
	for ip := range j.ips {
		if l.pendingIP[ip]--; l.pendingIP[ip] <= 0 {
			delete(l.pendingIP, ip)
		}
	}
	for mac := range j.bound {
		if l.pendingMAC[mac]--; l.pendingMAC[mac] <= 0 {
			delete(l.pendingMAC, mac)
		}
	}
}

// commit makes j's change durable, or undoes it in memory if it cannot be
// written. Entries changed again since (by a concurrent exchange) are left
// as they are.
func (l *Table) commit(j *journal) error {
	ips := make([]netip.Addr, 0, len(j.ips))
	for ip := range j.ips {
		ips = append(ips, ip)
	}
	macs := make([]string, 0, len(j.bound))
	for mac := range j.bound {
		macs = append(macs, mac)
	}
	err := l.persist(ips, macs)
	defer func() {
		var te *takenError
		if errors.As(err, &te) {
			l.learn(te.ip) // what the other server holds, now that ours is off
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.donePendingLocked(j)
	if err == nil {
		return nil
	}
	for ip, c := range j.ips {
		if l.byIP[ip] == c.after {
			if c.before == nil {
				delete(l.byIP, ip)
			} else {
				l.byIP[ip] = c.before
			}
		}
	}
	undo := func(m map[string]netip.Addr, cs map[string]*macChange) {
		for mac, c := range cs {
			if m[mac] == c.after {
				if c.before.IsValid() {
					m[mac] = c.before
				} else {
					delete(m, mac)
				}
			}
		}
	}
	undo(l.bound, j.bound)
	undo(l.offers, j.offers)
	return err
}

// persist writes the current in-memory state of ips and macs. It reads
// memory inside the transaction, so whichever commit lands last writes the
// latest state, and a Batch retry is harmless.
func (l *Table) persist(ips []netip.Addr, macs []string) error {
	err := l.st.Batch(func(tx state.Tx) error {
		for _, ip := range ips {
			l.mu.Lock()
			var le Lease
			le0 := l.byIP[ip]
			keep := le0 != nil && le0.State != model.LeaseOffered
			if keep {
				le = *le0
			}
			l.mu.Unlock()
			if !keep {
				// Another server may hold ip now (it lapsed here): its
				// lease is not ours to drop.
				cur, ok, err := tx.Lease(ip)
				if err != nil {
					return err
				}
				if ok && cur.MAC != "" && live(&cur, l.now()) && !containsMAC(macs, cur.MAC) {
					continue
				}
				if err := tx.DeleteLease(ip); err != nil {
					return err
				}
				continue
			}
			if le.State == model.LeaseBound {
				// Another server may have bound ip since this one last
				// heard: the store, not memory, decides.
				cur, ok, err := tx.Lease(ip)
				if err != nil {
					return err
				}
				if ok && cur.MAC != le.MAC && cur.State != model.LeaseOffered && live(&cur, l.now()) {
					return &takenError{ip: ip, by: cur}
				}
			}
			if err := tx.PutLease(le); err != nil {
				return err
			}
		}
		for _, mac := range macs {
			l.mu.Lock()
			ip, ok := l.bound[mac]
			le := l.byIP[ip]
			ok = ok && le != nil && le.MAC == mac && le.State == model.LeaseBound
			l.mu.Unlock()
			if !ok {
				if err := tx.DeleteBoundLease(mac); err != nil {
					return err
				}
				continue
			}
			// One address per MAC: a lease it holds elsewhere in the
			// store (bound through another server) goes.
			if prev, had := tx.BoundLease(mac); had && prev != ip && !contains(ips, prev) {
				if pl, ok, err := tx.Lease(prev); err != nil {
					return err
				} else if ok && pl.MAC == mac {
					if err := tx.DeleteLease(prev); err != nil {
						return err
					}
				}
			}
			if err := tx.PutBoundLease(mac, ip); err != nil {
				return err
			}
		}
		return nil
	})
	var te *takenError
	if errors.As(err, &te) {
		return fmt.Errorf("bind %s: %w (%s, through another server): %w", te.ip, ErrTaken, te.by.MAC, te)
	}
	if err != nil {
		return fmt.Errorf("store leases: %w", err)
	}
	return nil
}

type takenError struct {
	ip netip.Addr
	by Lease
}

func (e *takenError) Error() string { return fmt.Sprintf("%s is held by %s", e.ip, e.by.MAC) }

func containsMAC(macs []string, mac string) bool {
	for _, m := range macs {
		if m == mac {
			return true
		}
	}
	return false
}

func contains(ips []netip.Addr, ip netip.Addr) bool {
	for _, a := range ips {
		if a == ip {
			return true
		}
	}
	return false
}

// All returns a copy of every lease, for listings.
func (l *Table) All() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Lease, 0, len(l.byIP))
	for _, le := range l.byIP {
		out = append(out, *le)
	}
	return out
}

// Pool is an inclusive range of IPv4 addresses.
type Pool struct{ Start, End netip.Addr }

// Valid reports whether the range holds at least one address.
func (r Pool) Valid() bool {
	return r.Start.Is4() && r.End.Is4() && r.Start.Compare(r.End) <= 0
}

// Contains reports whether a lies in the range.
func (r Pool) Contains(a netip.Addr) bool {
	return r.Valid() && a.Is4() && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// Size is the number of addresses in the range.
func (r Pool) Size() int {
	if !r.Valid() {
		return 0
	}
	return int(u32(r.End)-u32(r.Start)) + 1
}

func (r Pool) String() string { return r.Start.String() + "-" + r.End.String() }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Stats is what the table holds, for metrics and checks: leases by state
// (offered, bound, declined, counting expired ones still kept) and the
// entries of its two MAC indexes.
type Stats struct {
	ByState                map[string]int
	OfferIndex, BoundIndex int
}

// Stats counts what the table holds now.
func (l *Table) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{ByState: map[string]int{}, OfferIndex: len(l.offers), BoundIndex: len(l.bound)}
	for _, le := range l.byIP {
		st.ByState[le.State]++
	}
	return st
}
