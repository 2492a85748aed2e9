// Package etcdtest runs a real three-member etcd (Debian's etcd-server)
// for tests: client and peer TLS, authentication on, a user "bootsrv"
// (client certificate CN bootsrv) with read and write on /bootsrv/ only.
// Members can be stopped and started again to test failures.
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a running three-member etcd.
type Cluster struct {
	Endpoints                 []string // https://HOST:PORT of each member
	Dir                       string
	CAFile                    string
	CertFile, KeyFile         string // CN bootsrv
	RootCertFile, RootKeyFile string // CN root
	Prefix                    string // what user bootsrv may read and write

	bin     string
	host    string
	names   []string
	client  []string
	peer    []string
	cmds    []*exec.Cmd
	waits   []chan error
	initial string
}

// Start starts a cluster whose members listen for clients on 127.0.0.1.
func Start(t testing.TB) *Cluster { return StartOn(t, "127.0.0.1") }

// StartOn starts a cluster whose members listen for clients on host (an
// address of this namespace: a test bridge, so that other namespaces
// reach it); peers talk on 127.0.0.1.
func StartOn(t testing.TB, host string) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd binary not found in PATH (Debian package etcd-server)")
	}
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir, bin: bin, host: host, Prefix: "/bootsrv/"}
	t.Cleanup(func() {
		for i := range c.cmds {
			c.kill(i)
		}
		os.RemoveAll(dir)
	})
	c.certs(t)
	// All six ports are held until all are picked, so none comes twice.
	var held []net.Listener
	port := func(host string) string {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		return l.Addr().String()
	}
	var parts []string
	for i := 0; i < 3; i++ {
		c.names = append(c.names, fmt.Sprintf("m%d", i))
		c.client = append(c.client, "https://"+port(host))
		c.peer = append(c.peer, "https://"+port("127.0.0.1"))
		parts = append(parts, c.names[i]+"="+c.peer[i])
	}
	for _, l := range held {
		l.Close()
	}
	c.initial = strings.Join(parts, ",")
	c.Endpoints = append([]string(nil), c.client...)
	c.cmds = make([]*exec.Cmd, 3)
	c.waits = make([]chan error, 3)
	for i := 0; i < 3; i++ {
		c.start(t, i, "new")
	}
	for i := 0; i < 3; i++ {
		c.waitHealthy(t, i)
	}
	c.enableAuth(t)
	return c
}

