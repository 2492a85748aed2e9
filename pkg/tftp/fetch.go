package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Fetch gets file from server as a PXE ROM does: from the local address
// given (a machine's leased one), asking blksize and tsize, acknowledging each block,
// and sending its last packet again after a second of silence (five times
// at most; the request itself with backoff, about 23 s, as a busy server
// may queue it). It writes the file to w and returns its size. It is the load of
// bootstorm and bench-tftp: pin/tftp's client cannot bind a local address,
// and servers key their per-address limits on it. Errors start with their
// kind (tftp-timeout, tftp-error, ...).
func Fetch(ctx context.Context, local netip.Addr, server netip.AddrPort, file string, blksize int, w io.Writer) (int64, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return 0, fmt.Errorf("tftp-socket: %w", err)
	}
	defer c.Close()
	rrq := []byte{0, opRRQ}
	for _, s := range []string{file, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"} {
		rrq = append(append(rrq, s...), 0)
	}
	last := rrq
	dst := net.UDPAddrFromAddrPort(server)
	var peer *net.UDPAddr // the server's transfer port, from its first reply
	size, want := int64(0), int64(-1)
	next := uint16(1)
	bs := 512
	buf := make([]byte, 65536)
	tries := 0
	send := func() error {
		to := dst
		if peer != nil {
			to = peer
		}
		_, err := c.WriteToUDP(last, to)
		return err
	}
	if err := send(); err != nil {
		return 0, fmt.Errorf("tftp-send: %w", err)
	}
	for {
		if ctx.Err() != nil {
			return size, errors.New("tftp-timeout: the machine gave up")
		}
		wait := time.Second
		if peer == nil {
			// The request itself: resent after 1, 2, 4, 8, 8 s, about the
			// 24 s an EDK2 PXE ROM waits (a busy server queues it).
			wait = min(time.Second<<tries, 8*time.Second)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if tries++; tries > 5 {
					return size, fmt.Errorf("tftp-timeout: no block %d", next)
				}
				if err := send(); err != nil {
					return size, fmt.Errorf("tftp-send: %w", err)
				}
				continue
			}
			return size, fmt.Errorf("tftp-recv: %w", err)
		}
		if peer != nil && !from.IP.Equal(peer.IP) || peer != nil && from.Port != peer.Port || n < 4 {
			continue // not our transfer
		}
		op := binary.BigEndian.Uint16(buf)
		switch op {
		case opERROR:
			msg := string(bytes.TrimRight(buf[4:n], "\x00"))
			return size, fmt.Errorf("tftp-error: %s", msg)
		case opOACK:
			if peer != nil {
				continue
			}
			peer = from
			opts := bytes.Split(bytes.TrimRight(buf[2:n], "\x00"), []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				v, _ := strconv.Atoi(string(opts[i+1]))
				switch string(bytes.ToLower(opts[i])) {
				case "blksize":
					bs = v
				case "tsize":
					want = int64(v)
				}
			}
			last = []byte{0, opACK, 0, 0}
		case opDATA:
			if peer == nil {
				peer = from
			}
			blk := binary.BigEndian.Uint16(buf[2:])
			if blk != next {
				// A duplicate: acknowledge it again so the server moves on.
				if blk == next-1 {
					send()
				}
				continue
			}
			if _, err := w.Write(buf[4:n]); err != nil {
				return size, fmt.Errorf("tftp-write: %w", err)
			}
			size += int64(n - 4)
			last = []byte{0, opACK, byte(blk >> 8), byte(blk)}
			next++
			tries = 0
			if n-4 < bs {
				send()
				if want >= 0 && size != want {
					return size, fmt.Errorf("tftp-short: %d bytes, the server announced %d", size, want)
				}
				return size, nil
			}
		default:
			continue
		}
		tries = 0
		if err := send(); err != nil {
			return size, fmt.Errorf("tftp-send: %w", err)
		}
	}
}
