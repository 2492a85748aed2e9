// Package tftp is bootsrv's read-only TFTP server: it serves the first-stage
// iPXE binaries (from memory) and then files under an assets directory, jailed
// with os.Root, to firmware that boots over the network.
//
// The wire decisions (request parsing, option negotiation, name checks) are
// pure functions in packet.go and path.go; this file and transfer.go only move
// bytes. The protocol engine is bootsrv's own rather than pin/tftp/v3's server
// because v3.1.0's server cannot do what bootsrv needs: it never acknowledges
// the timeout option (sendOptions drops it), cannot clamp blksize to 512, caps
// blksize at 512 whenever its socket is wrapped (the only way to filter
// requests before it sees them), answers every refusal with code 1 ("file not
// found") including write requests, and serves a request whose mode is junk.
// pin/tftp/v3 stays as the Go client of the tests and the benchmark, and its
// netascii package converts netascii transfers here.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3/netascii"
	"golang.org/x/net/ipv4"

	"github.com/bootsrv/bootsrv/pkg/assetfs"
	"github.com/bootsrv/bootsrv/pkg/lograte"
)

// Defaults.
const (
	DefaultAddr = ":69"
	// DefaultMaxBlksize is 1468: 1500-byte Ethernet MTU - 20 (IPv4) - 8 (UDP)
	// - 4 (TFTP header). It is what PXE ROMs ask for; anything larger is
	// fragmented on a standard network, and many ROMs cannot reassemble.
	DefaultMaxBlksize = 1468
	DefaultTimeout    = time.Second
	DefaultRetries    = 5
	// DefaultMaxTransfers bounds the transfers in flight. More at once do
	// not move more bytes, they share them: lockstep TFTP collapses once a
	// block's turn nears the 1 s retransmit timeout (8192 transfers at once
	// on a 2-core box did: both sides resent, goodput fell to a sixth).
	// Requests beyond it wait in a queue instead (DefaultMaxQueued).
	DefaultMaxTransfers = 1024
	// DefaultMaxQueued bounds the requests waiting for a transfer slot, and
	// DefaultQueueWait how long one waits: a PXE ROM resends its request
	// for about 24 s (EDK2: 4 s, 6 tries) before it gives up, and being
	// answered late beats "server busy", which sends it to its next boot
	// device and round again through DHCP.
	DefaultMaxQueued = 16384
	DefaultQueueWait = 20 * time.Second
	// DefaultMaxPerClient bounds the transfers of one client address: a
	// booting machine has one or two (a size probe, then the download).
	DefaultMaxPerClient = 8
	// maxNetascii is the largest file served in netascii mode, which is
	// converted in memory for each transfer; it is meant for text files.
	// Boot binaries go in octet mode.
	maxNetascii = 64 << 10
	// maxLogName is how much of a requested file name goes into a log line.
	maxLogName = 128
)

// ErrSizeProbe marks a transfer the client ended with an ERROR right after
// the OACK: UEFI firmware does this on purpose to learn the file size
// (tsize) before the real download. It is not a failure of the server.
var ErrSizeProbe = errors.New("client ended the transfer after option negotiation (size probe)")

// ErrBusy is the refusal of a request beyond MaxTransfers or MaxPerClient.
// It is no event in a machine's history: in a boot storm it comes by the
// thousand, and the firmware simply asks again.
var ErrBusy = &Error{Code: CodeNotDefined, Msg: "server busy, retry later"}

// ErrTimeout marks a transfer given up because the client stopped answering.
var ErrTimeout = errors.New("client stopped acknowledging")

