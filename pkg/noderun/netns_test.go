package noderun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This package's own tests use 10.98.0.0/24, so they can run beside the
// QEMU lab's 10.99.0.0/24 (and this machine has 192.0.2.0/24 on eth0).
var (
	testHostIP = netip.MustParsePrefix("10.98.0.1/24")
	testNSIP   = netip.MustParsePrefix("10.98.0.10/24")
)

func TestRouteConflicts(t *testing.T) {
	// `ip -4 -j route show table all` on this kind of machine, plus a few.
	routes := []byte(`[
	{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
	{"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
	{"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]},
	{"type":"local","dst":"192.0.2.2","dev":"eth0","table":"local","protocol":"kernel","scope":"host","prefsrc":"192.0.2.2","flags":[]},
	{"type":"broadcast","dst":"192.0.2.255","dev":"eth0","table":"local","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
	{"dst":"10.0.0.0/8","gateway":"192.0.2.254","dev":"eth0","table":"100","flags":[]},
	{"type":"blackhole","dst":"10.97.0.0/24","flags":[]},
	{"dst":"0.0.0.0/0","dev":"tun0","table":"200","flags":[]}
	]`)
	tests := []struct {
		own  string
		want []netip.Prefix
		out  []string
	}{
		{want: []netip.Prefix{netip.MustParsePrefix("172.31.250.0/24")}},
		{want: []netip.Prefix{netip.MustParsePrefix("10.98.0.0/24")}, out: []string{"10.0.0.0/8 dev eth0 table 100"}},
		{want: []netip.Prefix{netip.MustParsePrefix("10.97.0.0/16")}, out: []string{"10.0.0.0/8 dev eth0 table 100", "blackhole 10.97.0.0/24"}},
		{want: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28"), netip.MustParsePrefix("192.0.2.128/25")},
			out: []string{"192.0.2.0/24 dev eth0", "local 192.0.2.2 dev eth0 table local", "broadcast 192.0.2.255 dev eth0 table local"}},
		// After creating our veth, its own routes are not conflicts.
		{own: "eth0", want: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
	}
	for _, tt := range tests {
		got, err := routeConflicts(routes, tt.own, tt.want...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tt.out) {
			t.Errorf("routeConflicts(%v) = %q, want %q", tt.want, got, tt.out)
		}
	}
	if _, err := routeConflicts([]byte(`[{"dst":"bogus"}]`), "", tt0()); err == nil {
		t.Error("bad destination: no error")
	}
	if _, err := routeConflicts([]byte(`not json`), "", tt0()); err == nil {
		t.Error("bad JSON: no error")
	}
}

func tt0() netip.Prefix { return netip.MustParsePrefix("10.0.0.0/8") }

func TestRestartWanted(t *testing.T) {
	run := func(script string) error { return exec.Command("/bin/sh", "-c", script).Run() }
	clean, code, term, kill := error(nil), run("exit 3"), run("kill -TERM $$"), run("kill -KILL $$")
	if code == nil || term == nil || kill == nil {
		t.Fatal("/bin/sh did not fail as asked")
	}
	tests := []struct {
		policy                   string
		clean, code, term, killd bool
	}{
		{"no", false, false, false, false},
		{"always", true, true, true, true},
		{"on-success", true, false, true, false},
		{"on-failure", false, true, false, true},
		{"on-abnormal", false, false, false, true},
		{"on-abort", false, false, false, true},
	}
	for _, tt := range tests {
		got := [4]bool{restartWanted(tt.policy, clean), restartWanted(tt.policy, code),
			restartWanted(tt.policy, term), restartWanted(tt.policy, kill)}
		if want := [4]bool{tt.clean, tt.code, tt.term, tt.killd}; got != want {
			t.Errorf("%s: clean/code/SIGTERM/SIGKILL = %v, want %v", tt.policy, got, want)
		}
	}
}

// needNetnsPrereqs skips as NewNetns would, for tests that call it through
// a recorder (where a Skip could not stop the test).
func needNetnsPrereqs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if findIP() == "" {
		t.Skip("needs the ip command to create network namespaces (Debian: apt-get install iproute2)")
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// only the goroutine it runs in.
type fatalRecorder struct {
	testing.TB
	msg      string
	cleanups []func()
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalRecorder) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func TestNewNetnsRefusesRoutedPrefix(t *testing.T) {
	needNetnsPrereqs(t)
	// Every Linux host routes 127.0.0.0/8 to lo (table local).
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewNetns(rec, netip.MustParsePrefix("127.0.0.5/8"), netip.MustParsePrefix("127.0.0.6/8"))
	}()
	<-done
	for _, fn := range rec.cleanups {
		fn()
	}
	if !strings.Contains(rec.msg, "refusing") || !strings.Contains(rec.msg, "127.0.0.0/8 dev lo") {
		t.Errorf("Fatalf message %q, want a refusal naming 127.0.0.0/8 dev lo", rec.msg)
	}
	if len(rec.cleanups) != 0 {
		t.Errorf("%d cleanups registered: something was created before the check", len(rec.cleanups))
	}
}

func TestNetnsRunStartStop(t *testing.T) {
	ns := NewNetns(t, testHostIP, testNSIP)
	dir := t.TempDir()
	env := []string{"PATH=" + defaultPath}

	// The namespace has its address on eth0, lo, and no route out.
	logPath := filepath.Join(dir, "ip.log")
	if err := ns.Run(context.Background(), []string{"ip", "-4", "-o", "addr"}, env, logPath); err != nil {
		t.Fatal(err)
	}
	if err := ns.Run(context.Background(), []string{"ip", "route"}, env, logPath); err != nil {
		t.Fatal(err)
	}
	log := readFile(t, logPath)
	for _, want := range []string{"eth0    inet 10.98.0.10/24", "lo    inet 127.0.0.1/8", "10.98.0.0/24 dev eth0"} {
		if !strings.Contains(log, want) {
			t.Errorf("namespace log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "default") {
		t.Errorf("namespace has a default route:\n%s", log)
	}
	if err := ns.Run(context.Background(), []string{"/bin/sh", "-c", "exit 4"}, env, logPath); err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("Run of a failing command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ns.Run(ctx, []string{"/bin/sleep", "60"}, env, logPath); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its context: %v", err)
	}

	p, err := ns.Start("sleeper", []string{"/bin/sleep", "1000"}, env, filepath.Join(dir, "sleeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if pid <= 0 {
		t.Fatalf("PID %d", pid)
	}
	// It runs in the namespace, not in ours, once `ip netns exec` has
	// exec'd it (Start returns right after the fork).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep never exec'd")
		}
	}
	theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	ours, err2 := os.Readlink("/proc/self/ns/net")
	if err1 != nil || err2 != nil || theirs == ours {
		t.Errorf("process net namespace %q (%v), ours %q (%v)", theirs, err1, ours, err2)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d after Stop: kill 0 = %v, want ESRCH", pid, err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if log := readFile(t, p.LogPath); !strings.Contains(log, "killed by signal terminated") {
		t.Errorf("sleeper log:\n%s", log)
	}

	if _, err := ns.Start("x", []string{"/nonexistent/x"}, env, filepath.Join(dir, "x.log")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Start of a missing binary: %v", err)
	}
	if _, err := ns.Start("x", []string{"/bin/true"}, env, filepath.Join(dir, "x.log"), WithRestart("sometimes", 1, 0)); err == nil {
		t.Error("Start with a bad policy: no error")
	}
}

func TestNetnsRestart(t *testing.T) {
	ns := NewNetns(t, testHostIP, testNSIP)
	dir := t.TempDir()
	env := []string{"PATH=" + defaultPath}

	// Restart=always, bounded: three runs, each exit logged.
	p, err := ns.Start("flaky", []string{"/bin/sh", "-c", "echo run; exit 3"}, env, filepath.Join(dir, "flaky.log"),
		WithRestart("always", 2, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 20*time.Second)
	log := readFile(t, p.LogPath)
	if p.Restarts() != 2 || strings.Count(log, "run\n") != 3 || strings.Count(log, "exited with status 3") != 3 ||
		!strings.Contains(log, "not restarting, 2 restarts done") {
		t.Errorf("restarts %d, log:\n%s", p.Restarts(), log)
	}
	if p.Err() == nil {
		t.Error("Err() nil after exit status 3")
	}

	// on-failure does not restart a clean exit.
	p, err = ns.Start("ok", []string{"/bin/true"}, env, filepath.Join(dir, "ok.log"), WithRestart("on-failure", 3, 0))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 20*time.Second)
	if p.Restarts() != 0 || p.Err() != nil {
		t.Errorf("on-failure after exit 0: restarts %d, err %v", p.Restarts(), p.Err())
	}

	// Stop during the delay before a restart ends it at once.
	p, err = ns.Start("slow", []string{"/bin/sh", "-c", "exit 1"}, env, filepath.Join(dir, "slow.log"), WithRestart("always", 5, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); p.Restarts() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no restart scheduled")
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, time.Second)
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	ns := NewNetns(t, testHostIP, testNSIP)
	old := stopGrace
	stopGrace = 300 * time.Millisecond
	t.Cleanup(func() { stopGrace = old })

	p, err := ns.Start("stubborn", []string{"/bin/sh", "-c", `trap "" TERM; echo $((40+2)); while :; do sleep 0.1; done`},
		[]string{"PATH=" + defaultPath}, filepath.Join(t.TempDir(), "stubborn.log"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readFile(t, p.LogPath), "\n42\n"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if log := readFile(t, p.LogPath); !strings.Contains(log, "sending SIGKILL") || !strings.Contains(log, "killed by signal killed") {
		t.Errorf("log:\n%s", log)
	}
}

func waitDone(t *testing.T, p *Proc, d time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		t.Fatalf("%s still running after %s; log:\n%s", p.Name, d, readFile(t, p.LogPath))
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
