package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// Machine returns the machine with this (normalized) MAC; ok is false
// when there is none.
func (t Tx) Machine(mac string) (m model.Machine, ok bool, err error) {
	ok, err = getJSON(t.kv, bMachines, []byte(mac), &m)
	return m, ok, err
}

// MachineByIP is the MAC of the machine whose reservation is ip ("": none).
func (t Tx) MachineByIP(ip string) string { return string(t.kv.Get(bIdxIP, []byte(ip))) }

// MachineByHostname is the MAC of the machine named host ("": none).
func (t Tx) MachineByHostname(host string) string {
	return string(t.kv.Get(bIdxHostname, []byte(host)))
}

// indexed is what the indexes of a machine record are made of.
type indexed struct {
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Hostname string `json:"hostname"`
	Profile  string `json:"profile"`
}

// PutMachine writes m and moves its index entries (address, hostname,
// profile) from what the stored record had to what m has. It is the only
// way a machine is written.
func (t Tx) PutMachine(m model.Machine) error {
	m.Source = ""
	var old indexed
	if raw := t.kv.Get(bMachines, []byte(m.MAC)); raw != nil {
		if err := json.Unmarshal(raw, &old); err != nil {
			return fmt.Errorf("decode machine %s: %w", m.MAC, err)
		}
	}
	for _, d := range []struct{ bucket, oldKey, newKey string }{
		{bIdxIP, old.IP, m.IP}, {bIdxHostname, old.Hostname, m.Hostname},
		{bIdxProfile, profileKey(old.Profile, m.MAC), profileKey(m.Profile, m.MAC)},
	} {
		if d.oldKey != "" && d.oldKey != d.newKey && t.kv.Get(d.bucket, []byte(d.oldKey)) != nil {
			// Only an entry that still points here is ours to drop.
			if d.bucket == bIdxProfile || string(t.kv.Get(d.bucket, []byte(d.oldKey))) == m.MAC {
				if err := t.kv.Delete(d.bucket, []byte(d.oldKey)); err != nil {
					return err
				}
			}
		}
	}
	if m.IP != "" {
		if err := t.kv.Put(bIdxIP, []byte(m.IP), []byte(m.MAC)); err != nil {
			return err
		}
	}
	if m.Hostname != "" {
		if err := t.kv.Put(bIdxHostname, []byte(m.Hostname), []byte(m.MAC)); err != nil {
			return err
		}
	}
	if err := t.kv.Put(bIdxProfile, []byte(profileKey(m.Profile, m.MAC)), nil); err != nil {
		return err
	}
	return putJSON(t.kv, bMachines, []byte(m.MAC), m)
}

// profileKey is a machine's entry in the profile index. A machine without
// a profile (discovered) is indexed under the empty name, which no profile
// has: so discovered machines can be counted and expired without reading
// the fleet.
func profileKey(profile, mac string) string {
	return profile + "\x00" + mac
}

// Discovered calls fn with the MAC of every machine without a profile,
// through the profile index, until fn returns an error (ErrStop ends it
// without one). A MAC may name a machine that has a profile since (an
// older bootsrv gave it one and left the entry): read the record before
// acting on it.
func (t Tx) Discovered(fn func(mac string) error) error {
	return t.MachinesOfProfile("", fn)
}

// Undiscover drops mac's entry among the discovered machines: one a
// bootsrv before the index left when it gave the machine a profile.
func (t Tx) Undiscover(mac string) error {
	return t.kv.Delete(bIdxProfile, []byte(profileKey("", mac)))
}

// CountDiscovered counts the machines without a profile, up to limit.
func (t Tx) CountDiscovered(limit int) int {
	n := 0
	_ = t.Discovered(func(string) error {
		if n++; n >= limit {
			return ErrStop
		}
		return nil
	})
	return n
}

