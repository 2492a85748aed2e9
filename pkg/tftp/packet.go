package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350, RFC 2347).
const (
	CodeNotDefined      = 0
	CodeFileNotFound    = 1
	CodeAccessViolation = 2
	CodeIllegalOp       = 4
	CodeUnknownTID      = 5
	CodeOptionRefused   = 8
)

// Error is a refusal: it becomes one TFTP ERROR packet to the client.
type Error struct {
	Code uint16
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("tftp error %d: %s", e.Code, e.Msg) }

func refuse(code uint16, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Request is a parsed RRQ or WRQ.
type Request struct {
	Write    bool
	Filename string
	Mode     string            // "octet" or "netascii", lower-cased
	Options  map[string]string // option names lower-cased (RFC 2347: case-insensitive)
}

// ParseRequest parses a datagram that arrived on the server's port. It
// returns (Request, nil) for a well-formed RRQ or WRQ, (_, *Error) for a
// datagram that deserves an ERROR reply, and (_, errStray) for a DATA, ACK,
// ERROR or OACK that belongs to no transfer (answering those could start a
// packet loop between two servers, so they are dropped).
func ParseRequest(p []byte) (Request, error) {
	if len(p) < 2 {
		return Request{}, refuse(CodeIllegalOp, "short packet")
	}
	op := binary.BigEndian.Uint16(p)
	switch op {
	case opRRQ, opWRQ:
	case opDATA, opACK, opERROR, opOACK:
		return Request{}, errStray
	default:
		return Request{}, refuse(CodeIllegalOp, "unknown opcode")
	}
	// filename NUL mode NUL [option NUL value NUL]...; a NUL inside a name
	// therefore ends the name, and what follows is read as the mode (and fails
	// there unless it is a real mode).
	body := p[2:]
	if len(body) == 0 || body[len(body)-1] != 0 {
		return Request{}, refuse(CodeIllegalOp, "request not NUL-terminated")
	}
	fields := bytes.Split(body[:len(body)-1], []byte{0})
	if len(fields) < 2 {
		return Request{}, refuse(CodeIllegalOp, "request has no mode")
	}
	r := Request{
		Write:    op == opWRQ,
		Filename: string(fields[0]),
		Mode:     strings.ToLower(string(fields[1])),
	}
	if r.Mode != "octet" && r.Mode != "netascii" {
		return r, refuse(CodeIllegalOp, "unsupported transfer mode")
	}
	opts := fields[2:]
	// Some clients pad the request with an extra NUL; tolerate one empty tail.
	if len(opts)%2 == 1 && len(opts[len(opts)-1]) == 0 {
		opts = opts[:len(opts)-1]
	}
	if len(opts)%2 == 1 {
		return r, refuse(CodeIllegalOp, "option has no value")
	}
	for i := 0; i < len(opts); i += 2 {
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		r.Options[strings.ToLower(string(opts[i]))] = string(opts[i+1])
	}
	return r, nil
}

var errStray = errors.New("stray packet on the server port")

// RFC 2348 bounds, and the timeouts (RFC 2349 allows 1..255 s) bootsrv
// acknowledges: a client that asked 255 s and then went silent would hold
// its transfer slot for (Retries+1) x 255 s, about 25 minutes.
const (
	MinBlksize     = 8
	MaxBlksize     = 65464
	DefaultBlksize = 512
	minTimeoutOpt  = 1
	maxTimeoutOpt  = 10
)

// Negotiated is the outcome of option negotiation for one read transfer.
type Negotiated struct {
	Blksize int
	// Timeout is the per-packet wait the client asked for (RFC 2349), or 0
	// to use the server's own.
	Timeout time.Duration
	// OACK lists the options acknowledged, in a fixed order, as name, value
	// pairs; empty means no OACK: the transfer starts with DATA block 1.
	OACK []string
}

// Negotiate decides the options of a read request for a file of size bytes,
// with the server's blksize clamp. The rules, and why:
//   - blksize: the client's ask, capped at maxBlksize (RFC 2348 lets the
//     server answer lower, never higher). Firmware asks 1468 to fill an
//     Ethernet frame; a cap of 512 costs ~3x the round trips. An ask outside
//     RFC 2348's 8..65464, or not a number, is refused with error 8: it is a
//     broken or hostile client, and guessing would hide that.
//   - tsize: answered with the real size; some ROMs fail ("NBP filesize 0")
//     without it.
//   - timeout: acknowledged when within 1..10 seconds and used as the wait
//     before a retransmission; otherwise (RFC 2349 allows up to 255) left
//     out of the OACK and the server's own timeout is used (RFC 2347: an
//     option the server does not acknowledge is simply not used). Firmware
//     asks a few seconds; a long one only lets a silent client hold a slot.
//   - anything else (windowsize, multicast, utimeout) is not acknowledged.
func Negotiate(opts map[string]string, size int64, maxBlksize int) (Negotiated, *Error) {
	n := Negotiated{Blksize: DefaultBlksize}
	if v, ok := opts["blksize"]; ok {
		ask, err := strconv.Atoi(v)
		if err != nil || ask < MinBlksize || ask > MaxBlksize {
			return Negotiated{}, refuse(CodeOptionRefused, "blksize outside %d..%d", MinBlksize, MaxBlksize)
		}
		n.Blksize = min(ask, maxBlksize)
		n.OACK = append(n.OACK, "blksize", strconv.Itoa(n.Blksize))
	}
	if _, ok := opts["tsize"]; ok {
		n.OACK = append(n.OACK, "tsize", strconv.FormatInt(size, 10))
	}
	if v, ok := opts["timeout"]; ok {
		if sec, err := strconv.Atoi(v); err == nil && sec >= minTimeoutOpt && sec <= maxTimeoutOpt {
			n.Timeout = time.Duration(sec) * time.Second
			n.OACK = append(n.OACK, "timeout", v)
		}
	}
	return n, nil
}

// ClampBlksize validates a --tftp-max-blksize value; 0 means the default.
func ClampBlksize(v int) (int, error) {
	switch {
	case v == 0:
		return DefaultMaxBlksize, nil
	case v < MinBlksize || v > MaxBlksize:
		return 0, fmt.Errorf("max blksize %d outside %d..%d", v, MinBlksize, MaxBlksize)
	}
	return v, nil
}

func appendError(b []byte, e *Error) []byte {
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, e.Code)
	b = append(b, e.Msg...)
	return append(b, 0)
}

func appendOACK(b []byte, opts []string) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, s := range opts {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}
