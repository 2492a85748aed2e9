// Package profiles is the core behind every door (CLI, admin API, DHCP,
// TFTP, HTTP): the inventory use cases, the boot chain and the Ignition
// assembly over the state store. It is being split into packages with one
// job each (see docs/architecture.md).
package profiles

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/store"
)

// Service is the one core: every door (CLI, admin API, DHCP, TFTP, HTTP)
// calls these methods, and each change is one transaction.
type Service struct {
	st  store.Store
	now func() time.Time
	rec *recorder

	decoded  decodeCache
	boot     BootConfig
	leases   LeaseView
	keyMu    sync.Mutex
	tokenKey []byte

	importMu sync.Mutex // serializes release imports

	countsMu sync.Mutex
	counts   map[string]float64
	countsAt time.Time
}

// NewService returns the service over st.
func NewService(st store.Store) *Service {
	return &Service{st: st, now: func() time.Time { return time.Now().UTC() }}
}

// Store returns the state the service works on, for packages that keep
// their own buckets in the same file (leases, certificates).
func (s *Service) Store() store.Store { return s.st }

const clusterKey = "cluster"

// genKeyPrefix keys, in the meta bucket, the next install generation of a
// removed machine's MAC.
const genKeyPrefix = "gen/"

var errNoCluster = &fault.Error{Kind: fault.KindNotFound, Msg: "no cluster yet: create it with `bootsrv cluster init --name NAME --api-server IP`"}

// ClusterInit creates the cluster. It refuses to replace an existing one.
func (s *Service) ClusterInit(_ context.Context, c model.Cluster) (model.Cluster, error) {
	c, err := model.NormalizeCluster(c)
	if err != nil {
		return c, err
	}
	c.CreatedAt = s.now()
	// Keys are made before the transaction: RSA keys take a while, and
	// bbolt has one writer.
	cp, err := newClusterPKI(c, c.CreatedAt)
	if err != nil {
		return c, err
	}
	err = s.st.Update(func(tx store.Tx) error {
		if old := tx.Get("cluster", []byte(clusterKey)); old != nil {
			var o model.Cluster
			_ = json.Unmarshal(old, &o)
			return fault.Conflictf("cluster %q already exists; bootsrv provisions one cluster per data dir (use another --data-dir for another cluster)", o.Name)
		}
		if err := putJSON(tx, "cluster", pkiKey, cp); err != nil {
			return err
		}
		return putJSON(tx, "cluster", clusterKey, c)
	})
	return c, err
}

// Cluster returns the cluster, or a not-found error that says how to make one.
func (s *Service) Cluster(_ context.Context) (model.Cluster, error) {
	var c model.Cluster
	err := s.st.View(func(tx store.Tx) error { return getCluster(tx, &c) })
	return c, err
}

func getCluster(tx store.Tx, c *model.Cluster) error {
	v := tx.Get("cluster", []byte(clusterKey))
	if v == nil {
		return errNoCluster
	}
	return json.Unmarshal(v, c)
}

