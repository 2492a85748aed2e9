package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// report is the storm's outcome.
type report struct {
	Machines       int                    `json:"machines"`
	Kills          int                    `json:"kills"`
	Terms          int                    `json:"terms"`
	RampSeconds    float64                `json:"ramp_seconds"`
	Seconds        float64                `json:"seconds"` // first power-on to last report
	Provisioned    int                    `json:"provisioned"`
	Reboots        int                    `json:"reboots"` // failed boots the machines started again
	Journey        percentiles            `json:"journey"`
	Phases         map[string]percentiles `json:"phases"`
	Errors         map[string]int         `json:"errors"`
	BytesServed    int64                  `json:"bytes_served"`
	BytesPerSecond float64                `json:"bytes_per_second"`
	CPUSeconds     float64                `json:"server_cpu_seconds"`
	PeakRSS        int64                  `json:"server_peak_rss_bytes"`
	StateBytes     int64                  `json:"state_bytes"`
	DrainSeconds   float64                `json:"drain_seconds"`
	// TermDrainSeconds are the SIGTERMs' mid-storm, under load.
	TermDrainSeconds []float64 `json:"mid_storm_drain_seconds"`
	RestartSeconds   []float64 `json:"restart_seconds"` // SIGKILL to /healthz answering again
	// LostAsyncEvents counts histories, of a storm with kills, missing a
	// step bootsrv records after answering (see durableSteps).
	LostAsyncEvents int      `json:"histories_missing_an_uncommitted_step"`
	Failures        []string `json:"failures"`
}

type percentiles struct {
	P50 float64 `json:"p50_seconds"`
	P99 float64 `json:"p99_seconds"`
	Max float64 `json:"max_seconds"`
}

