package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// transfer is one read request being answered from its own UDP socket (its
// TID, RFC 1350), connected to the client so the kernel drops datagrams from
// anyone else and an ICMP "port unreachable" ends the transfer at once.
type transfer struct {
	conn    *net.UDPConn
	timeout time.Duration
	retries int
	blksize int
	from    string // where the file came from, for logs
	pkt     []byte // the packet in flight, resent on timeout
	rbuf    []byte
	stopped atomic.Bool // set when the server shuts down
}

var errShutdown = errors.New("server shutting down")

// transfer answers one request. Refusals are sent from the transfer socket
// like any answer, so every client sees one consistent server TID.
func (s *Server) transfer(ctx context.Context, req Request, client *net.UDPAddr, local net.IP) (*transfer, int64, error) {
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: local}, client)
	if err != nil {
		return nil, 0, fmt.Errorf("open transfer socket: %w", err)
	}
	defer conn.Close()
	t := &transfer{conn: conn, timeout: s.cfg.Timeout, retries: s.cfg.Retries}
	stop := context.AfterFunc(ctx, func() {
		t.stopped.Store(true) // before the deadline below wakes the reader
		conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()

	if req.Write {
		return nil, 0, t.refuse(refuse(CodeAccessViolation, "read-only server: write requests are refused"))
	}
	src, rerr, err := s.open(req.Filename, req.Mode)
	if rerr != nil {
		t.refuse(rerr)
		if err != nil {
			// The client gets the short reason; the log and OnTransfer get why.
			return nil, 0, fmt.Errorf("%w: %w", rerr, err)
		}
		return nil, 0, rerr
	}
	if src.c != nil {
		defer src.c.Close()
	}
	t.from = src.from
	neg, rerr := Negotiate(req.Options, src.size, s.cfg.MaxBlksize)
	if rerr != nil {
		return nil, 0, t.refuse(rerr)
	}
	t.blksize = neg.Blksize
	if neg.Timeout > 0 {
		t.timeout = neg.Timeout
	}
	n, err := t.send(src.r, src.size, neg.OACK)
	if err != nil {
		return t, n, fmt.Errorf("send %s: %w", req.Filename, err)
	}
	return t, n, nil
}

// refuse sends the ERROR and returns it as the transfer's outcome.
func (t *transfer) refuse(e *Error) error {
	t.conn.Write(appendError(nil, e)) // best effort: nothing waits for an answer
	return e
}

// send runs the lock-step exchange: OACK (if any) then DATA blocks, each
// resent on timeout until acknowledged. Block numbers wrap at 65535 (as
// tftp-hpa and iPXE expect) so files of any size can be sent.
func (t *transfer) send(r io.ReaderAt, size int64, oack []string) (int64, error) {
	t.rbuf = make([]byte, 1024)
	if len(oack) > 0 {
		t.pkt = appendOACK(make([]byte, 0, 512), oack)
		if err := t.exchange(0); err != nil {
			if ce, ok := err.(*clientError); ok {
				// UEFI asks tsize, reads the OACK and says "error 8": a probe.
				return 0, fmt.Errorf("%w: %w", ErrSizeProbe, ce)
			}
			return 0, err
		}
	}
	buf := make([]byte, 4+t.blksize)
	binary.BigEndian.PutUint16(buf, opDATA)
	var off int64
	for block := uint16(1); ; block++ {
		n, err := r.ReadAt(buf[4:], off)
		if err != nil && !errors.Is(err, io.EOF) {
			t.refuse(refuse(CodeNotDefined, "read error"))
			return off, fmt.Errorf("read at %d: %w", off, err)
		}
		if n < t.blksize && off+int64(n) < size {
			// A short read before the end (file truncated under us).
			t.refuse(refuse(CodeNotDefined, "file changed during transfer"))
			return off, fmt.Errorf("short read at %d of %d", off+int64(n), size)
		}
		binary.BigEndian.PutUint16(buf[2:], block)
		t.pkt = buf[:4+n]
		if err := t.exchange(block); err != nil {
			return off, err
		}
		off += int64(n)
		// The last block is the first one shorter than blksize (zero bytes
		// when the size is a multiple of it).
		if n < t.blksize {
			return off, nil
		}
	}
}

// clientError is an ERROR packet the client sent.
type clientError struct {
	code uint16
	msg  string
}

func (e *clientError) Error() string {
	return fmt.Sprintf("client sent error %d: %q", e.code, logName(e.msg))
}

// exchange sends t.pkt and waits for the ACK of block, resending on timeout
// only (never on a duplicate ACK: that is the Sorcerer's Apprentice bug).
func (t *transfer) exchange(block uint16) error {
	if _, err := t.conn.Write(t.pkt); err != nil {
		return fmt.Errorf("send block %d: %w", block, err)
	}
	for attempt := 0; ; {
		// Checked before the deadline is set, because setting it would undo
		// the shutdown's wake-up (then the wait is at most one timeout).
		if t.stopped.Load() {
			t.refuse(refuse(CodeNotDefined, "%s", errShutdown))
			return errShutdown
		}
		if err := t.conn.SetReadDeadline(time.Now().Add(t.timeout)); err != nil {
			return err
		}
	read:
		n, err := t.conn.Read(t.rbuf)
		if err != nil {
			if t.stopped.Load() {
				t.refuse(refuse(CodeNotDefined, "%s", errShutdown))
				return errShutdown
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if attempt++; attempt > t.retries {
					t.refuse(refuse(CodeNotDefined, "timed out waiting for ACK"))
					return fmt.Errorf("%w: no ACK of block %d after %d sends %v apart", ErrTimeout, block, t.retries+1, t.timeout)
				}
				if _, err := t.conn.Write(t.pkt); err != nil {
					return fmt.Errorf("resend block %d: %w", block, err)
				}
				continue
			}
			// ECONNREFUSED from an ICMP port unreachable: the client is gone.
			return fmt.Errorf("wait for ACK of block %d: %w", block, err)
		}
		if n >= 4 {
			switch binary.BigEndian.Uint16(t.rbuf) {
			case opACK:
				if binary.BigEndian.Uint16(t.rbuf[2:]) == block {
					return nil
				}
			case opERROR:
				msg := t.rbuf[4:n]
				if i := indexNUL(msg); i >= 0 {
					msg = msg[:i]
				}
				return &clientError{code: binary.BigEndian.Uint16(t.rbuf[2:]), msg: string(msg)}
			}
		}
		// A duplicate ACK or junk: keep waiting under the same deadline, so a
		// client that floods us cannot keep the transfer alive forever.
		goto read
	}
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
