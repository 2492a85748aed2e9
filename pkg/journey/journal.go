package journey

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/lograte"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// ErrUnknown means an event named a machine that is not stored (and was
// not to be discovered).
var ErrUnknown = errors.New("no such machine")

// Journal appends events to machines' histories in the order they are
// given, from one writer that commits many in one transaction: a boot
// request never waits for an fsync, and a thousand events cost one
// commit. Writes that must follow the events before them (a report, the
// silent-failure sweep) go through the same writer (Do), and reads that
// must see them through View: nobody outside has to flush.
//
// Without Start (the CLI, which holds the state file for one command)
// every append is written at once.
type Journal struct {
	st      *state.DB
	now     func() time.Time
	log     *slog.Logger
	holdFor time.Duration

	ch   chan item
	done chan struct{}
	// mu guards closed: senders hold it shared while they send, Close
	// takes it exclusively, so nothing is sent on a closed channel. A
	// handler that outlives shutdown (a slow initrd download) then writes
	// its event at once instead.
	mu      sync.RWMutex
	started bool
	closed  bool

	// maxDiscovered caps the machines without a profile that unknown MACs
	// may create (0: DefaultMaxDiscovered); capped limits its log line.
	maxDiscovered int
	capped        *lograte.Limiter

	// Held events (a DHCP OFFER waiting for its ACK), by MAC.
	hmu     sync.Mutex
	held    map[string]*heldEvent
	closing bool
	twg     sync.WaitGroup // held events being appended by their timers
}

type item struct {
	mac string
	e   model.Event
	// fw is set for what a booting machine said (Observe); with discover
	// an unknown MAC becomes a discovered record.
	fw       *model.Firmware
	discover bool
	// do is an ordered write; its result goes to res. A barrier has
	// neither an event nor do: res is closed once all before it are in.
	do      func(state.Tx) error
	barrier bool
	res     chan error
	// durable is an event whose sender waits (on res) until it is
	// committed, with the rest of its batch.
	durable bool
}

// HoldFor is how long a held event waits for the event that completes it.
// An ACK within it is recorded as one event carrying the offer's time and
// address: one write per boot instead of two, and the two steps can never
// be committed out of order. OVMF takes ~4 s between OFFER and REQUEST.
const HoldFor = 10 * time.Second

type heldEvent struct {
	e           model.Event
	fw          model.Firmware
	discover    bool
	completedBy []string
	count       int
	timer       *time.Timer
}

const queueLen = 1 << 16

// New returns the journal over st.
func New(st *state.DB, now func() time.Time) *Journal {
	if now == nil {
		now = func() time.Time { return time.Now().UTC() }
	}
	return &Journal{st: st, now: now, holdFor: HoldFor, held: map[string]*heldEvent{}, capped: lograte.New(time.Minute, 1, 1)}
}

// DefaultMaxDiscovered is how many discovered machines (unknown MACs that
// booted, with no profile yet) the state holds at most: a few rows of
// racks waiting to be assigned, but not a flood of spoofed MACs.
const DefaultMaxDiscovered = 4096

// SetMaxDiscovered caps the discovered machines unknown MACs may create;
// beyond it their events are dropped (with a log line a minute) until an
// operator assigns or removes some, or they expire. Call before Start.
func (j *Journal) SetMaxDiscovered(n int) { j.maxDiscovered = n }

func (j *Journal) discoverCap() int {
	if j.maxDiscovered > 0 {
		return j.maxDiscovered
	}
	return DefaultMaxDiscovered
}

// Start makes appends asynchronous and batched until Close.
func (j *Journal) Start(log *slog.Logger) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.started {
		return
	}
	j.log, j.started = log, true
	j.ch, j.done = make(chan item, queueLen), make(chan struct{})
	go j.run()
}

// Close appends every held and queued event and stops the writer.
func (j *Journal) Close() {
	j.hmu.Lock()
	j.closing = true
	held := j.held
	j.held = map[string]*heldEvent{}
	j.hmu.Unlock()
	for mac, h := range held {
		h.timer.Stop()
		j.send(item{mac: mac, e: h.e, fw: &h.fw, discover: h.discover})
	}
	j.twg.Wait()
	j.mu.Lock()
	if !j.started || j.closed {
		j.mu.Unlock()
		return
	}
	j.closed = true
	close(j.ch)
	j.mu.Unlock()
	<-j.done
}

// Record appends e to a known machine's history; an unknown MAC records
// nothing.
func (j *Journal) Record(mac string, e model.Event) {
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	j.send(item{mac: mac, e: e})
}

// RecordDurable appends e to a known machine's history and returns once
// it is committed, or after wait with an error saying it is not: for
// events that must not be lost to a crash, such as a config with the
// machine's private keys handed out. It shares its batch's commit with
// every other event queued meanwhile, so many waiters cost one fsync.
func (j *Journal) RecordDurable(mac string, e model.Event, wait time.Duration) error {
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	res := make(chan error, 1)
	if !j.send(item{mac: mac, e: e, durable: true, res: res}) {
		return j.commitOnce([]item{{mac: mac, e: e}}, false) // no writer: at once
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("recording %s of %s: not committed within %s (%w)", e.Type, mac, wait, state.ErrWriteFailed)
	}
}

