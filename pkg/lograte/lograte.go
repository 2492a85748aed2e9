// Package lograte keeps log lines that a client can cause (a refused
// request, a bad packet, every packet while the disk is full) from
// flooding the log: per key, a burst of lines and then one per interval,
// with the count of the lines left out carried on the next one written.
package lograte

import (
	"sync"
	"time"
)

// Limiter is safe for concurrent use. The zero value is not usable: use
// New.
type Limiter struct {
	every time.Duration
	burst int
	max   int
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*bucket
	all  bucket // every key together: spoofed sources cannot multiply the budget
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped uint64
}

// New lets through, for each key, burst lines at once and then one per
// every; across all keys, at most 10 times that. At most max keys are
// tracked (a flood of spoofed addresses forgets the oldest ones, which
// only makes them start again from a full burst).
func New(every time.Duration, burst, max int) *Limiter {
	return &Limiter{every: every, burst: burst, max: max, now: time.Now, keys: map[string]*bucket{}}
}

// Allow says whether a line for key may be written now, and how many lines
// for key were left out since the last one written (to be logged with it).
func (l *Limiter) Allow(key string) (ok bool, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.keys[key]
	if b == nil {
		if len(l.keys) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: float64(l.burst), last: now}
		l.keys[key] = b
	}
	if !take(b, now, l.every, float64(l.burst)) || !take(&l.all, now, l.every/10, float64(10*l.burst)) {
		b.dropped++
		return false, 0
	}
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}

func take(b *bucket, now time.Time, every time.Duration, burst float64) bool {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	}
	if every > 0 {
		b.tokens = min(burst, b.tokens+float64(now.Sub(b.last))/float64(every))
	} else {
		b.tokens = burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict forgets the keys that have refilled (nothing to remember), and if
// that frees nothing, the oldest half.
func (l *Limiter) evict(now time.Time) {
	full := time.Duration(l.burst) * l.every
	for k, b := range l.keys {
		if now.Sub(b.last) >= full && b.dropped == 0 {
			delete(l.keys, k)
		}
	}
	if len(l.keys) < l.max {
		return
	}
	n := 0
	for k := range l.keys { // map order is random: a random half
		delete(l.keys, k)
		if n++; n >= l.max/2 {
			break
		}
	}
}
