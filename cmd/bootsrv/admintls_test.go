package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The admin API on TCP takes only a client certificate from
// `bootsrv ca issue-admin`: with one, the CLI works remotely; openssl
// without one, or with a certificate of another CA, is refused in the
// handshake; and it is off unless --admin-addr is given.
func TestAdminTCPMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("needs openssl (apt-get install openssl)")
	}
	dir := t.TempDir()
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: filepath.Join(dir, "data"), log: &lockedBuf{}}
	c.cli("cluster", "init", "--name", "lab", "--api-server", "10.0.0.1")
	c.cli("profile", "add", "--role", "custom", "--os", "custom", "--kernel", "/assets/k", "p")
	c.cli("machine", "add", "52:54:00:aa:bb:01", "--hostname", "n1", "--ip", "10.0.0.11", "--profile", "p")

	// Without an admin CA, --admin-addr is refused at start, saying what to do.
	out, err := exec.Command(c.bin, "serve", "--data-dir", c.dataDir, "--http-addr", freeLoopbackPort(t), "--tftp-addr", "",
		"--admin-addr", freeLoopbackPort(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "issue-admin") {
		t.Fatalf("serve --admin-addr without an admin CA: %v\n%s", err, out)
	}

	certs := filepath.Join(dir, "alice")
	said := c.cli("ca", "issue-admin", "alice", "--out", certs)
	if !strings.Contains(said, "--admin-cert "+filepath.Join(certs, "alice.pem")) {
		t.Errorf("issue-admin said:\n%s", said)
	}
	if fi, err := os.Stat(filepath.Join(certs, "alice-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("client key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Join(c.dataDir, "admin-ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin CA key: %v; want 0600", err)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(certs, "ca.pem"), filepath.Join(certs, "alice.pem")).CombinedOutput(); err != nil {
		t.Errorf("openssl verify of the client certificate: %v\n%s", err, out)
	}

	addr := freeLoopbackPort(t)
	if err := os.MkdirAll(filepath.Join(dir, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	stop := chainServe(t, c, filepath.Join(dir, "assets"), "--tftp-addr", "", "--admin-addr", addr)
	defer stop()

	// The CLI from "elsewhere": a data dir with no socket, the TCP API.
	remote := exec.Command(c.bin, "--data-dir", filepath.Join(dir, "nowhere"), "machine", "list", "-o", "json",
		"--admin-url", "https://"+addr, "--admin-cert", filepath.Join(certs, "alice.pem"),
		"--admin-key", filepath.Join(certs, "alice-key.pem"), "--admin-ca", filepath.Join(certs, "ca.pem"))
	if out, err := remote.CombinedOutput(); err != nil || !strings.Contains(string(out), "52:54:00:aa:bb:01") {
		t.Fatalf("machine list over the TCP admin API: %v\n%s", err, out)
	}

	handshake := func(args ...string) (string, error) {
		cmd := exec.Command("openssl", append([]string{"s_client", "-ign_eof", "-connect", addr, "-tls1_3", "-CAfile", filepath.Join(certs, "ca.pem")}, args...)...)
		cmd.Stdin = strings.NewReader("GET /v1/machines HTTP/1.0\r\n\r\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, _ := handshake("-cert", filepath.Join(certs, "alice.pem"), "-key", filepath.Join(certs, "alice-key.pem")); !strings.Contains(out, "HTTP/1.0 200") {
		t.Errorf("openssl with the admin certificate did not get 200:\n%s", out)
	}
	if out, _ := handshake(); strings.Contains(out, "HTTP/1.0 200") || !strings.Contains(strings.ToLower(out), "alert") {
		t.Errorf("openssl without a client certificate was answered:\n%s", out)
	}
	// A certificate of another CA (a second data dir's admin CA).
	other := &chainEnv{t: t, bin: c.bin, dataDir: filepath.Join(dir, "other"), log: &lockedBuf{}}
	other.cli("ca", "issue-admin", "mallory", "--out", filepath.Join(dir, "mallory"))
	if out, _ := handshake("-cert", filepath.Join(dir, "mallory", "mallory.pem"), "-key", filepath.Join(dir, "mallory", "mallory-key.pem")); strings.Contains(out, "HTTP/1.0 200") {
		t.Errorf("a certificate of another CA was answered:\n%s", out)
	}
	// TLS 1.2 is refused.
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-tls1_2", "-cert", filepath.Join(certs, "alice.pem"), "-key", filepath.Join(certs, "alice-key.pem"))
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil && strings.Contains(string(out), "Protocol  : TLSv1.2") {
		t.Errorf("TLS 1.2 accepted:\n%s", out)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
