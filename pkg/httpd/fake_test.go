package httpd_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// fakeChain is a BootChain that answers what it is told and remembers
// what it was asked: the handlers' own logic, without a state file.
type fakeChain struct {
	script string
	err    error
	got    []bootchain.BootRequest
	said   []string
}

func (f *fakeChain) IPXE(_ context.Context, req bootchain.BootRequest, _ bool) (string, error) {
	f.got = append(f.got, req)
	return f.script, f.err
}
func (f *fakeChain) Ignition(_ context.Context, req bootchain.BootRequest) ([]byte, error) {
	f.got = append(f.got, req)
	return []byte(`{"ignition":{"version":"3.4.0"}}`), f.err
}
func (f *fakeChain) NodeCertificates(_ context.Context, req bootchain.BootRequest, _ string) ([]byte, error) {
	f.got = append(f.got, req)
	return nil, f.err
}
func (f *fakeChain) Report(_ context.Context, req bootchain.BootRequest, state, detail string) (model.Machine, error) {
	f.got = append(f.got, req)
	f.said = append(f.said, state+":"+detail)
	return model.Machine{MAC: req.MAC, State: model.StateProvisioned}, f.err
}
func (f *fakeChain) AssetFetched(netip.Addr, string, int) {}

func fakeServer(t *testing.T, f *fakeChain) http.Handler {
	t.Helper()
	s, err := httpd.New(httpd.Config{}, f, metrics.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

func call(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = "10.0.0.7:5000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Each fault kind becomes its status; a refusal tells the machine why, a
// failure of bootsrv's own keeps the cause for the log.
func TestHandlersMapFaults(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     int
		says     string
		mustNot  string
		endpoint string
	}{
		{fault.Deniedf("token refused: expired"), 403, "token refused: expired", "", "/ignition?mac=52:54:00:00:00:01&token=x"},
		{fault.NotFoundf("machine 52:54:00:00:00:01 does not exist"), 404, "does not exist", "", "/ipxe?mac=52:54:00:00:00:01"},
		{errors.New("disk full at /var/lib/bootsrv"), 500, "server log", "disk full", "/ignition?mac=52:54:00:00:00:01&token=x"},
	} {
		f := &fakeChain{err: tc.err}
		w := call(fakeServer(t, f), http.MethodGet, tc.endpoint, "")
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.says) || (tc.mustNot != "" && strings.Contains(w.Body.String(), tc.mustNot)) {
			t.Errorf("%s with %v: %d %q; want %d saying %q and not %q", tc.endpoint, tc.err, w.Code, w.Body, tc.code, tc.says, tc.mustNot)
		}
	}
}

// The report handler passes the machine's words and its address on, and
// answers with the state the core gives.
func TestReportPassesWhatTheMachineSaid(t *testing.T) {
	f := &fakeChain{}
	w := call(fakeServer(t, f), http.MethodPost, "/report?mac=52-54-00-00-00-01&token=t&state=failed", "disk /dev/sda missing")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "ok 52-54-00-00-00-01 provisioned") {
		t.Fatalf("report: %d %q", w.Code, w.Body)
	}
	if len(f.got) != 1 || f.got[0].Token != "t" || f.got[0].RemoteIP != netip.MustParseAddr("10.0.0.7") || f.said[0] != "failed:disk /dev/sda missing" {
		t.Fatalf("core was asked %+v %q", f.got, f.said)
	}
	if w := call(fakeServer(t, f), http.MethodGet, "/report?mac=52:54:00:00:00:01", ""); w.Code != 400 {
		t.Errorf("report without a state: %d, want 400", w.Code)
	}
}

// An address refused too often gets 429 with Retry-After before any work
// (the boot chain is not asked); other addresses are not affected, and
// requests that succeed do not count.
func TestRefusedTooOftenIs429(t *testing.T) {
	f := &fakeChain{err: fault.Deniedf("token: not this machine's")}
	h := fakeServer(t, f)
	from := func(addr, target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const bad = "/ignition?mac=52:54:00:00:00:01&token=forged"
	n403 := 0
	for i := 0; i < 100; i++ {
		w := from("10.0.0.66:4000", bad)
		if w.Code == http.StatusTooManyRequests {
			if w.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
		if w.Code != http.StatusForbidden {
			t.Fatalf("refusal %d: %d, want 403", i, w.Code)
		}
		n403++
	}
	if n403 == 0 || n403 >= 100 {
		t.Fatalf("%d refusals before a 429, want some and a 429 within 100", n403)
	}
	asked := len(f.got)
	for _, target := range []string{bad, "/report?mac=52:54:00:00:00:01&state=booted&token=x", "/ipxe?mac=52:54:00:00:00:01"} {
		if w := from("10.0.0.66:4001", target); w.Code != http.StatusTooManyRequests {
			t.Errorf("%s from the refused address: %d, want 429", target, w.Code)
		}
	}
	if len(f.got) != asked {
		t.Errorf("the boot chain was asked %d times after the 429s began, want 0", len(f.got)-asked)
	}
	if w := from("10.0.0.67:4000", bad); w.Code != http.StatusForbidden {
		t.Errorf("another address: %d, want its own 403", w.Code)
	}
	f.err = nil
	for i := 0; i < 100; i++ {
		if w := from("10.0.0.68:4000", "/ipxe?mac=52:54:00:00:00:01"); w.Code != http.StatusOK {
			t.Fatalf("request %d that succeeds: %d, want 200 every time", i, w.Code)
		}
	}
}
