package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/tftp"
)

// The phases of a machine's journey, in order.
var phases = []string{"dhcp-pxe", "tftp", "dhcp-ipxe", "script", "assets", "ignition", "report"}

// machineRun is what one simulated machine did.
type machineRun struct {
	MAC      string             `json:"mac"`
	ACKs     []string           `json:"acks"` // every address an ACK gave it
	Done     bool               `json:"done"`
	Seconds  float64            `json:"seconds"` // power-on to report
	Phases   map[string]float64 `json:"phases"`  // seconds of each phase's last success
	Restarts int                `json:"restarts"`
	Bytes    int64              `json:"bytes"`
	Err      string             `json:"err,omitempty"` // the last error of an unfinished machine
}

// storm is the state every machine shares.
type storm struct {
	relay     *relay
	server    netip.Addr
	blksize   int
	think     time.Duration
	bootThink time.Duration

	mu     sync.Mutex
	errors map[string]int
}

func (s *storm) countErr(err error) {
	kind := errKind(err)
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

// errKind is the first word of an error (dhcp-timeout, http-503, ...), the
// key errors are counted by.
func errKind(err error) string {
	msg := err.Error()
	if i := strings.IndexAny(msg, ": "); i > 0 {
		return msg[:i]
	}
	return msg
}

// pause sleeps about d (uniform in [d/2, 3d/2]), like firmware and an OS
// that take their time between steps.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var (
	kernelRe   = regexp.MustCompile(`(?m)^kernel (\S+)(.*?)(?: \|\| goto.*)?$`)
	initrdRe   = regexp.MustCompile(`(?m)^initrd (?:--name \S+ )?(\S+)`)
	ignRe      = regexp.MustCompile(`ignition\.config\.url=(\S+)`)
	bootLineRe = regexp.MustCompile(`(?m)^boot\b`)
	chainRe    = regexp.MustCompile(`(?m)^chain (?:--\S+ )*(\S+)`)
	reportRe   = regexp.MustCompile(`BOOTSRV_REPORT_URL=("[^"]*")`)
)

// expandIPXE replaces the iPXE settings bootsrv's /boot.ipxe uses.
func expandIPXE(u string, mac net.HardwareAddr) string {
	return strings.NewReplacer(
		"${mac:hexhyp}", strings.ReplaceAll(mac.String(), ":", "-"),
		"${net0/mac:hexhyp}", strings.ReplaceAll(mac.String(), ":", "-"),
		"${mac}", mac.String(), "${net0/mac}", mac.String(),
		"${uuid}", "", "${serial}", "", "${buildarch}", "x86_64", "${platform}", "efi",
		"${asset}", "", "${manufacturer}", "", "${product}", "", "${hostname}", "",
	).Replace(u)
}

// bootScript is what a machine's /ipxe script tells it to load.
type bootScript struct {
	kernel, ignition string
	initrds          []string
}

func parseScript(s string) (bootScript, error) {
	// bootsrv's script tries up to three times; the first try is what a
	// machine that succeeds loads.
	if i := bootLineRe.FindStringIndex(s); i != nil {
		s = s[:i[0]]
	}
	km := kernelRe.FindStringSubmatch(s)
	if km == nil {
		return bootScript{}, fmt.Errorf("script-bad: no kernel line in %q", firstLine(s))
	}
	b := bootScript{kernel: km[1]}
	if g := ignRe.FindStringSubmatch(km[2]); g != nil {
		b.ignition = g[1]
	} else {
		return bootScript{}, fmt.Errorf("script-bad: the kernel line has no ignition.config.url")
	}
	for _, m := range initrdRe.FindAllStringSubmatch(s, -1) {
		b.initrds = append(b.initrds, m[1])
	}
	return b, nil
}

func firstLine(s string) string {
	s = strings.TrimPrefix(s, "#!ipxe\n")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// reportURL is the report URL in a config's /etc/bootsrv/report.env.
func reportURL(ign []byte) (string, error) {
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
		return "", fmt.Errorf("ignition-bad: not JSON: %v", err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != "/etc/bootsrv/report.env" {
			continue
		}
		env, err := url.PathUnescape(strings.TrimPrefix(f.Contents.Source, "data:,"))
		if err != nil {
			return "", fmt.Errorf("ignition-bad: report.env: %v", err)
		}
		if m := reportRe.FindStringSubmatch(env); m != nil {
			var u string
			if _, err := fmt.Sscanf(m[1], "%q", &u); err == nil {
				return u, nil
			}
		}
	}
	return "", errors.New("ignition-bad: no /etc/bootsrv/report.env with BOOTSRV_REPORT_URL")
}

// httpStatusError is a non-2xx answer.
type httpStatusError struct {
	code int
	body string
}

func (e httpStatusError) Error() string {
	return fmt.Sprintf("http-%d: %s", e.code, strings.TrimSpace(e.body))
}

// machine is one simulated machine: its HTTP client dials from the address
// its lease gave it, as the real one would.
type machine struct {
	s    *storm
	mac  net.HardwareAddr
	run  *machineRun
	ip   netip.Addr
	http *http.Client
}

func (m *machine) client(ip netip.Addr) *http.Client {
	if m.http != nil && m.ip == ip {
		return m.http
	}
	if m.http != nil {
		m.http.CloseIdleConnections()
	}
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)), Timeout: 5 * time.Second}
	m.ip = ip
	m.http = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableCompression: true,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
	return m.http
}

