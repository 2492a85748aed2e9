package pki_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The checks here run the real openssl binary, so that "verifies" means what
// it means to every other TLS stack on a node, not just to crypto/x509.

func needOpenSSL(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl binary not found in PATH (install the openssl package)")
	}
}

// writeFile puts b in a new file in a per-test directory and returns its path.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openssl runs openssl with args and returns stdout+stderr and the error.
func openssl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustOpenSSL(t testing.TB, args ...string) string {
	t.Helper()
	out, err := openssl(t, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// opensslVerify runs `openssl verify -x509_strict -CAfile ca cert` plus
// extra flags (-purpose, -verify_hostname, -verify_ip) and reports whether it
// said OK, with its output.
func opensslVerify(t testing.TB, caPEM, certPEM []byte, extra ...string) (bool, string) {
	t.Helper()
	ca := writeFile(t, "ca.pem", caPEM)
	cert := writeFile(t, "cert.pem", certPEM)
	args := append([]string{"verify", "-x509_strict", "-CAfile", ca}, extra...)
	args = append(args, cert)
	out, err := openssl(t, args...)
	return err == nil && strings.Contains(out, cert+": OK"), out
}

// opensslText is `openssl x509 -noout -text` of a cert.
func opensslText(t testing.TB, certPEM []byte) string {
	t.Helper()
	return mustOpenSSL(t, "x509", "-noout", "-text", "-in", writeFile(t, "cert.pem", certPEM))
}

// opensslKeyMatches compares the public key openssl extracts from the cert
// with the one it derives from the private key.
func opensslKeyMatches(t testing.TB, certPEM, keyPEM []byte) bool {
	t.Helper()
	fromCert := mustOpenSSL(t, "x509", "-noout", "-pubkey", "-in", writeFile(t, "cert.pem", certPEM))
	fromKey := mustOpenSSL(t, "pkey", "-pubout", "-in", writeFile(t, "key.pem", keyPEM))
	return fromCert != "" && fromCert == fromKey
}
