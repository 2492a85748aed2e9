package dhcp

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/metrics"
)

// An exchange counts by message type and decision, and the lease table's
// gauges say what it holds: read back with Prometheus's own parser.
func TestMetrics(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	leases, err := lease.Open(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	s, err := New(context.Background(), Config{Settings: *testSettings(ModeFull, UnknownDiscover), Interfaces: []string{"lo"}, Metrics: reg},
		core.NewService(st, leases), leases)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l := &listener{iface: "lo", server: srvIP, port: ServerPort, conn: conn}
	peer := netip.MustParseAddrPort("127.0.0.1:68")
	discover := pkt{hw: otherHW, mt: dhcpv4.MessageTypeDiscover, arch: 7, vendor: vcUEFI}.build(t)
	s.handle(context.Background(), l, discover.ToBytes(), peer)
	notPXE := pkt{hw: knownHW, mt: dhcpv4.MessageTypeDiscover, arch: -1}.build(t)
	s.handle(context.Background(), l, notPXE.ToBytes(), peer)
	s.handle(context.Background(), l, []byte("not dhcp"), peer)

	var buf bytes.Buffer
	reg.Write(&buf)
	parser := expfmt.NewTextParser(prommodel.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, buf.String())
	}
	value := func(name string, labels map[string]string) float64 {
		f := fams[name]
		if f == nil {
			t.Fatalf("no family %s", name)
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if f.GetType() == dto.MetricType_COUNTER {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
		return -1
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"bootsrv_dhcp_requests_total", map[string]string{"type": "DISCOVER", "decision": "offer"}, 1},
		{"bootsrv_dhcp_requests_total", map[string]string{"type": "DISCOVER", "decision": "ignored"}, 1},
		{"bootsrv_dhcp_requests_total", map[string]string{"type": "invalid", "decision": "unparsable"}, 1},
		{"bootsrv_dhcp_leases", map[string]string{"state": "offered"}, 1},
		{"bootsrv_dhcp_leases", map[string]string{"state": "bound"}, 0},
		{"bootsrv_dhcp_pool_addresses", map[string]string{"subnet": "10.99.0.0/24"}, 100},
	} {
		if got := value(tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
