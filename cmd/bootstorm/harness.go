package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

// The storm's network: bootsrv at .0.1, the relay agent (and gateway) at
// .0.2, the machines in .64.0/18.
const (
	netPrefix   = "10.80."
	serverIP    = netPrefix + "0.1"
	giaddrIP    = netPrefix + "0.2"
	machinesNet = netPrefix + "64.0/18"
	httpPort    = 8080
	maxMachines = 16000
)

type config struct {
	n          int
	bin        string
	kills      int
	terms      int
	ramp       time.Duration
	think      time.Duration
	bootThink  time.Duration
	deadline   time.Duration
	drain      time.Duration
	bigEvery   int
	keep       bool
	json       bool
	cpuprofile string
	log        io.Writer
}

func harnessMain(args []string) error {
	fs := flag.NewFlagSet("bootstorm", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.n, "n", 1000, "machines in the storm")
	fs.StringVar(&c.bin, "bin", "bin/bootsrv", "the bootsrv binary to run")
	fs.IntVar(&c.kills, "kills", 0, "SIGKILL bootsrv this many times at random moments, restarting it each time")
	fs.IntVar(&c.terms, "terms", 0, "SIGTERM bootsrv this many times mid-storm (each must drain within -drain), restarting it each time")
	fs.DurationVar(&c.ramp, "ramp", 0, "power the machines on spread over this long (default: 3 ms a machine)")
	fs.DurationVar(&c.think, "think", 200*time.Millisecond, "mean pause between firmware steps")
	fs.DurationVar(&c.bootThink, "boot-think", time.Second, "mean pause between the initrd and Ignition (the kernel booting)")
	fs.DurationVar(&c.deadline, "deadline", 10*time.Minute, "fail machines not provisioned by then")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "how long bootsrv may take to exit after SIGTERM")
	fs.IntVar(&c.bigEvery, "big-every", 50, "one machine in this many boots a 50 MB kernel+initrd pair, the rest 1.3 MB (0: none)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (state, logs, the client's JSON)")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write bootsrv's CPU profile of the storm here (its --cpuprofile)")
	out := fs.String("o", "text", "output: text or json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bootstorm [flags]   (root; see the package comment: go doc ./cmd/bootstorm)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch *out {
	case "text":
	case "json":
		c.json = true
	default:
		return fmt.Errorf("-o %q: use text or json", *out)
	}
	c.log = os.Stderr
	rep, err := runStorm(c)
	if rep != nil {
		if c.json {
			json.NewEncoder(os.Stdout).Encode(rep)
		} else {
			rep.print(os.Stdout)
		}
	}
	if err == nil && len(rep.Failures) > 0 {
		err = failedError{fmt.Sprintf("%d check(s) failed: %s", len(rep.Failures), strings.Join(rep.Failures, "; "))}
	}
	return err
}

func (c *config) check() error {
	if c.n < 2 || c.n > maxMachines {
		return fmt.Errorf("-n %d: give 2 to %d machines", c.n, maxMachines)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the storm builds network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip missing: apt-get install iproute2")
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("-bin %s: %w (make build)", c.bin, err)
	}
	if c.ramp == 0 {
		c.ramp = time.Duration(c.n) * 3 * time.Millisecond
	}
	if c.log == nil {
		c.log = io.Discard
	}
	return nil
}

// env is the storm's namespaces, files and processes.
type env struct {
	c              config
	work, data     string
	assets         string
	srvNS, cliNS   string
	srvIf          string
	self           string
	serveLog       *os.File
	mu             sync.Mutex
	serve          *exec.Cmd
	cleanups       []func()
	runs           []incarnation
	restartSeconds []float64
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.c.log, "bootstorm: "+format+"\n", args...)
}

