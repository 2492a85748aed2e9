package pki_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// TestEtcdClusterTLS runs a real two-member etcd on loopback with the etcd
// server and peer certs of two masters (client and peer TLS, client certs
// required on both), then uses etcdctl with the flannel and apiserver etcd
// client certs. It is what shows that the server/peer certs carry the usages
// etcd wants (etcd dials peers with the peer cert as a client) and that a
// cert from the cluster CA is refused by etcd.
func TestEtcdClusterTLS(t *testing.T) {
	etcd, err1 := exec.LookPath("etcd")
	etcdctl, err2 := exec.LookPath("etcdctl")
	if err1 != nil || err2 != nil {
		t.Skip("etcd and etcdctl binaries not found in PATH (Debian packages etcd-server, etcd-client)")
	}
	cas := testCAs(t, pki.ECDSAP256)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("etcd-ca.pem", cas.Etcd.CertPEM)

	type member struct {
		name               string
		clientURL, peerURL string
		certs              pki.Certs
	}
	members := []*member{{name: "m1"}, {name: "m2"}}
	var initial []string
	for _, m := range members {
		m.clientURL = "https://127.0.0.1:" + freePort(t)
		m.peerURL = "https://127.0.0.1:" + freePort(t)
		initial = append(initial, m.name+"="+m.peerURL)
		facts := masterFacts
		facts.Hostname, facts.IP = m.name, net.ParseIP("127.0.0.1")
		var err error
		if m.certs, err = pki.IssueNode(cas, facts, pki.Options{}, testNow); err != nil {
			t.Fatal(err)
		}
	}
	file := func(m *member, name string, key bool) string {
		c, ok := m.certs.Get(name)
		if !ok {
			t.Fatalf("%s has no %s cert", m.name, name)
		}
		if key {
			return write(m.name+"-"+name+"-key.pem", c.KeyPEM)
		}
		return write(m.name+"-"+name+".pem", c.CertPEM)
	}

	for _, m := range members {
		var logs bytes.Buffer
		cmd := exec.Command(etcd,
			"--name", m.name,
			"--data-dir", filepath.Join(dir, m.name+".etcd"),
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", fmt.Sprintf("pki-test-%d", os.Getpid()),
			"--cert-file", file(m, pki.CertEtcdServer, false), "--key-file", file(m, pki.CertEtcdServer, true),
			"--client-cert-auth", "--trusted-ca-file", caFile,
			"--peer-cert-file", file(m, pki.CertEtcdPeer, false), "--peer-key-file", file(m, pki.CertEtcdPeer, true),
			"--peer-client-cert-auth", "--peer-trusted-ca-file", caFile,
		)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("etcd %s log:\n%s", m.name, tail(logs.String(), 3000))
			}
		})
	}

	ctl := func(m *member, client pki.Pair, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		base := []string{"--endpoints", m.clientURL, "--cacert", caFile,
			"--cert", write("client.pem", client.CertPEM), "--key", write("client-key.pem", client.KeyPEM),
			"--dial-timeout", "3s", "--command-timeout", "5s"}
		cmd := exec.CommandContext(ctx, etcdctl, append(base, args...)...)
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	flannel, _ := members[0].certs.Get(pki.CertEtcdClientFlannel)
	apiserver, _ := members[1].certs.Get(pki.CertAPIServerEtcd)

	// Wait for the two members to elect a leader over peer TLS; the
	// deadline is generous for a busy machine, not a speed claim.
	var out string
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out, err = ctl(members[0], flannel.Pair, "endpoint", "health", "--cluster"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("cluster never became healthy: %v\n%s", err, out)
	}
	if strings.Count(out, "is healthy") != 2 {
		t.Fatalf("want both members healthy:\n%s", out)
	}

	// flannel writes through m1; the apiserver reads through m2.
	const key, val = "/coreos.com/network/config", `{"Network":"10.2.0.0/16"}`
	if out, err := ctl(members[0], flannel.Pair, "put", key, val); err != nil {
		t.Fatalf("put with flannel cert: %v\n%s", err, out)
	}
	if out, err := ctl(members[1], apiserver.Pair, "get", key, "--print-value-only"); err != nil || strings.TrimSpace(out) != val {
		t.Fatalf("get with apiserver-etcd-client cert: %v\n%s", err, out)
	}

	// A client cert from the cluster CA must be refused.
	clusterClient, _ := members[0].certs.Get(pki.CertControllerManager)
	if out, err := ctl(members[0], clusterClient.Pair, "get", key); err == nil {
		t.Fatalf("etcd accepted a cluster-CA client cert:\n%s", out)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