// AddProfiles stores profiles, all or none. A name already stored is a
// conflict unless replace is set.
func (s *Service) AddProfiles(_ context.Context, ps []model.Profile, replace bool) ([]model.Profile, error) {
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
	err := s.st.Update(func(tx store.Tx) error {
		for _, p := range ps {
			if !replace && tx.Get("profiles", []byte(p.Name)) != nil {
				return fault.At(p.Source, fault.Conflictf("profile %s already exists: remove it first, or use --replace", p.Name))
			}
			p.Source = ""
			if err := putJSON(tx, "profiles", p.Name, p); err != nil {
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
func (s *Service) Profiles(_ context.Context) ([]model.Profile, error) {
	var out []model.Profile
	err := s.st.View(func(tx store.Tx) error {
		return tx.Scan("profiles", nil, func(_, v []byte) error {
			var p model.Profile
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Profile returns one profile.
func (s *Service) Profile(_ context.Context, name string) (model.Profile, error) {
	var p model.Profile
	err := s.st.View(func(tx store.Tx) error { return getProfile(tx, name, &p) })
	return p, err
}

func getProfile(tx store.Tx, name string, p *model.Profile) error {
	v := tx.Get("profiles", []byte(name))
	if v == nil {
		return fault.NotFoundf("profile %q does not exist: list them with `bootsrv profile list`, add one with `bootsrv profile add`", name)
	}
	return json.Unmarshal(v, p)
}

// RemoveProfile deletes a profile no machine uses.
func (s *Service) RemoveProfile(_ context.Context, name string) error {
	return s.st.Update(func(tx store.Tx) error {
		var p model.Profile
		if err := getProfile(tx, name, &p); err != nil {
			return err
		}
		var users []string
		err := tx.Scan("idx_profile", []byte(name+"\x00"), func(k, _ []byte) error {
			users = append(users, string(k[len(name)+1:]))
			if len(users) == 3 {
				return store.ErrStop
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
		return tx.Delete("profiles", []byte(name))
	})
}

// AddMachines stores machines, all or none: a whole rack in one
// transaction. Each is checked against the cluster subnet, the profiles,
// every stored machine and every other machine of the batch.
func (s *Service) AddMachines(_ context.Context, ms []model.Machine) ([]model.Machine, error) {
	if len(ms) == 0 {
		return nil, fault.Invalidf("no machines given")
	}
	now := s.now()
	err := s.st.Update(func(tx store.Tx) error {
		var c model.Cluster
		if err := getCluster(tx, &c); err != nil {
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
			var adopted model.Machine
			if !profileOK[m.Profile] {
				if tx.Get("profiles", []byte(m.Profile)) == nil {
					return fault.At(m.Source, fault.NotFoundf("field profile: profile %q does not exist: add it with `bootsrv profile add %s --role ...` first", m.Profile, m.Profile))
				}
				profileOK[m.Profile] = true
			}
			for _, key := range []struct{ kind, val, bucket string }{
				{"mac", m.MAC, "machines"}, {"ip", m.IP, "idx_ip"}, {"hostname", m.Hostname, "idx_hostname"},
			} {
				if prev, dup := batch[key.kind+":"+key.val]; dup {
					return fault.At(m.Source, fault.Invalidf("field %s: %s is given twice (first at %s)", key.kind, key.val, orHere(prev)))
				}
				batch[key.kind+":"+key.val] = m.Source
				owner := tx.Get(key.bucket, []byte(key.val))
				if owner == nil {
					continue
				}
				if key.kind != "mac" {
					return fault.At(m.Source, fault.Conflictf("field %s: %s is already used by machine %s", key.kind, key.val, owner))
				}
				if err := json.Unmarshal(owner, &adopted); err != nil {
					return fmt.Errorf("decode machine %s: %w", m.MAC, err)
				}
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
			m.Generation = 0
			if v := tx.Get("meta", []byte(genKeyPrefix+m.MAC)); len(v) == 8 {
				m.Generation = binary.BigEndian.Uint64(v)
			}
			if adopted.MAC != "" {
				// A machine DHCP discovered gets its profile: keep what its
				// firmware said and its history.
				m.CreatedAt, m.EventFirst, m.EventNext = adopted.CreatedAt, adopted.EventFirst, adopted.EventNext
				m.Arch, m.UUID, m.VendorClass = adopted.Arch, adopted.UUID, adopted.VendorClass
			}
			if err := appendEvent(tx, &m, model.Event{Time: now, Type: model.StateRegistered, Detail: "profile " + m.Profile}); err != nil {
				return err
			}
			m.Source = ""
			if err := putMachine(tx, m, nil); err != nil {
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

func orHere(src string) string {
	if src == "" {
		return "an earlier entry"
	}
	return src
}

// putMachine writes m and keeps the index buckets in step with it; old is
// the stored record it replaces (nil for a new machine).
func putMachine(tx store.Tx, m model.Machine, old *model.Machine) error {
	if old != nil {
		for _, d := range []struct{ bucket, oldKey, newKey string }{
			{"idx_ip", old.IP, m.IP}, {"idx_hostname", old.Hostname, m.Hostname},
			{"idx_profile", old.Profile + "\x00" + old.MAC, m.Profile + "\x00" + m.MAC},
		} {
			if d.oldKey != d.newKey && d.oldKey != "" && d.oldKey != "\x00"+old.MAC {
				if err := tx.Delete(d.bucket, []byte(d.oldKey)); err != nil {
					return err
				}
			}
		}
	}
	if m.IP != "" {
		if err := tx.Put("idx_ip", []byte(m.IP), []byte(m.MAC)); err != nil {
			return err
		}
	}
	if m.Hostname != "" {
		if err := tx.Put("idx_hostname", []byte(m.Hostname), []byte(m.MAC)); err != nil {
			return err
		}
	}
	if m.Profile != "" {
		if err := tx.Put("idx_profile", []byte(m.Profile+"\x00"+m.MAC), nil); err != nil {
			return err
		}
	}
	return putJSON(tx, "machines", m.MAC, m)
}

// Machines lists every machine by MAC.
func (s *Service) Machines(_ context.Context) ([]model.Machine, error) {
	var out []model.Machine
	err := s.st.View(func(tx store.Tx) error {
		return tx.Scan("machines", nil, func(_, v []byte) error {
			var m model.Machine
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Machine returns one machine by MAC, in any spelling.
func (s *Service) Machine(_ context.Context, mac string) (model.Machine, error) {
	var m model.Machine
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return m, err
	}
	err = s.st.View(func(tx store.Tx) error { return getMachine(tx, n, &m) })
	return m, err
}

// MachineByIP returns the machine whose reserved IP is ip.
func (s *Service) MachineByIP(_ context.Context, ip string) (model.Machine, error) {
	var m model.Machine
	err := s.st.View(func(tx store.Tx) error {
		mac := tx.Get("idx_ip", []byte(ip))
		if mac == nil {
			return fault.NotFoundf("no machine has IP %s", ip)
		}
		return getMachine(tx, string(mac), &m)
	})
	return m, err
}

func getMachine(tx store.Tx, mac string, m *model.Machine) error {
	v := tx.Get("machines", []byte(mac))
	if v == nil {
		return fault.NotFoundf("machine %s does not exist: list them with `bootsrv machine list`", mac)
	}
	return json.Unmarshal(v, m)
}

// RemoveMachine deletes a machine, its index entries and its events.
func (s *Service) RemoveMachine(_ context.Context, mac string) error {
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	return s.st.Update(func(tx store.Tx) error {
		var m model.Machine
		if err := getMachine(tx, n, &m); err != nil {
			return err
		}
		for _, d := range []struct{ bucket, key string }{
			{"idx_ip", m.IP}, {"idx_hostname", m.Hostname}, {"idx_profile", m.Profile + "\x00" + m.MAC}, {"machines", m.MAC},
			{"certs", m.MAC}, {"rendered", m.MAC},
		} {
			if err := tx.Delete(d.bucket, []byte(d.key)); err != nil {
				return err
			}
		}
		var next [8]byte
		binary.BigEndian.PutUint64(next[:], m.Generation+1)
		if err := tx.Put("meta", []byte(genKeyPrefix+m.MAC), next[:]); err != nil {
			return err
		}
		var keys [][]byte
		if err := tx.Scan("events", []byte(m.MAC+"\x00"), func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete("events", k); err != nil {
				return err
			}
		}
		return nil
	})
}

// MachineEvents returns a machine's kept history, oldest first.
func (s *Service) MachineEvents(_ context.Context, mac string) ([]model.Event, error) {
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	var out []model.Event
	err = s.st.View(func(tx store.Tx) error {
		var m model.Machine
		if err := getMachine(tx, n, &m); err != nil {
			return err
		}
		return tx.Scan("events", []byte(n+"\x00"), func(_, v []byte) error {
			var e model.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
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

// deniedEvery is how often a refused request may be recorded per machine.
const deniedEvery = time.Minute

func eventKey(mac string, seq uint64) []byte {
	k := make([]byte, len(mac)+1+8)
	copy(k, mac)
	binary.BigEndian.PutUint64(k[len(mac)+1:], seq)
	return k
}

// appendEvent adds e to m's history in tx, dropping the oldest past
// MaxEvents, and moves m's state when e is a state. The caller writes m.
func appendEvent(tx store.Tx, m *model.Machine, e model.Event) error {
	if e.Type == "denied" && m.LastEvent == "denied" && e.Time.Sub(m.UpdatedAt) < deniedEvery {
		// Refused requests are anyone's to send: at most one a minute goes
		// into the bounded history, so a flood cannot push the real
		// journey out of it. The log and the metrics count every one.
		return nil
	}
	if err := putJSONKey(tx, "events", eventKey(m.MAC, m.EventNext), e); err != nil {
		return err
	}
	m.EventNext++
	for m.EventNext-m.EventFirst > model.MaxEvents {
		if err := tx.Delete("events", eventKey(m.MAC, m.EventFirst)); err != nil {
			return err
		}
		m.EventFirst++
	}
	m.LastEvent, m.UpdatedAt = e.Type, e.Time
	if isState(e.Type) && (advances(*m, e.Type) || e.Type == m.State) {
		// The same state again (a retried fetch) restarts its clock.
		m.State, m.StateAt = e.Type, e.Time
	}
	return nil
}

var states = map[string]bool{
	model.StateDiscovered: true, model.StateDHCP: true, model.StatePXE: true, model.StateIPXE: true,
	model.StateKernel: true, model.StateIgnition: true, model.StateInstalled: true, model.StateProvisioned: true, model.StateFailed: true,
}

func isState(t string) bool { return states[t] }

// journey ranks the states of one provisioning run.
var journey = map[string]int{
	model.StateRegistered: 0, model.StateDiscovered: 0, model.StateDHCP: 1, model.StatePXE: 2, model.StateIPXE: 3,
	model.StateKernel: 4, model.StateIgnition: 5, model.StateInstalled: 6, model.StateProvisioned: 7,
}

// advances says whether a step moves the machine's state. Within a run the
// state only moves forward: the installed OS's own DHCP, or a provisioned
// machine's DHCP renewals and local boots, are events but not regressions.
// failed always applies; after failed, or once re-provisioning is asked, a
// new run starts from whatever step comes first.
func advances(m model.Machine, next string) bool {
	switch {
	case next == model.StateFailed:
		return m.State != model.StateFailed
	case m.State == model.StateFailed:
		return true
	case m.State == model.StateProvisioned:
		return m.Reprovision && next != model.StateProvisioned
	case next == model.StateIPXE:
		// A boot script handed out is a new network boot: a machine that
		// retries its install starts its run again there.
		return true
	}
	return journey[next] > journey[m.State]
}

// RecordEvent appends an event to a known machine's history and, when the
// event names a state, moves the machine to it, in one transaction shared
// with other concurrent recorders (group commit).
func (s *Service) RecordEvent(_ context.Context, mac string, e model.Event) error {
	mac, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	return s.recordNow(mac, model.Firmware{}, e, false)
}

// recordNow writes event e, and what the firmware said, for mac in one
// transaction shared with concurrent writers (group commit); with discover
// an unknown MAC becomes a discovered record, otherwise it is not found.
func (s *Service) recordNow(mac string, fw model.Firmware, e model.Event, discover bool) error {
	return s.st.Batch(func(tx store.Tx) error {
		var m model.Machine
		err := getMachine(tx, mac, &m)
		if err != nil && (fault.KindOf(err) != fault.KindNotFound || !discover) {
			return err
		}
		if err := observed(tx, &m, err == nil, mac, fw, e); err != nil {
			return err
		}
		return putJSON(tx, "machines", m.MAC, m)
	})
}

func putJSON(tx store.Tx, bucket, key string, v any) error {
	return putJSONKey(tx, bucket, []byte(key), v)
}

func putJSONKey(tx store.Tx, bucket string, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%q: %w", bucket, key, err)
	}
	return tx.Put(bucket, key, b)
}

// Observe records event e for the machine with this MAC together with what
// its firmware said. An unknown MAC is recorded as a discovered machine
// (no profile, no address) when discover is set, so an operator can see it
// and assign it; otherwise nothing is stored (and, without the recorder,
// Observe returns a not-found error). With the recorder running the write
// is queued: the DHCP reply never waits for its event.
func (s *Service) Observe(_ context.Context, mac string, fw model.Firmware, e model.Event, discover bool) error {
	mac, err := model.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if s.enqueue(pending{mac: mac, e: e, fw: &fw, discover: discover}) {
		return nil
	}
	return s.recordNow(mac, fw, e, discover)
}

// observed applies event e and what the firmware said to m; a machine not
// stored yet (found false) becomes a discovered record. The caller writes m.
func observed(tx store.Tx, m *model.Machine, found bool, mac string, fw model.Firmware, e model.Event) error {
	if !found {
		*m = model.Machine{MAC: mac, State: model.StateDiscovered, StateAt: e.Time, CreatedAt: e.Time}
		if e.Type != model.StateDiscovered {
			if err := appendEvent(tx, m, model.Event{Time: e.Time, Type: model.StateDiscovered}); err != nil {
				return err
			}
		}
	}
	if fw.Arch != "" {
		m.Arch = fw.Arch
	}
	if fw.UUID != "" {
		m.UUID = fw.UUID
	}
	if fw.VendorClass != "" {
		m.VendorClass = fw.VendorClass
	}
	return appendEvent(tx, m, e)
}

// StateCounts counts machines by state, for the metrics page. The count
// scans every machine, so a scrape reuses one made in the last 10 s:
// anyone who can reach /metrics must not be able to make bootsrv scan the
// fleet at will.
func (s *Service) StateCounts() map[string]float64 {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	if s.counts != nil && s.now().Sub(s.countsAt) < 10*time.Second {
		return s.counts
	}
	s.counts, s.countsAt = s.countStates(), s.now()
	return s.counts
}

func (s *Service) countStates() map[string]float64 {
	out := map[string]float64{}
	_ = s.st.View(func(tx store.Tx) error {
		return tx.Scan("machines", nil, func(_, v []byte) error {
			var m struct {
				State string `json:"state"`
			}
			if json.Unmarshal(v, &m) == nil {
				out[m.State]++
			}
			return nil
		})
	})
	return out
}
