package profiles

import (
	"context"
	"log/slog"
	"sync"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// recorder commits events from the boot servers' hot paths in batches: a
// request enqueues its event and goes on, and one writer commits everything
// queued in one transaction. A boot request thus never waits for an fsync,
// and a thousand events cost one commit.
type recorder struct {
	st   *state.DB
	log  *slog.Logger
	ch   chan pending
	done chan struct{}

	// mu guards closed: senders hold it shared while they send, Close
	// takes it exclusively, so nothing is sent on a closed channel. A
	// handler that outlives shutdown (a slow initrd download) then writes
	// its event synchronously instead.
	mu     sync.RWMutex
	closed bool
}

type pending struct {
	mac string
	e   model.Event
	// fw is set for what a booting machine said (Observe); with discover
	// an unknown MAC becomes a discovered record.
	fw       *model.Firmware
	discover bool
	flush    chan struct{} // non-nil: a Flush marker, closed once all before it are committed
}

const recorderQueue = 1 << 16

// StartRecorder makes event recording asynchronous and batched until ctx is
// done or Close is called. Without it (the CLI path) events are written
// synchronously.
func (s *Service) StartRecorder(log *slog.Logger) {
	r := &recorder{st: s.st, log: log, ch: make(chan pending, recorderQueue), done: make(chan struct{})}
	s.rec = r
	go r.run()
}

// Close commits every queued event and stops the recorder.
func (s *Service) Close() {
	if s.rec == nil {
		return
	}
	s.rec.mu.Lock()
	if !s.rec.closed {
		s.rec.closed = true
		close(s.rec.ch)
	}
	s.rec.mu.Unlock()
	<-s.rec.done
}

// Flush waits until every event recorded before the call is committed, so
// a read that follows sees them.
func (s *Service) Flush() {
	if s.rec == nil {
		return
	}
	f := make(chan struct{})
	s.rec.mu.RLock()
	if s.rec.closed {
		s.rec.mu.RUnlock()
		return // Close committed everything
	}
	s.rec.ch <- pending{flush: f}
	s.rec.mu.RUnlock()
	<-f
}

// record stores an event for a known machine: queued when the recorder
// runs, else at once.
func (s *Service) record(mac string, e model.Event) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if !s.enqueue(pending{mac: mac, e: e}) {
		_ = s.RecordEvent(context.Background(), mac, e)
	}
}

// enqueue hands p to the recorder, and says false when there is none (the
// CLI path) or it has closed: the caller then writes at once.
func (s *Service) enqueue(p pending) bool {
	if s.rec == nil {
		return false
	}
	s.rec.mu.RLock()
	defer s.rec.mu.RUnlock()
	if s.rec.closed {
		return false
	}
	s.rec.ch <- p
	return true
}

func (r *recorder) run() {
	defer close(r.done)
	batch := make([]pending, 0, 1024)
	for p := range r.ch {
		batch = append(batch[:0], p)
	drain:
		for len(batch) < cap(batch) {
			select {
			case q, ok := <-r.ch:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		r.commit(batch)
	}
}

func (r *recorder) commit(batch []pending) {
	err := r.st.Update(func(tx state.Tx) error {
		machines := map[string]*model.Machine{}
		for _, p := range batch {
			if p.flush != nil {
				continue
			}
			m := machines[p.mac]
			found := m != nil
			if m == nil {
				m = &model.Machine{}
				if err := getMachine(tx, p.mac, m); err == nil {
					found = true
				} else if p.fw == nil || !p.discover {
					continue // unknown, or removed meanwhile: nothing to record on
				}
			}
			machines[p.mac] = m
			if p.fw != nil {
				if err := observed(tx, m, found, p.mac, *p.fw, p.e); err != nil {
					return err
				}
				continue
			}
			if err := appendEvent(tx, m, p.e); err != nil {
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
	if err != nil && r.log != nil {
		r.log.Error("recording events failed", "events", len(batch), "err", err)
	}
	for _, p := range batch {
		if p.flush != nil {
			close(p.flush)
		}
	}
}
