package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	pintftp "github.com/pin/tftp/v3"
)

// event is one OnTransfer call.
type event struct {
	remote netip.Addr
	file   string
	bytes  int64
	err    error
}

type harness struct {
	srv    *Server
	addr   string
	events chan event
	stop   func() // cancels Serve and waits for it
}

// start runs a server on an ephemeral loopback port; it is stopped (and
// checked to stop) at cleanup.
func start(t *testing.T, cfg Config, files fs.FS) *harness {
	t.Helper()
	h := &harness{events: make(chan event, 1024)}
	cfg.Addr = "127.0.0.1:0"
	cfg.OnTransfer = func(remote netip.Addr, file string, n int64, err error) {
		h.events <- event{remote, file, n, err}
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, files, log)
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.addr = srv, srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// next waits for the next OnTransfer call.
func (h *harness) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no OnTransfer call")
		return event{}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testFiles covers the edges of block arithmetic: empty, shorter than one
// block, exact multiples of 512 and 1468 (a zero-length last block), and a
// file long enough at blksize 8 to wrap the 16-bit block number.
var testFiles = fstest.MapFS{
	"empty":        {Data: nil},
	"small":        {Data: []byte("hello\n")},
	"b512":         {Data: randomBytes(512, 1)},
	"b1468x3":      {Data: randomBytes(1468*3, 2)},
	"odd":          {Data: randomBytes(100_003, 3)},
	"wrap":         {Data: randomBytes(8*70_000+5, 4)},
	"dir/nested":   {Data: []byte("nested\n")},
	"text.txt":     {Data: []byte("line1\nline2\r\n")},
	"subdir-probe": {Data: []byte("x")},
}

// pinGet fetches name with pin/tftp's client.
func pinGet(addr, name string, blksize int, tsize bool) ([]byte, error) {
	c, err := pintftp.NewClient(addr)
	if err != nil {
		return nil, err
	}
	c.SetTimeout(5 * time.Second)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(tsize)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func TestServeFilesWithPinClient(t *testing.T) {
	h := start(t, Config{}, testFiles)
	for _, name := range []string{"empty", "small", "b512", "b1468x3", "odd", "dir/nested"} {
		// pin/tftp's client cannot take a blksize under 512 (rawGet covers it).
		for _, bs := range []int{0, 512, 1468, 8192} {
			t.Run(fmt.Sprintf("%s/blksize=%d", name, bs), func(t *testing.T) {
				got, err := pinGet(h.addr, name, bs, true)
				if err != nil {
					t.Fatal(err)
				}
				if want := testFiles[name].Data; !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(want))
				}
				e := h.next(t)
				if e.err != nil || e.file != name || e.bytes != int64(len(got)) || e.remote != netip.MustParseAddr("127.0.0.1") {
					t.Fatalf("OnTransfer = %+v", e)
				}
			})
		}
	}
}

// Small blocks (pin/tftp's client cannot ask under 512), and a file long
// enough at blksize 8 to wrap the 16-bit block number.
func TestSmallBlocksAndWrap(t *testing.T) {
	h := start(t, Config{}, testFiles)
	for _, tt := range []struct {
		name    string
		blksize int
	}{{"small", 8}, {"b512", 8}, {"b1468x3", 100}, {"wrap", 8}} {
		got, err := rawGet(t, h.addr, tt.name, tt.blksize)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(got, testFiles[tt.name].Data) {
			t.Fatalf("%s at blksize %d: got %d bytes, want %d", tt.name, tt.blksize, len(got), len(testFiles[tt.name].Data))
		}
	}
}

