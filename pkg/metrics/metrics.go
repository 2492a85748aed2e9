// Package metrics keeps bootsrv's counters, histograms and computed gauges
// and exposes them for Prometheus. It is a thin layer over
// github.com/prometheus/client_golang: each Registry owns its own
// prometheus.Registry (never the global default one), and the exposition
// (text escaping, number formatting, content negotiation) is the library's.
package metrics

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Registry holds every metric of one server, plus the Go runtime and
// process collectors.
type Registry struct {
	reg     *prometheus.Registry
	handler http.Handler
}

// NewRegistry returns a registry with the Go runtime (go_*) and process
// (process_*) collectors registered and nothing else.
func NewRegistry() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Registry{
		reg: reg,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			// Prometheus asks for OpenMetrics first; curl and older
			// scrapers still get the text format. No synthetic _created
			// series: they would double the series count on servers
			// that do not turn them into created timestamps.
			EnableOpenMetrics: true,
		}),
	}
}

// Handler serves the registry's metrics, negotiating the format (text,
// OpenMetrics, protobuf) and compression with the client.
func (r *Registry) Handler() http.Handler { return r.handler }

// Write writes every metric in the Prometheus text exposition format
// (version 0.0.4), families sorted by name. A collection error leaves out
// only the metrics it concerns.
func (r *Registry) Write(w io.Writer) {
	mfs, _ := r.reg.Gather() // what could be gathered is still returned
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}

// CounterVec is a counter with labels.
type CounterVec struct {
	vec    *prometheus.CounterVec
	labels int
	// kids caches the child counter by joined label values, so the hot
	// path is one map load and no label hashing.
	kids sync.Map // string -> prometheus.Counter
}

// Counter registers a counter with the given label names. It panics if
// the name or a label name is invalid or the name is already registered.
func (r *Registry) Counter(name, help string, labels ...string) *CounterVec {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	r.reg.MustRegister(vec)
	return &CounterVec{vec: vec, labels: len(labels)}
}

// Inc adds one for the label values, given in the order of the names.
func (c *CounterVec) Inc(values ...string) { c.Add(1, values...) }

// Add adds n for the label values.
func (c *CounterVec) Add(n uint64, values ...string) {
	key := strings.Join(values, "\x00")
	k, ok := c.kids.Load(key)
	if !ok {
		k, _ = c.kids.LoadOrStore(key, c.vec.WithLabelValues(labelValues(values, c.labels)...))
	}
	k.(prometheus.Counter).Add(float64(n))
}

// Value returns the count for the label values (0 for values never
// counted; asking does not create the series).
func (c *CounterVec) Value(values ...string) uint64 {
	k, ok := c.kids.Load(strings.Join(values, "\x00"))
	if !ok {
		return 0
	}
	var m dto.Metric
	if err := k.(prometheus.Counter).Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}

// labelValues fits values to n labels as before the library: missing
// values are empty, extra ones dropped, and invalid UTF-8 (which the
// library refuses with a panic) replaced, so a caller's mistake or a
// byte string from the network cannot crash the server.
func labelValues(values []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		if i < len(values) {
			out[i] = validUTF8(values[i])
		}
	}
	return out
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Histogram counts observations (seconds) in cumulative buckets.
type Histogram struct {
	h prometheus.Histogram
}

// Histogram registers a histogram with upper bounds in seconds, which
// must be increasing. It panics if the name is invalid or already
// registered.
func (r *Registry) Histogram(name, help string, bounds []float64) *Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: bounds})
	r.reg.MustRegister(h)
	return &Histogram{h: h}
}

// Observe records one value in seconds.
func (h *Histogram) Observe(sec float64) { h.h.Observe(sec) }

// gaugeFunc is a collector whose gauges fn computes at each scrape, one
// per key of the map it returns.
type gaugeFunc struct {
	desc *prometheus.Desc
	fn   func() map[string]float64
}

// GaugeFunc registers a gauge with one label whose values fn returns when
// scraped. fn may be called from several scrapes at once. It panics if
// the name is invalid or already registered.
func (r *Registry) GaugeFunc(name, help, label string, fn func() map[string]float64) {
	r.reg.MustRegister(&gaugeFunc{desc: prometheus.NewDesc(name, help, []string{label}, nil), fn: fn})
}

func (g *gaugeFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeFunc) Collect(ch chan<- prometheus.Metric) {
	for k, v := range g.fn() {
		m, err := prometheus.NewConstMetric(g.desc, prometheus.GaugeValue, v, validUTF8(k))
		if err != nil {
			m = prometheus.NewInvalidMetric(g.desc, err)
		}
		ch <- m
	}
}