// Observe appends e together with what the machine's firmware said. An
// unknown MAC becomes a discovered machine (no profile, no address) when
// discover is set, so that an operator can see and assign it. If an event
// held for the machine is completed by e's type, e carries the held one's
// time, address and count; an event held but not completed by e is
// appended first.
func (j *Journal) Observe(mac string, fw model.Firmware, e model.Event, discover bool) {
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	j.hmu.Lock()
	h := j.held[mac]
	if h != nil {
		h.timer.Stop()
		delete(j.held, mac)
	}
	j.hmu.Unlock()
	if h != nil {
		if completes(h, e.Type) {
			e.Fields = withHeld(e.Fields, h)
			discover = discover || h.discover
		} else {
			j.send(item{mac: mac, e: h.e, fw: &h.fw, discover: h.discover})
		}
	}
	j.send(item{mac: mac, e: e, fw: &fw, discover: discover})
}

// Hold keeps e (a DHCP OFFER) back for up to HoldFor, to be merged into
// the next Observe of the same machine whose type is one of completedBy;
// a repeated Hold counts ("offers") instead of adding an event. Held
// events are not yet appended: readers see them once merged or appended.
func (j *Journal) Hold(mac string, fw model.Firmware, e model.Event, discover bool, completedBy ...string) {
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	j.hmu.Lock()
	defer j.hmu.Unlock()
	n := 1
	if p := j.held[mac]; p != nil {
		p.timer.Stop()
		n += p.count
		discover = discover || p.discover
	}
	if j.closing {
		j.mu.RLock()
		defer j.mu.RUnlock()
		j.sendLocked(item{mac: mac, e: e, fw: &fw, discover: discover})
		return
	}
	h := &heldEvent{e: e, fw: fw, discover: discover, completedBy: completedBy, count: n}
	h.e.Fields = copyFields(e.Fields)
	h.e.Fields["offers"] = fmt.Sprint(n)
	h.timer = time.AfterFunc(j.holdFor, func() { j.release(mac, h) })
	j.held[mac] = h
}

// release appends an event whose completion did not come in time.
func (j *Journal) release(mac string, h *heldEvent) {
	j.hmu.Lock()
	if j.held[mac] != h || j.closing {
		j.hmu.Unlock()
		return // taken by a later event, or by Close
	}
	delete(j.held, mac)
	j.twg.Add(1)
	j.hmu.Unlock()
	defer j.twg.Done()
	j.send(item{mac: mac, e: h.e, fw: &h.fw, discover: h.discover})
}

func completes(h *heldEvent, typ string) bool {
	for _, t := range h.completedBy {
		if t == typ {
			return true
		}
	}
	return false
}

func withHeld(f map[string]string, h *heldEvent) map[string]string {
	f = copyFields(f)
	f["offer_time"] = h.e.Time.Format(time.RFC3339Nano)
	f["offer_ip"] = h.e.Fields["ip"]
	f["offers"] = h.e.Fields["offers"]
	return f
}

func copyFields(f map[string]string) map[string]string {
	out := make(map[string]string, len(f)+3)
	for k, v := range f {
		out[k] = v
	}
	return out
}

// Append appends e to a known machine's history now, in order with what
// was queued before, and says whether the machine exists.
func (j *Journal) Append(mac string, e model.Event) error {
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	return j.Do(func(tx state.Tx) error {
		m, ok, err := tx.Machine(mac)
		if err != nil {
			return err
		}
		if !ok {
			return ErrUnknown
		}
		if err := Append(tx, &m, e); err != nil {
			return err
		}
		return tx.PutMachine(m)
	})
}

// Do runs fn in its own write transaction after every event appended
// before it is committed, and returns its error: the way to change a
// machine so that a late event of an earlier step cannot overtake it.
func (j *Journal) Do(fn func(state.Tx) error) error {
	res := make(chan error, 1)
	if !j.send(item{do: fn, res: res}) {
		return j.st.Update(fn)
	}
	return <-res
}

// View runs fn in a read transaction that sees every event appended
// before the call.
func (j *Journal) View(fn func(state.Tx) error) error {
	res := make(chan error, 1)
	if j.send(item{barrier: true, res: res}) {
		<-res
	}
	return j.st.View(fn)
}

// send queues it for the writer, or writes at once when there is no
// writer (the CLI) or it has closed; it says whether it queued.
func (j *Journal) send(it item) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.sendLocked(it)
}

func (j *Journal) sendLocked(it item) bool {
	if j.started && !j.closed {
		j.ch <- it
		return true
	}
	if it.do == nil && !it.barrier {
		j.commit([]item{it})
	}
	return false
}

