package tftp

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func rq(op byte, fields ...string) []byte {
	p := []byte{0, op}
	for _, f := range fields {
		p = append(p, f...)
		p = append(p, 0)
	}
	return p
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name     string
		pkt      []byte
		want     Request
		wantCode int // -1: no error; -2: stray
	}{
		{"plain RRQ", rq(1, "ipxe.efi", "octet"), Request{Filename: "ipxe.efi", Mode: "octet"}, -1},
		{"mode case-insensitive", rq(1, "a", "OCTET"), Request{Filename: "a", Mode: "octet"}, -1},
		{"netascii", rq(1, "a", "netascii"), Request{Filename: "a", Mode: "netascii"}, -1},
		{"options lower-cased", rq(1, "a", "octet", "BLKSIZE", "1468", "tsize", "0"),
			Request{Filename: "a", Mode: "octet", Options: map[string]string{"blksize": "1468", "tsize": "0"}}, -1},
		{"one trailing pad NUL", append(rq(1, "a", "octet", "tsize", "0"), 0),
			Request{Filename: "a", Mode: "octet", Options: map[string]string{"tsize": "0"}}, -1},
		{"WRQ parsed, refused later", rq(2, "x", "octet"), Request{Write: true, Filename: "x", Mode: "octet"}, -1},
		{"NUL inside the name turns the rest into a bad mode", rq(1, "ipxe.efi", "../../etc/passwd", "octet"),
			Request{Filename: "ipxe.efi", Mode: "../../etc/passwd"}, CodeIllegalOp},
		{"mail mode", rq(1, "a", "mail"), Request{Filename: "a", Mode: "mail"}, CodeIllegalOp},
		{"no mode", rq(1, "a"), Request{}, CodeIllegalOp},
		{"not NUL-terminated", []byte{0, 1, 'a', 0, 'o'}, Request{}, CodeIllegalOp},
		{"option without value", rq(1, "a", "octet", "blksize"), Request{Filename: "a", Mode: "octet"}, CodeIllegalOp},
		{"short", []byte{0}, Request{}, CodeIllegalOp},
		{"empty body", []byte{0, 1}, Request{}, CodeIllegalOp},
		{"unknown opcode", []byte{0, 9, 0}, Request{}, CodeIllegalOp},
		{"stray ACK", []byte{0, 4, 0, 1}, Request{}, -2},
		{"stray ERROR", []byte{0, 5, 0, 0, 0}, Request{}, -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.pkt)
			switch tt.wantCode {
			case -1:
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			case -2:
				if !errors.Is(err, errStray) {
					t.Fatalf("err = %v, want stray", err)
				}
				return
			default:
				var e *Error
				if !errors.As(err, &e) || int(e.Code) != tt.wantCode {
					t.Fatalf("err = %v, want code %d", err, tt.wantCode)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name     string
		opts     map[string]string
		max      int
		want     Negotiated
		wantCode int // -1: accepted
	}{
		{"no options", nil, 1468, Negotiated{Blksize: 512}, -1},
		{"client's ask under the clamp", map[string]string{"blksize": "1024"}, 1468,
			Negotiated{Blksize: 1024, OACK: []string{"blksize", "1024"}}, -1},
		{"ask 1468", map[string]string{"blksize": "1468"}, 1468,
			Negotiated{Blksize: 1468, OACK: []string{"blksize", "1468"}}, -1},
		{"clamped", map[string]string{"blksize": "65464"}, 1468,
			Negotiated{Blksize: 1468, OACK: []string{"blksize", "1468"}}, -1},
		{"clamp 512 for a buggy ROM", map[string]string{"blksize": "1468"}, 512,
			Negotiated{Blksize: 512, OACK: []string{"blksize", "512"}}, -1},
		{"smallest legal", map[string]string{"blksize": "8"}, 1468,
			Negotiated{Blksize: 8, OACK: []string{"blksize", "8"}}, -1},
		{"blksize 0", map[string]string{"blksize": "0"}, 1468, Negotiated{}, CodeOptionRefused},
		{"blksize 7", map[string]string{"blksize": "7"}, 1468, Negotiated{}, CodeOptionRefused},
		{"blksize 65465", map[string]string{"blksize": "65465"}, 1468, Negotiated{}, CodeOptionRefused},
		{"blksize 99999", map[string]string{"blksize": "99999"}, 1468, Negotiated{}, CodeOptionRefused},
		{"blksize not a number", map[string]string{"blksize": "big"}, 1468, Negotiated{}, CodeOptionRefused},
		{"tsize answered with the size", map[string]string{"tsize": "0"}, 1468,
			Negotiated{Blksize: 512, OACK: []string{"tsize", "850528"}}, -1},
		{"timeout acknowledged", map[string]string{"timeout": "3"}, 1468,
			Negotiated{Blksize: 512, Timeout: 3 * time.Second, OACK: []string{"timeout", "3"}}, -1},
		{"timeout 0 ignored", map[string]string{"timeout": "0"}, 1468, Negotiated{Blksize: 512}, -1},
		{"timeout 256 ignored", map[string]string{"timeout": "256"}, 1468, Negotiated{Blksize: 512}, -1},
		{"OVMF's ask: windowsize not acknowledged, fixed order",
			map[string]string{"tsize": "0", "blksize": "1468", "windowsize": "4"}, 1468,
			Negotiated{Blksize: 1468, OACK: []string{"blksize", "1468", "tsize", "850528"}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Negotiate(tt.opts, 850528, tt.max)
			if tt.wantCode >= 0 {
				if err == nil || int(err.Code) != tt.wantCode {
					t.Fatalf("err = %v, want code %d", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClampBlksize(t *testing.T) {
	for _, tt := range []struct {
		in, want int
		ok       bool
	}{{0, 1468, true}, {512, 512, true}, {8, 8, true}, {65464, 65464, true}, {7, 0, false}, {65465, 0, false}, {-1, 0, false}} {
		got, err := ClampBlksize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ClampBlksize(%d) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"ipxe.efi", true},
		{"undionly.kpxe", true},
		{"sub/dir/file.bin", true},
		{"..hidden-but-not-dotdot", true},
		{"", false},
		{"../../etc/passwd", false},
		{"sub/../../x", false},
		{"..", false},
		{"/etc/passwd", false},
		{"/ipxe.efi", false},
		{`..\..\windows\win.ini`, false},
		{`boot\x64\wdsmgfw.efi`, false},
		{"ipxe.efi\x00../../etc/passwd", false},
		{"bad\nname", false},
		{"sub//file", false},
		{"./ipxe.efi", false},
		{"dir/", false},
	}
	for _, tt := range tests {
		got, err := CleanName(tt.name)
		if tt.ok {
			if err != nil || got != tt.name {
				t.Errorf("CleanName(%q) = %q, %v; want accepted", tt.name, got, err)
			}
			continue
		}
		if err == nil || err.Code != CodeAccessViolation {
			t.Errorf("CleanName(%q) = %q, %v; want access violation", tt.name, got, err)
		}
	}
}
