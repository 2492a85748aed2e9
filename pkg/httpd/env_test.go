package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// The machines every test environment holds. The httptest server's
// clients come from 127.0.0.1, which is macA's reserved address, so asset
// fetches are attributed to macA.
const (
	macA       = "52:54:00:00:00:01" // profile plain, IP 127.0.0.1
	macB       = "52:54:00:00:00:02" // profile plain, IP 127.0.0.2
	macNoKern  = "52:54:00:00:00:03" // profile nokernel
	macDisc    = "52:54:00:00:00:04" // discovered by DHCP, no profile
	macBroken  = "52:54:00:00:00:05" // profile whose stored snippet is not Ignition
	macUnknown = "52:54:00:00:00:99"
)

const (
	kernelBytes = "KERNEL-IMAGE-0123456789abcdef"
	initrdBytes = "INITRD-ARCHIVE-fedcba9876543210"
	secretBytes = "TOPSECRET-outside-the-assets-dir"
	// motdSnippet is a profile's own Ignition, merged into every config.
	motdSnippet = `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hello%20from%20the%20profile%0A"}}]}}`
	// brokenSnippet names a secret so the test can see it never leaks.
	brokenSnippet = `{"ignition":{"version":"9.9.9"},"storage":{"files":[{"path":"relative/SNIPPET-SECRET"}]}}`
)

// lockedBuffer is the server log, readable while handlers write it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// leases is a fixed LeaseView: what a DHCP server would have leased.
type leases map[string]netip.Addr

func (l leases) LeasedIP(mac string) (netip.Addr, bool) { a, ok := l[mac]; return a, ok }
func (l leases) LeasedMAC(ip netip.Addr) (string, bool) {
	for m, a := range l {
		if a == ip {
			return m, true
		}
	}
	return "", false
}

type envOpts struct {
	boot   bootchain.BootConfig
	leases bootchain.LeaseView
	// bind keeps bootsrv's default: a machine's boot script and tokens only
	// for its own address. Without it the env serves any address, since
	// every test client comes from 127.0.0.1 (macA's reservation).
	bind bool
	// noReleases leaves the release catalog empty; by default releasetest's
	// stand-ins are imported into the assets dir, where /assets/ serves
	// them.
	noReleases bool
}

type testEnv struct {
	t      testing.TB
	svc    *core.Service
	st     *state.DB
	srv    *httpd.Server
	ts     *httptest.Server
	reg    *metrics.Registry
	log    *lockedBuffer
	assets string
	outer  string // a directory beside the assets dir, with a secret in it
}

