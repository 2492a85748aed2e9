// Package metrics keeps bootsrv's counters and histograms and writes them in
// the Prometheus text format. It is small on purpose: a few counters,
// lock-free on the hot path, and no dependency.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds every metric of one server.
type Registry struct {
	mu    sync.Mutex
	order []writer
}

type writer interface{ write(w io.Writer) }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(m writer) {
	r.mu.Lock()
	r.order = append(r.order, m)
	r.mu.Unlock()
}

// Write writes every metric in the Prometheus text exposition format.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	ms := append([]writer(nil), r.order...)
	r.mu.Unlock()
	for _, m := range ms {
		m.write(w)
	}
}

// CounterVec is a counter with labels.
type CounterVec struct {
	name, help string
	labels     []string
	vals       sync.Map // joined label values -> *atomic.Uint64
}

// Counter registers a counter with the given label names.
func (r *Registry) Counter(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{name: name, help: help, labels: labels}
	r.add(c)
	return c
}

// Inc adds one for the label values, given in the order of the names.
func (c *CounterVec) Inc(values ...string) { c.Add(1, values...) }

// Add adds n for the label values.
func (c *CounterVec) Add(n uint64, values ...string) {
	key := strings.Join(values, "\x00")
	v, ok := c.vals.Load(key)
	if !ok {
		v, _ = c.vals.LoadOrStore(key, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(n)
}

// Value returns the count for the label values.
func (c *CounterVec) Value(values ...string) uint64 {
	if v, ok := c.vals.Load(strings.Join(values, "\x00")); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func (c *CounterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	var keys []string
	c.vals.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := c.vals.Load(k)
		fmt.Fprintf(w, "%s%s %d\n", c.name, labelText(c.labels, strings.Split(k, "\x00")), v.(*atomic.Uint64).Load())
	}
}

func labelText(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		v := ""
		if i < len(values) {
			v = values[i]
		}
		parts[i] = fmt.Sprintf("%s=%q", n, v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Histogram counts observations (seconds) in cumulative buckets.
type Histogram struct {
	name, help string
	bounds     []float64
	counts     []atomic.Uint64
	count      atomic.Uint64
	sumMicros  atomic.Uint64
}

// Histogram registers a histogram with upper bounds in seconds.
func (r *Registry) Histogram(name, help string, bounds []float64) *Histogram {
	h := &Histogram{name: name, help: help, bounds: bounds, counts: make([]atomic.Uint64, len(bounds))}
	r.add(h)
	return h
}

// Observe records one value in seconds.
func (h *Histogram) Observe(sec float64) {
	for i, b := range h.bounds {
		if sec <= b {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumMicros.Add(uint64(math.Round(sec * 1e6)))
}

func (h *Histogram) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", h.name, b, cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", h.name, h.count.Load())
	fmt.Fprintf(w, "%s_sum %g\n%s_count %d\n", h.name, float64(h.sumMicros.Load())/1e6, h.name, h.count.Load())
}

// GaugeFunc is a gauge computed when scraped.
type GaugeFunc struct {
	name, help, label string
	fn                func() map[string]float64
}

// GaugeFunc registers a gauge with one label whose values fn returns.
func (r *Registry) GaugeFunc(name, help, label string, fn func() map[string]float64) {
	r.add(&GaugeFunc{name: name, help: help, label: label, fn: fn})
}

func (g *GaugeFunc) write(w io.Writer) {
	vals := g.fn()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", g.name, g.help, g.name)
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{%s=%q} %g\n", g.name, g.label, k, vals[k])
	}
}
