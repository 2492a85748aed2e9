package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// TFTP opcodes (RFC 1350, 2347).
const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// tftpGet fetches file from server:69 as a PXE ROM does: from the machine's
// own leased address, asking blksize and tsize, acknowledging each block,
// and sending its last packet again after a second of silence (five times
// at most). It returns the bytes received. pin/tftp's client cannot bind a
// local address, and the server keys its per-address limits on it.
func tftpGet(ctx context.Context, local, server netip.Addr, file string, blksize int) (int64, error) {
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
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 69))
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
		c.SetReadDeadline(time.Now().Add(time.Second))
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