// pct is the p50, p99 and max of xs (nearest rank).
func pct(xs []float64) percentiles {
	if len(xs) == 0 {
		return percentiles{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return percentiles{P50: at(0.50), P99: at(0.99), Max: s[len(s)-1]}
}

func runStorm(c config) (*report, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "bootstorm-")
	if err != nil {
		return nil, err
	}
	e := &env{c: c, work: work, self: self}
	defer e.cleanup()
	// Interrupted: still remove the namespaces and stop bootsrv.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			e.logf("interrupted: cleaning up")
			e.cleanup()
			os.Exit(130)
		}
	}()
	e.cleanups = append(e.cleanups, func() {
		if c.keep {
			e.logf("kept %s (serve.log, client.json, data/)", work)
			return
		}
		os.RemoveAll(work)
	})
	if e.serveLog, err = os.Create(filepath.Join(work, "serve.log")); err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, func() { e.serveLog.Close() })
	e.cleanups = append(e.cleanups, e.kill) // whatever happens, no bootsrv is left
	if err := e.network(); err != nil {
		return nil, err
	}
	e.logf("registering %d machines (bootsrv machine import)", c.n)
	if err := e.prepare(); err != nil {
		return nil, err
	}
	if err := e.start(); err != nil {
		return nil, err
	}
	e.restartSeconds = nil // the first start is not a restart
	e.logf("storm: %d machines powering on over %s, %d SIGKILL(s), %d SIGTERM(s)", c.n, c.ramp, c.kills, c.terms)

	client := exec.Command("ip", "netns", "exec", e.cliNS, self, "client", "-server", serverIP, "-giaddr", giaddrIP,
		"-macs", filepath.Join(work, "macs"), "-ramp", c.ramp.String(), "-think", c.think.String(),
		"-boot-think", c.bootThink.String(), "-deadline", c.deadline.String())
	var out bytes.Buffer
	client.Stdout, client.Stderr = &out, c.log
	client.SysProcAttr = pdeath()
	if err := client.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	rep := &report{Machines: c.n, Kills: c.kills, Terms: c.terms, RampSeconds: c.ramp.Seconds(), Phases: map[string]percentiles{}}
	var killErr error
	if c.kills+c.terms > 0 {
		killErr = e.disrupt(done, c.kills, c.terms, c.ramp, rep)
	}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("the storm's client failed: %v", err)
	}
	os.WriteFile(filepath.Join(work, "client.json"), out.Bytes(), 0o644)
	var cr clientResult
	if err := json.Unmarshal(out.Bytes(), &cr); err != nil {
		return nil, fmt.Errorf("the storm's client printed no result: %v", err)
	}
	rep.Errors, rep.RestartSeconds = cr.Errors, e.restartSeconds
	if killErr != nil {
		rep.Failures = append(rep.Failures, killErr.Error())
	}
	drain, err := e.term(c.drain)
	rep.DrainSeconds = drain.Seconds()
	if err != nil {
		rep.Failures = append(rep.Failures, err.Error())
	}
	rep.summarize(cr, e.runs)
	fails, lost := checkState(e.data, cr, c.kills > 0)
	rep.Failures, rep.LostAsyncEvents = append(rep.Failures, fails...), lost
	if fi, err := os.Stat(filepath.Join(e.data, "bootsrv.db")); err == nil {
		rep.StateBytes = fi.Size()
	}
	if len(rep.Failures) > 0 {
		if b, err := os.ReadFile(e.serveLog.Name()); err == nil {
			e.logf("bootsrv's log (last 30 lines):\n%s", tail(string(b), 30))
		}
	}
	return rep, nil
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// disrupt stops bootsrv kills+terms times while the machines power on,
// starting it again at once each time: SIGKILL kills times and SIGTERM
// terms times (which must drain within the bound), in random order, the
// i-th at a random moment of the i-th slice of the ramp.
func (e *env) disrupt(done chan error, kills, terms int, ramp time.Duration, rep *report) error {
	acts := make([]bool, kills+terms) // true: SIGTERM
	for i := range terms {
		acts[i] = true
	}
	rand.Shuffle(len(acts), func(i, j int) { acts[i], acts[j] = acts[j], acts[i] })
	t0 := time.Now()
	slot := ramp / time.Duration(len(acts))
	for i, term := range acts {
		at := slot*time.Duration(i) + slot/5 + time.Duration(rand.Int64N(int64(slot*3/5)+1))
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("the storm ended after %d of %d restarts: make it longer (-n, -ramp)", i, len(acts))
		case <-time.After(time.Until(t0.Add(at))):
		}
		if term {
			d, err := e.term(e.c.drain)
			rep.TermDrainSeconds = append(rep.TermDrainSeconds, d.Seconds())
			if err != nil {
				rep.Failures = append(rep.Failures, "mid-storm: "+err.Error())
			}
			e.logf("restart %d/%d at %.1f s: SIGTERM, drained in %.2f s, starting it again", i+1, len(acts), time.Since(t0).Seconds(), d.Seconds())
		} else {
			e.kill()
			e.logf("restart %d/%d at %.1f s: SIGKILL, starting it again", i+1, len(acts), time.Since(t0).Seconds())
		}
		if err := e.start(); err != nil {
			return err
		}
	}
	return nil
}

func (r *report) summarize(cr clientResult, runs []incarnation) {
	r.Seconds = cr.Seconds
	var journey []float64
	ph := map[string][]float64{}
	for _, m := range cr.Machines {
		r.Reboots += m.Restarts
		r.BytesServed += m.Bytes
		if !m.Done {
			continue
		}
		r.Provisioned++
		journey = append(journey, m.Seconds)
		for k, v := range m.Phases {
			ph[k] = append(ph[k], v)
		}
	}
	r.Journey = pct(journey)
	for k, v := range ph {
		r.Phases[k] = pct(v)
	}
	if cr.Seconds > 0 {
		r.BytesPerSecond = float64(r.BytesServed) / cr.Seconds
	}
	for _, inc := range runs {
		r.CPUSeconds += inc.cpu.Seconds()
		r.PeakRSS = max(r.PeakRSS, inc.maxRSS)
	}
	var unfinished []string
	for _, m := range cr.Machines {
		if !m.Done {
			unfinished = append(unfinished, m.MAC+" ("+m.Err+")")
		}
	}
	if len(unfinished) > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d machine(s) not provisioned, e.g. %s", len(unfinished), strings.Join(unfinished[:min(3, len(unfinished))], ", ")))
	}
}

