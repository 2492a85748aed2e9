// Package inventory is what bootsrv provisions: the one cluster, its
// profiles and its machines, with every write checked (pkg/model's rules,
// then uniqueness against the state in the same transaction) and made in
// one transaction, and the catalog of imported release binaries. Events
// it records go through the journal (pkg/journey).
package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Inventory is the cluster, profiles and machines over the state.
type Inventory struct {
	st  *state.DB
	now func() time.Time
	j   *journey.Journal
	// AssetsDir is the assets dir the server serves (the release
	// catalog's files live there); "" for the CLI, which names one.
	AssetsDir string

	importMu sync.Mutex // serializes release imports

	discoveredIndexed bool // ExpireDiscovered has indexed old records

	countsMu sync.Mutex
	counts   map[string]float64
	countsAt time.Time
}

// New returns the inventory over st, recording through j.
func New(st *state.DB, j *journey.Journal, now func() time.Time) *Inventory {
	return &Inventory{st: st, now: now, j: j}
}

// ErrNoCluster is the answer to anything that needs the cluster before
// there is one.
var ErrNoCluster = &fault.Error{Kind: fault.KindNotFound, Msg: "no cluster yet: create it with `bootsrv cluster init --name NAME --api-server IP`"}

// ClusterInit creates the cluster. It refuses to replace an existing one.
func (s *Inventory) ClusterInit(_ context.Context, c model.Cluster) (model.Cluster, error) {
	c, err := model.NormalizeCluster(c)
	if err != nil {
		return c, err
	}
	c.CreatedAt = s.now()
	// Keys are made before the transaction: RSA keys take a while, and
	// bbolt has one writer.
	cp, err := nodecerts.NewPKI(c, c.CreatedAt)
	if err != nil {
		return c, err
	}
	err = s.st.Update(func(tx state.Tx) error {
		if o, exists, _ := tx.Cluster(); exists {
			return fault.Conflictf("cluster %q already exists; bootsrv provisions one cluster per data dir (use another --data-dir for another cluster)", o.Name)
		}
		if err := tx.PutPKI(cp); err != nil {
			return err
		}
		return tx.PutCluster(c)
	})
	return c, err
}

// Cluster returns the cluster, or a not-found error that says how to make one.
func (s *Inventory) Cluster(_ context.Context) (model.Cluster, error) {
	var c model.Cluster
	err := s.st.View(func(tx state.Tx) error { return GetCluster(tx, &c) })
	return c, err
}

// GetCluster reads the cluster in tx, or says how to make one.
func GetCluster(tx state.Tx, c *model.Cluster) error {
	got, ok, err := tx.Cluster()
	if err == nil && !ok {
		err = ErrNoCluster
	}
	*c = got
	return err
}