func (e *env) run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (e *env) cleanup() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// network makes the two namespaces and the veth between them.
func (e *env) network() error {
	id := strconv.Itoa(os.Getpid() % 100000)
	e.srvNS, e.cliNS = "bstorms"+id, "bstormc"+id
	sif, cif := "bsts"+id, "bstc"+id
	for _, ns := range []string{e.srvNS, e.cliNS} {
		if err := e.run("ip", "netns", "add", ns); err != nil {
			return err
		}
		e.cleanups = append(e.cleanups, func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	steps := [][]string{
		{"link", "add", sif, "netns", e.srvNS, "type", "veth", "peer", "name", cif, "netns", e.cliNS},
		{"-n", e.srvNS, "addr", "add", serverIP + "/16", "dev", sif},
		{"-n", e.cliNS, "addr", "add", giaddrIP + "/16", "dev", cif},
		{"-n", e.srvNS, "link", "set", sif, "up"}, {"-n", e.srvNS, "link", "set", "lo", "up"},
		{"-n", e.cliNS, "link", "set", cif, "up"}, {"-n", e.cliNS, "link", "set", "lo", "up"},
		// Every machine address is local in the client namespace, so each
		// simulated machine binds its own leased address...
		{"-n", e.cliNS, "route", "add", "local", machinesNet, "dev", "lo"},
		// ...and the server reaches all of them through the relay, one
		// neighbour instead of thousands of ARP entries.
		{"-n", e.srvNS, "route", "add", machinesNet, "via", giaddrIP},
	}
	for _, s := range steps {
		if err := e.run("ip", s...); err != nil {
			return err
		}
	}
	e.srvIf = sif
	return nil
}

// machineMAC and machineIP are machine i's, the same in the import and the
// client: every machine is registered with its reserved address, from
// .64.1 up (machine 0 is the master, the cluster's API server).
func machineMAC(i int) string {
	return fmt.Sprintf("02:b5:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
}

func machineIP(i int) string {
	n := 1 + i
	return fmt.Sprintf("%s%d.%d", netPrefix, 64+n/256, n%256)
}

// prepare writes the assets, the cluster, its profiles and the N machines
// into a fresh data dir with bootsrv's own CLI, as an operator would.
func (e *env) prepare() error {
	e.data = filepath.Join(e.work, "data")
	e.assets = filepath.Join(e.work, "assets")
	files := map[string]int64{
		"storm/vmlinuz": 256 << 10, "storm/initrd.img": 1 << 20,
		"storm/big-vmlinuz": 10 << 20, "storm/big-initrd.img": 40 << 20,
	}
	for name, size := range files {
		p := filepath.Join(e.assets, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// Made up, of real size: random bytes, so nothing downstream can
		// shortcut them (sparse files or compression).
		b := make([]byte, size)
		for i := 0; i+8 <= len(b); i += 8 {
			v := rand.Uint64()
			for j := range 8 {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	rel := filepath.Join(e.work, "releases")
	releasetest.Write(fatalErr{}, rel, releasetest.Default)

	var csv strings.Builder
	csv.WriteString("mac,hostname,ip,profile\n")
	var macs strings.Builder
	for i := range e.c.n {
		p := "worker"
		switch {
		case i == 0:
			p = "master"
		case e.c.bigEvery > 0 && i%e.c.bigEvery == 1:
			p = "worker-big"
		}
		fmt.Fprintf(&csv, "%s,node-%05d,%s,%s\n", machineMAC(i), i, machineIP(i), p)
		fmt.Fprintln(&macs, machineMAC(i))
	}
	if err := os.WriteFile(filepath.Join(e.work, "machines.csv"), []byte(csv.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.work, "macs"), []byte(macs.String()), 0o644); err != nil {
		return err
	}
	cli := [][]string{
		{"cluster", "init", "--name", "storm", "--api-server", machineIP(0), "--subnet", netPrefix + "0.0/16",
			"--gateway", giaddrIP, "--dns", serverIP},
		{"assets", "import", "--assets-dir", e.assets, rel},
		{"profile", "add", "--role", "master", "--kernel", "/assets/storm/vmlinuz", "--initrd", "/assets/storm/initrd.img", "master"},
		{"profile", "add", "--role", "worker", "--kernel", "/assets/storm/vmlinuz", "--initrd", "/assets/storm/initrd.img", "worker"},
		{"profile", "add", "--role", "worker", "--kernel", "/assets/storm/big-vmlinuz", "--initrd", "/assets/storm/big-initrd.img", "worker-big"},
		{"machine", "import", "-f", filepath.Join(e.work, "machines.csv")},
	}
	for _, a := range cli {
		cmd := exec.Command(e.c.bin, append(a, "--data-dir", e.data)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bootsrv %s: %v: %s", strings.Join(a[:2], " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

type fatalErr struct{}

func (fatalErr) Helper()           {}
func (fatalErr) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// start runs bootsrv serve in the server namespace, on its defaults but for
// where it listens, and waits for /healthz.
func (e *env) start() error {
	args := []string{"netns", "exec", e.srvNS, e.c.bin, "serve", "--data-dir", e.data,
		"--interface", e.srvIf, "--listen", serverIP, "--http-addr", fmt.Sprintf("%s:%d", serverIP, httpPort),
		"--tftp-addr", serverIP + ":69", "--assets-dir", e.assets, "--log-level", "warn"}
	if e.c.cpuprofile != "" {
		args = append(args, "--cpuprofile", e.c.cpuprofile)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = e.serveLog, e.serveLog
	cmd.SysProcAttr = pdeath()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	e.mu.Lock()
	e.serve = cmd
	e.mu.Unlock()
	w := exec.Command("ip", "netns", "exec", e.cliNS, e.self, "wait", fmt.Sprintf("http://%s:%d/healthz", serverIP, httpPort), "60s")
	if out, err := w.CombinedOutput(); err != nil {
		return fmt.Errorf("bootsrv serve did not come up (see %s): %s", e.serveLog.Name(), bytes.TrimSpace(out))
	}
	e.restartSeconds = append(e.restartSeconds, time.Since(t0).Seconds())
	return nil
}

// kill SIGKILLs bootsrv (by its PID) and reaps it.
func (e *env) kill() {
	e.mu.Lock()
	cmd := e.serve
	e.serve = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	e.account(cmd)
}

// incarnation is one bootsrv process's CPU time and peak RSS, from its
// rusage: ip netns exec execs bootsrv in place, so the child is bootsrv.
type incarnation struct {
	cpu    time.Duration
	maxRSS int64 // bytes
}

func (e *env) account(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		return
	}
	inc := incarnation{cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		inc.maxRSS = ru.Maxrss << 10
	}
	e.runs = append(e.runs, inc)
}

// term sends SIGTERM and waits at most d for bootsrv to drain and exit.
func (e *env) term(d time.Duration) (time.Duration, error) {
	e.mu.Lock()
	cmd := e.serve
	e.serve = nil
	e.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("bootsrv is not running")
	}
	t0 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer e.account(cmd)
	select {
	case err := <-done:
		took := time.Since(t0)
		if err != nil {
			return took, fmt.Errorf("bootsrv serve exited after SIGTERM: %v", err)
		}
		return took, nil
	case <-time.After(d):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return time.Since(t0), fmt.Errorf("bootsrv serve did not exit within %s of SIGTERM", d)
	}
}

func pdeath() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
