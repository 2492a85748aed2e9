package dhcp

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"10.0.0.10-10.0.0.20", ""},
		{" 10.0.0.10 - 10.0.0.20 ", ""},
		{"10.0.0.20-10.0.0.10", "start is after the end"},
		{"10.0.0.10", "START-END"},
		{"10.0.0.10-fe80::1", "not an IPv4"},
	} {
		r, err := ParseRange(tc.in)
		if tc.err == "" && (err != nil || r.Size() != 11) {
			t.Errorf("ParseRange(%q) = %v, %v", tc.in, r, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseRange(%q) error %v, want %q", tc.in, err, tc.err)
		}
	}
	if m, err := ParseMode(""); err != nil || m != ModeFull {
		t.Errorf("default mode %v %v", m, err)
	}
	if _, err := ParseMode("relay"); err == nil {
		t.Error("mode relay accepted")
	}
	if u, err := ParseUnknown(""); err != nil || u != UnknownIgnore {
		t.Errorf("default unknown %v %v", u, err)
	}
	bf, err := ParseBootFiles([]string{"7=snponly.efi", "0=", "6=ipxe-i386.efi"})
	if err != nil || bf[7] != "snponly.efi" || bf[6] != "ipxe-i386.efi" || bf[11] != DefaultBootFiles[11] {
		t.Errorf("ParseBootFiles = %v, %v", bf, err)
	}
	if _, ok := bf[0]; ok {
		t.Error("0= did not decline BIOS")
	}
	if DefaultBootFiles[7] != "ipxe.efi" {
		t.Error("ParseBootFiles changed the defaults")
	}
	if _, err := ParseBootFiles([]string{"x86=ipxe.efi"}); err == nil {
		t.Error("bad arch accepted")
	}
}

func TestSubnetCheck(t *testing.T) {
	s := *testSettings(ModeFull, UnknownIgnore)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Subnets = append(s.Subnets, s.Subnets[0])
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlapping subnets: %v", err)
	}
	s = *testSettings(ModeFull, UnknownIgnore)
	s.Subnets[0].Pool, _ = ParseRange("10.99.0.0-10.99.0.10")
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "network or broadcast") {
		t.Errorf("pool with the network address: %v", err)
	}
}
