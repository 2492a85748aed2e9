package httpd_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// TestFirstStage: the embedded iPXE binaries are served under
// /assets/ipxe/ before the assets dir, and each has its own ETag, so a
// cache never answers one binary with another (embedded files have no
// modification time, and two builds can have the same size).
func TestFirstStage(t *testing.T) {
	st, err := state.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := core.NewService(st, nil)
	first := fstest.MapFS{
		"ipxe.efi":      {Data: []byte("EFI-BUILD-A")},
		"undionly.kpxe": {Data: []byte("BIOS-BUILD1")}, // same size as ipxe.efi
	}
	srv, err := httpd.New(httpd.Config{Addr: "127.0.0.1:0", FirstStage: first}, svc, metrics.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	etags := map[string]string{}
	for name, f := range first {
		res, err := http.Get(ts.URL + "/assets/ipxe/" + name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(b) != string(f.Data) {
			t.Fatalf("%s: %d %q", name, res.StatusCode, b)
		}
		etags[name] = res.Header.Get("ETag")
	}
	if res, _ := http.Get(ts.URL + "/assets/ipxe/nope.efi"); res.StatusCode != http.StatusNotFound {
		t.Errorf("missing first-stage file, no assets dir: %d", res.StatusCode)
	}
	if etags["ipxe.efi"] == etags["undionly.kpxe"] {
		// A client holding ipxe.efi asks for undionly.kpxe with its ETag:
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/assets/ipxe/undionly.kpxe", nil)
		req.Header.Set("If-None-Match", etags["ipxe.efi"])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		t.Errorf("two different embedded files of the same size share the ETag %s, so If-None-Match answers %d for the wrong content", etags["ipxe.efi"], res.StatusCode)
	}
}