// Config of a Server. Zero values take the defaults above.
type Config struct {
	// Addr is host:port to listen on (UDP). ":69" by default.
	Addr string
	// AssetsDir is served after the embedded files, jailed with os.Root.
	// Empty: serve only the embedded files.
	AssetsDir string
	// MaxBlksize caps the negotiated block size (8..65464).
	MaxBlksize int
	// Timeout is the wait for an ACK before the packet is sent again (unless
	// the client negotiated its own); after Retries resends without an answer
	// the transfer is given up and its slot freed.
	Timeout time.Duration
	Retries int
	// MaxTransfers bounds the transfers in flight; requests beyond it get
	// "server busy" (firmware retries).
	MaxTransfers int
	// MaxQueued bounds the requests waiting for a slot beyond
	// MaxTransfers (answered in arrival order as slots free; a client's
	// resent request is the same one), and QueueWait how long one waits
	// before it is dropped. Beyond MaxQueued, "server busy".
	MaxQueued int
	QueueWait time.Duration
	// MaxPerClient bounds the transfers in flight from one IP address, so
	// that one address cannot take every slot; beyond it, "server busy".
	MaxPerClient int
	// OnTransfer, when set, is called once for every read or write request that
	// was decided: with the bytes sent and nil on success, or with the reason
	// (*Error for a refusal, ErrTimeout, ErrSizeProbe, ...). remote is the
	// client's IP (IPv4 unmapped). It runs on the transfer's goroutine, and
	// for malformed requests and "busy" refusals on the serving loop itself:
	// keep it short (a lookup and a queued event, not a synchronous fsync).
	OnTransfer func(remote netip.Addr, file string, bytes int64, err error)
}

// Server is a running TFTP server; New binds it, Serve runs it.
type Server struct {
	cfg    Config
	files  *assetfs.FS
	log    *slog.Logger
	conn   *net.UDPConn
	pc     *ipv4.PacketConn // nil for IPv6: replies then leave from bindIP
	bindIP net.IP           // the listener's own IP when it is not a wildcard
	active atomic.Int64
	wg     sync.WaitGroup

	mu     sync.Mutex
	perIP  map[netip.Addr]int // transfers in flight by client address
	queue  []queued           // requests waiting for a slot, oldest first
	queued map[netip.AddrPort]bool

	// warns limits the WARN lines clients can cause, per client address.
	warns *lograte.Limiter
}

// New validates cfg, opens AssetsDir and binds the UDP socket, so that a bad
// address or directory fails at start-up and Addr works before Serve. files
// holds the first-stage binaries (assets.Set.FS()); it may be nil.
func New(cfg Config, files fs.FS, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	var err error
	if cfg.MaxBlksize, err = ClampBlksize(cfg.MaxBlksize); err != nil {
		return nil, fmt.Errorf("tftp config: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = DefaultMaxTransfers
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = DefaultMaxPerClient
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	s := &Server{cfg: cfg, log: log, perIP: map[netip.Addr]int{}, queued: map[netip.AddrPort]bool{},
		warns: lograte.New(10*time.Second, 5, 4096)}
	if s.files, err = assetfs.Open(files, cfg.AssetsDir); err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("tftp listen address %q: %w", cfg.Addr, err)
	}
	// PXE is IPv4; a wildcard address listens on IPv4 only so that the
	// destination of each request can be read and the reply sent from it.
	network := "udp4"
	if ua.IP != nil && ua.IP.To4() == nil {
		network = "udp6"
	}
	if s.conn, err = net.ListenUDP(network, ua); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("tftp listen on %s: %w", cfg.Addr, err)
	}
	if ua.IP != nil && !ua.IP.IsUnspecified() {
		s.bindIP = ua.IP
	}
	if network == "udp4" {
		s.pc = ipv4.NewPacketConn(s.conn)
		if err := s.pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			// Without it replies leave from the address the kernel picks, which
			// is right unless the host has several on the boot network.
			log.Warn("tftp: cannot read request destinations; replies use the kernel's source address", "err", err)
			s.pc = nil
		}
	}
	return s, nil
}

func (s *Server) closeFiles() {
	if s.files != nil {
		s.files.Close()
	}
}

