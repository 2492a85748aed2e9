// Package token mints and checks the capability tokens bootsrv puts in a
// machine's boot script and Ignition config. A token is stateless: 128
// random bits, an expiry and a purpose, bound to one MAC by an HMAC under a
// key only the server holds, so checking one costs no database write.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Purposes keep a token for one endpoint from opening another.
const (
	PurposeIgnition = "ignition"
	PurposeReport   = "report"
)

// KeySize is the HMAC key length.
const KeySize = 32

const (
	nonceLen = 16 // 128 random bits
	expLen   = 8
	macLen   = 16 // truncated HMAC-SHA256: 128 bits against forgery
	rawLen   = expLen + nonceLen + macLen
)

// Errors a check can return; all mean 403 to a client.
var (
	ErrMalformed = errors.New("token is malformed")
	ErrExpired   = errors.New("token has expired")
	ErrForged    = errors.New("token was not issued for this machine and purpose")
)

// NewKey returns a fresh random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	return k, nil
}

// Mint returns a token for mac and purpose that expires at exp.
func Mint(key []byte, mac, purpose string, exp time.Time) (string, error) {
	var raw [rawLen]byte
	binary.BigEndian.PutUint64(raw[:expLen], uint64(exp.Unix()))
	if _, err := rand.Read(raw[expLen : expLen+nonceLen]); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	copy(raw[expLen+nonceLen:], sum(key, mac, purpose, raw[:expLen+nonceLen]))
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// Check verifies that tok was minted under key for mac and purpose and has
// not expired at now. It returns the expiry.
func Check(key []byte, tok, mac, purpose string, now time.Time) (time.Time, error) {
	if base64.RawURLEncoding.DecodedLen(len(tok)) != rawLen {
		return time.Time{}, ErrMalformed
	}
	var raw [rawLen]byte
	// Strict: a last character whose unused bits differ is another
	// spelling of the same bytes, and a token has one spelling.
	if _, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(tok)); err != nil {
		return time.Time{}, ErrMalformed
	}
	if !hmac.Equal(raw[expLen+nonceLen:], sum(key, mac, purpose, raw[:expLen+nonceLen])) {
		return time.Time{}, ErrForged
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(raw[:expLen])), 0)
	if !now.Before(exp) {
		return exp, ErrExpired
	}
	return exp, nil
}

func sum(key []byte, mac, purpose string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(mac))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)[:macLen]
}

// MintStable is Mint with the nonce derived from the key, MAC, purpose and
// expiry instead of drawn at random: the same inputs give the same token,
// which lets a rendered config that embeds it be kept and served again.
// The nonce is still unpredictable without the key.
func MintStable(key []byte, mac, purpose string, exp time.Time) string {
	var raw [rawLen]byte
	binary.BigEndian.PutUint64(raw[:expLen], uint64(exp.Unix()))
	copy(raw[expLen:expLen+nonceLen], sum(key, mac, "nonce/"+purpose, raw[:expLen]))
	copy(raw[expLen+nonceLen:], sum(key, mac, purpose, raw[:expLen+nonceLen]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}