// IndexDiscovered indexes the machines without a profile that a bootsrv
// before the index wrote, and says how many it found. It reads every
// machine: run it once, at start.
func (t Tx) IndexDiscovered() (int, error) {
	var macs []string
	err := t.Machines(func(m model.Machine) error {
		if m.Profile == "" && t.kv.Get(bIdxProfile, []byte(profileKey("", m.MAC))) == nil {
			macs = append(macs, m.MAC)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, mac := range macs {
		if err := t.kv.Put(bIdxProfile, []byte(profileKey("", mac)), nil); err != nil {
			return 0, err
		}
	}
	return len(macs), nil
}

// DeleteMachine removes a machine with everything kept for it: its index
// entries, events, certificates and rendered config.
func (t Tx) DeleteMachine(mac string) error {
	m, ok, err := t.Machine(mac)
	if err != nil || !ok {
		return err
	}
	for _, d := range []struct{ bucket, key string }{
		{bIdxIP, m.IP}, {bIdxHostname, m.Hostname}, {bIdxProfile, profileKey(m.Profile, m.MAC)}, {bIdxProfile, profileKey("", m.MAC)},
		{bMachines, m.MAC}, {bCerts, m.MAC}, {bRendered, m.MAC},
	} {
		if d.key == "" {
			continue
		}
		if err := t.kv.Delete(d.bucket, []byte(d.key)); err != nil {
			return err
		}
	}
	var keys [][]byte
	if err := t.kv.Scan(bEvents, []byte(mac+"\x00"), func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.kv.Delete(bEvents, k); err != nil {
			return err
		}
	}
	return nil
}

// Machines calls fn with every machine, by MAC.
func (t Tx) Machines(fn func(model.Machine) error) error {
	return t.kv.Scan(bMachines, nil, func(k, v []byte) error {
		var m model.Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode machine %s: %w", k, err)
		}
		return stopped(fn(m))
	})
}

// MachinesInState calls fn with every machine in one of states. Most
// machines are in none of them, so records are filtered on their bytes
// before they are decoded.
func (t Tx) MachinesInState(fn func(model.Machine) error, states ...string) error {
	var marks [][]byte
	for _, s := range states {
		marks = append(marks, []byte(`"state":"`+s+`"`))
	}
	return t.kv.Scan(bMachines, nil, func(k, v []byte) error {
		hit := false
		for _, mk := range marks {
			if bytes.Contains(v, mk) {
				hit = true
				break
			}
		}
		if !hit {
			return nil
		}
		var m model.Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode machine %s: %w", k, err)
		}
		for _, s := range states {
			if m.State == s {
				return stopped(fn(m))
			}
		}
		return nil
	})
}

// CountByState counts machines by state, decoding only the state.
func (t Tx) CountByState() map[string]float64 {
	out := map[string]float64{}
	_ = t.kv.Scan(bMachines, nil, func(_, v []byte) error {
		var m struct {
			State string `json:"state"`
		}
		if json.Unmarshal(v, &m) == nil {
			out[m.State]++
		}
		return nil
	})
	return out
}

func eventKey(mac string, seq uint64) []byte {
	k := make([]byte, len(mac)+1+8)
	copy(k, mac)
	binary.BigEndian.PutUint64(k[len(mac)+1:], seq)
	return k
}

// PutEvent stores event number seq of a machine's history.
func (t Tx) PutEvent(mac string, seq uint64, e model.Event) error {
	return putJSON(t.kv, bEvents, eventKey(mac, seq), e)
}

// DeleteEvent drops event number seq of a machine's history.
func (t Tx) DeleteEvent(mac string, seq uint64) error {
	return t.kv.Delete(bEvents, eventKey(mac, seq))
}

// Events calls fn with a machine's kept events, in sequence order.
func (t Tx) Events(mac string, fn func(model.Event) error) error {
	return t.kv.Scan(bEvents, []byte(mac+"\x00"), func(k, v []byte) error {
		var e model.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode event %q: %w", k, err)
		}
		return stopped(fn(e))
	})
}
