package httpd_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzQuery: no path and query string sent to the boot chain's routes
// crashes a handler or makes bootsrv fail (a 5xx): whatever a machine or
// an attacker sends is answered, at worst refused with a 4xx.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"/ipxe?mac=52:54:00:00:00:01",
		"/ipxe?mac=52-54-00-00-00-01&x=%zz",
		"/ignition?mac=52:54:00:00:00:01&token=AAAA&stage=final",
		"/report?mac=52:54:00:00:00:01&state=booted&token=&detail=%00",
		"/certs?mac=ff:ff:ff:ff:ff:ff&token=x&have=y",
		"/assets/../../etc/passwd",
		"/boot.ipxe",
		"/ipxe?mac=" + strings.Repeat("a", 300),
	} {
		f.Add(s)
	}
	e := newEnv(f, envOpts{})
	// Its profile is a stored bad snippet: its 500 is the operator's
	// configuration at fault (tested elsewhere), not the request.
	if err := e.svc.RemoveMachine(context.Background(), macBroken); err != nil {
		f.Fatal(err)
	}
	h := e.srv.Handler()
	f.Fuzz(func(t *testing.T, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return // not a request line a client could send
		}
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			// As the server makes them: a body (empty), never nil.
			req, err := http.NewRequest(method, "http://127.0.0.1:8080"+target, http.NoBody)
			if err != nil {
				return
			}
			req.RemoteAddr = "127.0.0.1:40000"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body.String())
			}
		}
	})
}
