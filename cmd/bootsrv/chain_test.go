package main

// The boot chain end to end: a real `bootsrv serve` process on a loopback
// port, loaded with the CLI through its admin socket, and one machine
// walked through /boot.ipxe, /ipxe, /assets, /ignition and /report with
// plain HTTP requests, its state read back with `bootsrv machine show`
// after each step. The served Ignition must pass the real
// ignition-validate, built from the module proxy (and cached under
// $TMPDIR/bootsrv-test-tools).

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	"github.com/vincent-petithory/dataurl"

	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

// chainIgnitionVersion is the Ignition release whose validator the test
// runs: the one go.mod pins.
const chainIgnitionVersion = "v2.24.0"

var (
	chainValidateOnce sync.Once
	chainValidatePath string
	chainValidateErr  error
)

// chainValidator returns the path of ignition-validate, building it once
// per cache dir with `go install` from the module proxy.
func chainValidator(t *testing.T) string {
	t.Helper()
	chainValidateOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "bootsrv-test-tools")
		final := filepath.Join(dir, "ignition-validate-"+chainIgnitionVersion)
		if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() {
			chainValidatePath = final
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			chainValidateErr = err
			return
		}
		tmp, err := os.MkdirTemp(dir, "build-")
		if err != nil {
			chainValidateErr = err
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "install", "github.com/coreos/ignition/v2/validate@"+chainIgnitionVersion)
		cmd.Dir = tmp // outside this module: go install pkg@version ignores go.mod anyway
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			chainValidateErr = fmt.Errorf("go install github.com/coreos/ignition/v2/validate@%s: %v\n%s", chainIgnitionVersion, err, out)
			return
		}
		// Rename is atomic: a concurrent run sees the whole binary or none.
		if err := os.Rename(filepath.Join(tmp, "validate"), final); err != nil {
			chainValidateErr = err
			return
		}
		chainValidatePath = final
	})
	if chainValidateErr != nil {
		t.Skipf("ignition-validate is not available (needs the Go module proxy): %v", chainValidateErr)
	}
	return chainValidatePath
}

// chainValidate runs ignition-validate on cfg: it must exit 0 and say
// nothing (it prints warnings too).
func chainValidate(t *testing.T, what string, cfg []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.ign")
	if err := os.WriteFile(f, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(chainValidator(t), f).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("ignition-validate on %s: %v\n%s\nconfig: %s", what, err, out, cfg)
	}
}

// chainBuild builds this command into dir.
func chainBuild(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bootsrv")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lockedBuf collects a process's output while it runs.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type chainEnv struct {
	t       *testing.T
	bin     string
	dataDir string
	base    string // http://127.0.0.1:PORT
	log     *lockedBuf
	proc    *os.Process // the server chainServe started
}

// cli runs a bootsrv command against the data dir and returns stdout.
func (c *chainEnv) cli(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "BOOTSRV_DATA_DIR="+c.dataDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("bootsrv %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// state is the machine's state as `bootsrv machine show MAC -o json` says.
func (c *chainEnv) state(mac string) string {
	c.t.Helper()
	var m struct {
		State  string `json:"state"`
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
	}
	out := c.cli("machine", "show", "-o", "json", mac)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		c.t.Fatalf("machine show -o json: %v\n%s", err, out)
	}
	return m.State
}

func (c *chainEnv) wantState(mac, want, after string) {
	c.t.Helper()
	if got := c.state(mac); got != want {
		c.t.Fatalf("after %s: state %q, want %q\nserver log:\n%s", after, got, want, c.log.String())
	}
}

// fetch sends a request and returns the status and body.
func (c *chainEnv) fetch(method, u string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, b
}

func (c *chainEnv) get200(u string) []byte {
	c.t.Helper()
	code, b := c.fetch(http.MethodGet, u)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", u, code, b)
	}
	return b
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	chainKernelRe = regexp.MustCompile(`(?m)^kernel (\S+) (.*) \|\| goto`)
	chainInitrdRe = regexp.MustCompile(`(?m)^initrd --name \S+ (\S+) \|\| goto`)
	chainIgnRe    = regexp.MustCompile(`ignition\.config\.url=(\S+)`)
	chainReportRe = regexp.MustCompile(`BOOTSRV_REPORT_URL=("[^"]*")`)
)

