package token

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMintCheck(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKey()
	now := time.Unix(1_800_000_000, 0)
	mac := "52:54:00:00:00:01"
	tok, err := Mint(key, mac, PurposeIgnition, now.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := Mint(key, mac, PurposeIgnition, now.Add(30*time.Minute))
	if tok == tok2 {
		t.Fatal("two tokens minted for the same machine and expiry are equal: the nonce is not random")
	}
	flip := []byte(tok)
	if flip[5] == 'A' {
		flip[5] = 'B'
	} else {
		flip[5] = 'A'
	}
	cases := []struct {
		name    string
		key     []byte
		tok     string
		mac     string
		purpose string
		at      time.Time
		want    error
	}{
		{"valid", key, tok, mac, PurposeIgnition, now, nil},
		{"valid just before expiry", key, tok, mac, PurposeIgnition, now.Add(30*time.Minute - time.Second), nil},
		{"expired", key, tok, mac, PurposeIgnition, now.Add(30 * time.Minute), ErrExpired},
		{"other machine", key, tok, "52:54:00:00:00:02", PurposeIgnition, now, ErrForged},
		{"other purpose", key, tok, mac, PurposeReport, now, ErrForged},
		{"other key", other, tok, mac, PurposeIgnition, now, ErrForged},
		{"tampered", key, string(flip), mac, PurposeIgnition, now, ErrForged},
		{"empty", key, "", mac, PurposeIgnition, now, ErrMalformed},
		{"truncated", key, tok[:len(tok)-2], mac, PurposeIgnition, now, ErrMalformed},
		{"not base64", key, strings.Repeat("!", len(tok)), mac, PurposeIgnition, now, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(c.key, c.tok, c.mac, c.purpose, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("Check = %v, want %v", err, c.want)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	key, _ := NewKey()
	now := time.Now()
	tok, _ := Mint(key, "52:54:00:00:00:01", PurposeIgnition, now.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Check(key, tok, "52:54:00:00:00:01", PurposeIgnition, now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMintStable(t *testing.T) {
	key, _ := NewKey()
	other, _ := NewKey()
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	mac := "52:54:00:00:00:01"
	a := MintStable(key, mac, PurposeReport, exp)
	if b := MintStable(key, mac, PurposeReport, exp); a != b {
		t.Fatalf("same inputs, different tokens %q %q", a, b)
	}
	for name, tok := range map[string]string{
		"other key":    MintStable(other, mac, PurposeReport, exp),
		"other mac":    MintStable(key, "52:54:00:00:00:02", PurposeReport, exp),
		"other expiry": MintStable(key, mac, PurposeReport, exp.Add(time.Hour)),
	} {
		if tok == a {
			t.Errorf("%s gives the same token", name)
		}
	}
	if _, err := Check(key, a, mac, PurposeReport, now); err != nil {
		t.Fatalf("stable token does not check: %v", err)
	}
	if _, err := Check(other, a, mac, PurposeReport, now); !errors.Is(err, ErrForged) {
		t.Fatalf("stable token checks under another key: %v", err)
	}
	if _, err := Check(key, a, mac, PurposeReport, exp); !errors.Is(err, ErrExpired) {
		t.Fatalf("stable token past its expiry: %v", err)
	}
}

// TestOneSpelling: a token's last character carries bits a lax base64
// decoder drops; a token spelled with other such bits is refused.
func TestOneSpelling(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	exp := time.Now().Add(time.Hour)
	tried := 0
	for i := 0; i < 64 && tried < 8; i++ {
		tok, err := Mint(key, "52:54:00:00:00:01", "ignition/0", exp)
		if err != nil {
			t.Fatal(err)
		}
		last := tok[len(tok)-1]
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		idx := strings.IndexByte(alphabet, last)
		// The neighbour differs only in the lowest bit, which the last
		// character of this length does not carry.
		other := tok[:len(tok)-1] + string(alphabet[idx^1])
		if raw, err := base64.RawURLEncoding.DecodeString(other); err != nil || len(raw) == 0 {
			continue
		}
		if a, _ := base64.RawURLEncoding.DecodeString(tok); string(a) != string(mustDecode(t, other)) {
			continue // that bit counted for this token: not a second spelling
		}
		tried++
		if _, err := Check(key, other, "52:54:00:00:00:01", "ignition/0", time.Now()); err == nil {
			t.Fatalf("%s, another spelling of %s, is accepted", other, tok)
		}
	}
	if tried == 0 {
		t.Fatal("no token with a second spelling was found: the test checks nothing")
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
