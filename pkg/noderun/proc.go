package noderun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// How long Stop waits after SIGTERM before SIGKILL, and after SIGKILL
// before it reports the process as stuck (variables for the tests).
var (
	stopGrace = 5 * time.Second
	killWait  = 10 * time.Second
)

// StartOption changes how Start runs a process.
type StartOption func(*startConfig) error

type startConfig struct {
	dir     string
	restart string
	max     int
	delay   time.Duration
}

// WithDir sets the working directory (systemd's default, and Start's, is /).
func WithDir(dir string) StartOption {
	return func(c *startConfig) error {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("working directory %q is not absolute", dir)
		}
		c.dir = dir
		return nil
	}
}

// WithRestart supervises the process as systemd's Restart= does: policy is
// a Restart= value ("no", "always", "on-failure", "on-success",
// "on-abnormal", "on-abort"; Unit.Restart can be passed as it is), and a
// process that ends so is started again after delay, at most max times.
// Each exit and restart is written to the process's log. (The
// controller-manager exits once when it starts before the apiserver's RBAC
// bootstrap; under systemd, Restart=always starts it again.)
func WithRestart(policy string, max int, delay time.Duration) StartOption {
	return func(c *startConfig) error {
		if _, ok := restartPolicies[policy]; !ok {
			return fmt.Errorf("unknown Restart= policy %q", policy)
		}
		if max < 0 || delay < 0 {
			return fmt.Errorf("restart: max %d and delay %v must not be negative", max, delay)
		}
		c.restart, c.max, c.delay = policy, max, delay
		return nil
	}
}

// restartPolicies says, per Restart= value, whether to restart after a
// clean exit, an unclean exit code, or an unclean signal (systemd.service(5),
// the table under Restart=; the watchdog and timeouts do not exist here).
var restartPolicies = map[string]struct{ clean, code, signal bool }{
	"":            {},
	"no":          {},
	"always":      {true, true, true},
	"on-success":  {true, false, false},
	"on-failure":  {false, true, true},
	"on-abnormal": {false, false, true},
	"on-abort":    {false, false, true},
	"on-watchdog": {},
}

// restartWanted applies policy to how a process ended. Exit status 0 and
// SIGHUP, SIGINT, SIGTERM, SIGPIPE are clean, as for systemd.
func restartWanted(policy string, err error) bool {
	p := restartPolicies[policy]
	if err == nil {
		return p.clean
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return p.code
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		switch ws.Signal() {
		case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE:
			return p.clean
		}
		return p.signal
	}
	return p.code
}

// Proc is a process started in a Netns, perhaps restarted.
type Proc struct {
	Name    string
	LogPath string

	ns   *Netns
	argv []string
	env  []string
	cfg  startConfig
	log  *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd // the running process; nil once it has been waited for
	started  time.Time
	stopping bool
	restarts int
	lastErr  error
	stopCh   chan struct{} // closed by Stop: no more restarts
	done     chan struct{} // closed when no process runs and none will
}

// Start runs argv (argv[0] an absolute path or a command in env's PATH)
// inside the namespace with exactly env as its environment, in its own
// process group, stdout and stderr appended to logPath, and returns once
// it has started. Everything started is stopped in the namespace's cleanup.
func (n *Netns) Start(name string, argv, env []string, logPath string, opts ...StartOption) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: empty argv", name)
	}
	cfg := startConfig{dir: "/"}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	if filepath.IsAbs(argv[0]) {
		// Said here rather than as an exit status 1 from `ip netns exec`.
		fi, err := os.Stat(argv[0])
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("start %s: %s is not an executable file (mode %v)", name, argv[0], fi.Mode())
		}
	}
	logf, err := openLog(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{
		Name: name, LogPath: logPath,
		ns: n, argv: argv, env: env, cfg: cfg, log: logf,
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.mu.Lock()
	err = p.spawn()
	p.mu.Unlock()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	go p.supervise()
	return p, nil
}

// spawn starts one run; p.mu is held.
func (p *Proc) spawn() error {
	// Stop, not a context, ends it.
	cmd := p.ns.command(context.Background(), p.argv, p.env, p.cfg.dir)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(p.log, "noderun: %s: start: %v\n", p.Name, err)
		return fmt.Errorf("in %s: %w", p.ns.Name, err)
	}
	p.cmd, p.started = cmd, time.Now()
	fmt.Fprintf(p.log, "noderun: %s started (pid %d) in %s: %s\n", p.Name, cmd.Process.Pid, p.ns.Name, strings.Join(p.argv, " "))
	return nil
}

// supervise waits for each run and restarts it as the policy says.
func (p *Proc) supervise() {
	defer close(p.done)
	defer p.log.Close()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	for {
		err := cmd.Wait()

		p.mu.Lock()
		p.cmd, p.lastErr = nil, err
		fmt.Fprintf(p.log, "noderun: %s (pid %d) %s after %s\n",
			p.Name, cmd.Process.Pid, exitString(err), time.Since(p.started).Round(time.Millisecond))
		want := restartWanted(p.cfg.restart, err)
		if p.stopping || !want || p.restarts >= p.cfg.max {
			if !p.stopping && want {
				fmt.Fprintf(p.log, "noderun: %s: not restarting, %d restarts done\n", p.Name, p.restarts)
			}
			p.mu.Unlock()
			return
		}
		p.restarts++
		fmt.Fprintf(p.log, "noderun: %s: restarting in %s (restart %d of %d)\n", p.Name, p.cfg.delay, p.restarts, p.cfg.max)
		p.mu.Unlock()

		select {
		case <-time.After(p.cfg.delay):
		case <-p.stopCh:
		}

		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		if err := p.spawn(); err != nil {
			p.lastErr = err
			p.mu.Unlock()
			return
		}
		cmd = p.cmd
		p.mu.Unlock()
	}
}

// Stop ends the process and any restarting: SIGTERM to its process group,
// SIGKILL after a few seconds, by the id it was started with. It returns
// once the process is gone; calling it again is harmless.
func (p *Proc) Stop() error {
	p.mu.Lock()
	if !p.stopping {
		p.stopping = true
		close(p.stopCh)
	}
	p.signal(syscall.SIGTERM)
	p.mu.Unlock()

	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	p.mu.Lock()
	if p.cmd != nil {
		fmt.Fprintf(p.log, "noderun: %s did not stop %s after SIGTERM, sending SIGKILL\n", p.Name, stopGrace)
	}
	p.signal(syscall.SIGKILL)
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) still running %s after SIGKILL", p.Name, p.PID(), killWait)
	}
}

// signal sends sig to the running process's group; p.mu is held. p.cmd is
// cleared right after the process is reaped, so the id is its own (the
// kernel does not hand out a just-freed pid again at once).
func (p *Proc) signal(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(p.log, "noderun: %s: kill %v: %v\n", p.Name, sig, err)
	}
}

// PID is the running process's id, 0 between runs and after the end.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the process has ended and will not be restarted.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the last run ended (nil for exit status 0, or while the first
// run is going).
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Restarts is how many times the process was started again.
func (p *Proc) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}