// AddProfiles stores profiles, all or none. A name already stored is a
// conflict unless replace is set.
func (s *Inventory) AddProfiles(_ context.Context, ps []model.Profile, replace bool) ([]model.Profile, error) {
	if len(ps) == 0 {
		return nil, fault.Invalidf("no profiles given")
	}
	seen := map[string]string{}
	for i := range ps {
		p, err := model.NormalizeProfile(ps[i])
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[p.Name]; dup {
			return nil, fault.At(p.Source, fault.Invalidf("profile %s is given twice (first at %s)", p.Name, prev))
		}
		seen[p.Name] = p.Source
		ps[i] = p
	}
	err := s.st.Update(func(tx state.Tx) error {
		for _, p := range ps {
			if !replace && tx.ProfileRaw(p.Name) != nil {
				return fault.At(p.Source, fault.Conflictf("profile %s already exists: remove it first, or use --replace", p.Name))
			}
			if err := tx.PutProfile(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range ps {
		ps[i].Source = ""
	}
	return ps, nil
}

// Profiles lists every profile by name.
func (s *Inventory) Profiles(_ context.Context) ([]model.Profile, error) {
	var out []model.Profile
	err := s.st.View(func(tx state.Tx) error {
		return tx.Profiles(func(p model.Profile) error {
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Profile returns one profile.
func (s *Inventory) Profile(_ context.Context, name string) (model.Profile, error) {
	var p model.Profile
	err := s.st.View(func(tx state.Tx) error { return GetProfile(tx, name, &p) })
	return p, err
}

// GetProfile reads a profile in tx, or says how to list and add them.
func GetProfile(tx state.Tx, name string, p *model.Profile) error {
	got, ok, err := tx.Profile(name)
	if err == nil && !ok {
		err = fault.NotFoundf("profile %q does not exist: list them with `bootsrv profile list`, add one with `bootsrv profile add`", name)
	}
	*p = got
	return err
}

// RemoveProfile deletes a profile no machine uses.
func (s *Inventory) RemoveProfile(_ context.Context, name string) error {
	return s.st.Update(func(tx state.Tx) error {
		var p model.Profile
		if err := GetProfile(tx, name, &p); err != nil {
			return err
		}
		var users []string
		err := tx.MachinesOfProfile(name, func(mac string) error {
			users = append(users, mac)
			if len(users) == 3 {
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			more := ""
			if len(users) == 3 {
				more = " and maybe more"
			}
			return fault.Conflictf("profile %s is in use by machine(s) %s%s: remove them first (bootsrv machine rm MAC)", name, strings.Join(users, ", "), more)
		}
		return tx.DeleteProfile(name)
	})
}

// AddMachines stores machines, all or none: a whole rack in one
// transaction. Each is checked against the cluster subnet, the profiles,
// every stored machine and every other machine of the batch.
func (s *Inventory) AddMachines(_ context.Context, ms []model.Machine) ([]model.Machine, error) {
	if len(ms) == 0 {
		return nil, fault.Invalidf("no machines given")
	}
	now := s.now()
	err := s.st.Update(func(tx state.Tx) error {
		var c model.Cluster
		if err := GetCluster(tx, &c); err != nil {
			return err
		}
		subnet, err := netip.ParsePrefix(c.Network.Subnet)
		if err != nil {
			return fmt.Errorf("stored cluster subnet %q: %w", c.Network.Subnet, err)
		}
		profileOK := map[string]bool{}
		batch := map[string]string{} // "mac:…", "ip:…", "host:…" -> source
		for i := range ms {
			m, err := model.NormalizeMachine(ms[i], subnet)
			if err != nil {
				return err
			}
			if err := reservable(tx, c, m, now); err != nil {
				return err
			}
			var adopted model.Machine
			if !profileOK[m.Profile] {
				if tx.ProfileRaw(m.Profile) == nil {
					return fault.At(m.Source, fault.NotFoundf("field profile: profile %q does not exist: add it with `bootsrv profile add %s --role ...` first", m.Profile, m.Profile))
				}
				profileOK[m.Profile] = true
			}
			for _, key := range []struct {
				kind, val string
				owner     func(string) string
			}{
				{"mac", m.MAC, nil}, {"ip", m.IP, tx.MachineByIP}, {"hostname", m.Hostname, tx.MachineByHostname},
			} {
				if prev, dup := batch[key.kind+":"+key.val]; dup {
					return fault.At(m.Source, fault.Field(fault.KindInvalid, key.kind, "field %s: %s is given twice (first at %s)", key.kind, key.val, orHere(prev)))
				}
				batch[key.kind+":"+key.val] = m.Source
				if key.owner != nil {
					if owner := key.owner(key.val); owner != "" {
						return fault.At(m.Source, fault.Field(fault.KindConflict, key.kind, "field %s: %s is already used by machine %s", key.kind, key.val, owner))
					}
					continue
				}
				old, found, err := tx.Machine(m.MAC)
				if err != nil {
					return err
				}
				if !found {
					continue
				}
				adopted = old
				if adopted.Profile != "" {
					return fault.At(m.Source, fault.Conflictf("field mac: machine %s already exists: remove it first with `bootsrv machine rm %s`", m.MAC, m.MAC))
				}
			}
			// Runtime fields are bootsrv's, never the caller's.
			m.State, m.CreatedAt, m.UpdatedAt, m.StateAt = model.StateRegistered, now, now, now
			m.EventFirst, m.EventNext, m.LastEvent, m.Reprovision = 0, 0, "", false
			m.Arch, m.UUID, m.VendorClass = "", "", ""
			// A MAC removed and added again continues its generations, so
			// tokens of an earlier install stay dead.
			m.Generation = tx.NextGeneration(m.MAC)
			if adopted.MAC != "" {
				// A machine DHCP discovered gets its profile: keep what its
				// firmware said and its history.
				m.CreatedAt, m.EventFirst, m.EventNext = adopted.CreatedAt, adopted.EventFirst, adopted.EventNext
				m.Arch, m.UUID, m.VendorClass = adopted.Arch, adopted.UUID, adopted.VendorClass
			}
			if err := journey.Append(tx, &m, model.Event{Time: now, Type: model.StateRegistered, Detail: "profile " + m.Profile}); err != nil {
				return err
			}
			m.Source = ""
			if err := tx.PutMachine(m); err != nil {
				return err
			}
			ms[i] = m
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// reservable refuses a reservation that DHCP could not honour: the
// network's gateway (handed out, it would take the network off the air),
// or an address another MAC holds a live lease on (it renews it while it
// is up, and the reserved machine could never boot). Refusing beats taking
// the lease away: the holder would keep using the address until its next
// renewal, beside the machine it was reserved for.
func reservable(tx state.Tx, c model.Cluster, m model.Machine, now time.Time) error {
	if m.IP == c.Network.Gateway {
		return fault.At(m.Source, fault.Field(fault.KindConflict, "ip", "field ip: %s is the network's gateway (cluster network.gateway): give machine %s another address", m.IP, m.MAC))
	}
	ip, err := netip.ParseAddr(m.IP)
	if err != nil {
		return err
	}
	le, ok, err := tx.Lease(ip)
	if err != nil {
		return err
	}
	if ok && le.MAC != "" && le.MAC != m.MAC && le.State == model.LeaseBound && le.Expiry.After(now) {
		return fault.At(m.Source, fault.Field(fault.KindConflict, "ip",
			"field ip: %s is leased to %s until %s (a DHCP pool lease it renews while it is up): give machine %s another address, or reserve it once %s has let it go",
			m.IP, le.MAC, le.Expiry.UTC().Format(time.RFC3339), m.MAC, le.MAC))
	}
	return nil
}

func orHere(src string) string {
	if src == "" {
		return "an earlier entry"
	}
	return src
}

// Machines lists every machine by MAC.
func (s *Inventory) Machines(_ context.Context) ([]model.Machine, error) {
	var out []model.Machine
	err := s.j.View(func(tx state.Tx) error {
		return tx.Machines(func(m model.Machine) error {
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Machine returns one machine by MAC, in any spelling.
func (s *Inventory) Machine(_ context.Context, mac string) (model.Machine, error) {
	var m model.Machine
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return m, err
	}
	err = s.j.View(func(tx state.Tx) error { return GetMachine(tx, n, &m) })
	return m, err
}

// Lookup is Machine without waiting for queued events: what a DHCP
// exchange reads on every packet. It may lag events recorded
// milliseconds ago, never a change made through the inventory.
func (s *Inventory) Lookup(_ context.Context, mac string) (model.Machine, error) {
	var m model.Machine
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return m, err
	}
	err = s.st.View(func(tx state.Tx) error { return GetMachine(tx, n, &m) })
	return m, err
}

// MachineByIP returns the machine whose reserved IP is ip.
func (s *Inventory) MachineByIP(_ context.Context, ip string) (model.Machine, error) {
	var m model.Machine
	err := s.st.View(func(tx state.Tx) error {
		mac := tx.MachineByIP(ip)
		if mac == "" {
			return fault.NotFoundf("no machine has IP %s", ip)
		}
		return GetMachine(tx, mac, &m)
	})
	return m, err
}

// GetMachine reads a machine by its normalized MAC in tx, or says how to
// list them.
func GetMachine(tx state.Tx, mac string, m *model.Machine) error {
	got, ok, err := tx.Machine(mac)
	if err == nil && !ok {
		err = fault.NotFoundf("machine %s does not exist: list them with `bootsrv machine list`", mac)
	}
	*m = got
	return err
}

// RemoveMachine deletes a machine, its index entries and its events.
func (s *Inventory) RemoveMachine(_ context.Context, mac string) error {
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	return s.st.Update(func(tx state.Tx) error {
		var m model.Machine
		if err := GetMachine(tx, n, &m); err != nil {
			return err
		}
		if err := tx.DeleteMachine(m.MAC); err != nil {
			return err
		}
		return tx.PutNextGeneration(m.MAC, m.Generation+1)
	})
}

// ExpireDiscovered removes the discovered machines (no profile) not seen
// for ttl, with their histories, and says how many: an unknown MAC that
// booted once, or a spoofed one, does not stay forever. It goes through
// the journal, so an event queued for one of them lands first (and keeps
// it). The first call also indexes discovered machines an older bootsrv
// wrote.
func (s *Inventory) ExpireDiscovered(_ context.Context, ttl time.Duration) (int, error) {
	cutoff := s.now().Add(-ttl)
	n := 0
	err := s.j.Do(func(tx state.Tx) error {
		n = 0
		if !s.discoveredIndexed {
			if _, err := tx.IndexDiscovered(); err != nil {
				return err
			}
		}
		var macs []string
		if err := tx.Discovered(func(mac string) error { macs = append(macs, mac); return nil }); err != nil {
			return err
		}
		for _, mac := range macs {
			m, ok, err := tx.Machine(mac)
			switch {
			case err != nil:
				return err
			case !ok:
				continue
			case m.Profile != "":
				if err := tx.Undiscover(mac); err != nil { // a stale entry
					return err
				}
			case m.UpdatedAt.Before(cutoff):
				if err := tx.DeleteMachine(mac); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err == nil {
		s.discoveredIndexed = true
	}
	return n, err
}

// MachineEvents returns a machine's kept history, oldest first.
func (s *Inventory) MachineEvents(_ context.Context, mac string) ([]model.Event, error) {
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	var out []model.Event
	err = s.j.View(func(tx state.Tx) error {
		var m model.Machine
		if err := GetMachine(tx, n, &m); err != nil {
			return err
		}
		return tx.Events(n, func(e model.Event) error {
			out = append(out, e)
			return nil
		})
	})
	// Events are stored in the order their writes commit; DHCP's and the
	// HTTP queue's writes can cross by a few milliseconds, so the history
	// is shown in the order things happened.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, err
}

// RecordEvent appends an event to a known machine's history and, when the
// event names a state, moves the machine to it, in order with every event
// recorded before it.
func (s *Inventory) RecordEvent(_ context.Context, mac string, e model.Event) error {
	mac, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	if err := s.j.Append(mac, e); errors.Is(err, journey.ErrUnknown) {
		return fault.NotFoundf("machine %s does not exist: list them with `bootsrv machine list`", mac)
	} else if err != nil {
		return err
	}
	return nil
}

// Observe records event e for the machine with this MAC together with what
// its firmware said. An unknown MAC is recorded as a discovered machine
// (no profile, no address) when discover is set, so an operator can see it
// and assign it; otherwise nothing is stored. The write is queued when the
// journal runs: the DHCP reply never waits for its event.
func (s *Inventory) Observe(_ context.Context, mac string, fw model.Firmware, e model.Event, discover bool) error {
	mac, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	s.j.Observe(mac, fw, e, discover)
	return nil
}

// HoldOffer records a DHCP OFFER the way Observe does, but holds it back
// for up to journey.HoldFor: an ACK of the same machine (one of ackTypes)
// within it carries the offer's time, address and count instead of adding
// a second event.
func (s *Inventory) HoldOffer(_ context.Context, mac string, fw model.Firmware, e model.Event, discover bool, ackTypes ...string) error {
	mac, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	s.j.Hold(mac, fw, e, discover, ackTypes...)
	return nil
}

// StateCounts counts machines by state, for the metrics page. The count
// scans every machine, so a scrape reuses one made in the last 10 s:
// anyone who can reach /metrics must not be able to make bootsrv scan the
// fleet at will.
func (s *Inventory) StateCounts() map[string]float64 {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	if s.counts != nil && s.now().Sub(s.countsAt) < 10*time.Second {
		return s.counts
	}
	s.counts, s.countsAt = s.countStates(), s.now()
	return s.counts
}

func (s *Inventory) countStates() map[string]float64 {
	var out map[string]float64
	_ = s.j.View(func(tx state.Tx) error {
		out = tx.CountByState()
		return nil
	})
	return out
}
