package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// secretBox encrypts the values of secret buckets (the cluster's CA keys
// and token key, issued private keys, rendered configs that hold them)
// with AES-256-GCM under a key that lives in a file beside each server,
// never in etcd: a backup of etcd alone reveals no key. The value's key
// is the additional data, so a value moved to another key does not open.
type secretBox struct {
	aead cipher.AEAD
	file string
}

const keyCheckPlain = "bootsrv store key check"

// loadSecretBox reads the key file, creating it (0600, 32 random bytes as
// hex) when it does not exist.
func loadSecretBox(file string) (*secretBox, error) {
	if file == "" {
		return nil, errors.New("etcd store: no secret key file (give --store-key FILE; every server of one store needs the same file)")
	}
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, fmt.Errorf("store key %s: %w", file, err)
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create store key %s: %w", file, err)
		}
		_, werr := f.WriteString(hex.EncodeToString(k) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("write store key %s: %w", file, werr)
		}
		raw = []byte(hex.EncodeToString(k))
	} else if err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("store key %s: want 64 hex digits (32 bytes), as bootsrv writes it", file)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &secretBox{aead: aead, file: file}, nil
}

func (b *secretBox) seal(plain []byte, key string) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("store: no randomness for a nonce: " + err.Error())
	}
	return b.aead.Seal(nonce, nonce, plain, []byte(key))
}

func (b *secretBox) open(sealed []byte, key string) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, errors.New("secret value too short: not written by bootsrv")
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("secret value does not open with the key in %s: every server of one store needs the same key file", b.file)
	}
	return plain, nil
}

func (b *secretBox) checkValue() []byte { return b.seal([]byte(keyCheckPlain), "meta/keycheck") }

func (b *secretBox) check(v []byte) error {
	p, err := b.open(v, "meta/keycheck")
	if err != nil || string(p) != keyCheckPlain {
		return fmt.Errorf("the store was written with another secret key than %s: copy the key file of the servers already using it", b.file)
	}
	return nil
}
