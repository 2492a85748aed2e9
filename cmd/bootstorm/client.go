package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clientResult is what `bootstorm client` prints: the storm seen from the
// machines.
type clientResult struct {
	Seconds  float64        `json:"seconds"`
	Machines []machineRun   `json:"machines"`
	Errors   map[string]int `json:"errors"`
}

// clientMain is the storm's machines, run inside the client namespace by
// the harness (or by hand against any bootsrv): it reads one MAC a line
// from -macs, powers them on spread over -ramp and prints a clientResult.
func clientMain(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	server := fs.String("server", "", "bootsrv's address (DHCP on :67, TFTP on :69)")
	giaddr := fs.String("giaddr", "", "this relay agent's address, on the machines' subnet")
	macs := fs.String("macs", "", "file with one MAC a line")
	ramp := fs.Duration("ramp", 5*time.Second, "power the machines on spread over this long")
	think := fs.Duration("think", 200*time.Millisecond, "mean pause between firmware steps")
	bootThink := fs.Duration("boot-think", time.Second, "mean pause between the initrd and Ignition (the kernel booting)")
	deadline := fs.Duration("deadline", 10*time.Minute, "give up on machines not provisioned by then")
	blksize := fs.Int("blksize", 1468, "TFTP block size asked")
	progress := fs.Bool("progress", true, "a progress line on stderr every 5 s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv, err := netip.ParseAddr(*server)
	if err != nil {
		return fmt.Errorf("-server %q: %w", *server, err)
	}
	gi, err := netip.ParseAddr(*giaddr)
	if err != nil {
		return fmt.Errorf("-giaddr %q: %w", *giaddr, err)
	}
	list, err := readMACs(*macs)
	if err != nil {
		return err
	}
	r, err := newRelay(gi, srv)
	if err != nil {
		return err
	}
	defer r.Close()
	s := &storm{relay: r, server: srv, blksize: *blksize, think: *think, bootThink: *bootThink, errors: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()

	runs := make([]machineRun, len(list))
	var wg sync.WaitGroup
	var done atomic.Int64
	t0 := time.Now()
	if *progress {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tk := time.NewTicker(5 * time.Second)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
					s.mu.Lock()
					errs := 0
					for _, n := range s.errors {
						errs += n
					}
					s.mu.Unlock()
					fmt.Fprintf(os.Stderr, "bootstorm: %3.0f s: %d/%d machines provisioned, %d errors so far\n",
						time.Since(t0).Seconds(), done.Load(), len(list), errs)
				}
			}
		}()
	}
	for i, mac := range list {
		runs[i] = machineRun{MAC: mac.String(), Phases: map[string]float64{}}
		at := time.Duration(0)
		if len(list) > 1 {
			at = *ramp * time.Duration(i) / time.Duration(len(list)-1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := time.Until(t0.Add(at)); d > 0 {
				time.Sleep(d)
			}
			m := &machine{s: s, mac: mac, run: &runs[i]}
			m.play(ctx)
			if runs[i].Done {
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	res := clientResult{Seconds: time.Since(t0).Seconds(), Machines: runs, Errors: s.errors}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(res)
}

func readMACs(path string) ([]net.HardwareAddr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-macs: %w", err)
	}
	defer f.Close()
	var out []net.HardwareAddr
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		m, err := net.ParseMAC(t)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no MACs", path)
	}
	return out, sc.Err()
}

// waitMain polls a URL until it answers 200 (the harness's readiness check,
// run in the client namespace where the server's address is reachable).
func waitMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: bootstorm wait URL TIMEOUT")
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Second}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if res, err := c.Get(args[0]); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", args[0], d)
}
