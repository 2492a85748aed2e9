package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// ERROR replies carry fixed short messages: a large junk request is never
// echoed back (a reflection to a spoofed source), nor a long name.
func TestErrorRepliesAreShort(t *testing.T) {
	h := start(t, Config{AssetsDir: t.TempDir()}, testFiles)
	junk := string(bytes.Repeat([]byte{0x01}, 1400))
	long := strings.Repeat("a", 1400)
	tests := []struct {
		name string
		pkt  []byte
		code uint16
		msg  string
	}{
		{"junk mode", rq(opRRQ, "x", junk), CodeIllegalOp, "unsupported transfer mode"},
		{"option without value", rq(opRRQ, "x", "octet", long), CodeIllegalOp, "option has no value"},
		{"junk blksize", rq(opRRQ, "small", "octet", "blksize", long), CodeOptionRefused, "blksize outside 8..65464"},
		{"long missing name", rq(opRRQ, strings.Repeat("a/", 700)+"a", "octet"), CodeFileNotFound, "file not found"},
		{"long bad name", rq(opRRQ, "/"+long, "octet"), CodeAccessViolation, "absolute path"},
		{"unknown opcode", append([]byte{0, 42}, long...), CodeIllegalOp, "unknown opcode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(tt.pkt)
			p := c.recv(5 * time.Second)
			code, msg, ok := errCode(p)
			if !ok || code != tt.code || msg != tt.msg {
				t.Fatalf("reply %d %q (%v), want %d %q", code, msg, ok, tt.code, tt.msg)
			}
			if len(p) > 64 {
				t.Errorf("ERROR reply of %d bytes to a request of %d", len(p), len(tt.pkt))
			}
			h.next(t)
		})
	}
}

// The timeout option is acknowledged only for 1..10 s; a client that asks
// 255 s and goes silent gives its slot back after the server's own
// timeout and retries.
func TestTimeoutOptionCapped(t *testing.T) {
	for _, tt := range []struct {
		ask  string
		want time.Duration
	}{{"1", time.Second}, {"10", 10 * time.Second}, {"11", 0}, {"255", 0}} {
		n, err := Negotiate(map[string]string{"timeout": tt.ask}, 100, 1468)
		if err != nil || n.Timeout != tt.want || (tt.want == 0) != (len(n.OACK) == 0) {
			t.Errorf("timeout %s: %+v, %v; want %v", tt.ask, n, err, tt.want)
		}
	}
	h := start(t, Config{MaxTransfers: 1, Retries: 1, Timeout: 200 * time.Millisecond}, testFiles)
	c := dialRaw(t, h.addr)
	c.send(rq(opRRQ, "odd", "octet", "timeout", "255"))
	p := c.recv(2 * time.Second)
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA {
		t.Fatalf("reply %q, want DATA 1 (no OACK: the timeout is not acknowledged)", p)
	}
	if e := h.next(t); e.err == nil {
		t.Fatalf("silent client: transfer reported success")
	}
	if n := h.srv.Active(); n != 0 {
		t.Fatalf("the silent client still holds %d slot(s)", n)
	}
	if got, err := pinGet(h.addr, "small", 0, false); err != nil || string(got) != "hello\n" {
		t.Fatalf("next client: %q, %v", got, err)
	}
}

// dialRawFrom is dialRaw from another loopback address.
func dialRawFrom(t *testing.T, from net.IP, addr string) *raw {
	t.Helper()
	srv, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: from})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &raw{t: t, conn: conn, srv: srv}
}

// One address cannot take every slot: beyond MaxPerClient transfers it
// gets "server busy", and other addresses are still served.
func TestPerClientLimit(t *testing.T) {
	h := start(t, Config{Timeout: 5 * time.Second}, testFiles)
	for i := range DefaultMaxPerClient {
		c := dialRaw(t, h.addr)
		c.send(rq(opRRQ, "odd", "octet"))
		if p := c.recv(5 * time.Second); len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA {
			t.Fatalf("transfer %d: reply %q", i, p)
		}
	}
	c := dialRaw(t, h.addr)
	c.send(rq(opRRQ, "small", "octet"))
	code, msg, ok := errCode(c.recv(5 * time.Second))
	if !ok || code != CodeNotDefined || !strings.Contains(msg, "busy") {
		t.Fatalf("transfer %d from one address: %d %q, want busy", DefaultMaxPerClient+1, code, msg)
	}
	if e := h.next(t); e.err == nil {
		t.Fatalf("busy refusal not reported")
	}
	o := dialRawFrom(t, net.IPv4(127, 0, 0, 2), h.addr)
	o.send(rq(opRRQ, "small", "octet"))
	if p := o.recv(5 * time.Second); len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA {
		t.Fatalf("another address: reply %q, want DATA", p)
	}
	if n := h.srv.Active(); n != DefaultMaxPerClient+1 {
		t.Errorf("Active() = %d, want %d", n, DefaultMaxPerClient+1)
	}
}

