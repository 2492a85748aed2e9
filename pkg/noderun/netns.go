package noderun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// Netns is a network namespace joined to the host by a veth pair: the host
// side holds HostIP, the namespace side (named eth0 there) NSIP, and lo is
// up inside. Nothing is routed out of it: it has no default route.
type Netns struct {
	Name   string       // the name under /run/netns
	HostIP netip.Prefix // on HostIf, in the host's namespace
	NSIP   netip.Prefix // on eth0 inside
	HostIf string       // the host side of the veth pair

	t  testing.TB
	ip string // path of the ip command

	mu    sync.Mutex
	procs []*Proc
}

var netnsSeq atomic.Int64

// nsNameRE is the name NewNetns gives: noderun-PID-SEQ.
var nsNameRE = regexp.MustCompile(`^noderun-(\d+)-(\d+)$`)

// NewNetns creates a namespace with a unique name and a veth pair, host side
// hostIP (e.g. 10.98.0.1/24), namespace side nsIP (10.98.0.10/24), and
// removes it, with every process started in it, in t.Cleanup. It skips
// without root or without the ip command, and fails before creating
// anything if a route of this host already overlaps either prefix (so a
// test never sends to a real network).
func NewNetns(t testing.TB, hostIP, nsIP netip.Prefix) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ipCmd := findIP()
	if ipCmd == "" {
		t.Skip("needs the ip command to create network namespaces (Debian: apt-get install iproute2)")
	}
	if !hostIP.IsValid() || !nsIP.IsValid() || hostIP.Addr() == nsIP.Addr() ||
		hostIP.Addr().Is4() != nsIP.Addr().Is4() {
		t.Fatalf("netns: need two different addresses of one family, got %v and %v", hostIP, nsIP)
	}

	removeStaleNamespaces(t, ipCmd)

	checkRoutes(t, ipCmd, hostIP, nsIP, "")

	seq := netnsSeq.Add(1)
	n := &Netns{
		Name:   fmt.Sprintf("noderun-%d-%d", os.Getpid(), seq),
		HostIP: hostIP,
		NSIP:   nsIP,
		// Interface names have 15 bytes at most.
		HostIf: "nr" + strconv.FormatInt(int64(os.Getpid()), 36) + "h" + strconv.FormatInt(seq, 36),
		t:      t,
		ip:     ipCmd,
	}
	if err := n.run("netns", "add", n.Name); err != nil {
		t.Fatalf("netns: %v", err)
	}
	// Registered right away, so that a failure below still removes it.
	t.Cleanup(n.cleanup)

	steps := [][]string{
		{"link", "add", n.HostIf, "type", "veth", "peer", "name", "eth0", "netns", n.Name},
		{"addr", "add", hostIP.String(), "dev", n.HostIf},
		{"link", "set", n.HostIf, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "addr", "add", nsIP.String(), "dev", "eth0"},
		{"-n", n.Name, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := n.run(s...); err != nil {
			t.Fatalf("netns %s: %v", n.Name, err)
		}
	}
	// Again, now that ours exist: another test process may have checked
	// and created the same prefix at the same moment.
	checkRoutes(t, ipCmd, hostIP, nsIP, n.HostIf)
	return n
}

// checkRoutes fails t if a route of this host other than on ownDev overlaps
// hostIP's or nsIP's prefix.
func checkRoutes(t testing.TB, ipCmd string, hostIP, nsIP netip.Prefix, ownDev string) {
	t.Helper()
	family := "-4"
	if !nsIP.Addr().Is4() {
		family = "-6"
	}
	routes, err := exec.Command(ipCmd, family, "-j", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("netns: list this host's routes: %v", err)
	}
	conflicts, err := routeConflicts(routes, ownDev, hostIP.Masked(), nsIP.Masked())
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	if len(conflicts) > 0 {
		t.Fatalf("netns: refusing %v/%v: this host already routes it: %s (a real network, another test, or a stale namespace: ip netns list)",
			hostIP, nsIP, strings.Join(conflicts, "; "))
	}
}