// Addr is the bound address (useful with port 0 in tests).
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Active is the number of transfers in flight.
func (s *Server) Active() int { return int(s.active.Load()) }

// Serve answers requests until ctx is cancelled, then aborts the transfers in
// flight (each client gets an ERROR "server shutting down"; firmware retries),
// waits for them, closes the socket and returns nil. Waiting for transfers to
// finish instead could hold a SIGTERM for Retries x Timeout per stalled
// client, and a TFTP read loses nothing when it is cut.
func (s *Server) Serve(ctx context.Context) error {
	defer s.closeFiles()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	s.log.Info("tftp: serving", "addr", s.Addr().String(), "assets_dir", s.cfg.AssetsDir,
		"max_blksize", s.cfg.MaxBlksize, "timeout", s.cfg.Timeout, "retries", s.cfg.Retries)
	buf := make([]byte, 64<<10)
	var err error
	for {
		var n int
		var src net.Addr
		var dst net.IP
		if s.pc != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = s.pc.ReadFrom(buf)
			if cm != nil {
				dst = cm.Dst
			}
		} else {
			n, src, err = s.conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				err = nil
				break
			}
			// A UDP read error (e.g. ICMP-induced) is about one packet, not the
			// socket: log it and go on.
			s.log.Warn("tftp: read request", "err", err)
			continue
		}
		s.handle(ctx, buf[:n], src.(*net.UDPAddr), s.replyIP(dst))
	}
	s.wg.Wait()
	s.conn.Close()
	s.log.Info("tftp: stopped")
	return err
}

// replyIP is the address a transfer's socket binds to: the one the request
// was sent to, so the client sees the reply come from the server it asked.
func (s *Server) replyIP(dst net.IP) net.IP {
	if s.bindIP != nil {
		return s.bindIP
	}
	if dst == nil || dst.Equal(net.IPv4bcast) || dst.IsMulticast() {
		return nil
	}
	return dst
}

func (s *Server) handle(ctx context.Context, pkt []byte, src *net.UDPAddr, local net.IP) {
	remote := src.AddrPort().Addr().Unmap()
	req, err := ParseRequest(pkt)
	if errors.Is(err, errStray) {
		s.log.Debug("tftp: stray packet ignored", "remote", src.String())
		return
	}
	var rerr *Error
	if errors.As(err, &rerr) {
		// Malformed: a broken or hostile client, not worth a warning each.
		s.log.Debug("tftp: bad request", "remote", src.String(), "file", logName(req.Filename), "err", rerr.Msg)
		s.reply(src, rerr)
		s.report(remote, req.Filename, 0, rerr)
		return
	}
	switch s.admit(req, src, local, remote) {
	case admitQueued:
		return // it starts when a slot frees
	case refuseFull:
		s.warn("tftp: busy, request refused", "", "remote", src.String(), "file", logName(req.Filename),
			"max_transfers", s.cfg.MaxTransfers, "max_queued", s.cfg.MaxQueued)
		s.reply(src, ErrBusy)
		s.report(remote, req.Filename, 0, ErrBusy)
		return
	case refusePerClient:
		s.log.Debug("tftp: client has too many transfers, request refused", "remote", src.String(), "file", logName(req.Filename),
			"max_per_client", s.cfg.MaxPerClient)
		s.reply(src, ErrBusy)
		s.report(remote, req.Filename, 0, ErrBusy)
		return
	}
	s.start(ctx, req, src, local, remote)
}

// queued is a request waiting for a transfer slot.
type queued struct {
	req    Request
	src    *net.UDPAddr
	local  net.IP
	remote netip.Addr
	at     time.Time
}

// What admit decided.
const (
	admitStart      = iota // it holds a slot: start it
	admitQueued            // it waits for one (or is waiting already: a resend)
	refuseFull             // no slot and the queue is full
	refusePerClient        // its address holds MaxPerClient transfers
)

