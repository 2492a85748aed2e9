package journey

import (
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

const mac = "52:54:00:00:00:01"

func newJournal(t *testing.T, start bool) (*Journal, *state.DB) {
	t.Helper()
	st, err := state.Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Update(func(tx state.Tx) error {
		return tx.PutMachine(model.Machine{MAC: mac, IP: "10.0.0.1", Hostname: "n1", Profile: "p", State: model.StateRegistered})
	}); err != nil {
		t.Fatal(err)
	}
	j := New(st, nil)
	if start {
		j.Start(nil)
		t.Cleanup(j.Close)
	}
	return j, st
}

func events(t *testing.T, j *Journal) (model.Machine, []string) {
	t.Helper()
	var m model.Machine
	var types []string
	err := j.View(func(tx state.Tx) error {
		m, _, _ = tx.Machine(mac)
		return tx.Events(mac, func(e model.Event) error { types = append(types, e.Type); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, types
}

// A read through the journal sees every event recorded before it, and a
// write through Do lands after them: nobody flushes.
func TestOrderWithoutFlush(t *testing.T) {
	for _, start := range []bool{false, true} {
		j, _ := newJournal(t, start)
		j.Record(mac, model.Event{Type: model.StateIPXE})
		j.Record(mac, model.Event{Type: model.StateIgnition})
		if m, types := events(t, j); m.State != model.StateIgnition || len(types) != 2 {
			t.Fatalf("writer %v: state %q, events %v; want ignition after 2 events", start, m.State, types)
		}
		j.Record(mac, model.Event{Type: model.StateKernel}) // late: must not win over the report
		err := j.Do(func(tx state.Tx) error {
			m, _, _ := tx.Machine(mac)
			if m.LastEvent != model.StateKernel {
				t.Errorf("writer %v: Do ran before the event queued ahead of it (last %q)", start, m.LastEvent)
			}
			if err := Append(tx, &m, model.Event{Type: model.StateProvisioned, Time: time.Now()}); err != nil {
				return err
			}
			return tx.PutMachine(m)
		})
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := events(t, j); m.State != model.StateProvisioned {
			t.Errorf("writer %v: state %q after the report, want provisioned", start, m.State)
		}
	}
}

// An OFFER held for its ACK becomes one event carrying the offer; one not
// followed by its ACK is appended on its own, when HoldFor passes or when
// another kind of event comes.
func TestHoldMerges(t *testing.T) {
	j, _ := newJournal(t, true)
	fw := model.Firmware{Arch: "efi-x86_64"}
	offer := model.Event{Type: "dhcp-offer", Fields: map[string]string{"ip": "10.0.0.1"}}
	j.Hold(mac, fw, offer, false, model.StateDHCP)
	j.Hold(mac, fw, offer, false, model.StateDHCP)
	j.Observe(mac, fw, model.Event{Type: model.StateDHCP}, false)
	var got []model.Event
	_ = j.View(func(tx state.Tx) error {
		return tx.Events(mac, func(e model.Event) error { got = append(got, e); return nil })
	})
	if len(got) != 1 || got[0].Type != model.StateDHCP || got[0].Fields["offers"] != "2" || got[0].Fields["offer_ip"] != "10.0.0.1" || got[0].Fields["offer_time"] == "" {
		t.Fatalf("events %+v, want one dhcp event carrying 2 offers of 10.0.0.1", got)
	}
	// An OFFER then a NAK: two events, the offer first.
	j.Hold(mac, fw, offer, false, model.StateDHCP)
	j.Observe(mac, fw, model.Event{Type: "dhcp-nak"}, false)
	if _, types := events(t, j); len(types) != 3 || types[1] != "dhcp-offer" || types[2] != "dhcp-nak" {
		t.Fatalf("events %v, want the offer then the nak", types)
	}
	// An OFFER alone is appended once the hold passes.
	j.holdFor = 20 * time.Millisecond
	j.Hold(mac, fw, offer, false, model.StateDHCP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, types := events(t, j); len(types) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a held offer was never appended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close appends what is still held.
func TestCloseAppendsHeld(t *testing.T) {
	j, st := newJournal(t, true)
	j.Hold(mac, model.Firmware{}, model.Event{Type: "dhcp-offer", Fields: map[string]string{}}, false, model.StateDHCP)
	j.Close()
	var n int
	_ = st.View(func(tx state.Tx) error {
		return tx.Events(mac, func(model.Event) error { n++; return nil })
	})
	if n != 1 {
		t.Fatalf("%d events after Close, want the held offer", n)
	}
}

// The state machine: forward within a run, failed always, a provisioned
// machine stays so unless re-provisioning was asked.
func TestAdvances(t *testing.T) {
	for _, tc := range []struct {
		state, next string
		reprovision bool
		want        bool
	}{
		{model.StateDHCP, model.StateIPXE, false, true},
		{model.StateIgnition, model.StateDHCP, false, false},
		{model.StateIgnition, model.StateIPXE, false, true},
		{model.StateProvisioned, model.StateDHCP, false, false},
		{model.StateProvisioned, model.StateDHCP, true, true},
		{model.StateProvisioned, model.StateFailed, false, true},
		{model.StateFailed, model.StateDHCP, false, true},
		{model.StateFailed, model.StateFailed, false, false},
	} {
		m := model.Machine{State: tc.state, Reprovision: tc.reprovision}
		if got := Advances(m, tc.next); got != tc.want {
			t.Errorf("Advances(%s, reprovision %v, %s) = %v, want %v", tc.state, tc.reprovision, tc.next, got, tc.want)
		}
	}
}

// An OFFER held past the events that followed it (a retransmitted
// DISCOVER answered late, released by its timer) lands after them in
// time order: it takes the last event's time and keeps its own.
func TestHeldEventKeepsHistoryInOrder(t *testing.T) {
	j, _ := newJournal(t, true)
	j.holdFor = 100 * time.Millisecond
	t0 := time.Now()
	j.Hold(mac, model.Firmware{}, model.Event{Type: "dhcp-offer", Time: t0, Fields: map[string]string{"ip": "10.0.0.1"}}, false, model.StateDHCP)
	j.Record(mac, model.Event{Type: model.StateIgnition, Time: t0.Add(50 * time.Millisecond)})
	time.Sleep(300 * time.Millisecond)
	var got []model.Event
	_ = j.View(func(tx state.Tx) error {
		return tx.Events(mac, func(e model.Event) error { got = append(got, e); return nil })
	})
	if len(got) != 2 || got[1].Type != "dhcp-offer" {
		t.Fatalf("events %+v, want the ignition event then the released offer", got)
	}
	if got[1].Time.Before(got[0].Time) {
		t.Errorf("the offer (%s) is before the event ahead of it (%s)", got[1].Time, got[0].Time)
	}
	if at := got[1].Fields["happened_at"]; at != t0.UTC().Format(time.RFC3339Nano) {
		t.Errorf("the offer's own time is %q, want %s", at, t0.UTC().Format(time.RFC3339Nano))
	}
}
