package lograte

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(every time.Duration, burst, max int) (*Limiter, *clock) {
	c := &clock{t: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	l := New(every, burst, max)
	l.now = c.now
	return l, c
}

// A key gets its burst, then one line per interval, and the next line
// written carries the count of those left out.
func TestBurstThenOnePerInterval(t *testing.T) {
	l, c := newTest(time.Second, 3, 100)
	for i := range 3 {
		if ok, d := l.Allow("report 10.0.0.1"); !ok || d != 0 {
			t.Fatalf("line %d of the burst: %v, %d dropped", i, ok, d)
		}
	}
	for i := range 50 {
		if ok, _ := l.Allow("report 10.0.0.1"); ok {
			t.Fatalf("line %d after the burst let through", i)
		}
	}
	if ok, _ := l.Allow("report 10.0.0.2"); !ok {
		t.Fatal("another key is held back by the first")
	}
	c.t = c.t.Add(time.Second)
	if ok, d := l.Allow("report 10.0.0.1"); !ok || d != 50 {
		t.Fatalf("after an interval: %v with %d dropped, want a line carrying 50", ok, d)
	}
	if ok, _ := l.Allow("report 10.0.0.1"); ok {
		t.Fatal("two lines in one interval after the burst")
	}
}

// Many keys (spoofed sources) share one budget ten times a key's, and the
// tracked keys stay bounded.
func TestManyKeysBounded(t *testing.T) {
	l, _ := newTest(time.Second, 2, 64)
	written := 0
	for i := range 10000 {
		if ok, _ := l.Allow(fmt.Sprintf("bad packet from 10.%d.%d.1", i>>8, i&0xff)); ok {
			written++
		}
	}
	if written != 20 {
		t.Errorf("%d lines written for 10,000 keys at once, want the shared burst of 20", written)
	}
	if len(l.keys) > 64 {
		t.Errorf("%d keys tracked, want at most 64", len(l.keys))
	}
}