// chainReportURL is the report URL in a config's report.env.
func chainReportURL(t *testing.T, ign []byte) string {
	t.Helper()
	var cfg struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source string `json:"source"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(ign, &cfg); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != "/etc/bootsrv/report.env" {
			continue
		}
		env, err := url.PathUnescape(strings.TrimPrefix(f.Contents.Source, "data:,"))
		if err != nil {
			t.Fatal(err)
		}
		var u string
		if m := chainReportRe.FindStringSubmatch(env); m != nil {
			if _, err := fmt.Sscanf(m[1], "%q", &u); err == nil {
				return u
			}
		}
	}
	t.Fatalf("no report URL in the config: %s", ign)
	return ""
}

// chainServe starts `bootsrv serve` on a free loopback port with extra
// flags, waits until it answers, and returns a function that SIGTERMs it
// (by PID) and returns its exit error. Cleanup kills it if the test did
// not stop it.
func chainServe(t *testing.T, c *chainEnv, assets string, flags ...string) (stop func() error) {
	t.Helper()
	addr := freeLoopbackPort(t)
	c.base = "http://" + addr
	args := append([]string{"serve", "--data-dir", c.dataDir, "--http-addr", addr, "--assets-dir", assets}, flags...)
	srv := exec.Command(c.bin, args...)
	srv.Stdout, srv.Stderr = c.log, c.log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.proc = srv.Process
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = srv.Process.Kill() // by PID: only the server this test started
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(c.base + "/healthz")
		if err == nil {
			res.Body.Close()
			if _, err := os.Stat(filepath.Join(c.dataDir, "bootsrv.sock")); res.StatusCode == http.StatusOK && err == nil {
				break
			}
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("bootsrv serve exited: %v\n%s", err, c.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootsrv serve did not answer /healthz in 30 s:\n%s", c.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() error {
		if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case err := <-exited:
			stopped = true
			return err
		case <-time.After(30 * time.Second):
			return errors.New("bootsrv serve did not stop within 30 s of SIGTERM")
		}
	}
}

func TestChain(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	chainValidator(t) // skip early when it cannot be had
	dir := t.TempDir()
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: filepath.Join(dir, "data"), log: &lockedBuf{}}
	assets := filepath.Join(dir, "assets")
	kernel, initrd := []byte("fake kernel image\x00\x01\x02"), bytes.Repeat([]byte("initrd!"), 100000)
	for name, body := range map[string][]byte{"lab/vmlinuz": kernel, "lab/initrd.img": initrd} {
		p := filepath.Join(assets, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}

	stop := chainServe(t, c, assets, "--token-ttl", "10m", "--report-timeout", "1h")

	// Load it through the running server's admin socket.
	const mac, hyp = "52:54:00:c4:a1:01", "52-54-00-c4-a1-01"
	snippet := filepath.Join(dir, "snippet.ign")
	if err := os.WriteFile(snippet, []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","mode":420,"contents":{"source":"data:,provisioned%20by%20bootsrv%0A"}}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	c.cli("profile", "add", "--role", "custom", "--os", "lab", "--kernel", "/assets/lab/vmlinuz",
		"--initrd", "/assets/lab/initrd.img", "--arg", "quiet", "--ignition", snippet, "lab")
	c.cli("machine", "add", "--profile", "lab", "--hostname", "node1", "--ip", "127.0.0.1", mac)
	c.wantState(mac, "registered", "machine add")

	// 1. The fixed first script.
	boot := string(c.get200(c.base + "/boot.ipxe"))
	if !strings.Contains(boot, c.base+"/ipxe?mac=${mac:hexhyp}") {
		t.Fatalf("/boot.ipxe:\n%s", boot)
	}
	// 2. The machine's script, asked the way iPXE expands boot.ipxe.
	script := string(c.get200(c.base + "/ipxe?mac=" + hyp + "&uuid=&serial=&arch=x86_64&platform=pcbios"))
	c.wantState(mac, "ipxe", "/ipxe")
	km := chainKernelRe.FindStringSubmatch(script)
	im := chainInitrdRe.FindStringSubmatch(script)
	gm := chainIgnRe.FindStringSubmatch(script)
	if km == nil || im == nil || gm == nil {
		t.Fatalf("boot script lacks kernel, initrd or ignition URL:\n%s", script)
	}
	if km[1] != c.base+"/assets/lab/vmlinuz" || !strings.Contains(km[2], "quiet") || !strings.Contains(km[2], "initrd=initrd.img") {
		t.Errorf("kernel line: %s %s", km[1], km[2])
	}
	// 3. Kernel and initrd, as iPXE fetches them.
	if got := c.get200(km[1]); !bytes.Equal(got, kernel) {
		t.Errorf("kernel: %d bytes, want %d", len(got), len(kernel))
	}
	c.wantState(mac, "kernel", "the kernel fetch")
	if got := c.get200(im[1]); !bytes.Equal(got, initrd) {
		t.Errorf("initrd: %d bytes, want %d", len(got), len(initrd))
	}
	// 4. Ignition, with the token of the script.
	ign := c.get200(gm[1])
	c.wantState(mac, "ignition", "/ignition")
	chainValidate(t, "the served config", ign)
	if !bytes.Contains(ign, []byte("/etc/motd")) || !bytes.Contains(ign, []byte("/etc/hostname")) {
		t.Errorf("config lacks the snippet's or bootsrv's files: %s", ign)
	}
	// Without the token: refused.
	u, _ := url.Parse(gm[1])
	q := u.Query()
	q.Del("token")
	u.RawQuery = q.Encode()
	if code, _ := c.fetch(http.MethodGet, u.String()); code != http.StatusForbidden {
		t.Errorf("/ignition without a token: %d", code)
	}
	// 5. The booted machine reports, with the URL its config gave it.
	reportURL := chainReportURL(t, ign)
	// What the unit runs: curl -X POST "$BOOTSRV_REPORT_URL&state=booted".
	if code, body := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusOK {
		t.Fatalf("report: %d %s", code, body)
	}
	c.wantState(mac, "provisioned", "the report")

	// 6. Provisioned, and live (the profile's default install): nothing is
	// on its disk, so its next netboot runs its config again and reports
	// again; it is never sent to the disk.
	live := string(c.get200(c.base + "/ipxe?mac=" + hyp))
	if strings.Contains(live, "local disk") || !chainKernelRe.MatchString(live) || !chainIgnRe.MatchString(live) {
		t.Fatalf("provisioned live machine's script:\n%s", live)
	}
	c.wantState(mac, "provisioned", "the boot script of a provisioned live machine")
	ign2 := c.get200(chainIgnRe.FindStringSubmatch(live)[1])
	chainValidate(t, "the config served again", ign2)
	if chainReportURL(t, ign2) != reportURL {
		t.Errorf("the same install's config reports to %s, the first to %s", chainReportURL(t, ign2), reportURL)
	}
	if code, body := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusOK {
		t.Errorf("second report of a live machine: %d %s, want 200", code, body)
	}
	c.wantState(mac, "provisioned", "the second report")

	// The CLI shows what the machine gets, and it validates.
	rendered := c.cli("render", "ignition", mac)
	chainValidate(t, "bootsrv render ignition", []byte(strings.TrimSpace(rendered)))
	if r := chainReportURL(t, []byte(rendered)); !strings.HasPrefix(r, c.base+"/report?mac="+mac+"&token=") {
		t.Errorf("render ignition's report URL %s is not on the server (%s)", r, c.base)
	}
	if r := c.cli("render", "ipxe", mac); strings.Contains(r, "local disk") || !chainKernelRe.MatchString(r) {
		t.Errorf("render ipxe of a provisioned live machine:\n%s", r)
	}

	// 7. Reprovision: the install script again, and the old report URL dies.
	c.cli("machine", "reprovision", mac)
	again := string(c.get200(c.base + "/ipxe?mac=" + hyp))
	if !chainKernelRe.MatchString(again) || !chainIgnRe.MatchString(again) {
		t.Fatalf("after reprovision:\n%s", again)
	}
	c.wantState(mac, "ipxe", "/ipxe after reprovision")
	if code, _ := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusForbidden {
		t.Errorf("report URL of the earlier install: %d, want 403", code)
	}

	// The history has every step, and the metrics count them.
	events := c.cli("machine", "events", "-o", "json", mac)
	var evs []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(events), &evs); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	joined := " " + strings.Join(types, " ") + " "
	for _, want := range []string{"ipxe", "kernel", "initrd", "ignition", "denied", "report", "provisioned", "reprovision"} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Errorf("events lack %q: %s", want, joined)
		}
	}
	if strings.Contains(joined, " localboot ") {
		t.Errorf("a live machine was told to boot from disk: %s", joined)
	}
	// Read with the Prometheus library's parser: the exposition is the
	// library's (label names sorted, its number format), not fixed lines.
	metrics := string(c.get200(c.base + "/metrics"))
	tp := expfmt.NewTextParser(prommodel.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, metrics)
	}
	for _, want := range []struct {
		name  string
		typ   dto.MetricType
		label map[string]string
		value float64
	}{
		{"bootsrv_http_requests_total", dto.MetricType_COUNTER, map[string]string{"route": "ipxe", "code": "200"}, 3},
		{"bootsrv_http_requests_total", dto.MetricType_COUNTER, map[string]string{"route": "ignition", "code": "403"}, 1},
		{"bootsrv_http_requests_total", dto.MetricType_COUNTER, map[string]string{"route": "ignition", "code": "200"}, 2},
		{"bootsrv_machines", dto.MetricType_GAUGE, map[string]string{"state": "ipxe"}, 1},
		{"bootsrv_render_seconds", dto.MetricType_HISTOGRAM, map[string]string{}, -1}, // present, any count
	} {
		if got, ok := chainMetric(fams, want.name, want.typ, want.label); !ok || (want.value >= 0 && got != want.value) {
			t.Errorf("metrics: %s%v = %g (present %v), want %g:\n%s", want.name, want.label, got, ok, want.value, metrics)
		}
	}

	// 8. SIGTERM, by PID: a clean exit 0 with every event committed.
	if err := stop(); err != nil {
		t.Fatalf("bootsrv serve after SIGTERM: %v\n%s", err, c.log.String())
	}
	// The state file is free again, and the CLI reads it directly.
	c.wantState(mac, "ipxe", "the restart")
	if t.Failed() {
		t.Logf("server log:\n%s", c.log.String())
	}
}

// TestChainReportTimeout: `--report-timeout` is wired to the sweep: a
// machine that fetched Ignition and never reports is marked failed, with
// the reason in its history.
func TestChainReportTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	dir := t.TempDir()
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: filepath.Join(dir, "data"), log: &lockedBuf{}}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:c4:a1:02"
	c.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	c.cli("profile", "add", "--role", "custom", "--kernel", "/assets/k", "p")
	c.cli("machine", "add", "--profile", "p", "--hostname", "silent", "--ip", "127.0.0.1", mac)
	stop := chainServe(t, c, dir, "--report-timeout", "200ms")
	gm := chainIgnRe.FindStringSubmatch(string(c.get200(c.base + "/ipxe?mac=" + mac)))
	if gm == nil {
		t.Fatal("no ignition URL")
	}
	c.get200(gm[1])
	// The sweep runs every timeout/4; wait for it, bounded.
	deadline := time.Now().Add(20 * time.Second)
	for c.state(mac) != "failed" {
		if time.Now().After(deadline) {
			t.Fatalf("still %q 20 s after a 200ms report timeout:\n%s", c.state(mac), c.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ev := c.cli("machine", "events", mac); !strings.Contains(ev, "no report within") {
		t.Errorf("history lacks the reason:\n%s", ev)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, c.log.String())
	}
}

// fetchFrom is fetch from the loopback address ip (all of 127/8 is local
// on Linux), as the machine at ip would ask.
func (c *chainEnv) fetchFrom(ip, method, u string) (int, []byte) {
	c.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s from %s: %v", method, u, ip, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, b
}

func (c *chainEnv) get200From(ip, u string) []byte {
	c.t.Helper()
	code, b := c.fetchFrom(ip, http.MethodGet, u)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s from %s: %d %s", u, ip, code, b)
	}
	return b
}

// chainConfig is what the chain tests read of a served config.
type chainConfig struct {
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Mode     int    `json:"mode"`
			Contents struct {
				Source       string `json:"source"`
				Verification struct {
					Hash string `json:"hash"`
				} `json:"verification"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
	Systemd struct {
		Units []struct {
			Name     string `json:"name"`
			Enabled  bool   `json:"enabled"`
			Contents string `json:"contents"`
		} `json:"units"`
	} `json:"systemd"`
}