func (j *Journal) run() {
	defer close(j.done)
	batch := make([]item, 0, 1024)
	for it := range j.ch {
		batch = append(batch[:0], it)
	drain:
		for len(batch) < cap(batch) {
			select {
			case q, ok := <-j.ch:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		j.commitBatch(batch)
	}
}

// commitBatch commits runs of events together, and each ordered write on
// its own, in queue order; barriers are released once all before them is.
func (j *Journal) commitBatch(batch []item) {
	start := 0
	for i, it := range batch {
		if it.do == nil && !it.barrier {
			continue
		}
		j.commitRun(batch[start:i])
		start = i + 1
		if it.do != nil {
			it.res <- j.st.Update(it.do)
		} else {
			close(it.res)
		}
	}
	j.commitRun(batch[start:])
}

// commitRun commits a run of events and tells their durable senders.
func (j *Journal) commitRun(events []item) {
	err := j.commit(events)
	for _, it := range events {
		if it.durable {
			it.res <- err
		}
	}
}

// commit appends events in one transaction (or several of the size a
// shared store takes); events of unknown machines (removed meanwhile, or
// never discovered) are dropped. While a shared store is unavailable, or
// the disk under the state file is full, the events are kept and retried,
// in order, until they can be written (the queue behind them waits, up to
// queueLen items, then holds its senders back): a retry skips events an
// uncertain commit did land, so none is written twice.
func (j *Journal) commit(events []item) error {
	if n := j.st.MaxBatchItems(); n > 0 && len(events) > n {
		var first error
		for len(events) > 0 {
			k := min(n, len(events))
			if err := j.commit(events[:k]); err != nil && first == nil {
				first = err
			}
			events = events[k:]
		}
		return first
	}
	if len(events) == 0 {
		return nil
	}
	var waitedSince time.Time
	for retry := false; ; retry = true {
		err := j.commitOnce(events, retry)
		if err == nil && !waitedSince.IsZero() && j.log != nil {
			j.log.Info("events held while the state could not be written are recorded", "events", len(events), "held_for", time.Since(waitedSince).Round(time.Millisecond))
		}
		if err == nil || !state.Transient(err) || j.giveUp(waitedSince) {
			if err != nil && j.log != nil {
				j.log.Error("recording events failed", "events", len(events), "err", err)
			}
			return err
		}
		if waitedSince.IsZero() {
			waitedSince = time.Now()
			// Once per outage, not per try: the store's own probe (etcd)
			// or the disk filling says the rest.
			if j.log != nil && errors.Is(err, state.ErrWriteFailed) {
				j.log.Warn("recording events failed; holding them and retrying until the state can be written", "events", len(events), "err", err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// giveUp says whether to stop retrying events for an unavailable store:
// only when the journal is closing and has waited closeWait for it.
func (j *Journal) giveUp(since time.Time) bool {
	j.hmu.Lock()
	closing := j.closing
	j.hmu.Unlock()
	return (closing || !j.started) && !since.IsZero() && time.Since(since) > closeWait
}

// closeWait is how long a closing journal waits for an unavailable store.
const closeWait = 10 * time.Second

// landed says whether mac's history already holds e (a retried commit
// whose first try did land).
func landed(tx state.Tx, mac string, e model.Event) bool {
	found := false
	_ = tx.Events(mac, func(x model.Event) error {
		if x.Type == e.Type && x.Time.Equal(e.Time) {
			found = true
			return state.ErrStop
		}
		return nil
	})
	return found
}

// atCap logs, once a minute, that an unknown MAC was not recorded.
func (j *Journal) atCap(mac string, limit int) {
	if j.log == nil {
		return
	}
	if ok, dropped := j.capped.Allow("cap"); ok {
		j.log.Warn("discovered machines are at their cap: unknown MAC not recorded; assign profiles to some (bootsrv machine add) or remove them (bootsrv machine rm), or raise --discover-max",
			"mac", mac, "max", limit, "also_not_recorded", dropped)
	}
}

func (j *Journal) commitOnce(events []item, retry bool) error {
	return j.st.Update(func(tx state.Tx) error {
		machines := map[string]*model.Machine{}
		discovered, limit := -1, j.discoverCap()
		for _, it := range events {
			m := machines[it.mac]
			found := m != nil
			if m == nil {
				got, ok, err := tx.Machine(it.mac)
				if err != nil {
					return err
				}
				if !ok && (it.fw == nil || !it.discover) {
					continue
				}
				if !ok {
					if discovered < 0 {
						discovered = tx.CountDiscovered(limit)
					}
					if discovered >= limit {
						j.atCap(it.mac, limit)
						continue
					}
					discovered++
				}
				m, found = &got, ok
			}
			machines[it.mac] = m
			if retry && found && landed(tx, it.mac, it.e) {
				continue
			}
			if it.fw != nil {
				if err := Observed(tx, m, found, it.mac, *it.fw, it.e); err != nil {
					return err
				}
				continue
			}
			if err := Append(tx, m, it.e); err != nil {
				return err
			}
		}
		for _, m := range machines {
			if err := tx.PutMachine(*m); err != nil {
				return err
			}
		}
		return nil
	})
}