// fetch GETs (or POSTs) u and returns the body, or its size when discard.
func (m *machine) fetch(ctx context.Context, method, u string, discard bool) ([]byte, int64, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("url-bad: %w", err)
	}
	res, err := m.client(m.ip).Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("http-conn: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 300))
		return nil, 0, httpStatusError{res.StatusCode, string(b)}
	}
	if discard {
		n, err := io.Copy(io.Discard, res.Body)
		if err == nil && res.ContentLength >= 0 && n != res.ContentLength {
			err = fmt.Errorf("%d of %d bytes", n, res.ContentLength)
		}
		if err != nil {
			return nil, n, fmt.Errorf("http-body: %s: %w", u, err)
		}
		return nil, n, nil
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("http-body: %s: %w", u, err)
	}
	return b, int64(len(b)), nil
}

// retryable says whether a step should be tried again in place (the
// server was away or busy) rather than the machine rebooting.
func retryable(err error) bool {
	var se httpStatusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests
	}
	return true
}

// step runs fn up to 4 times, 1 s apart, counting each failure; the time
// of the successful try (retries included) is the phase's.
func (m *machine) step(ctx context.Context, phase string, fn func() error) error {
	t0 := time.Now()
	var err error
	for try := 0; try < 4; try++ {
		if try > 0 {
			pause(ctx, time.Second)
		}
		if err = fn(); err == nil {
			m.run.Phases[phase] = time.Since(t0).Seconds()
			return nil
		}
		m.s.countErr(err)
		if ctx.Err() != nil || !retryable(err) {
			break
		}
	}
	return fmt.Errorf("%s: %w", phase, err)
}

// boot is one power-on to report. An error is a failed boot: the machine
// then powers on again, as a watchdog or an operator would have it.
func (m *machine) boot(ctx context.Context) error {
	s := m.s
	var ack, file string
	var server netip.Addr
	if err := m.step(ctx, "dhcp-pxe", func() error {
		a, err := s.relay.dora(ctx, m.mac, pxeROM)
		if err != nil {
			return err
		}
		ip, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
		if !ip.IsValid() || ip.IsUnspecified() {
			return errors.New("dhcp-noaddr: an ACK without an address")
		}
		m.ip, ack, file = ip, ip.String(), a.BootFileName
		server, _ = netip.AddrFromSlice(a.ServerIPAddr.To4())
		if !server.IsValid() || server.IsUnspecified() {
			server = s.server
		}
		return nil
	}); err != nil {
		return err
	}
	m.run.ACKs = appendNew(m.run.ACKs, ack)
	if file == "" {
		return errors.New("dhcp-nofile: the PXE ACK names no boot file")
	}
	pause(ctx, s.think)
	if err := m.step(ctx, "tftp", func() error {
		n, err := tftp.Fetch(ctx, m.ip, netip.AddrPortFrom(server, 69), file, s.blksize, io.Discard)
		m.run.Bytes += n
		return err
	}); err != nil {
		return err
	}
	pause(ctx, s.think)
	var scriptURL string
	if err := m.step(ctx, "dhcp-ipxe", func() error {
		a, err := s.relay.dora(ctx, m.mac, ipxeFW)
		if err != nil {
			return err
		}
		ip, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
		m.ip, scriptURL = ip, a.BootFileName
		m.run.ACKs = appendNew(m.run.ACKs, ip.String())
		if !strings.HasPrefix(scriptURL, "http") {
			return fmt.Errorf("dhcp-nofile: iPXE's ACK names %q, not an http:// script", scriptURL)
		}
		return nil
	}); err != nil {
		return err
	}
	var bs bootScript
	if err := m.step(ctx, "script", func() error {
		b, _, err := m.fetch(ctx, http.MethodGet, scriptURL, false)
		if err != nil {
			return err
		}
		next := scriptURL
		if c := chainRe.FindStringSubmatch(string(b)); c != nil {
			next = expandIPXE(c[1], m.mac)
			if b, _, err = m.fetch(ctx, http.MethodGet, next, false); err != nil {
				return err
			}
		}
		bs, err = parseScript(string(b))
		return err
	}); err != nil {
		return err
	}
	if err := m.step(ctx, "assets", func() error {
		for _, u := range append([]string{bs.kernel}, bs.initrds...) {
			_, n, err := m.fetch(ctx, http.MethodGet, u, true)
			m.run.Bytes += n
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	pause(ctx, s.bootThink) // the kernel boots, then Ignition runs
	var rep string
	if err := m.step(ctx, "ignition", func() error {
		b, _, err := m.fetch(ctx, http.MethodGet, bs.ignition, false)
		if err != nil {
			return err
		}
		rep, err = reportURL(b)
		return err
	}); err != nil {
		return err
	}
	pause(ctx, s.think)
	return m.step(ctx, "report", func() error {
		_, _, err := m.fetch(ctx, http.MethodPost, rep+"&state=booted", false)
		return err
	})
}

func appendNew(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

// play runs the machine from power-on until it reported or ctx ends.
func (m *machine) play(ctx context.Context) {
	t0 := time.Now()
	defer func() {
		if m.http != nil {
			m.http.CloseIdleConnections()
		}
	}()
	for {
		err := m.boot(ctx)
		if err == nil {
			m.run.Done, m.run.Seconds, m.run.Err = true, time.Since(t0).Seconds(), ""
			return
		}
		m.run.Err = err.Error()
		if ctx.Err() != nil {
			return
		}
		m.run.Restarts++
		pause(ctx, 2*time.Second) // POST and the ROM again
	}
}
