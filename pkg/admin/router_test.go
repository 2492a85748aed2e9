package admin

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
)

// TestRouterErrorsAreJSON: a path or method the API does not have is
// answered in the API's error format, with a kind, so the client (and the
// CLI's exit code) never sees a bare "HTTP 404".
func TestRouterErrorsAreJSON(t *testing.T) {
	c, sock := serve(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, tc := range []struct {
		method, path string
		code         int
		kind         fault.Kind
	}{
		{http.MethodGet, "/v1/nowhere", http.StatusNotFound, fault.KindNotFound},
		{http.MethodGet, "/v1/machines/a/b/c", http.StatusNotFound, fault.KindNotFound},
		{http.MethodPut, "/v1/machines/52:54:00:00:00:01", http.StatusMethodNotAllowed, fault.KindInvalid},
		{http.MethodDelete, "/v1/render/ipxe/aa%2Fbb", http.StatusMethodNotAllowed, fault.KindInvalid},
	} {
		req, err := http.NewRequest(tc.method, "http://bootsrv/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = tc.path // sent as is
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb errorBody
		err = json.NewDecoder(res.Body).Decode(&eb)
		res.Body.Close()
		if res.StatusCode != tc.code || err != nil || eb.Kind != tc.kind || eb.Error == "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: HTTP %d %+v (%v), want %d kind %q", tc.method, tc.path, res.StatusCode, eb, err, tc.code, tc.kind)
		}
	}
	// A profile name with an escaped slash reaches the service whole.
	if _, err := c.Profile(context.Background(), "a/b"); fault.KindOf(err) != fault.KindNotFound || !strings.Contains(err.Error(), "a/b") {
		t.Errorf("Profile(a/b) = %v", err)
	}
}
