package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads the text exposition format with the Prometheus library's own
// parser, so the tests judge the output as a scraper would.
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return fams
}

func written(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	var sb strings.Builder
	r.Write(&sb)
	return parse(t, sb.String())
}

// sample returns the metric of the family whose labels are exactly want.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, want map[string]string) *dto.Metric {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	if mf.GetType() != typ {
		t.Fatalf("%s has type %v, want %v", name, mf.GetType(), typ)
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		same := true
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				same = false
			}
		}
		if same {
			return m
		}
	}
	t.Fatalf("%s has no series %v; it has %v", name, want, mf.GetMetric())
	return nil
}

func TestWrite(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("bootsrv_http_requests_total", "HTTP requests.", "route", "code")
	c.Inc("ipxe", "200")
	c.Inc("ipxe", "200")
	c.Add(5, "ignition", "403")
	h := r.Histogram("bootsrv_render_seconds", "Render time.", []float64{0.001, 0.01})
	h.Observe(0.0005)
	h.Observe(0.005)
	h.Observe(2)
	r.GaugeFunc("bootsrv_machines", "Machines by state.", "state", func() map[string]float64 {
		return map[string]float64{"provisioned": 2, "dhcp": 1}
	})
	fams := written(t, r)

	if got := fams["bootsrv_http_requests_total"].GetHelp(); got != "HTTP requests." {
		t.Errorf("help = %q", got)
	}
	for _, tc := range []struct {
		route, code string
		want        float64
	}{{"ipxe", "200", 2}, {"ignition", "403", 5}} {
		m := sample(t, fams, "bootsrv_http_requests_total", dto.MetricType_COUNTER, map[string]string{"route": tc.route, "code": tc.code})
		if got := m.GetCounter().GetValue(); got != tc.want {
			t.Errorf("requests{%s,%s} = %g, want %g", tc.route, tc.code, got, tc.want)
		}
	}
	if n := len(fams["bootsrv_http_requests_total"].GetMetric()); n != 2 {
		t.Errorf("%d request series, want 2", n)
	}

	hm := sample(t, fams, "bootsrv_render_seconds", dto.MetricType_HISTOGRAM, map[string]string{}).GetHistogram()
	if hm.GetSampleCount() != 3 {
		t.Errorf("histogram count = %d, want 3", hm.GetSampleCount())
	}
	if s := hm.GetSampleSum(); s < 2.0055-1e-9 || s > 2.0055+1e-9 {
		t.Errorf("histogram sum = %g, want 2.0055", s)
	}
	var bounds []float64
	var cums []uint64
	for _, b := range hm.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		cums = append(cums, b.GetCumulativeCount())
	}
	// The parser folds the +Inf bucket into the sample count.
	if len(bounds) < 2 || bounds[0] != 0.001 || bounds[1] != 0.01 || cums[0] != 1 || cums[1] != 2 {
		t.Errorf("buckets %v = %v, want [0.001 0.01] = [1 2]", bounds, cums)
	}

	for state, want := range map[string]float64{"provisioned": 2, "dhcp": 1} {
		m := sample(t, fams, "bootsrv_machines", dto.MetricType_GAUGE, map[string]string{"state": state})
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("machines{%s} = %g, want %g", state, got, want)
		}
	}

	if c.Value("ipxe", "200") != 2 || c.Value("ignition", "403") != 5 || c.Value("nope", "x") != 0 {
		t.Errorf("Value = %d, %d, %d", c.Value("ipxe", "200"), c.Value("ignition", "403"), c.Value("nope", "x"))
	}
	// Asking for a value does not create a series.
	if n := len(written(t, r)["bootsrv_http_requests_total"].GetMetric()); n != 2 {
		t.Errorf("Value created a series: %d request series, want 2", n)
	}
}

// TestLabelEscaping: label values that %q mis-escaped (non-ASCII, control
// characters) and those any escaping must handle (quote, backslash,
// newline) come back exactly through the Prometheus parser.
func TestLabelEscaping(t *testing.T) {
	values := []string{
		"a\"b",
		`back\slash`,
		"new\nline",
		"größe ✓ 日本",
		"tab\there",
		"nbsp\u00a0zwsp\u200bbom\ufeff", // non-ASCII that %q wrote as \u escapes
		"ctl\x01\x7f",                   // control characters: %q wrote \x01 \x7f
		"all: \" \\ \n é \\n",
		"",
	}
	r := NewRegistry()
	c := r.Counter("t_total", "Escaping.", "v")
	gauge := map[string]float64{}
	for i, v := range values {
		c.Add(uint64(i+1), v)
		gauge[v] = float64(i + 1)
	}
	r.GaugeFunc("t_gauge", "Escaping.", "v", func() map[string]float64 { return gauge })

	var sb strings.Builder
	r.Write(&sb)
	text := sb.String()
	// Non-ASCII is written as UTF-8, not as Go escapes.
	if !strings.Contains(text, "größe ✓ 日本") || !strings.Contains(text, "nbsp\u00a0zwsp") || strings.Contains(text, `\u`) || strings.Contains(text, `\x`) {
		t.Errorf("non-ASCII label value mis-escaped:\n%s", text)
	}
	fams := parse(t, text)
	for i, v := range values {
		want := float64(i + 1)
		if got := sample(t, fams, "t_total", dto.MetricType_COUNTER, map[string]string{"v": v}).GetCounter().GetValue(); got != want {
			t.Errorf("counter %q = %g, want %g", v, got, want)
		}
		if got := sample(t, fams, "t_gauge", dto.MetricType_GAUGE, map[string]string{"v": v}).GetGauge().GetValue(); got != want {
			t.Errorf("gauge %q = %g, want %g", v, got, want)
		}
		if got := c.Value(v); got != uint64(want) {
			t.Errorf("Value(%q) = %d, want %g", v, got, want)
		}
	}
	var got []string
	for _, m := range fams["t_total"].GetMetric() {
		got = append(got, m.GetLabel()[0].GetValue())
	}
	sort.Strings(got)
	wantSorted := append([]string(nil), values...)
	sort.Strings(wantSorted)
	if strings.Join(got, "\x00") != strings.Join(wantSorted, "\x00") {
		t.Errorf("label values %q, want %q", got, wantSorted)
	}
}