// rawGet is a minimal RFC 1350/2348 client that takes any blksize.
func rawGet(t *testing.T, addr, name string, blksize int) ([]byte, error) {
	c := dialRaw(t, addr)
	c.send(rq(opRRQ, name, "octet", "blksize", fmt.Sprint(blksize)))
	p := c.recv(5 * time.Second)
	if want := fmt.Sprintf("\x00\x06blksize\x00%d\x00", blksize); string(p) != want {
		return nil, fmt.Errorf("reply %q, want OACK %q", p, want)
	}
	c.ack(0)
	var out []byte
	for block := uint16(1); ; block++ {
		p := c.recv(5 * time.Second)
		if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != block {
			return nil, fmt.Errorf("want DATA %d, got %q", block, p)
		}
		out = append(out, p[4:]...)
		c.ack(block)
		if len(p)-4 < blksize {
			return out, nil
		}
	}
}

func TestManyTransfersAtOnce(t *testing.T) {
	// All 40 come from 127.0.0.1: lift the per-client limit.
	h := start(t, Config{MaxPerClient: 40}, testFiles)
	want := testFiles["odd"].Data
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			got, err := pinGet(h.addr, "odd", 1468, true)
			if err == nil && !bytes.Equal(got, want) {
				err = errors.New("content differs")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for range 40 {
		if e := h.next(t); e.err != nil {
			t.Error(e.err)
		}
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d after all transfers, want 0", n)
	}
}

func TestNetascii(t *testing.T) {
	h := start(t, Config{}, testFiles)
	c, _ := pintftp.NewClient(h.addr)
	wt, err := c.Receive("text.txt", "netascii")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	// pin/tftp's client converts back: the round trip is the identity.
	if got, want := b.String(), "line1\nline2\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// raw is a bare UDP client for the cases real clients cannot produce.
type raw struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
	peer *net.UDPAddr // the transfer's TID once known
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	srv, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &raw{t: t, conn: conn, srv: srv}
}

func (r *raw) send(p []byte) {
	r.t.Helper()
	to := r.peer
	if to == nil {
		to = r.srv
	}
	if _, err := r.conn.WriteToUDP(p, to); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next datagram, or nil after wait.
func (r *raw) recv(wait time.Duration) []byte {
	r.t.Helper()
	buf := make([]byte, 70000)
	r.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		r.t.Fatal(err)
	}
	r.peer = from
	return buf[:n]
}

func (r *raw) ack(block uint16) {
	r.send(binary.BigEndian.AppendUint16([]byte{0, opACK}, block))
}

func errCode(p []byte) (uint16, string, bool) {
	if len(p) < 5 || binary.BigEndian.Uint16(p) != opERROR {
		return 0, "", false
	}
	return binary.BigEndian.Uint16(p[2:]), string(bytes.TrimRight(p[4:], "\x00")), true
}

// The bad-input cases of issue 4: each gets a TFTP ERROR with the right code,
// is reported to OnTransfer, and leaves the server serving.
func TestBadRequests(t *testing.T) {
	assets := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(assets, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(assets, "passwd-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(assets, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{AssetsDir: assets}, testFiles)

	tests := []struct {
		name     string
		pkt      []byte
		code     uint16
		reported bool // OnTransfer is called (with the name) for requests
	}{
		{"write request", rq(opWRQ, "ipxe.efi", "octet"), CodeAccessViolation, true},
		{"write request with options", rq(opWRQ, "new", "octet", "blksize", "1468", "tsize", "100"), CodeAccessViolation, true},
		{"dot-dot traversal", rq(opRRQ, "../../etc/passwd", "octet"), CodeAccessViolation, true},
		{"absolute path", rq(opRRQ, "/etc/passwd", "octet"), CodeAccessViolation, true},
		{"backslashes", rq(opRRQ, `..\..\etc\passwd`, "octet"), CodeAccessViolation, true},
		{"NUL inside the name", rq(opRRQ, "small", "../../etc/passwd", "octet"), CodeIllegalOp, true},
		{"symlink out of the assets dir", rq(opRRQ, "escape", "octet"), CodeAccessViolation, true},
		{"absolute symlink to /etc/passwd", rq(opRRQ, "passwd-link", "octet"), CodeAccessViolation, true},
		{"a directory", rq(opRRQ, "adir", "octet"), CodeAccessViolation, true},
		{"blksize 0", rq(opRRQ, "small", "octet", "blksize", "0"), CodeOptionRefused, true},
		{"blksize 7", rq(opRRQ, "small", "octet", "blksize", "7"), CodeOptionRefused, true},
		{"blksize 65465", rq(opRRQ, "small", "octet", "blksize", "65465"), CodeOptionRefused, true},
		{"blksize 99999", rq(opRRQ, "small", "octet", "blksize", "99999"), CodeOptionRefused, true},
		{"missing file", rq(opRRQ, "no-such-file", "octet"), CodeFileNotFound, true},
		{"unknown mode", rq(opRRQ, "small", "mail"), CodeIllegalOp, true},
		{"unknown opcode", []byte{0, 42, 'x', 0}, CodeIllegalOp, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(tt.pkt)
			p := c.recv(5 * time.Second)
			code, msg, ok := errCode(p)
			if !ok {
				t.Fatalf("reply %q is not an ERROR", p)
			}
			if code != tt.code {
				t.Fatalf("error code %d (%q), want %d", code, msg, tt.code)
			}
			if strings.Contains(msg, "secret") || strings.Contains(msg, "root:") {
				t.Fatalf("error message leaks content: %q", msg)
			}
			e := h.next(t)
			var rerr *Error
			if !errors.As(e.err, &rerr) || rerr.Code != tt.code || e.bytes != 0 {
				t.Fatalf("OnTransfer = %+v, want refusal code %d", e, tt.code)
			}
		})
	}
	// Still serving, and nothing in flight.
	if got, err := pinGet(h.addr, "small", 0, false); err != nil || string(got) != "hello\n" {
		t.Fatalf("after bad requests: %q, %v", got, err)
	}
	h.next(t)
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d, want 0", n)
	}
}

// Files under the assets dir come after the embedded ones, and symlinks that
// stay inside the root are followed.
func TestAssetsDirAfterEmbedded(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"small": "from disk", "only-on-disk": "disk file", "sub/inner": "inner"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/inner", filepath.Join(dir, "inside-link")); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{AssetsDir: dir}, testFiles)
	for name, want := range map[string]string{"small": "hello\n", "only-on-disk": "disk file", "sub/inner": "inner", "inside-link": "inner"} {
		got, err := pinGet(h.addr, name, 1468, true)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestOptionsAcknowledged(t *testing.T) {
	h := start(t, Config{MaxBlksize: 1024}, testFiles)
	tests := []struct {
		name string
		opts []string
		want string // OACK as name=value pairs
	}{
		{"clamp, tsize and timeout", []string{"blksize", "1468", "tsize", "0", "timeout", "3"}, "blksize=1024 tsize=100003 timeout=3"},
		{"bad timeout left out", []string{"timeout", "0", "tsize", "0"}, "tsize=100003"},
		{"windowsize not acknowledged", []string{"blksize", "512", "windowsize", "4"}, "blksize=512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(rq(opRRQ, append([]string{"odd", "octet"}, tt.opts...)...))
			p := c.recv(5 * time.Second)
			if len(p) < 2 || binary.BigEndian.Uint16(p) != opOACK {
				t.Fatalf("reply %q is not an OACK", p)
			}
			f := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
			var pairs []string
			for i := 0; i+1 < len(f); i += 2 {
				pairs = append(pairs, f[i]+"="+f[i+1])
			}
			if got := strings.Join(pairs, " "); got != tt.want {
				t.Fatalf("OACK %q, want %q", got, tt.want)
			}
			// End it the way OVMF does after its size probe.
			c.send(appendError(nil, &Error{Code: CodeOptionRefused, Msg: "probe done"}))
			if e := h.next(t); !errors.Is(e.err, ErrSizeProbe) {
				t.Fatalf("OnTransfer err = %v, want ErrSizeProbe", e.err)
			}
		})
	}
}

// A client that stops acknowledging: the server resends the block Retries
// times, one Timeout apart, then gives up with an ERROR, reports ErrTimeout
// and frees the slot.
func TestClientStopsAcknowledging(t *testing.T) {
	h := start(t, Config{Timeout: 50 * time.Millisecond, Retries: 3}, testFiles)
	c := dialRaw(t, h.addr)
	c.send(rq(opRRQ, "odd", "octet"))
	p := c.recv(5 * time.Second)
	if binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != 1 {
		t.Fatalf("first reply %x..., want DATA 1", p[:4])
	}
	c.ack(1) // then silence from block 2 on
	copies := 0
	for {
		p := c.recv(5 * time.Second)
		if p == nil {
			t.Fatal("server neither resent nor gave up")
		}
		if code, msg, ok := errCode(p); ok {
			if code != CodeNotDefined || !strings.Contains(msg, "timed out") {
				t.Fatalf("error %d %q", code, msg)
			}
			break
		}
		if binary.BigEndian.Uint16(p[2:]) == 1 {
			continue // a resend of block 1 that crossed our ACK on a busy machine
		}
		if binary.BigEndian.Uint16(p[2:]) != 2 {
			t.Fatalf("got block %d, want 2", binary.BigEndian.Uint16(p[2:]))
		}
		copies++
	}
	if copies != 4 {
		t.Errorf("block 2 sent %d times, want 1 + 3 retries", copies)
	}
	e := h.next(t)
	if !errors.Is(e.err, ErrTimeout) || e.bytes != 512 {
		t.Fatalf("OnTransfer = %+v, want ErrTimeout after 512 bytes", e)
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d, want 0", n)
	}
}

// Duplicate ACKs must not trigger resends (Sorcerer's Apprentice).
func TestDuplicateAckIgnored(t *testing.T) {
	h := start(t, Config{Timeout: 5 * time.Second}, testFiles)
	c := dialRaw(t, h.addr)
	c.send(rq(opRRQ, "b1468x3", "octet"))
	c.recv(5 * time.Second) // DATA 1
	c.ack(1)
	c.recv(5 * time.Second) // DATA 2
	c.ack(1)                // stale
	c.ack(1)                // stale
	if p := c.recv(200 * time.Millisecond); p != nil {
		t.Fatalf("server answered a duplicate ACK with %x...", p[:4])
	}
	c.ack(2)
	if p := c.recv(5 * time.Second); binary.BigEndian.Uint16(p[2:]) != 3 {
		t.Fatalf("after ACK 2 got block %d, want 3", binary.BigEndian.Uint16(p[2:]))
	}
}

// Beyond MaxTransfers a request waits, unanswered (the client resends
// it, and a resend is the same request), and is served when a slot frees;
// beyond MaxQueued it is refused "busy" at once.
func TestBusyQueues(t *testing.T) {
	h := start(t, Config{MaxTransfers: 1, MaxQueued: 1, Timeout: time.Second, Retries: 1}, testFiles)
	stalled := dialRaw(t, h.addr)
	stalled.send(rq(opRRQ, "odd", "octet"))
	stalled.recv(5 * time.Second) // DATA 1, never acknowledged: the slot frees after ~2 s
	waiting := dialRaw(t, h.addr)
	waiting.send(rq(opRRQ, "small", "octet"))
	waiting.send(rq(opRRQ, "small", "octet")) // resent: still one in the queue
	for end := time.Now().Add(time.Second); h.srv.Queued() == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the resend, too, has arrived
	if n := h.srv.Queued(); n != 1 {
		t.Fatalf("Queued() = %d, want 1 (a resent request is the same)", n)
	}
	full := dialRaw(t, h.addr)
	full.send(rq(opRRQ, "small", "octet"))
	code, msg, ok := errCode(full.recv(5 * time.Second))
	if !ok || code != CodeNotDefined || !strings.Contains(msg, "busy") {
		t.Fatalf("beyond the queue: got %d %q, want busy", code, msg)
	}
	p := waiting.recv(10 * time.Second)
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA || string(p[4:]) != "hello\n" {
		t.Fatalf("the queued request got %q, want DATA 1 of small once the slot freed", p)
	}
	waiting.ack(1)
}

// A request that waited longer than QueueWait is dropped: its client gave up.
func TestQueueWaitExpires(t *testing.T) {
	h := start(t, Config{MaxTransfers: 1, QueueWait: 100 * time.Millisecond, Timeout: time.Second, Retries: 1}, testFiles)
	stalled := dialRaw(t, h.addr)
	stalled.send(rq(opRRQ, "odd", "octet"))
	stalled.recv(5 * time.Second)
	late := dialRaw(t, h.addr)
	late.send(rq(opRRQ, "small", "octet"))
	if p := late.recv(4 * time.Second); p != nil {
		t.Fatalf("a request queued past QueueWait got %q, want nothing", p)
	}
	if n := h.srv.Queued(); n != 0 {
		t.Errorf("Queued() = %d after the slot freed, want 0", n)
	}
}

// Cancelling Serve's context ends transfers in flight with an ERROR and
// returns.
func TestShutdownAbortsTransfers(t *testing.T) {
	h := start(t, Config{Timeout: 5 * time.Second}, testFiles)
	c := dialRaw(t, h.addr)
	c.send(rq(opRRQ, "odd", "octet"))
	c.recv(5 * time.Second) // DATA 1, not acknowledged
	h.stop()
	code, msg, ok := errCode(c.recv(5 * time.Second))
	if !ok || !strings.Contains(msg, "shutting down") {
		t.Fatalf("got %d %q, want shutting down", code, msg)
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d after Serve returned", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "127.0.0.1:0", MaxBlksize: 7},
		{Addr: "127.0.0.1:0", MaxBlksize: 65465},
		{Addr: "127.0.0.1:0", AssetsDir: "/nonexistent/bootsrv-test"},
		{Addr: "not an address"},
	} {
		if s, err := New(cfg, nil, nil); err == nil {
			s.conn.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// With a wildcard listener, replies leave from the address the request was
// sent to, as firmware expects (it ignores answers from another address).
// 127.0.0.2 is on lo on Linux but is not the source the kernel would choose
// for a reply to 127.0.0.1, so this fails if the destination is not used.
func TestReplyFromRequestedAddress(t *testing.T) {
	srv, err := New(Config{Addr: "0.0.0.0:0"}, testFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv.pc == nil {
		t.Skip("IP_PKTINFO control messages unavailable on this system")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	port := srv.Addr().(*net.UDPAddr).Port
	c := dialRaw(t, fmt.Sprintf("127.0.0.2:%d", port))
	c.send(rq(opRRQ, "small", "octet"))
	if p := c.recv(5 * time.Second); p == nil {
		t.Fatal("no reply")
	}
	if got := c.peer.IP.String(); got != "127.0.0.2" {
		t.Fatalf("reply came from %s, want 127.0.0.2", got)
	}
	c.ack(1)
}

// BenchmarkFetchIPXE: one pin/tftp client fetching ipxe.efi at blksize 1468,
// client and server in this process (bench/tftp.sh is the concurrent,
// side-by-side measure).
func BenchmarkFetchIPXE(b *testing.B) {
	set := ipxeSetB(b)
	srv, err := New(Config{Addr: "127.0.0.1:0"}, set.FS(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	size := int64(0)
	for _, in := range set.List() {
		if in.Name == "ipxe.efi" {
			size = in.Size
		}
	}
	b.SetBytes(size)
	for b.Loop() {
		got, err := pinGet(srv.Addr().String(), "ipxe.efi", 1468, true)
		if err != nil || int64(len(got)) != size {
			b.Fatalf("%d bytes, %v", len(got), err)
		}
	}
}

func TestIPv6Loopback(t *testing.T) {
	srv, err := New(Config{Addr: "[::1]:0"}, testFiles, nil)
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	got, err := pinGet(srv.Addr().String(), "b1468x3", 1468, true)
	if err != nil || !bytes.Equal(got, testFiles["b1468x3"].Data) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}
