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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	if code, _ := c.fetch(http.MethodPost, reportURL+"&state=booted"); code != http.StatusForbidden {
		t.Errorf("replayed report: %d, want 403", code)
	}

	// 6. Provisioned: boot from disk.
	local := string(c.get200(c.base + "/ipxe?mac=" + hyp))
	if !strings.Contains(local, "local disk") || chainKernelRe.MatchString(local) {
		t.Fatalf("provisioned machine's script:\n%s", local)
	}
	c.wantState(mac, "provisioned", "the local-boot script")

	// The CLI shows what the machine gets, and it validates.
	rendered := c.cli("render", "ignition", mac)
	chainValidate(t, "bootsrv render ignition", []byte(strings.TrimSpace(rendered)))
	if r := chainReportURL(t, []byte(rendered)); !strings.HasPrefix(r, c.base+"/report?mac="+mac+"&token=") {
		t.Errorf("render ignition's report URL %s is not on the server (%s)", r, c.base)
	}
	if r := c.cli("render", "ipxe", mac); !strings.Contains(r, "local disk") {
		t.Errorf("render ipxe of a provisioned machine:\n%s", r)
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
	for _, want := range []string{"ipxe", "kernel", "initrd", "ignition", "denied", "report", "provisioned", "localboot", "reprovision"} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Errorf("events lack %q: %s", want, joined)
		}
	}
	metrics := string(c.get200(c.base + "/metrics"))
	for _, want := range []string{`bootsrv_http_requests_total{route="ipxe",code="200"} 3`, `bootsrv_http_requests_total{route="ignition",code="403"} 1`,
		`bootsrv_machines{state="ipxe"} 1`, `bootsrv_render_seconds_count`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
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
