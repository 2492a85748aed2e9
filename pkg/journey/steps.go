// Package journey is a machine's history and where it stands: the events
// of its provisioning, the state machine that moves its state with them,
// and the journal that appends them in order. Every door and server that
// records a step (DHCP, TFTP, HTTP, the admin API) appends through the
// journal; readers that go through it see what was appended before them.
package journey

import (
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// deniedEvery is how often a refused request may be recorded per machine.
const deniedEvery = time.Minute

// Append adds e to m's history in tx, dropping the oldest past
// model.MaxEvents, and moves m's state when e is a state. The caller
// writes m.
func Append(tx state.Tx, m *model.Machine, e model.Event) error {
	if e.Type == "denied" && m.LastEvent == "denied" && e.Time.Sub(m.UpdatedAt) < deniedEvery {
		// Refused requests are anyone's to send: at most one a minute goes
		// into the bounded history, so a flood cannot push the real
		// journey out of it. The log and the metrics count every one.
		return nil
	}
	if e.Time.Before(m.UpdatedAt) {
		// An event that happened before the last one recorded lands after
		// it (a DHCP offer held for its ACK, an event queued behind a
		// commit): a history reads in time order, so it takes the last
		// one's time and keeps its own in a field.
		f := make(map[string]string, len(e.Fields)+1)
		for k, v := range e.Fields {
			f[k] = v
		}
		f["happened_at"] = e.Time.UTC().Format(time.RFC3339Nano)
		e.Fields, e.Time = f, m.UpdatedAt
	}
	if err := tx.PutEvent(m.MAC, m.EventNext, e); err != nil {
		return err
	}
	m.EventNext++
	for m.EventNext-m.EventFirst > model.MaxEvents {
		if err := tx.DeleteEvent(m.MAC, m.EventFirst); err != nil {
			return err
		}
		m.EventFirst++
	}
	m.LastEvent, m.UpdatedAt = e.Type, e.Time
	if IsState(e.Type) && (Advances(*m, e.Type) || e.Type == m.State) {
		// The same state again (a retried fetch) restarts its clock.
		m.State, m.StateAt = e.Type, e.Time
	}
	return nil
}

var states = map[string]bool{
	model.StateDiscovered: true, model.StateDHCP: true, model.StatePXE: true, model.StateIPXE: true,
	model.StateKernel: true, model.StateIgnition: true, model.StateInstalled: true, model.StateProvisioned: true, model.StateFailed: true,
}

// IsState says whether an event type names a state.
func IsState(t string) bool { return states[t] }

// rank orders the states of one provisioning run.
var rank = map[string]int{
	model.StateRegistered: 0, model.StateDiscovered: 0, model.StateDHCP: 1, model.StatePXE: 2, model.StateIPXE: 3,
	model.StateKernel: 4, model.StateIgnition: 5, model.StateInstalled: 6, model.StateProvisioned: 7,
}

// Advances says whether a step moves the machine's state. Within a run the
// state only moves forward: the installed OS's own DHCP, or a provisioned
// machine's DHCP renewals and local boots, are events but not regressions.
// failed always applies; after failed, or once re-provisioning is asked, a
// new run starts from whatever step comes first.
func Advances(m model.Machine, next string) bool {
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
	return rank[next] > rank[m.State]
}

// Observed applies event e and what the firmware said to m; a machine not
// stored yet (found false) becomes a discovered record. The caller writes m.
func Observed(tx state.Tx, m *model.Machine, found bool, mac string, fw model.Firmware, e model.Event) error {
	if !found {
		*m = model.Machine{MAC: mac, State: model.StateDiscovered, StateAt: e.Time, CreatedAt: e.Time}
		if e.Type != model.StateDiscovered {
			if err := Append(tx, m, model.Event{Time: e.Time, Type: model.StateDiscovered}); err != nil {
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
	return Append(tx, m, e)
}
