package tftp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseRequest: no datagram crashes the request parser; what it
// accepts is a read or write with a known mode, a name without NUL, and
// option names lower-cased; what it refuses is a TFTP error or a stray
// packet, nothing else.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("\x00\x01ipxe.efi\x00octet\x00"),
		[]byte("\x00\x01undionly.kpxe\x00octet\x00blksize\x001468\x00tsize\x000\x00"),
		[]byte("\x00\x01a\x00NETASCII\x00timeout\x001\x00\x00"),
		[]byte("\x00\x02upload\x00octet\x00"),
		[]byte("\x00\x04\x00\x01"),
		[]byte("\x00\x01../../etc/passwd\x00octet\x00"),
		[]byte("\x00\x01x\x00octet\x00blksize\x00"),
		{0, 9},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRequest(p)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) && !errors.Is(err, errStray) {
				t.Fatalf("ParseRequest(%q) = %v: neither a TFTP error nor a stray packet", p, err)
			}
			return
		}
		if r.Mode != "octet" && r.Mode != "netascii" {
			t.Fatalf("accepted mode %q", r.Mode)
		}
		if strings.ContainsRune(r.Filename, 0) {
			t.Fatalf("accepted a name with NUL: %q", r.Filename)
		}
		for k := range r.Options {
			if k != strings.ToLower(k) {
				t.Fatalf("option %q not lower-cased", k)
			}
		}
		if !bytes.HasSuffix(p, []byte{0}) {
			t.Fatalf("accepted a request that is not NUL-terminated: %q", p)
		}
		// Negotiating what was asked must not crash either.
		_, _ = Negotiate(r.Options, 1<<20, 1468)
	})
}