func (c *Cluster) start(t testing.TB, i int, state string) {
	t.Helper()
	d := c.Dir
	logf, err := os.OpenFile(filepath.Join(d, c.names[i]+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "--name", c.names[i], "--data-dir", filepath.Join(d, c.names[i]),
		"--listen-client-urls", c.client[i], "--advertise-client-urls", c.client[i],
		"--listen-peer-urls", c.peer[i], "--initial-advertise-peer-urls", c.peer[i],
		"--initial-cluster", c.initial, "--initial-cluster-state", state, "--initial-cluster-token", "etcdtest",
		"--client-cert-auth", "--trusted-ca-file", c.CAFile,
		"--cert-file", filepath.Join(d, "server.pem"), "--key-file", filepath.Join(d, "server-key.pem"),
		"--peer-client-cert-auth", "--peer-trusted-ca-file", c.CAFile,
		"--peer-cert-file", filepath.Join(d, "server.pem"), "--peer-key-file", filepath.Join(d, "server-key.pem"),
		"--max-txn-ops", "16384", "--max-request-bytes", "10485760",
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	w := make(chan error, 1)
	go func() { w <- cmd.Wait() }()
	c.cmds[i], c.waits[i] = cmd, w
}

// kill ends member i by its PID (if it runs) and waits for it.
func (c *Cluster) kill(i int) {
	if c.cmds[i] == nil {
		return
	}
	_ = c.cmds[i].Process.Signal(syscall.SIGKILL)
	<-c.waits[i]
	c.cmds[i] = nil
}

func (c *Cluster) logTail(i int) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, c.names[i]+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) waitHealthy(t testing.TB, i int) {
	t.Helper()
	cli := c.newClient(t, []string{c.client[i]}, c.RootCertFile, c.RootKeyFile)
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, c.client[i])
		cancel()
		if err == nil && st.Leader != 0 {
			return
		}
		select {
		case werr := <-c.waits[i]:
			c.waits[i] <- werr
			t.Fatalf("etcd member %s exited: %v\n%s", c.names[i], werr, c.logTail(i))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd member %s not healthy in 30 s: %v\n%s", c.names[i], err, c.logTail(i))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Spec is the cluster as bootsrv's --store names it:
// etcd://HOST:PORT,...[/PREFIX] (without the prefix when prefix is false).
func (c *Cluster) Spec(prefix bool) string {
	hosts := make([]string, len(c.Endpoints))
	for i, ep := range c.Endpoints {
		hosts[i] = strings.TrimPrefix(ep, "https://")
	}
	spec := "etcd://" + strings.Join(hosts, ",")
	if prefix {
		spec += strings.TrimSuffix(c.Prefix, "/")
	}
	return spec
}

// StopMember stops member i (SIGTERM) and waits for it to exit.
func (c *Cluster) StopMember(t testing.TB, i int) {
	t.Helper()
	if c.cmds[i] == nil {
		return
	}
	_ = c.cmds[i].Process.Signal(syscall.SIGTERM)
	select {
	case <-c.waits[i]:
	case <-time.After(10 * time.Second):
		_ = c.cmds[i].Process.Signal(syscall.SIGKILL)
		<-c.waits[i]
	}
	c.cmds[i] = nil
}

// StartMember starts member i again on its data and waits until it is
// healthy (which needs a quorum with it).
func (c *Cluster) StartMember(t testing.TB, i int) {
	t.Helper()
	c.start(t, i, "existing")
	c.waitHealthy(t, i)
}

// Client is a client authenticated as root, closed at cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	cli := c.newClient(t, c.Endpoints, c.RootCertFile, c.RootKeyFile)
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) newClient(t testing.TB, eps []string, cert, key string) *clientv3.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(c.CAFile)
	pool.AppendCertsFromPEM(ca)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// enableAuth makes users root and bootsrv without passwords (etcd takes
// the user from the client certificate's CN), gives bootsrv read and
// write on the prefix only, and turns authentication on.
func (c *Cluster) enableAuth(t testing.TB) {
	t.Helper()
	cli := c.newClient(t, c.Endpoints, c.RootCertFile, c.RootKeyFile)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	noPassword := &clientv3.UserAddOptions{NoPassword: true} // etcd 3.4 takes it, as etcdctl user add --no-password
	steps := []func() error{
		func() error { _, err := cli.UserAddWithOptions(ctx, "root", "", noPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAddWithOptions(ctx, "bootsrv", "", noPassword); return err },
		func() error { _, err := cli.RoleAdd(ctx, "bootsrv"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "bootsrv", c.Prefix, clientv3.GetPrefixRangeEnd(c.Prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, "bootsrv", "bootsrv"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("etcd auth setup step %d: %v", i, err)
		}
	}
}

func (c *Cluster) certs(t testing.TB) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	c.CAFile = filepath.Join(c.Dir, "ca.pem")
	writePEM(t, c.CAFile, "CERTIFICATE", caDER)
	issue := func(name, cn string, ips []net.IP, usage []x509.ExtKeyUsage, serial int64) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: usage, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		cf, kf := filepath.Join(c.Dir, name+".pem"), filepath.Join(c.Dir, name+"-key.pem")
		writePEM(t, cf, "CERTIFICATE", der)
		writePEM(t, kf, "EC PRIVATE KEY", kd)
		return cf, kf
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	issue("server", "etcd", []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(c.host)}, both, 2)
	c.CertFile, c.KeyFile = issue("bootsrv", "bootsrv", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 3)
	c.RootCertFile, c.RootKeyFile = issue("root", "root", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 4)
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