// newEnv builds a real service over bbolt in a temp dir, with the
// machines above, an assets dir, and an httptest server on loopback.
func newEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := core.NewService(st, o.leases)
	if !o.bind {
		o.boot.AnyAddress = true
	}
	outer := filepath.Join(dir, "outer")
	assets := filepath.Join(dir, "assets")
	o.boot.AssetsDir = assets
	svc.Configure(o.boot)
	if _, err := svc.ClusterInit(ctx, model.Cluster{Name: "lab", APIServer: "127.0.0.10"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddProfiles(ctx, []model.Profile{
		{Name: "plain", Role: model.RoleCustom, OS: model.OSFlatcar, Kernel: "/assets/flatcar/vmlinuz",
			Initrds: []string{"/assets/flatcar/initrd.cpio.gz"}, Args: []string{"console=ttyS0"}, Ignition: motdSnippet},
		{Name: "nokernel", Role: model.RoleCustom, OS: model.OSCustom},
		{Name: "broken", Role: model.RoleCustom, OS: model.OSFlatcar, Kernel: "/assets/flatcar/vmlinuz"},
	}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMachines(ctx, []model.Machine{
		{MAC: macA, Hostname: "node1", IP: "127.0.0.1", Profile: "plain"},
		{MAC: macB, Hostname: "node2", IP: "127.0.0.2", Profile: "plain"},
		{MAC: macNoKern, Hostname: "node3", IP: "127.0.0.3", Profile: "nokernel"},
		{MAC: macBroken, Hostname: "node5", IP: "127.0.0.5", Profile: "broken"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Observe(ctx, macDisc, model.Firmware{Arch: "x86_64-efi"}, model.Event{Type: model.StateDHCP}, true); err != nil {
		t.Fatal(err)
	}
	// A snippet that is not Ignition, stored behind validation's back (an
	// older bootsrv, a hand-edited file).
	if err := st.Update(func(tx state.Tx) error {
		return tx.PutProfile(model.Profile{Name: "broken", Role: model.RoleCustom, OS: model.OSFlatcar,
			Kernel: "/assets/flatcar/vmlinuz", Ignition: brokenSnippet})
	}); err != nil {
		t.Fatal(err)
	}

	if !o.noReleases {
		// Into the server's own assets dir (BootConfig.AssetsDir).
		if _, err := svc.ImportReleases(ctx, releasetest.Write(t, t.TempDir(), releasetest.Default), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct{ name, body string }{
		{filepath.Join(outer, "secret"), secretBytes},
		{filepath.Join(assets, "flatcar", "vmlinuz"), kernelBytes},
		{filepath.Join(assets, "flatcar", "initrd.cpio.gz"), initrdBytes},
	} {
		if err := os.MkdirAll(filepath.Dir(f.name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.name, []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct{ target, name string }{
		{"../outer/secret", "escape"},                       // relative, leaves the dir
		{filepath.Join(outer, "secret"), "escape-abs"},      // absolute, leaves the dir
		{"flatcar/vmlinuz", "inside"},                       // stays inside
		{"../../outer", filepath.Join("flatcar", "outdir")}, // a directory outside
	} {
		if err := os.Symlink(l.target, filepath.Join(assets, l.name)); err != nil {
			t.Fatal(err)
		}
	}

	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc.StartRecorder(log)
	t.Cleanup(svc.Close)
	reg := metrics.NewRegistry()
	// What `bootsrv serve` registers beside the HTTP server's own metrics.
	reg.GaugeFunc("bootsrv_machines", "Machines by provisioning state.", "state", svc.StateCounts)
	srv, err := httpd.New(httpd.Config{Addr: "127.0.0.1:0", AssetsDir: assets}, svc, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &testEnv{t: t, svc: svc, st: st, srv: srv, ts: ts, reg: reg, log: logs, assets: assets, outer: outer}
}

type resp struct {
	code   int
	body   string
	header http.Header
}

// do sends a request with the raw path and query given, as a curl would,
// without Go's client cleaning anything.
func (e *testEnv) do(method, pathQuery string, hdr http.Header, body io.Reader) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL, body)
	if err != nil {
		e.t.Fatal(err)
	}
	p, q, _ := strings.Cut(pathQuery, "?")
	req.URL.Opaque = p // sent verbatim: no cleaning, no re-escaping
	req.URL.RawQuery = q
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, pathQuery, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, pathQuery, err)
	}
	return resp{code: res.StatusCode, body: string(b), header: res.Header}
}

func (e *testEnv) get(pathQuery string) resp { return e.do(http.MethodGet, pathQuery, nil, nil) }

func (e *testEnv) machine(mac string) model.Machine {
	e.t.Helper()
	m, err := e.svc.Machine(context.Background(), mac)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *testEnv) events(mac string) []model.Event {
	e.t.Helper()
	evs, err := e.svc.MachineEvents(context.Background(), mac)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// countEvents counts mac's events of type typ.
func (e *testEnv) countEvents(mac, typ string) int {
	n := 0
	for _, ev := range e.events(mac) {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

var tokenRe = regexp.MustCompile(`/ignition\?mac=([0-9a-f:]+)&token=([A-Za-z0-9_-]+)`)

// ignitionToken fetches mac's boot script and returns the Ignition token
// in it.
// previewToken takes the token from `bootsrv render ipxe` (no request, so
// no address check), for tests that then ask from a chosen address.
func (e *testEnv) previewToken(mac string) string {
	e.t.Helper()
	script, err := e.svc.Render(context.Background(), bootchain.RenderIPXE, mac, e.ts.URL)
	if err != nil {
		e.t.Fatalf("render ipxe %s: %v", mac, err)
	}
	m := tokenRe.FindStringSubmatch(script)
	if m == nil {
		e.t.Fatalf("no ignition URL with a token in the boot script of %s:\n%s", mac, script)
	}
	return m[2]
}

func (e *testEnv) ignitionToken(mac string) string {
	e.t.Helper()
	r := e.get("/ipxe?mac=" + mac)
	if r.code != http.StatusOK {
		e.t.Fatalf("/ipxe for %s: %d %s", mac, r.code, r.body)
	}
	m := tokenRe.FindStringSubmatch(r.body)
	if m == nil {
		e.t.Fatalf("no ignition URL with a token in the boot script of %s:\n%s", mac, r.body)
	}
	if m[1] != mac {
		e.t.Fatalf("boot script of %s points at the Ignition of %s", mac, m[1])
	}
	return m[2]
}

// fetchIgnition walks mac through /ipxe and /ignition and returns the
// parsed config.
func (e *testEnv) fetchIgnition(mac string) types.Config {
	e.t.Helper()
	tok := e.ignitionToken(mac)
	r := e.get("/ignition?mac=" + mac + "&token=" + tok)
	if r.code != http.StatusOK {
		e.t.Fatalf("/ignition for %s: %d %s", mac, r.code, r.body)
	}
	var cfg types.Config
	if err := json.Unmarshal([]byte(r.body), &cfg); err != nil {
		e.t.Fatalf("ignition of %s is not JSON: %v", mac, err)
	}
	return cfg
}

// fileContents decodes the data URL of the file at path in cfg.
func fileContents(t testing.TB, cfg types.Config, path string) (string, bool) {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if f.Path != path {
			continue
		}
		if f.Contents.Source == nil {
			t.Fatalf("file %s has no source", path)
		}
		d, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatalf("file %s: data URL %q: %v", path, *f.Contents.Source, err)
		}
		return string(d.Data), true
	}
	return "", false
}

// reportURL returns the report URL the config tells the machine to call.
func reportURL(t testing.TB, cfg types.Config) *url.URL {
	t.Helper()
	env, ok := fileContents(t, cfg, model.ReportEnvPath)
	if !ok {
		t.Fatalf("config writes no %s", model.ReportEnvPath)
	}
	var raw string
	if _, err := fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(env), "BOOTSRV_REPORT_URL="), "%q", &raw); err != nil {
		t.Fatalf("%s: %q: %v", model.ReportEnvPath, env, err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
