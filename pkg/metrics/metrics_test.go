package metrics

import (
	"strings"
	"testing"
)

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
	var sb strings.Builder
	r.Write(&sb)
	out := sb.String()
	for _, want := range []string{
		"# TYPE bootsrv_http_requests_total counter\n",
		`bootsrv_http_requests_total{route="ignition",code="403"} 5` + "\n",
		`bootsrv_http_requests_total{route="ipxe",code="200"} 2` + "\n",
		"# TYPE bootsrv_render_seconds histogram\n",
		`bootsrv_render_seconds_bucket{le="0.001"} 1` + "\n",
		`bootsrv_render_seconds_bucket{le="0.01"} 2` + "\n",
		`bootsrv_render_seconds_bucket{le="+Inf"} 3` + "\n",
		"bootsrv_render_seconds_sum 2.0055\n",
		"bootsrv_render_seconds_count 3\n",
		"# TYPE bootsrv_machines gauge\n",
		`bootsrv_machines{state="dhcp"} 1` + "\n",
		`bootsrv_machines{state="provisioned"} 2` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if c.Value("ipxe", "200") != 2 || c.Value("nope", "x") != 0 {
		t.Errorf("Value = %d, %d", c.Value("ipxe", "200"), c.Value("nope", "x"))
	}
	// Label values are quoted, so a value with a quote cannot break the line.
	c.Inc(`a"b`, "200")
	sb.Reset()
	r.Write(&sb)
	if !strings.Contains(sb.String(), `route="a\"b"`) {
		t.Errorf("label value not escaped:\n%s", sb.String())
	}
}