// netascii is converted in memory per transfer, so it is refused for files
// over 64 KiB; octet mode serves them, and small text files still convert.
func TestNetasciiRefusedForLargeFiles(t *testing.T) {
	big := randomBytes(850528, 5) // the size of ipxe.efi
	text := bytes.Repeat([]byte("x\n"), maxNetascii/2)
	h := start(t, Config{}, fstest.MapFS{"ipxe.efi": {Data: big}, "text": {Data: text}, "text1": {Data: append(text, 'y')}})
	for _, name := range []string{"ipxe.efi", "text1"} {
		c := dialRaw(t, h.addr)
		c.send(rq(opRRQ, name, "netascii"))
		code, msg, ok := errCode(c.recv(5 * time.Second))
		if !ok || code != CodeNotDefined || msg != "netascii is for text files; use octet mode" {
			t.Errorf("%s in netascii: %d %q %v", name, code, msg, ok)
		}
		h.next(t)
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d after refusals", n)
	}
	if got, err := pinGet(h.addr, "ipxe.efi", 1468, true); err != nil || !bytes.Equal(got, big) {
		t.Errorf("octet: %d bytes, %v", len(got), err)
	}
	h.next(t)
	got, err := rawGetMode(t, h.addr, "text", "netascii")
	if want := bytes.ReplaceAll(text, []byte("\n"), []byte("\r\n")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("64 KiB text in netascii: %d bytes, %v", len(got), err)
	}
}

// rawGetMode fetches name in mode with 512-byte blocks, acknowledging each.
func rawGetMode(t *testing.T, addr, name, mode string) ([]byte, error) {
	c := dialRaw(t, addr)
	c.send(rq(opRRQ, name, mode))
	var out []byte
	for block := uint16(1); ; block++ {
		p := c.recv(5 * time.Second)
		if code, msg, ok := errCode(p); ok {
			return nil, &Error{Code: code, Msg: msg}
		}
		if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != block {
			return nil, &Error{Msg: "unexpected packet"}
		}
		out = append(out, p[4:]...)
		c.ack(block)
		if len(p)-4 < DefaultBlksize {
			return out, nil
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Malformed and client-caused bad requests are logged at debug; names in
// log lines are cut to 128 bytes, and so are errors that quote them.
func TestRefusalLogging(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := New(Config{Addr: "127.0.0.1:0", AssetsDir: t.TempDir()}, testFiles, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := srv.Addr().String()
	long := strings.Repeat("n", 4000)
	missing := strings.Repeat("m/", 1000) + "m"
	for _, p := range [][]byte{
		rq(opRRQ, "x", string(bytes.Repeat([]byte{0x01}, 1400))), // junk mode
		rq(opRRQ, "x", "octet", "blksize"),                       // option without value
		rq(opRRQ, "/"+long, "octet"),                             // absolute path
		rq(opWRQ, long, "octet"),                                 // write
		rq(opRRQ, "small", "octet", "blksize", "99999"),          // bad option
		rq(opRRQ, missing, "octet"),                              // missing: logged
		rq(opRRQ, long, "octet"),                                 // name too long for the file system: logged
	} {
		c := dialRaw(t, addr)
		c.send(p)
		if _, _, ok := errCode(c.recv(5 * time.Second)); !ok {
			t.Fatalf("request %.40q: no ERROR", p)
		}
	}
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lines = lines[:0]
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if !strings.Contains(l, "tftp: serving") {
				lines = append(lines, l)
			}
		}
		if len(lines) >= 2 {
			break
		}
	}
	// The two transfers may log in either order.
	if len(lines) == 2 && strings.Contains(lines[1], "cannot read file") {
		lines[0], lines[1] = lines[1], lines[0]
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "cannot read file") || !strings.Contains(lines[1], "file not found") {
		t.Fatalf("log at info and above:\n%s\nwant the missing file and the unreadable name only", strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=WARN") || len(l) > 800 {
			t.Errorf("log line of %d bytes: %.300s", len(l), l)
		}
	}
	if !strings.Contains(lines[1], "file="+missing[:maxLogName]+"...") {
		t.Errorf("name not cut to %d bytes: %.300s", maxLogName, lines[1])
	}
}