// The steps a complete history holds, in this order (dhcp-ack... are
// DHCP's; the rest are the machine's states).
var historySteps = []string{model.StateDHCP, model.StatePXE, model.StateIPXE, model.StateKernel, model.StateIgnition, model.StateProvisioned}

// durableSteps are the steps bootsrv commits before it answers (the
// Ignition handout, the report); the others it records in batches after
// answering, so a SIGKILL may lose the last few milliseconds of them.
var durableSteps = []string{model.StateIgnition, model.StateProvisioned}

// checkState opens the state bootsrv left and checks it against what the
// machines saw: every machine provisioned, exactly one bound lease each,
// on the address its last ACK gave it, no address twice, and every history
// in time order through every step of the journey.
func checkState(dataDir string, cr clientResult, killed bool) (fails []string, lostAsync int) {
	db, err := state.Open(dataDir, 5*time.Second)
	if err != nil {
		return []string{fmt.Sprintf("the state file does not open: %v", err)}, 0
	}
	defer db.Close()
	type bad struct {
		n       int
		example string
	}
	issues := map[string]*bad{}
	note := func(kind, example string) {
		b := issues[kind]
		if b == nil {
			b = &bad{example: example}
			issues[kind] = b
		}
		b.n++
	}
	err = db.View(func(tx state.Tx) error {
		bound := map[string][]netip.Addr{}
		holder := map[netip.Addr]string{}
		if err := tx.Leases(func(l model.Lease) error {
			if l.State != model.LeaseBound {
				return nil
			}
			if h, ok := holder[l.IP]; ok && h != l.MAC {
				note("an address bound to two MACs", l.IP.String())
			}
			holder[l.IP] = l.MAC
			bound[l.MAC] = append(bound[l.MAC], l.IP)
			return nil
		}); err != nil {
			return err
		}
		for _, run := range cr.Machines {
			m, ok, err := tx.Machine(run.MAC)
			if err != nil {
				return err
			}
			if !ok {
				note("machine missing from the state", run.MAC)
				continue
			}
			if m.State != model.StateProvisioned {
				note("machine not provisioned in the state", run.MAC+" is "+m.State)
			}
			ls := bound[run.MAC]
			switch {
			case len(ls) == 0 && len(run.ACKs) > 0:
				note("ACKed lease lost", run.MAC+" was ACKed "+strings.Join(run.ACKs, ","))
			case len(ls) > 1:
				note("more than one bound lease", fmt.Sprintf("%s holds %v", run.MAC, ls))
			case len(ls) == 1 && len(run.ACKs) > 0 && ls[0].String() != run.ACKs[len(run.ACKs)-1]:
				note("lease on another address than ACKed", fmt.Sprintf("%s: lease %s, ACKed %v", run.MAC, ls[0], run.ACKs))
			}
			if len(run.ACKs) > 1 {
				note("machine ACKed more than one address", fmt.Sprintf("%s: %v", run.MAC, run.ACKs))
			}
			if m.IP != "" && len(ls) == 1 && ls[0].String() != m.IP {
				note("lease is not the reservation", fmt.Sprintf("%s reserved %s, leased %s", run.MAC, m.IP, ls[0]))
			}
			var evs []model.Event
			if err := tx.Events(run.MAC, func(ev model.Event) error { evs = append(evs, ev); return nil }); err != nil {
				return err
			}
			full := historyProblem(evs, historySteps)
			switch {
			case full == "":
			case !killed:
				note("history incomplete or out of order", run.MAC+": "+full)
			case historyProblem(evs, durableSteps) != "":
				note("history out of order or without a committed step", run.MAC+": "+historyProblem(evs, durableSteps))
			default:
				lostAsync++
			}
		}
		return nil
	})
	if err != nil {
		fails = append(fails, fmt.Sprintf("reading the state: %v", err))
	}
	kinds := make([]string, 0, len(issues))
	for k := range issues {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fails = append(fails, fmt.Sprintf("%s: %d (e.g. %s)", k, issues[k].n, issues[k].example))
	}
	return fails, lostAsync
}