// TestInvalidUTF8AndArity: what the library would panic on is mended the
// way the hand-written writer treated it, not a crash.
func TestInvalidUTF8AndArity(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("t_total", "Arity.", "a", "b")
	c.Inc("only-a")            // missing value: empty
	c.Inc("x", "y", "extra")   // extra value: dropped
	c.Inc("bad\xffbyte", "ok") // invalid UTF-8: replaced
	r.GaugeFunc("t_gauge", "Bad key.", "k", func() map[string]float64 { return map[string]float64{"k\xfe": 1} })
	fams := written(t, r)
	for _, want := range []map[string]string{
		{"a": "only-a", "b": ""},
		{"a": "x", "b": "y"},
		{"a": "bad\uFFFDbyte", "b": "ok"},
	} {
		if v := sample(t, fams, "t_total", dto.MetricType_COUNTER, want).GetCounter().GetValue(); v != 1 {
			t.Errorf("%v = %g, want 1", want, v)
		}
	}
	if v := sample(t, fams, "t_gauge", dto.MetricType_GAUGE, map[string]string{"k": "k\uFFFD"}).GetGauge().GetValue(); v != 1 {
		t.Errorf("gauge = %g, want 1", v)
	}
	if c.Value("only-a") != 1 || c.Value("bad\xffbyte", "ok") != 1 {
		t.Errorf("Value = %d, %d", c.Value("only-a"), c.Value("bad\xffbyte", "ok"))
	}
}

// TestGaugeFuncAtScrape: fn runs at each scrape, and keys that disappear
// disappear from the output.
func TestGaugeFuncAtScrape(t *testing.T) {
	r := NewRegistry()
	var mu sync.Mutex
	vals := map[string]float64{"a": 1}
	r.GaugeFunc("t_gauge", "Live.", "k", func() map[string]float64 {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]float64{}
		for k, v := range vals {
			out[k] = v
		}
		return out
	})
	if v := sample(t, written(t, r), "t_gauge", dto.MetricType_GAUGE, map[string]string{"k": "a"}).GetGauge().GetValue(); v != 1 {
		t.Errorf("a = %g, want 1", v)
	}
	mu.Lock()
	vals = map[string]float64{"b": 0.25}
	mu.Unlock()
	fams := written(t, r)
	if v := sample(t, fams, "t_gauge", dto.MetricType_GAUGE, map[string]string{"k": "b"}).GetGauge().GetValue(); v != 0.25 {
		t.Errorf("b = %g, want 0.25", v)
	}
	if n := len(fams["t_gauge"].GetMetric()); n != 1 {
		t.Errorf("%d series, want 1 (a is gone)", n)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	fams := written(t, NewRegistry())
	for _, name := range []string{"go_goroutines", "go_info", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

func TestDuplicatePanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("t_total", "Once.")
	defer func() {
		if recover() == nil {
			t.Error("registering t_total twice did not panic")
		}
	}()
	r.Counter("t_total", "Twice.")
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("bootsrv_http_requests_total", "HTTP requests.", "route", "code")
	c.Inc("ipxe", "200")
	r.Histogram("bootsrv_render_seconds", "Render time.", []float64{0.001}).Observe(0.0002)
	r.GaugeFunc("bootsrv_machines", "Machines.", "state", func() map[string]float64 { return map[string]float64{"dhcp": 3} })
	ts := httptest.NewServer(r.Handler())
	defer ts.Close()

	get := func(accept string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, ts.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	// curl's Accept and none at all: the text format.
	for _, accept := range []string{"", "*/*"} {
		resp, body := get(accept)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: status %d", accept, resp.StatusCode)
		}
		ct := resp.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "text/plain") || expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
			t.Errorf("Accept %q: Content-Type %q, want text/plain; version=0.0.4", accept, ct)
		}
		fams := parse(t, body)
		if v := sample(t, fams, "bootsrv_http_requests_total", dto.MetricType_COUNTER, map[string]string{"route": "ipxe", "code": "200"}).GetCounter().GetValue(); v != 1 {
			t.Errorf("requests = %g, want 1", v)
		}
		if n := sample(t, fams, "bootsrv_render_seconds", dto.MetricType_HISTOGRAM, map[string]string{}).GetHistogram().GetSampleCount(); n != 1 {
			t.Errorf("render count = %d, want 1", n)
		}
		if v := sample(t, fams, "bootsrv_machines", dto.MetricType_GAUGE, map[string]string{"state": "dhcp"}).GetGauge().GetValue(); v != 3 {
			t.Errorf("machines = %g, want 3", v)
		}
		if _, ok := fams["go_goroutines"]; !ok {
			t.Error("Handler lacks go_goroutines")
		}
	}

	// What Prometheus asks for first: OpenMetrics, ended by # EOF.
	resp, body := get("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics Content-Type %q", ct)
	}
	if !strings.HasSuffix(body, "# EOF\n") || !strings.Contains(body, `bootsrv_http_requests_total{code="200",route="ipxe"} 1`) {
		t.Errorf("OpenMetrics body:\n%s", body)
	}
	if strings.Contains(body, "_created") {
		t.Errorf("OpenMetrics body has _created series:\n%s", body)
	}
}
