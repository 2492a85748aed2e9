package nodeconfig

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// The real releases a node would fetch (examples/releases/build.sh puts
// them there); BOOTSRV_TEST_RELEASES points elsewhere.
func testReleases(t *testing.T) string {
	if d := os.Getenv("BOOTSRV_TEST_RELEASES"); d != "" {
		return d
	}
	return "/var/cache/bootsrv-test/releases"
}

// untarOne extracts the member of a .tar.gz whose base name is name.
func untarOne(t *testing.T, archive, name, dst string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Skipf("release not found: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no %s", archive, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && filepath.Base(h.Name) == name {
			out := filepath.Join(dst, name)
			w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
}

// hostIPv4 is an address of this machine that the apiserver accepts to
// advertise (not loopback).
func hostIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address to run a master on")
	return ""
}

func freeTCPPort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a long-lived process until the test ends, and shows the end of
// its output if the test failed.
func start(t *testing.T, name string, env []string, prog string, args ...string) {
	t.Helper()
	var logs syncBuffer
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			s := logs.String()
			if len(s) > 4000 {
				s = "..." + s[len(s)-4000:]
			}
			t.Logf("%s output:\n%s", name, s)
		}
	})
}

// TestRenderedControlPlaneRuns starts a master as Render writes it, with
// the real releases and real certificates: etcd from etcd.env, the
// apiserver with the flags of kube-apiserver.service, the addons applied by
// the command of kube-addons.service, CoreDNS from its Corefile. Then each
// kubeconfig Render writes is put to the use its owner makes of it. Only
// the file system root and the etcd ports are moved, so that the test runs
// beside whatever else the machine does.
func TestRenderedControlPlaneRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	rel := testReleases(t)
	kbin := filepath.Join(rel, "kubernetes/release/v1.37.2/bin/linux/amd64")
	for _, b := range []string{"kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(kbin, b)); err != nil {
			t.Skipf("no %s release (examples/releases/build.sh makes them): %v", b, err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	etcdBin := untarOne(t, filepath.Join(rel, "etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz"), "etcd", bin)
	kubectl := filepath.Join(kbin, "kubectl")
	ip := hostIPv4(t)

	// Real certificates for a master m1 and a worker w1.
	now := time.Now()
	var cas pki.CAs
	var err error
	if cas.Cluster, err = pki.NewCA("kubernetes", pki.ECDSAP256, 0, now); err != nil {
		t.Fatal(err)
	}
	if cas.Etcd, err = pki.NewCA("etcd-ca", pki.ECDSAP256, 0, now); err != nil {
		t.Fatal(err)
	}
	if cas.FrontProxy, err = pki.NewCA("front-proxy-ca", pki.ECDSAP256, 0, now); err != nil {
		t.Fatal(err)
	}
	saKey, saPub, err := pki.NewServiceAccountKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(f pki.NodeFacts) map[string]CertKey {
		certs, err := pki.IssueNode(cas, f, pki.Options{}, now)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]CertKey{}
		for name, p := range certs.Pairs() {
			out[name] = CertKey{Cert: p.CertPEM, Key: p.KeyPEM}
		}
		return out
	}
	input := func(role, host, hostIP string, certs map[string]CertKey, port int) Input {
		in := testInput(role)
		in.Cluster.APIServer, in.Cluster.APIServerPort = ip, port
		in.Machine = Machine{Hostname: host, IP: hostIP, Role: role}
		in.Masters = []Member{{Hostname: "m1", IP: ip}}
		in.CA, in.EtcdCA, in.FrontProxyCA = cas.Cluster.CertPEM, cas.Etcd.CertPEM, cas.FrontProxy.CertPEM
		in.Certs = certs
		in.ServiceAccount = KeyPair{Public: saPub, Private: saKey}
		return in
	}
	apiPort, _ := strconv.Atoi(freeTCPPort(t, ip))
	masterCerts := issue(pki.NodeFacts{Hostname: "m1", IP: net.ParseIP(ip), Role: pki.RoleMaster,
		KubernetesServiceIP: net.ParseIP("10.3.0.1")})
	master := mustRender(t, input(RoleMaster, "m1", ip, masterCerts, apiPort))
	worker := mustRender(t, input(RoleWorker, "w1", "192.0.2.250",
		issue(pki.NodeFacts{Hostname: "w1", IP: net.ParseIP("192.0.2.250"), Role: pki.RoleWorker}), apiPort))

	// Each node's files under a root of its own; the etcd ports move.
	clientPort, peerPort := freeTCPPort(t, ip), freeTCPPort(t, ip)
	install := func(n Node, root string) func(string) string {
		r := strings.NewReplacer("/etc/kubernetes/", root+"/etc/kubernetes/", "/etc/etcd/", root+"/etc/etcd/",
			"/etc/coredns/", root+"/etc/coredns/", "/var/lib/etcd", root+"/var/lib/etcd",
			ip+":2379", ip+":"+clientPort, ip+":2380", ip+":"+peerPort)
		for _, f := range n.Files {
			if f.Source != "" {
				continue // a binary: the test runs the releases in place
			}
			p := filepath.Join(root, f.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(r.Replace(string(f.Contents))), os.FileMode(f.Mode)); err != nil {
				t.Fatal(err)
			}
		}
		return r.Replace
	}
	mroot, wroot := filepath.Join(dir, "m1"), filepath.Join(dir, "w1")
	relocate := install(master, mroot)
	install(worker, wroot)
	command := func(n Node, unitName string) []string {
		words := execStart(t, unit(t, n, unitName).Contents)
		for i := range words {
			words[i] = relocate(words[i])
		}
		return words
	}

	// etcd with the member config of etcd.env.
	env := envFile(t, []byte(relocate(string(file(t, master, pathEtcdEnv).Contents))))
	var etcdEnv []string
	for k, v := range env {
		etcdEnv = append(etcdEnv, k+"="+v)
	}
	start(t, "etcd", etcdEnv, etcdBin)

	// The apiserver as its unit runs it.
	api := command(master, unitAPIServer)
	start(t, "kube-apiserver", nil, filepath.Join(kbin, "kube-apiserver"), api[1:]...)

	// Wait for it, as the addons' identity (system:masters) sees it.
	addons := masterCerts[CertAddons]
	clientCert, err := tls.X509KeyPair(addons.Cert, addons.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cas.Cluster.CertPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}}}
	defer hc.CloseIdleConnections()
	endpoint := "https://" + net.JoinHostPort(ip, strconv.Itoa(apiPort))
	ready := false
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		resp, err := hc.Get(endpoint + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = true
				break
			}
		}
	}
	if !ready {
		t.Fatal("kube-apiserver never became ready")
	}

	kc := func(root, p string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + filepath.Join(root, p), "--request-timeout=10s"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	// The addons, applied by kube-addons.service's command; systemd
	// retries it until the apiserver takes it.
	add := command(master, unitAddons)
	if add[0] != "/opt/bin/kubectl" {
		t.Fatalf("kube-addons.service runs %s", add[0])
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, kubectl, add[1:]...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-addons.service's command fails: %v\n%s", err, out)
		}
	}
	if got, err := kc(mroot, pathAddonsKC, "get", "service", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"); err != nil || got != "10.3.0.10" {
		t.Errorf("Service kube-dns: %v %q, want clusterIP 10.3.0.10", err, got)
	}
	if got, err := kc(mroot, pathAddonsKC, "get", "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns",
		"-o", "jsonpath={.items[*].endpoints[*].addresses[*]}"); err != nil || got != ip {
		t.Errorf("kube-dns EndpointSlice: %v %q, want the master %s", err, got, ip)
	}

	// Every kubeconfig authenticates as the user its component is bound as.
	for _, w := range []struct{ root, kubeconfig, user string }{
		{wroot, pathKubeletKC, "system:node:w1"},
		{wroot, pathKubeProxyKC, "system:kube-proxy"},
		{mroot, pathKubeletKC, "system:node:m1"},
		{mroot, pathKubeProxyKC, "system:kube-proxy"},
		{mroot, pathControllerKC, "system:kube-controller-manager"},
		{mroot, pathSchedulerKC, "system:kube-scheduler"},
		{mroot, pathCoreDNSKC, "system:coredns"},
		{mroot, pathAddonsKC, "system:bootsrv-addons"},
	} {
		if got, err := kc(w.root, w.kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || got != w.user {
			t.Errorf("%s%s authenticates as %q (%v), want %s", filepath.Base(w.root), w.kubeconfig, got, err, w.user)
		}
	}

	// What each identity may do, asked of the real authorizers (Node and
	// RBAC, with the addons' RBAC in place).
	cases := []struct {
		who, root, kubeconfig string
		verb, resource        string
		want                  string
	}{
		// flanneld (kube-subnet-mgr) reads every Node with the kubelet's
		// identity: a worker's and a master's.
		{"worker flanneld", wroot, pathKubeletKC, "list", "nodes", "yes"},
		{"worker flanneld", wroot, pathKubeletKC, "watch", "nodes", "yes"},
		{"master flanneld", mroot, pathKubeletKC, "list", "nodes", "yes"},
		// ...and may write only through the Node authorizer's own rules.
		{"worker kubelet", wroot, pathKubeletKC, "list", "secrets", "no"},
		{"worker kubelet", wroot, pathKubeletKC, "create", "clusterrolebindings", "no"},
		{"worker kube-proxy", wroot, pathKubeProxyKC, "watch", "endpointslices.discovery.k8s.io", "yes"},
		{"worker kube-proxy", wroot, pathKubeProxyKC, "list", "services", "yes"},
		{"worker kube-proxy", wroot, pathKubeProxyKC, "list", "secrets", "no"},
		{"coredns", mroot, pathCoreDNSKC, "watch", "endpointslices.discovery.k8s.io", "yes"},
		{"coredns", mroot, pathCoreDNSKC, "watch", "services", "yes"},
		{"coredns", mroot, pathCoreDNSKC, "watch", "namespaces", "yes"},
		{"coredns", mroot, pathCoreDNSKC, "get", "secrets", "no"},
		{"controller-manager", mroot, pathControllerKC, "create", "serviceaccounts/token", "yes"},
		{"scheduler", mroot, pathSchedulerKC, "create", "bindings", "yes"},
		{"addons", mroot, pathAddonsKC, "create", "clusterrolebindings", "yes"},
	}
	for _, tc := range cases {
		got, _ := kc(tc.root, tc.kubeconfig, "auth", "can-i", tc.verb, tc.resource, "--all-namespaces")
		// A "no" may come with the authorizer's reason.
		if answer, _, _ := strings.Cut(got, " - "); answer != tc.want {
			t.Errorf("%s (%s): can-i %s %s = %q, want %s", tc.who, tc.kubeconfig, tc.verb, tc.resource, got, tc.want)
		}
	}
	// flanneld's own list of Nodes, as the apiserver serves it.
	if got, err := kc(wroot, pathKubeletKC, "get", "nodes", "-o", "name"); err != nil {
		t.Errorf("worker kubelet identity cannot list Nodes (flanneld's informer): %v\n%s", err, got)
	}

	// CoreDNS from its Corefile, bound to the master's address, answers
	// for the cluster from the API.
	if os.Geteuid() != 0 {
		t.Log("not root: CoreDNS on port 53 not tried")
		return
	}
	corednsBin := untarOne(t, filepath.Join(rel, "coredns/v1.15.0/coredns_1.15.0_linux_amd64.tgz"), "coredns", bin)
	dns := command(master, unitCoreDNS)
	start(t, "coredns", nil, corednsBin, dns[1:]...)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", net.JoinHostPort(ip, "53"))
	}}
	for name, want := range map[string]string{
		"kubernetes.default.svc.cluster.local.":   "10.3.0.1",
		"kube-dns.kube-system.svc.cluster.local.": "10.3.0.10",
	} {
		var got []string
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			got, err = r.LookupHost(ctx, name)
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("CoreDNS: %s = %v, %v; want %s", name, got, err, want)
		}
	}
}