// findIP finds iproute2's ip in PATH or, for a PATH without the sbin
// directories, where Debian puts it.
func findIP() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func (n *Netns) run(args ...string) error {
	out, err := exec.Command(n.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// cleanup stops every process started in the namespace, then removes the
// veth pair and the namespace.
func (n *Netns) cleanup() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, p := range procs {
		if err := p.Stop(); err != nil {
			n.t.Errorf("netns %s: stop %s: %v", n.Name, p.Name, err)
		}
	}
	// A process that left its process group (a daemon) is still in the
	// namespace, and only this test put processes there.
	if out, err := exec.Command(n.ip, "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				n.t.Logf("netns %s: killing leftover process %d", n.Name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Deleting one end of the veth pair deletes both.
	if err := n.run("link", "del", n.HostIf); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		n.t.Errorf("netns %s: %v", n.Name, err)
	}
	if err := n.run("netns", "del", n.Name); err != nil {
		n.t.Errorf("netns %s: %v", n.Name, err)
	}
}

// removeStaleNamespaces deletes the namespaces an earlier test process left
// behind when it was killed before its cleanup (their veth would still
// hold the test's addresses). Only names NewNetns gives are touched, and
// only when the process that made them is gone; the processes started in
// them died with it (Pdeathsig).
func removeStaleNamespaces(t testing.TB, ipCmd string) {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := nsNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", m[1])); err == nil {
			continue // its test is still running
		}
		if out, err := exec.Command(ipCmd, "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("netns: remove stale namespace %s: %v: %s", e.Name(), err, bytes.TrimSpace(out))
		} else {
			t.Logf("netns: removed stale namespace %s (its process %s is gone)", e.Name(), m[1])
		}
	}
}

// routeConflicts returns the routes of `ip -j route show table all` that
// overlap any of want, except those on ownDev (ours). The default route is not a conflict (it covers
// everything, and a namespace-local /24 is more specific); anything more
// specific is: a real network, a local address, another test's veth.
func routeConflicts(ipJSON []byte, ownDev string, want ...netip.Prefix) ([]string, error) {
	var routes []struct {
		Type  string `json:"type"`
		Dst   string `json:"dst"`
		Dev   string `json:"dev"`
		Table string `json:"table"`
	}
	if err := json.Unmarshal(ipJSON, &routes); err != nil {
		return nil, fmt.Errorf("parse ip -j route output: %w", err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst == "" || r.Dst == "default" || (ownDev != "" && r.Dev == ownDev) {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				return nil, fmt.Errorf("route destination %q: %w", r.Dst, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Bits() == 0 {
			continue // 0.0.0.0/0 written out
		}
		for _, w := range want {
			if p.Overlaps(w) {
				desc := r.Dst
				if r.Type != "" && r.Type != "unicast" {
					desc = r.Type + " " + desc
				}
				if r.Dev != "" {
					desc += " dev " + r.Dev
				}
				if r.Table != "" && r.Table != "main" {
					desc += " table " + r.Table
				}
				out = append(out, desc)
				break
			}
		}
	}
	return out, nil
}

// Run runs argv inside the namespace to completion (an ExecStartPre, a
// check), its output appended to logPath.
func (n *Netns) Run(ctx context.Context, argv, env []string, logPath string) error {
	if len(argv) == 0 {
		return errors.New("run: empty argv")
	}
	logf, err := openLog(logPath)
	if err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "noderun: run %s\n", strings.Join(argv, " "))
	cmd := n.command(ctx, argv, env, "/")
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Run()
	fmt.Fprintf(logf, "noderun: %s: %s\n", argv[0], exitString(err))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("run %s in %s: %w", argv[0], n.Name, ctx.Err())
		}
		return fmt.Errorf("run %s in %s: %w (log %s)", argv[0], n.Name, err, logPath)
	}
	return nil
}

// command is argv run by `ip netns exec` (which also gives it a private
// mount namespace with the namespace's /sys), in its own process group,
// the whole group killed when ctx ends, and killed if this test process
// dies first.
func (n *Netns) command(ctx context.Context, argv, env []string, dir string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, n.ip, append([]string{"netns", "exec", n.Name}, argv...)...)
	cmd.Env = env
	cmd.Dir = dir
	// Pdeathsig fires when the OS thread that started the child exits; the
	// Go runtime only ends threads a goroutine locked and did not unlock,
	// which this package never does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

func openLog(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	return f, nil
}

// exitString describes how a process ended, for the log.
func exitString(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return err.Error()
}