// chainMetric is the value of the series of family name whose labels are
// exactly labels (a histogram's is its sample count), if the family has
// type typ and that series.
func chainMetric(fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, labels map[string]string) (float64, bool) {
	mf, ok := fams[name]
	if !ok || mf.GetType() != typ {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		switch typ {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
		return 0, false
	}
	return 0, false
}

func chainParse(t *testing.T, ign []byte) chainConfig {
	t.Helper()
	var cfg chainConfig
	if err := json.Unmarshal(ign, &cfg); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, ign)
	}
	return cfg
}

// chainFile returns the decoded data URL of the file at p, and whether
// the config writes it.
func chainFile(t *testing.T, ign []byte, p string) (string, bool) {
	t.Helper()
	for _, f := range chainParse(t, ign).Storage.Files {
		if f.Path == p {
			d, err := dataurl.DecodeString(f.Contents.Source)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			return string(d.Data), true
		}
	}
	return "", false
}

// chainEnvFile reads KEY="VALUE" lines.
func chainEnvFile(t *testing.T, s string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		k, v, _ := strings.Cut(l, "=")
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		env[k] = v
	}
	return env
}

// TestChainDiskInstall: installs to disk through a real server. Flatcar:
// the live image gets the installer config, which fetches the final
// config (&stage=final) named in its install.env and reports
// "installed"; the machine is then sent to its disk, and the installed
// system's "booted" provisions it, once. Fedora CoreOS: the boot script
// hands the live image the device and the final config's URL, and an
// installer config that reports "installed" so the next netboot goes to
// the disk. Every config passes the real ignition-validate.
func TestChainDiskInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	chainValidator(t)
	dir := t.TempDir()
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: filepath.Join(dir, "data"), log: &lockedBuf{}}
	assets := filepath.Join(dir, "assets")
	for _, name := range []string{"flatcar/vmlinuz", "flatcar/initrd.cpio.gz", "fcos/vmlinuz"} {
		p := filepath.Join(assets, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	snippet := filepath.Join(dir, "snippet.ign")
	if err := os.WriteFile(snippet, []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","mode":420,"contents":{"source":"data:,installed%20by%20bootsrv%0A"}}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := chainServe(t, c, assets, "--token-ttl", "10m")
	const fcar, fcos = "52:54:00:c4:a2:01", "52:54:00:c4:a2:02"
	c.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	c.cli("profile", "add", "--role", "custom", "--os", "flatcar", "--install", "disk", "--kernel", "/assets/flatcar/vmlinuz",
		"--initrd", "/assets/flatcar/initrd.cpio.gz", "--ignition", snippet, "fdisk")
	c.cli("profile", "add", "--role", "custom", "--os", "fcos", "--install", "disk", "--install-device", "/dev/vda", "--kernel", "/assets/fcos/vmlinuz", "cdisk")
	c.cli("machine", "add", "--profile", "fdisk", "--hostname", "flat1", "--ip", "127.0.0.1", fcar)
	c.cli("machine", "add", "--profile", "cdisk", "--hostname", "core1", "--ip", "127.0.0.2", fcos)

	t.Run("flatcar", func(t *testing.T) {
		c.t = t
		script := string(c.get200(c.base + "/ipxe?mac=" + fcar))
		gm := chainIgnRe.FindStringSubmatch(script)
		if gm == nil || !strings.Contains(script, "flatcar.first_boot=1") {
			t.Fatalf("Flatcar disk boot script:\n%s", script)
		}
		inst := c.get200(gm[1])
		c.wantState(fcar, "ignition", "the installer config")
		chainValidate(t, "the installer config", inst)
		var unit string
		for _, u := range chainParse(t, inst).Systemd.Units {
			if u.Name == "bootsrv-install.service" && u.Enabled {
				unit = u.Contents
			}
		}
		if !strings.Contains(unit, "flatcar-install") {
			t.Errorf("no enabled bootsrv-install.service running flatcar-install: %s", inst)
		}
		raw, ok := chainFile(t, inst, "/etc/bootsrv/install.env")
		if !ok {
			t.Fatalf("the installer config has no install.env: %s", inst)
		}
		env := chainEnvFile(t, raw)
		if env["BOOTSRV_FINAL_URL"] != gm[1]+"&stage=final" || env["BOOTSRV_INSTALL_DEVICE"] != "/dev/sda" {
			t.Errorf("install.env %q, want BOOTSRV_FINAL_URL=%s&stage=final and /dev/sda", env, gm[1])
		}
		if _, ok := chainFile(t, inst, "/etc/motd"); ok {
			t.Error("the installer config carries the profile's snippet")
		}
		final := c.get200(env["BOOTSRV_FINAL_URL"])
		chainValidate(t, "the final config", final)
		if motd, _ := chainFile(t, final, "/etc/motd"); motd != "installed by bootsrv\n" {
			t.Errorf("the final config lacks the snippet: %s", final)
		}
		if code, body := c.fetch(http.MethodGet, gm[1]+"&stage=early"); code != http.StatusBadRequest {
			t.Errorf("a bad stage: %d %s, want 400", code, body)
		}
		// What bootsrv-install.service runs once flatcar-install is done.
		if !strings.HasSuffix(env["BOOTSRV_INSTALLED_URL"], "&state=installed") {
			t.Fatalf("install.env: BOOTSRV_INSTALLED_URL=%q", env["BOOTSRV_INSTALLED_URL"])
		}
		if code, body := c.fetch(http.MethodPost, env["BOOTSRV_INSTALLED_URL"]); code != http.StatusOK {
			t.Fatalf("installed report: %d %s", code, body)
		}
		c.wantState(fcar, "installed", "the installed report")
		local := string(c.get200(c.base + "/ipxe?mac=" + fcar))
		if !strings.Contains(local, "local disk") || chainKernelRe.MatchString(local) {
			t.Fatalf("installed machine's script:\n%s", local)
		}
		c.wantState(fcar, "installed", "the local-boot script")
		// The installed system's first boot.
		reportURL := chainReportURL(t, final)
		if code, body := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusOK {
			t.Fatalf("booted report: %d %s", code, body)
		}
		c.wantState(fcar, "provisioned", "the booted report")
		if code, _ := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusForbidden {
			t.Errorf("replayed report of a disk install: %d, want 403", code)
		}
		if local := string(c.get200(c.base + "/ipxe?mac=" + fcar)); !strings.Contains(local, "local disk") {
			t.Fatalf("provisioned disk machine's script:\n%s", local)
		}
		c.wantState(fcar, "provisioned", "the local-boot script")
		// render ignition shows the installed system's config.
		rendered := c.cli("render", "ignition", fcar)
		chainValidate(t, "bootsrv render ignition", []byte(strings.TrimSpace(rendered)))
		if strings.Contains(rendered, "bootsrv-install.service") || !strings.Contains(rendered, "/etc/motd") {
			t.Errorf("render ignition is not the final config:\n%s", rendered)
		}
		// The reports ended the install's token: the keys are not served again.
		if code, body := c.fetch(http.MethodGet, env["BOOTSRV_FINAL_URL"]); code != http.StatusForbidden || !strings.Contains(string(body), "spent") {
			t.Errorf("the final config after the reports: %d %s, want 403 spent", code, body)
		}
	})

	t.Run("fcos", func(t *testing.T) {
		c.t = t
		// Its boot script only to its own address.
		if code, _ := c.fetchFrom("127.0.0.1", http.MethodGet, c.base+"/ipxe?mac="+fcos); code != http.StatusForbidden {
			t.Errorf("core1's boot script asked from 127.0.0.1: %d, want 403", code)
		}
		script := string(c.get200From("127.0.0.2", c.base+"/ipxe?mac="+fcos))
		m := regexp.MustCompile(`coreos\.inst\.ignition_url=(\S+)`).FindStringSubmatch(script)
		if m == nil || !strings.Contains(script, "coreos.inst.install_dev=/dev/vda ") || !strings.HasSuffix(m[1], "&stage=final") {
			t.Fatalf("FCOS disk boot script:\n%s", script)
		}
		// The live system's own config reports "installed" after
		// coreos-installer, before its reboot.
		lm := regexp.MustCompile(`ignition\.config\.url=(\S+)`).FindStringSubmatch(script)
		if lm == nil || lm[1]+"&stage=final" != m[1] {
			t.Fatalf("FCOS disk boot script has no installer ignition.config.url:\n%s", script)
		}
		inst := c.get200From("127.0.0.2", lm[1])
		chainValidate(t, "the FCOS installer config", inst)
		iraw, ok := chainFile(t, inst, "/etc/bootsrv/install.env")
		if !ok {
			t.Fatalf("the FCOS installer config has no install.env: %s", inst)
		}
		ienv := chainEnvFile(t, iraw)
		// coreos-installer fetches the final config while it installs;
		// then the live system reports installed.
		final := c.get200From("127.0.0.2", m[1])
		chainValidate(t, "the FCOS final config", final)
		if h, _ := chainFile(t, final, "/etc/hostname"); h != "core1\n" {
			t.Errorf("the final config is not core1's: %s", final)
		}
		if code, body := c.fetchFrom("127.0.0.2", http.MethodPost, ienv["BOOTSRV_INSTALLED_URL"]); code != http.StatusOK {
			t.Fatalf("installed report: %d %s", code, body)
		}
		c.wantState(fcos, "installed", "the installed report")
		if local := string(c.get200From("127.0.0.2", c.base+"/ipxe?mac="+fcos)); !strings.Contains(local, "local disk") {
			t.Errorf("installed FCOS disk machine's script (a reinstall loop):\n%s", local)
		}
		if code, body := c.fetchFrom("127.0.0.2", http.MethodPost, chainReportURL(t, final)+"&state=booted"); code != http.StatusOK {
			t.Fatalf("booted report: %d %s", code, body)
		}
		c.wantState(fcos, "provisioned", "the booted report")
		if local := string(c.get200From("127.0.0.2", c.base+"/ipxe?mac="+fcos)); !strings.Contains(local, "local disk") {
			t.Errorf("provisioned FCOS disk machine's script:\n%s", local)
		}
	})
	c.t = t

	events := c.cli("machine", "events", "-o", "json", fcar)
	for _, want := range []string{`"installed"`, `"localboot"`, `"provisioned"`} {
		if !strings.Contains(events, want) {
			t.Errorf("flat1's history lacks %s: %s", want, events)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("bootsrv serve after SIGTERM: %v\n%s", err, c.log.String())
	}
	if t.Failed() {
		t.Logf("server log:\n%s", c.log.String())
	}
}

// TestChainKubernetes: a master and a worker through a real server. Their
// /ignition is a 404 naming the release files until `bootsrv --data-dir D
// assets import DIR` (through the running server) imports them; then each
// served config passes the real ignition-validate, and every binary it
// names is served by /assets/ with the SHA-512 the config checks.
func TestChainKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	chainValidator(t)
	dir := t.TempDir()
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: filepath.Join(dir, "data"), log: &lockedBuf{}}
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := chainServe(t, c, assets, "--token-ttl", "10m")
	const master, worker = "52:54:00:c4:a3:01", "52:54:00:c4:a3:02"
	ips := map[string]string{master: "127.0.0.10", worker: "127.0.0.11"}
	c.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	c.cli("profile", "add", "--role", "master", "--os", "lab", "--kernel", "/assets/lab/vmlinuz", "master")
	c.cli("profile", "add", "--role", "worker", "--os", "lab", "--kernel", "/assets/lab/vmlinuz", "worker")
	c.cli("machine", "add", "--profile", "master", "--hostname", "master1", "--ip", ips[master], master)
	c.cli("machine", "add", "--profile", "worker", "--hostname", "worker1", "--ip", ips[worker], worker)

	ignition := func(mac string) (int, []byte) {
		script := string(c.get200From(ips[mac], c.base+"/ipxe?mac="+mac))
		gm := chainIgnRe.FindStringSubmatch(script)
		if gm == nil {
			t.Fatalf("no ignition URL in %s's script:\n%s", mac, script)
		}
		return c.fetchFrom(ips[mac], http.MethodGet, gm[1])
	}
	code, body := ignition(worker)
	if code != http.StatusNotFound || !strings.Contains(string(body), "kubelet") || !strings.Contains(string(body), "bootsrv assets import") {
		t.Fatalf("a worker's /ignition before any import: %d %s, want 404 naming the files to import", code, body)
	}

	src := releasetest.Write(t, t.TempDir(), releasetest.Default)
	cmd := exec.Command(c.bin, "--data-dir", c.dataDir, "assets", "import", src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bootsrv --data-dir D assets import: %v\n%s", err, out)
	}
	var list []struct {
		Path   string `json:"path"`
		SHA512 string `json:"sha512"`
	}
	if err := json.Unmarshal([]byte(c.cli("assets", "list", "-o", "json")), &list); err != nil || len(list) == 0 {
		t.Fatalf("assets list after the import: %v %+v", err, list)
	}
	for _, a := range list {
		if _, err := os.Stat(filepath.Join(assets, filepath.FromSlash(a.Path))); err != nil {
			t.Errorf("%s is not in the server's assets dir: %v", a.Path, err)
		}
	}

	for _, mac := range []string{master, worker} {
		t.Run(mac, func(t *testing.T) {
			c.t = t
			code, ign := ignition(mac)
			if code != http.StatusOK {
				t.Fatalf("/ignition: %d %s", code, ign)
			}
			c.wantState(mac, "ignition", "/ignition")
			chainValidate(t, "the served node config", ign)
			n := 0
			for _, f := range chainParse(t, ign).Storage.Files {
				if !strings.HasPrefix(f.Contents.Source, "http") {
					continue
				}
				n++
				if !strings.HasPrefix(f.Contents.Source, c.base+"/assets/") {
					t.Errorf("%s is fetched from %s, not this server's /assets/", f.Path, f.Contents.Source)
				}
				bin := c.get200From(ips[mac], f.Contents.Source)
				sum := sha512.Sum512(bin)
				if want := "sha512-" + hex.EncodeToString(sum[:]); f.Contents.Verification.Hash != want {
					t.Errorf("%s: the config checks %q, the server serves %s", f.Path, f.Contents.Verification.Hash, want)
				}
				if f.Mode != 0o755 {
					t.Errorf("%s: mode %#o, want 0755", f.Path, f.Mode)
				}
			}
			want := 8 // kubelet, kube-proxy, flanneld and five CNI plugins
			if mac == master {
				want += 7
			}
			if n != want {
				t.Errorf("%d binaries fetched, want %d", n, want)
			}
		})
	}
	c.t = t
	rendered := c.cli("render", "ignition", worker)
	chainValidate(t, "bootsrv render ignition of a worker", []byte(strings.TrimSpace(rendered)))
	if err := stop(); err != nil {
		t.Fatalf("bootsrv serve after SIGTERM: %v\n%s", err, c.log.String())
	}
	if t.Failed() {
		t.Logf("server log:\n%s", c.log.String())
	}
}
