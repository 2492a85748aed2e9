package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// TestEtcdClusterTLS runs a real two-member etcd on loopback with the etcd
// server and peer certs of two masters (client and peer TLS, client certs
// required on both), then talks to it with the apiserver's etcd client
// certs and with every certificate a worker holds. It is what shows that
// the server/peer certs carry the usages etcd wants (etcd dials peers with
// the peer cert as a client), that the apiserver's etcd-client cert is let
// in, and that neither a worker's certs nor any other cert from the
// cluster CA gets past etcd's TLS handshake: a worker that is taken over
// cannot read or write the cluster's state.
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
	etcdClient := func(m *member) pki.Pair {
		c, ok := m.certs.Get(pki.CertAPIServerEtcd)
		if !ok {
			t.Fatalf("%s has no %s cert", m.name, pki.CertAPIServerEtcd)
		}
		return c.Pair
	}

	// Wait for the two members to elect a leader over peer TLS; the
	// deadline is generous for a busy machine, not a speed claim.
	var out string
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out, err = ctl(members[0], etcdClient(members[0]), "endpoint", "health", "--cluster"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("cluster never became healthy: %v\n%s", err, out)
	}
	if strings.Count(out, "is healthy") != 2 {
		t.Fatalf("want both members healthy:\n%s", out)
	}

	// m1's apiserver writes through m1; m2's reads through m2.
	const key, val = "/registry/namespaces/default", "ns-default"
	if out, err := ctl(members[0], etcdClient(members[0]), "put", key, val); err != nil {
		t.Fatalf("put with m1's apiserver etcd-client cert: %v\n%s", err, out)
	}
	if out, err := ctl(members[1], etcdClient(members[1]), "get", key, "--print-value-only"); err != nil || strings.TrimSpace(out) != val {
		t.Fatalf("get with m2's apiserver etcd-client cert: %v\n%s", err, out)
	}

	// Every cert a worker holds, and a master's cluster-CA client cert,
	// must be refused at the TLS handshake, on both members.
	worker, err := pki.IssueNode(cas, workerFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(worker) == 0 {
		t.Fatal("worker has no certs")
	}
	refused := map[string]pki.Pair{}
	for _, c := range worker {
		refused["worker "+c.Name] = c.Pair
	}
	cm, _ := members[0].certs.Get(pki.CertControllerManager)
	refused["master "+pki.CertControllerManager] = cm.Pair
	etcdRoots := x509.NewCertPool()
	if !etcdRoots.AppendCertsFromPEM(cas.Etcd.CertPEM) {
		t.Fatal("cannot load the etcd CA")
	}
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		pair := refused[name]
		for _, m := range members {
			t.Run(name+" to "+m.name, func(t *testing.T) {
				// etcdctl retries until its command timeout; a short one
				// is enough to see that nothing gets through.
				if out, err := ctl(m, pair, "get", key, "--print-value-only", "--command-timeout", "2s"); err == nil || strings.Contains(out, val) {
					t.Errorf("etcdctl with the %s cert: err %v, output:\n%s", name, err, out)
				}
				// The refusal is etcd's TLS layer, not a missing key or a
				// timeout: a raw handshake that offers the cert gets a TLS
				// alert, and the same handshake with the apiserver's
				// etcd-client cert goes through.
				if err := etcdHandshake(m.clientURL, etcdRoots, pair); err == nil {
					t.Errorf("etcd completed a TLS handshake with the %s cert", name)
				} else if !strings.Contains(err.Error(), "remote error: tls: bad certificate") &&
					!strings.Contains(err.Error(), "remote error: tls: unknown certificate authority") {
					// For a client cert of an unknown CA, Go's TLS server
					// sends "bad certificate" or, in newer releases,
					// "unknown certificate authority": which one depends on
					// the Go etcd was built with.
					t.Errorf("handshake with the %s cert failed, but not by etcd's refusal: %v", name, err)
				}
				if err := etcdHandshake(m.clientURL, etcdRoots, etcdClient(m)); err != nil {
					t.Errorf("handshake with the apiserver's etcd-client cert: %v", err)
				}
			})
		}
	}
}

// etcdHandshake dials an etcd client URL with client as the client cert and
// asks for /version, so that a server that checks the client cert only
// after the TLS 1.3 handshake has had its say.
func etcdHandshake(clientURL string, roots *x509.CertPool, client pki.Pair) error {
	cert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(clientURL + "/version")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("etcdserver")) {
		return fmt.Errorf("GET /version: %s %s", resp.Status, b)
	}
	return nil
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