// admit takes a slot for a request, or queues it, or refuses it, under
// the lock release pops the queue with: a request queued here is always
// seen by the next release, never left waiting beside a free slot.
func (s *Server) admit(req Request, src *net.UDPAddr, local net.IP, remote netip.Addr) int {
	key := src.AddrPort()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[key] {
		return admitQueued
	}
	if s.active.Load() < int64(s.cfg.MaxTransfers) {
		if s.perIP[remote] >= s.cfg.MaxPerClient {
			return refusePerClient
		}
		s.perIP[remote]++
		s.active.Add(1)
		return admitStart
	}
	if len(s.queue) >= s.cfg.MaxQueued {
		return refuseFull
	}
	s.queued[key] = true
	s.queue = append(s.queue, queued{req: req, src: src, local: local, remote: remote, at: time.Now()})
	return admitQueued
}

// start runs a transfer that holds a slot; when it ends, its slot goes to
// the oldest request waiting.
func (s *Server) start(ctx context.Context, req Request, src *net.UDPAddr, local net.IP, remote netip.Addr) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		start := time.Now()
		t, n, err := s.transfer(ctx, req, src, local)
		// Free the slot before reporting, so that whoever sees the report sees
		// the slot free.
		next, refused := s.release(remote)
		s.logResult(req, src, t, n, err, time.Since(start))
		s.report(remote, req.Filename, n, err)
		for _, q := range refused {
			s.reply(q.src, ErrBusy)
			s.report(q.remote, q.req.Filename, 0, ErrBusy)
		}
		for next != nil && ctx.Err() != nil {
			next, _ = s.release(next.remote) // shutting down: start nothing
		}
		if next != nil {
			s.start(ctx, next.req, next.src, next.local, next.remote)
		}
	}()
}

// release frees ip's slot and hands it to the oldest waiting request that
// is still fresh (within QueueWait) and within its address's share: next
// holds the slot now. Waiting requests over their address's share come
// back in refused, to be told "busy".
func (s *Server) release(ip netip.Addr) (next *queued, refused []queued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.active.Add(-1)
	now := time.Now()
	for len(s.queue) > 0 && next == nil {
		q := s.queue[0]
		s.queue[0] = queued{}
		s.queue = s.queue[1:]
		delete(s.queued, q.src.AddrPort())
		switch {
		case now.Sub(q.at) > s.cfg.QueueWait:
			// Its client has given up (or asked again from a new port).
		case s.perIP[q.remote] >= s.cfg.MaxPerClient:
			refused = append(refused, q)
		default:
			s.perIP[q.remote]++
			s.active.Add(1)
			next = &q
		}
	}
	if len(s.queue) == 0 {
		s.queue = nil // let a storm's backing array go
	}
	return next, refused
}

// Queued is the number of requests waiting for a transfer slot.
func (s *Server) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// logName is a requested name as logged: at most maxLogName bytes, so that
// a 64 KB name cannot fill the log.
func logName(name string) string {
	if len(name) <= maxLogName {
		return name
	}
	return strings.ToValidUTF8(name[:maxLogName], "") + "..."
}

// logErr is an error as logged: cut like a name, since the error of a
// failed open quotes the requested path.
func logErr(err error) string {
	msg := err.Error()
	if len(msg) <= 2*maxLogName {
		return msg
	}
	return strings.ToValidUTF8(msg[:2*maxLogName], "") + "..."
}

// reply sends one ERROR from the server port. Used only where no transfer
// socket exists (malformed request, busy): RFC 1350 clients take the first
// answer's port as the server's TID, and an ERROR ends the exchange anyway.
func (s *Server) reply(to *net.UDPAddr, e *Error) {
	if _, err := s.conn.WriteToUDP(appendError(nil, e), to); err != nil {
		s.log.Debug("tftp: send error packet", "remote", to.String(), "err", err)
	}
}

