// Command httpload is bench/http.sh's helper: it writes a machines CSV for
// `bootsrv machine import`, finds a free loopback port, waits for a server,
// and drives /ipxe or /ignition with concurrent workers on random
// machines for a bounded time, printing requests per second and latency
// percentiles. It only ever talks to the address it is given, which
// http.sh sets to a loopback one.
//
//	httpload csv N [MASTER]   machines CSV on stdout (N machines on 10.100.0.0/16,
//	                          profile bench; the first one on profile MASTER if given)
//	httpload port             a free 127.0.0.1 port
//	httpload wait URL         until URL answers 200 (at most 30 s)
//	httpload run -base URL -csv FILE -endpoint boot.ipxe|ipxe|ignition [-workers 16] [-duration 3s]
//	             [-subset N] [-warm]
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "csv":
		err = writeCSV(os.Args[2:])
	case "port":
		err = freePort()
	case "wait":
		err = wait(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "releases":
		// Stand-ins of the release files a Kubernetes role needs
		// (pkg/release/releasetest), for `bootsrv assets import`.
		if len(os.Args) != 3 {
			err = errors.New("usage: httpload releases DIR")
			break
		}
		releasetest.Write(exitOnFatal{}, os.Args[2], releasetest.Default)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: httpload csv N | port | wait URL | run -base URL -csv FILE -endpoint boot.ipxe|ipxe|ignition [-workers N] [-duration D]")
	os.Exit(2)
}

// mac and ip of machine i, the same in csv and run.
func mac(i int) string { return fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff) }

func writeCSV(args []string) error {
	if len(args) != 1 && len(args) != 2 {
		usage()
	}
	var n int
	if _, err := fmt.Sscan(args[0], &n); err != nil || n < 1 || n > 60000 {
		return fmt.Errorf("N %q: give 1 to 60000", args[0])
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "mac,hostname,ip,profile")
	for i := range n {
		profile := "bench"
		if i == 0 && len(args) == 2 {
			profile = args[1]
		}
		fmt.Fprintf(w, "%s,node%d,10.100.%d.%d,%s\n", mac(i), i, 1+i/250, 1+i%250, profile)
	}
	return w.Flush()
}

func freePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

func wait(args []string) error {
	if len(args) != 1 {
		usage()
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(args[0])
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 30 s", args[0])
}

var tokenRe = regexp.MustCompile(`/ignition\?mac=[0-9a-f:]+&token=([A-Za-z0-9_-]+)`)

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	base := fs.String("base", "", "http://127.0.0.1:PORT of the server (loopback only)")
	csvFile := fs.String("csv", "", "the machines CSV that was imported")
	endpoint := fs.String("endpoint", "ipxe", "boot.ipxe (static, the ceiling), ipxe or ignition")
	workers := fs.Int("workers", 16, "concurrent clients")
	duration := fs.Duration("duration", 3*time.Second, "how long to drive (at most 30s)")
	maxReq := fs.Int("max-requests", 2_000_000, "stop after this many requests")
	label := fs.String("label", "", "label printed with the result")
	subset := fs.Int("subset", 0, "drive only this many random machines (0: all)")
	warm := fs.Bool("warm", false, "request every target once before timing (Kubernetes nodes issue their certificates on the first render)")
	fs.Parse(args)
	u, err := url.Parse(*base)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("-base %q is not a URL", *base)
	}
	if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
		return fmt.Errorf("-base %s: only loopback addresses are load-tested", *base)
	}
	if *duration > 30*time.Second || *duration <= 0 {
		return fmt.Errorf("-duration %s: give up to 30s", *duration)
	}
	macs, err := readMACs(*csvFile)
	if err != nil {
		return err
	}
	stored := len(macs)
	if *subset > 0 && *subset < len(macs) {
		r := rand.New(rand.NewPCG(7, 7))
		r.Shuffle(len(macs), func(i, j int) { macs[i], macs[j] = macs[j], macs[i] })
		macs = macs[:*subset]
	}
	tr := &http.Transport{MaxIdleConns: *workers * 2, MaxIdleConnsPerHost: *workers * 2, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	targets := make([]string, len(macs))
	switch *endpoint {
	case "boot.ipxe":
		// The static script: the ceiling of this client, server and box.
		for i := range macs {
			targets[i] = *base + "/boot.ipxe"
		}
	case "ipxe":
		for i, m := range macs {
			targets[i] = *base + "/ipxe?mac=" + m
		}
	case "ignition":
		// Each machine's token, from its own boot script, fetched ahead
		// with the same workers (not timed).
		if err := parallel(*workers, len(macs), func(i int) error {
			body, code, err := get(client, *base+"/ipxe?mac="+macs[i])
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("token for %s: %d %v", macs[i], code, err)
			}
			m := tokenRe.FindSubmatch(body)
			if m == nil {
				return fmt.Errorf("no token in the script of %s", macs[i])
			}
			targets[i] = *base + "/ignition?mac=" + macs[i] + "&token=" + string(m[1])
			return nil
		}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-endpoint %q: boot.ipxe, ipxe or ignition", *endpoint)
	}

	if *warm {
		if err := parallel(*workers, len(targets), func(i int) error {
			_, code, err := get(client, targets[i])
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("warming %s: %d %v", targets[i], code, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var total, failed atomic.Int64
	lat := make([][]time.Duration, *workers)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			l := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil && total.Add(1) <= int64(*maxReq) {
				t0 := time.Now()
				_, code, err := get(client, targets[rng.IntN(len(targets))])
				d := time.Since(t0)
				if err != nil || code != http.StatusOK {
					if ctx.Err() != nil && err != nil {
						total.Add(-1)
						break
					}
					failed.Add(1)
					if err == nil {
						err = fmt.Errorf("status %d", code)
					}
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				l = append(l, d)
			}
			lat[w] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	ok := len(all)
	fmt.Printf("%-15s %-9s machines=%-6d asked=%-6d workers=%d requests=%d errors=%d req/s=%.0f p50=%s p99=%s\n",
		*label, *endpoint, stored, len(macs), *workers, ok, failed.Load(), float64(ok)/elapsed.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond))
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "httpload: first error:", e)
	}
	if failed.Load() > 0 {
		return errors.New("some requests failed")
	}
	return nil
}

func get(c *http.Client, u string) ([]byte, int, error) {
	res, err := c.Get(u)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return b, res.StatusCode, err
}

func parallel(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func readMACs(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var macs []string
	for i, r := range rows {
		if i == 0 && strings.EqualFold(r[0], "mac") {
			continue
		}
		macs = append(macs, r[0])
	}
	if len(macs) == 0 {
		return nil, fmt.Errorf("%s: no machines", name)
	}
	return macs, nil
}

// exitOnFatal is releasetest's Failer outside a test.
type exitOnFatal struct{}

func (exitOnFatal) Helper() {}
func (exitOnFatal) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"httpload releases:"}, args...)...)
	os.Exit(1)
}