// historyProblem says what is wrong with a machine's history, or "": its
// events must be in time order and hold steps in that order.
func historyProblem(evs []model.Event, steps []string) string {
	next := 0
	for i, ev := range evs {
		if i > 0 && ev.Time.Before(evs[i-1].Time) {
			return fmt.Sprintf("event %d (%s at %s) is before event %d (%s at %s)", i, ev.Type, ev.Time.Format(time.RFC3339Nano),
				i-1, evs[i-1].Type, evs[i-1].Time.Format(time.RFC3339Nano))
		}
		if next < len(steps) && ev.Type == steps[next] {
			next++
		}
	}
	if next < len(steps) {
		types := make([]string, len(evs))
		for i, ev := range evs {
			types[i] = ev.Type
		}
		return fmt.Sprintf("no %s after %s: %s", steps[next], strings.Join(steps[:next], ", "), strings.Join(types, " "))
	}
	return ""
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "storm: %d machines (ramp %.0f s), %d SIGKILL(s), %d SIGTERM(s): %d provisioned in %.1f s, %d reboot(s)\n",
		r.Machines, r.RampSeconds, r.Kills, r.Terms, r.Provisioned, r.Seconds, r.Reboots)
	fmt.Fprintf(w, "  journey (power-on to report): p50 %.2f s  p99 %.2f s  max %.2f s\n", r.Journey.P50, r.Journey.P99, r.Journey.Max)
	for _, p := range phases {
		q := r.Phases[p]
		fmt.Fprintf(w, "  %-10s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", p, q.P50*1000, q.P99*1000, q.Max*1000)
	}
	errs := "none"
	if len(r.Errors) > 0 {
		var l []string
		for k, n := range r.Errors {
			l = append(l, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(l)
		errs = strings.Join(l, ", ")
	}
	fmt.Fprintf(w, "  errors seen by the machines: %s\n", errs)
	fmt.Fprintf(w, "  served %.0f MB, %.1f MB/s over the storm\n", float64(r.BytesServed)/1e6, r.BytesPerSecond/1e6)
	fmt.Fprintf(w, "  bootsrv: %.1f CPU s, peak RSS %.0f MiB (%.0f MiB beyond the state file, which bbolt maps), state file %.1f MiB, SIGTERM drain %.2f s\n",
		r.CPUSeconds, float64(r.PeakRSS)/(1<<20), float64(r.PeakRSS-r.StateBytes)/(1<<20), float64(r.StateBytes)/(1<<20), r.DrainSeconds)
	if len(r.RestartSeconds) > 0 {
		var l []string
		for _, s := range r.RestartSeconds {
			l = append(l, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(w, "  restarts: back up (/healthz) in %s s\n", strings.Join(l, ", "))
	}
	if len(r.TermDrainSeconds) > 0 {
		var l []string
		for _, s := range r.TermDrainSeconds {
			l = append(l, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(w, "  mid-storm SIGTERMs drained in %s s\n", strings.Join(l, ", "))
	}
	if len(r.Failures) == 0 {
		if r.Kills == 0 {
			fmt.Fprintf(w, "  state: every machine provisioned, one lease each on its ACKed address, no address twice, every history complete and in order\n")
		} else {
			fmt.Fprintf(w, "  state: every machine provisioned, one lease each on its ACKed address, no address twice, every history in order with its Ignition handout and report;"+
				" %d of %d histories lack a step recorded after its answer (the SIGKILLs' last milliseconds)\n", r.LostAsyncEvents, r.Machines)
		}
		return
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAIL %s\n", f)
	}
}