func (s *Server) report(remote netip.Addr, file string, n int64, err error) {
	if s.cfg.OnTransfer != nil {
		s.cfg.OnTransfer(remote, file, n, err)
	}
}

func (s *Server) logResult(req Request, src *net.UDPAddr, t *transfer, n int64, err error, d time.Duration) {
	attrs := []any{"remote", src.String(), "file", logName(req.Filename), "bytes", n, "duration", d.Round(time.Millisecond)}
	if t != nil {
		attrs = append(attrs, "blksize", t.blksize, "source", t.from)
	}
	var rerr *Error
	switch {
	case err == nil:
		s.log.Info("tftp: sent", attrs...)
	case errors.Is(err, ErrSizeProbe):
		s.log.Debug("tftp: size probe answered", attrs...)
	case errors.As(err, &rerr):
		attrs = append(attrs, "code", rerr.Code, "err", logErr(err))
		switch {
		case rerr.Code == CodeFileNotFound, err != error(rerr):
			// A missing file is worth seeing (a firmware name that does not
			// match bootsrv's), and so is a refusal with a cause on this side
			// (permissions, a symlink out of the assets dir, a read error).
			s.warn("tftp: refused", src.IP.String(), attrs...)
		default:
			// The request itself was bad (a write, a traversal attempt, a
			// junk option): a client's doing, logged at debug.
			s.log.Debug("tftp: refused", attrs...)
		}
	default:
		s.warn("tftp: transfer failed", src.IP.String(), append(attrs, "err", logErr(err))...)
	}
}

// warn logs a line clients cause, unless the client at addr ("" for the
// server as a whole) caused too many lately: 5, then one every 10 s, and
// the next one written counts those left out.
func (s *Server) warn(msg, addr string, attrs ...any) {
	ok, dropped := s.warns.Allow(msg + " " + addr)
	if !ok {
		return
	}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	s.log.Warn(msg, attrs...)
}

// source is a file ready to send: random access (so a retransmission re-reads
// its block) and a known size (for tsize).
type source struct {
	r    io.ReaderAt
	size int64
	from string // assetfs.FromFirstStage or FromAssetsDir, for logs
	c    io.Closer
}

// open finds name among the first-stage files, then in the assets dir.
func (s *Server) open(name, mode string) (*source, *Error, error) {
	name, rerr := CleanName(name)
	if rerr != nil {
		return nil, rerr, nil
	}
	var src *source
	f, err := s.files.Lookup(name)
	if err == nil {
		src = &source{r: f.Content, size: f.Info.Size(), from: f.From, c: f}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, refuse(CodeFileNotFound, "file not found"), nil
	case errors.Is(err, fs.ErrPermission), errors.Is(err, assetfs.ErrNotRegular), assetfs.IsEscape(err):
		// Do not tell a prober what exists: same words for all of these.
		return nil, refuse(CodeAccessViolation, "access violation"), err
	case err != nil:
		return nil, refuse(CodeNotDefined, "cannot read file"), err
	}
	if mode == "netascii" {
		if src.size > maxNetascii {
			if src.c != nil {
				src.c.Close()
			}
			return nil, refuse(CodeNotDefined, "netascii is for text files; use octet mode"), nil
		}
		src, err = toNetascii(src)
		if err != nil {
			return nil, refuse(CodeNotDefined, "cannot convert file to netascii"), err
		}
	}
	return src, nil, nil
}

func toNetascii(src *source) (*source, error) {
	if src.c != nil {
		defer src.c.Close()
	}
	// Conversion at most doubles the size (every LF becomes CR LF).
	const limit = 2 * maxNetascii
	data, err := io.ReadAll(io.LimitReader(netascii.ToReader(io.NewSectionReader(src.r, 0, src.size)), limit+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("netascii conversion over %d bytes", limit)
	}
	return &source{r: bytesReaderAt(data), size: int64(len(data)), from: src.from + "+netascii"}, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
