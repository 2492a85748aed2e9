// Package cluster_test renders examples/cluster's master and workers with
// bootsrv and runs what they would run: the real Ignition writes the
// master's config (fetching every binary from bootsrv's assets and checking
// its hash), and etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, CoreDNS and the addon applier start exactly as the
// rendered systemd units say (only a path prefix rewritten), in a network
// namespace holding the master's address; flanneld, kube-proxy and the
// CNI plugins too, for a pod on the master and one on worker1 (its own
// config, its own namespace). The Kubernetes binaries are the real
// releases built from their Go modules by examples/releases/build.sh.
package cluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/noderun"
	"github.com/bootsrv/bootsrv/pkg/state"
)

const releases = "/var/cache/bootsrv-test/releases"

// The example cluster's machines (machines.yaml).
const (
	masterMAC  = "52:54:00:00:00:01"
	worker1MAC = "52:54:00:00:00:02"
	masterIP   = "10.99.0.10"
)

// prefixes the rendered units name, rewritten under the test's root.
var prefixes = []string{"/etc/", "/opt/", "/var/lib/", "/run/"}

func need(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the control-plane run takes a minute")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates a network namespace")
	}
	// No releases at all: skip. Releases of other versions than the
	// cluster's defaults: the import or the render fails below, loudly.
	if _, err := os.Stat(releases); err != nil {
		t.Skipf("needs the real releases in %s: run examples/releases/build.sh (about 15 minutes once; make test does it as root)", releases)
	}
	for _, c := range [][2]string{{"ip", "iproute2"}, {"curl", "curl"}, {"unshare", "util-linux"}, {"iptables", "iptables"}, {"busybox", "busybox-static"}} {
		if _, err := exec.LookPath(c[0]); err != nil {
			t.Skipf("needs %s (Debian %s; .ci/install-deps installs it)", c[0], c[1])
		}
	}
}

// ignitionFiles decodes a config's inline files: path -> contents.
func ignitionFiles(t *testing.T, cfg []byte) (map[string][]byte, []string) {
	t.Helper()
	var c struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source       string `json:"source"`
					Verification struct {
						Hash string `json:"hash"`
					} `json:"verification"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	var remote []string
	for _, f := range c.Storage.Files {
		src := f.Contents.Source
		switch {
		case strings.HasPrefix(src, "data:;base64,"):
			b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:;base64,"))
			if err != nil {
				t.Fatal(err)
			}
			out[f.Path] = b
		case strings.HasPrefix(src, "data:,"):
			s, err := url.PathUnescape(strings.TrimPrefix(src, "data:,"))
			if err != nil {
				t.Fatal(err)
			}
			out[f.Path] = []byte(s)
		default:
			remote = append(remote, f.Path)
		}
	}
	return out, remote
}

// nodePath is an absolute path as the rendered files name them.
var nodePath = regexp.MustCompile(`/(etc|opt|var/lib|run)/[A-Za-z0-9._/-]*[A-Za-z0-9._-]`)

// rewriteFiles moves, inside the config files Ignition wrote under root
// (kubeconfigs, the kubelet's config, the Corefile, ...; not the units),
// every path of
// the node that lies under root, as Command does for command lines:
// paths of the host itself (/etc/resolv.conf) stay.
func rewriteFiles(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(root, "etc"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "systemd" {
				return filepath.SkipDir // units: Command rewrites those
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) > 1<<20 {
			return err
		}
		out := nodePath.ReplaceAllFunc(b, func(m []byte) []byte {
			if _, err := os.Stat(filepath.Join(root, string(m))); err == nil {
				return []byte(filepath.Join(root, string(m)))
			}
			if _, err := os.Stat(filepath.Dir(filepath.Join(root, string(m)))); err == nil && !bytes.HasPrefix(m, []byte("/etc/resolv")) {
				return []byte(filepath.Join(root, string(m)))
			}
			return m
		})
		if !bytes.Equal(out, b) {
			return os.WriteFile(p, out, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// identity is a client certificate with the CA that the apiserver trusts.
type identity struct {
	name   string
	cert   tls.Certificate
	client *http.Client
}

func newIdentity(t *testing.T, name string, ca, cert, key []byte) identity {
	t.Helper()
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s: no CA", name)
	}
	return identity{name: name, cert: pair, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}}
}

// fromKubeconfig builds the identity a rendered kubeconfig names, reading
// its files under root; it returns the user the kubeconfig says it is.
func fromKubeconfig(t *testing.T, root, path string) (identity, string, string) {
	t.Helper()
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
				CA     string `json:"certificate-authority"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			Name string `json:"name"`
			User struct {
				Cert string `json:"client-certificate"`
				Key  string `json:"client-key"`
			} `json:"user"`
		} `json:"users"`
	}
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	read := func(p string) []byte {
		if !strings.HasPrefix(p, root) {
			p = filepath.Join(root, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s names %s: %v", path, p, err)
		}
		return b
	}
	u := kc.Users[0]
	return newIdentity(t, path, read(kc.Clusters[0].Cluster.CA), read(u.User.Cert), read(u.User.Key)), u.Name, kc.Clusters[0].Cluster.Server
}

func (id identity) do(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := id.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// waitFor polls until f succeeds, at most d; its last error is the failure.
func waitFor(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

func TestMasterControlPlaneRuns(t *testing.T) {
	need(t)
	ctx := context.Background()
	dir := t.TempDir()

	// bootsrv's state: the example cluster, its profiles and machines, the
	// real releases imported.
	st, err := state.Open(filepath.Join(dir, "data"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := core.NewService(st, nil)
	assetsDir := filepath.Join(dir, "assets")
	cfg := bootchain.DefaultBootConfig
	cfg.AssetsDir = assetsDir
	svc.Configure(cfg)
	read := func(n string) []byte {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cl, err := model.ParseClusterFile("cluster.yaml", read("cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ClusterInit(ctx, cl); err != nil {
		t.Fatal(err)
	}
	ps, err := model.ParseProfilesFile("profiles.yaml", read("profiles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddProfiles(ctx, ps, false); err != nil {
		t.Fatal(err)
	}
	ms, err := model.ParseMachinesFile("machines.yaml", read("machines.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMachines(ctx, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImportReleases(ctx, releases, ""); err != nil {
		t.Fatalf("import the real releases: %v", err)
	}
	// The master's network: a namespace holding its address, joined to the
	// host by a veth on whose host side bootsrv's own HTTP server listens,
	// as on the provisioning network.
	ns := noderun.NewNetns(t, netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix(masterIP+"/24"))
	hs, err := httpd.New(httpd.Config{Addr: "10.99.0.1:0", AssetsDir: assetsDir}, svc, metrics.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-served })
	base := "http://" + hs.Addr().String()
	masterCfg, err := svc.RenderIgnition(ctx, masterMAC, base)
	if err != nil {
		t.Fatal(err)
	}
	workerCfg, err := svc.RenderIgnition(ctx, worker1MAC, base)
	if err != nil {
		t.Fatal(err)
	}

	// The real Ignition writes the master's files, downloading each binary
	// and refusing any whose sha512 differs.
	root := filepath.Join(dir, "root")
	ign, err := noderun.IgnitionBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if log, err := noderun.Install(ctx, ign, masterCfg, root); err != nil {
		t.Fatalf("ignition: %v\n%s", err, log)
	}
	t.Logf("ignition wrote the master's config in %s", time.Since(start).Round(time.Millisecond))
	rewriteFiles(t, root)
	units, err := noderun.LoadUnits(root)
	if err != nil {
		t.Fatal(err)
	}

	logs := filepath.Join(dir, "logs")
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o700)
	os.MkdirAll(logs, 0o755)
	startUnit := func(name string) *noderun.Proc {
		t.Helper()
		u, ok := units[name]
		if !ok || !u.Enabled {
			t.Fatalf("the master's Ignition has no enabled %s", name)
		}
		pre, err := u.StartPreCommands(root, prefixes)
		if err != nil {
			t.Fatal(err)
		}
		argv, env, err := u.Command(root, prefixes)
		if err != nil {
			t.Fatal(err)
		}
		// kubectl and client-go keep a cache under $HOME (systemd gives a
		// unit none): keep it in the test's dir, not the host's /.kube.
		env = append(env, "HOME="+home)
		for _, p := range pre {
			if err := ns.Run(ctx, p.Argv, env, filepath.Join(logs, name+".pre.log")); err != nil && !p.IgnoreFailure {
				t.Fatalf("%s ExecStartPre: %v", name, err)
			}
		}
		// Restart=always, as systemd would: the controller-manager exits
		// once when it starts before the apiserver's RBAC bootstrap.
		p, err := ns.Start(name, argv, env, filepath.Join(logs, name+".log"), noderun.WithRestart("always", 20, 2*time.Second))
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		return p
	}
	logOf := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(logs, name+".log"))
		return string(b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service", "coredns.service", "kube-addons.service", "flanneld.service", "kube-proxy.service", "kubelet.service"} {
				l := logOf(n)
				if len(l) > 3000 {
					l = l[len(l)-3000:]
				}
				t.Logf("--- %s (tail)\n%s", n, l)
			}
		}
	})

	startUnit("etcd.service")
	apiserver := startUnit("kube-apiserver.service")
	api := "https://" + masterIP + ":6443"

	admin, user, server := fromKubeconfig(t, root, "/etc/kubernetes/addons.conf")
	if server != api {
		t.Fatalf("addons kubeconfig names %s, want %s", server, api)
	}
	waitFor(t, "apiserver /readyz", 90*time.Second, func() error {
		code, body := admin.do(t, "GET", api+"/readyz", nil)
		if code != 200 || string(body) != "ok" {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	t.Logf("apiserver ready after %s (as %s)", time.Since(start).Round(time.Second), user)
	startUnit("kube-controller-manager.service")
	startUnit("kube-scheduler.service")

	// Every kubeconfig the master's Ignition carries authenticates as the
	// identity it names.
	for _, kc := range []string{"/etc/kubernetes/kubelet.conf", "/etc/kubernetes/kube-proxy.conf", "/etc/kubernetes/controller-manager.conf",
		"/etc/kubernetes/scheduler.conf", "/etc/kubernetes/coredns.conf", "/etc/kubernetes/addons.conf"} {
		id, user, _ := fromKubeconfig(t, root, kc)
		code, body := id.do(t, "POST", api+"/apis/authentication.k8s.io/v1/selfsubjectreviews",
			map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
		var r struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &r); err != nil || code != 201 {
			t.Fatalf("%s: whoami: %d %s", kc, code, body)
		}
		if r.Status.UserInfo.Username != user {
			t.Errorf("%s authenticates as %q, its kubeconfig says %q", kc, r.Status.UserInfo.Username, user)
		}
		t.Logf("%s is %s %v", kc, r.Status.UserInfo.Username, r.Status.UserInfo.Groups)
	}

	// The controller-manager and scheduler are healthy and lead.
	for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
		waitFor(t, lease+" holds its lease", 90*time.Second, func() error {
			code, body := admin.do(t, "GET", api+"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+lease, nil)
			if code != 200 || !bytes.Contains(body, []byte(`"holderIdentity"`)) {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	for _, hp := range []string{"127.0.0.1:10257", "127.0.0.1:10259"} {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, "curl", "-ksS", "https://"+hp+"/healthz").CombinedOutput()
		if err != nil || string(out) != "ok" {
			t.Errorf("https://%s/healthz in the namespace: %s %v", hp, out, err)
		}
	}

	// The addons, applied by the rendered addon unit as on a master once
	// its apiserver answers: CoreDNS's Service and RBAC, and flannel's read
	// access to all Nodes.
	u := units["kube-addons.service"]
	argv, env, err := u.Command(root, prefixes)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Run(ctx, argv, append(env, "HOME="+home), filepath.Join(logs, "kube-addons.service.log")); err != nil {
		t.Fatalf("kube-addons: %v\n%s", err, logOf("kube-addons.service"))
	}
	for _, obj := range []string{"/api/v1/namespaces/kube-system/services/kube-dns", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns",
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:coredns", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns-masters"} {
		code, body := admin.do(t, "GET", api+obj, nil)
		if code != 200 {
			t.Errorf("%s: %d %s", obj, code, body)
		}
		if strings.HasSuffix(obj, "kube-dns") && !bytes.Contains(body, []byte(`"clusterIP":"`+cl.DNSServiceIP+`"`)) {
			t.Errorf("kube-dns Service is not on %s: %s", cl.DNSServiceIP, body)
		}
	}
	// A worker's kubelet credentials register its own Node, and no other.
	etcdCA := x509.NewCertPool()
	etcdCA.AppendCertsFromPEM(mustRead(t, root, "/etc/kubernetes/ssl/etcd-ca.pem"))
	wf, wremote := ignitionFiles(t, workerCfg)
	ca := wf["/etc/kubernetes/ssl/ca.pem"]
	kubelet := newIdentity(t, "worker1 kubelet", ca, wf["/etc/kubernetes/ssl/kubelet.pem"], wf["/etc/kubernetes/ssl/kubelet-key.pem"])
	proxy := newIdentity(t, "worker1 kube-proxy", ca, wf["/etc/kubernetes/ssl/kube-proxy.pem"], wf["/etc/kubernetes/ssl/kube-proxy-key.pem"])
	node := func(name string) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name}}
	}
	if code, body := kubelet.do(t, "POST", api+"/api/v1/nodes", node("worker1")); code != 201 {
		t.Fatalf("worker1's kubelet could not register Node worker1: %d %s", code, body)
	}
	if code, body := kubelet.do(t, "POST", api+"/api/v1/nodes", node("worker2")); code != 403 {
		t.Errorf("worker1's kubelet registering Node worker2: %d %s, want 403", code, body)
	}
	var podCIDR string
	waitFor(t, "worker1 gets a pod CIDR", 60*time.Second, func() error {
		code, body := kubelet.do(t, "GET", api+"/api/v1/nodes/worker1", nil)
		var n struct {
			Spec struct {
				PodCIDR string `json:"podCIDR"`
			} `json:"spec"`
		}
		if code != 200 || json.Unmarshal(body, &n) != nil || n.Spec.PodCIDR == "" {
			return fmt.Errorf("%d %s", code, body)
		}
		podCIDR = n.Spec.PodCIDR
		return nil
	})
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil || p.Bits() != 24 || !netip.MustParsePrefix(cl.PodNetwork).Contains(p.Addr()) {
		t.Errorf("worker1's pod CIDR %q is not a /24 of %s", podCIDR, cl.PodNetwork)
	}
	t.Logf("Node worker1 registered with its own credentials, podCIDR %s", podCIDR)

	// The pod network on the master: its kubelet's identity registers its
	// Node (the kubelet itself cannot run here), flanneld takes the Node's
	// subnet in kube-subnet-mgr mode, on FLANNELD_IFACE's address, with the
	// rendered options.env, and builds its VXLAN device.
	masterKubelet, _, _ := fromKubeconfig(t, root, "/etc/kubernetes/kubelet.conf")
	if code, body := masterKubelet.do(t, "POST", api+"/api/v1/nodes", node("master1")); code != 201 {
		t.Fatalf("master1's kubelet could not register Node master1: %d %s", code, body)
	}
	startUnit("flanneld.service")
	var subnetEnv string
	waitFor(t, "flanneld writes its subnet", 60*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(root, "/run/flannel/subnet.env"))
		subnetEnv = string(b)
		return err
	})
	if !strings.Contains(subnetEnv, "FLANNEL_NETWORK="+cl.PodNetwork) {
		t.Errorf("subnet.env does not name the pod network %s:\n%s", cl.PodNetwork, subnetEnv)
	}
	code, body := masterKubelet.do(t, "GET", api+"/api/v1/nodes/master1", nil)
	var mn struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			PodCIDR string `json:"podCIDR"`
		} `json:"spec"`
	}
	if code != 200 || json.Unmarshal(body, &mn) != nil {
		t.Fatalf("Node master1: %d %s", code, body)
	}
	if sub := strings.TrimSuffix(strings.SplitN(mn.Spec.PodCIDR, "/", 2)[0], ".0"); !strings.Contains(subnetEnv, "FLANNEL_SUBNET="+sub+".1/24") {
		t.Errorf("flanneld's subnet is not the Node's podCIDR %s:\n%s", mn.Spec.PodCIDR, subnetEnv)
	}
	waitFor(t, "flanneld annotates Node master1 with FLANNELD_IFACE's address", 30*time.Second, func() error {
		_, body := masterKubelet.do(t, "GET", api+"/api/v1/nodes/master1", nil)
		if !bytes.Contains(body, []byte(`"flannel.alpha.coreos.com/public-ip":"`+masterIP+`"`)) {
			return fmt.Errorf("annotations: %s", body)
		}
		return nil
	})
	if out, err := exec.Command("ip", "-n", ns.Name, "-d", "link", "show", "flannel.1").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("vxlan")) {
		t.Errorf("no VXLAN device flannel.1 in the master's namespace: %s %v", out, err)
	}
	t.Logf("flanneld: Node master1 has %s, %s", mn.Spec.PodCIDR, strings.Join(strings.Fields(subnetEnv), " "))

	// Nothing a worker holds reads Secrets or reaches etcd.
	for _, id := range []identity{kubelet, proxy} {
		if code, body := id.do(t, "GET", api+"/api/v1/namespaces/kube-system/secrets", nil); code != 403 {
			t.Errorf("%s listing Secrets: %d %s, want 403", id.name, code, body)
		}
		if code, body := id.do(t, "GET", api+"/api/v1/secrets", nil); code != 403 {
			t.Errorf("%s listing all Secrets: %d %s, want 403", id.name, code, body)
		}
		if err := etcdHandshake(id.cert, etcdCA); err == nil || !(strings.Contains(err.Error(), "bad certificate") || strings.Contains(err.Error(), "unknown certificate authority")) {
			t.Errorf("%s to etcd: %v, want etcd to refuse its certificate", id.name, err)
		}
	}
	// The control: the apiserver's etcd client certificate is let in.
	apiEtcd, err := tls.X509KeyPair(mustRead(t, root, "/etc/kubernetes/ssl/etcd-client.pem"), mustRead(t, root, "/etc/kubernetes/ssl/etcd-client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := etcdHandshake(apiEtcd, etcdCA); err != nil {
		t.Errorf("the apiserver's etcd client certificate to etcd: %v", err)
	}
	for p := range wf {
		if strings.Contains(p, "etcd") {
			t.Errorf("a worker's config holds %s", p)
		}
	}
	if len(wremote) == 0 {
		t.Errorf("the worker's config fetches no binaries")
	}

	// CoreDNS itself, answering for the cluster domain with its own identity.
	startUnit("coredns.service")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, masterIP+":53")
	}}
	waitFor(t, "CoreDNS answers kubernetes.default.svc."+cl.Domain, 60*time.Second, func() error {
		ips, err := r.LookupHost(ctx, "kubernetes.default.svc."+cl.Domain)
		if err != nil {
			return err
		}
		if len(ips) != 1 || ips[0] != cl.KubernetesServiceIP {
			return fmt.Errorf("got %v, want %s", ips, cl.KubernetesServiceIP)
		}
		return nil
	})

	// Services from the master: kube-proxy, as its unit says, sends the
	// kubernetes Service's IP to the apiserver and the cluster DNS IP to
	// CoreDNS.
	// A node reaches Service IPs by its default route before kube-proxy's
	// DNAT picks the endpoint; the namespace has no default route (nothing
	// may leave it), so it gets one for the service range alone, into a
	// veth pair whose both ends are in the namespace: what kube-proxy does
	// not catch never leaves it.
	for _, c := range [][]string{
		{"-n", ns.Name, "link", "add", "svc0", "type", "veth", "peer", "name", "svc0p"},
		{"-n", ns.Name, "link", "set", "svc0", "up"},
		{"-n", ns.Name, "link", "set", "svc0p", "up"},
		{"-n", ns.Name, "route", "add", cl.ServiceRange, "dev", "svc0"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("route the service range in the namespace (ip %s): %s %v", strings.Join(c, " "), out, err)
		}
	}
	startUnit("kube-proxy.service")
	svcURL := "https://" + cl.KubernetesServiceIP + "/readyz"
	waitFor(t, "the kubernetes Service answers from the master ("+svcURL+")", 60*time.Second, func() error {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, "curl", "-ksS", "--max-time", "5", svcURL).CombinedOutput()
		if err != nil || string(out) != "ok" {
			return fmt.Errorf("%s %v", out, err)
		}
		return nil
	})
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("needs busybox (Debian busybox-static) for nslookup: %v", err)
	}
	waitFor(t, "CoreDNS answers on the cluster DNS IP "+cl.DNSServiceIP, 60*time.Second, func() error {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, busybox, "nslookup", "kubernetes.default.svc."+cl.Domain, cl.DNSServiceIP).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Address: "+cl.KubernetesServiceIP)) {
			return fmt.Errorf("%s %v", out, err)
		}
		return nil
	})
	t.Logf("from the master: %s is ok through kube-proxy, and %s resolves kubernetes.default", svcURL, cl.DNSServiceIP)

	// A pod on the master: the rendered CNI conflist, run as containerd
	// would run it (each plugin in turn, the real flannel, bridge,
	// host-local and portmap from the master's Ignition), gives a pod
	// namespace an address of flannel's subnet, and from the pod the
	// kubernetes Service and the cluster DNS answer.
	pod := netns(t, "pod-master")
	podIP := cniAdd(t, ns, root, mn.Spec.PodCIDR, pod)
	for _, check := range [][]string{
		{"curl", "-ksS", "--max-time", "5", svcURL},
		{busybox, "nslookup", "kubernetes.default.svc." + cl.Domain, cl.DNSServiceIP},
	} {
		waitFor(t, "from the pod: "+strings.Join(check, " "), 30*time.Second, func() error {
			out, err := exec.Command("ip", append([]string{"netns", "exec", pod}, check...)...).CombinedOutput()
			if err != nil || !(string(out) == "ok" || bytes.Contains(out, []byte("Address: "+cl.KubernetesServiceIP))) {
				return fmt.Errorf("%s %v", out, err)
			}
			return nil
		})
	}
	t.Logf("a pod on the master got %s from the rendered CNI config; the kubernetes Service and %s answer it", podIP, cl.DNSServiceIP)

	// A second node: worker1, from its own rendered config, in a namespace
	// of its own holding its address (10.99.0.11) on a link to the
	// master's. Its flanneld takes its Node's subnet; a pod on it and the
	// pod on the master reach each other over flannel's VXLAN between the
	// FLANNELD_IFACE addresses.
	workerIP := "10.99.0.11"
	wroot := filepath.Join(dir, "worker1")
	if log, err := noderun.Install(ctx, ign, workerCfg, wroot); err != nil {
		t.Fatalf("ignition (worker1): %v\n%s", err, log)
	}
	rewriteFiles(t, wroot)
	wunits, err := noderun.LoadUnits(wroot)
	if err != nil {
		t.Fatal(err)
	}
	wns := noderun.NewNetns(t, netip.MustParsePrefix("10.97.0.1/24"), netip.MustParsePrefix("10.97.0.11/24"))
	link := fmt.Sprintf("w1-%d", os.Getpid()%100000)
	for _, c := range [][]string{
		{"link", "add", link, "type", "veth", "peer", "name", link + "p"},
		{"link", "set", link, "netns", ns.Name},
		{"link", "set", link + "p", "netns", wns.Name},
		{"-n", ns.Name, "link", "set", link, "up"},
		{"-n", ns.Name, "route", "add", workerIP + "/32", "dev", link},
		{"-n", wns.Name, "addr", "add", workerIP + "/32", "dev", link + "p"},
		{"-n", wns.Name, "link", "set", link + "p", "up"},
		{"-n", wns.Name, "route", "add", masterIP + "/32", "dev", link + "p"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %s %v", strings.Join(c, " "), out, err)
		}
	}
	fu := wunits["flanneld.service"]
	fargv, fenv, err := fu.Command(wroot, prefixes)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(wroot, "run/flannel"), 0o755)
	if _, err := wns.Start("worker1 flanneld.service", fargv, append(fenv, "HOME="+home), filepath.Join(logs, "worker1-flanneld.log"), noderun.WithRestart("always", 20, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "worker1's flanneld writes its subnet", 60*time.Second, func() error {
		_, err := os.Stat(filepath.Join(wroot, "/run/flannel/subnet.env"))
		return err
	})
	if out, err := exec.Command("ip", "-n", wns.Name, "-d", "link", "show", "flannel.1").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("local "+workerIP)) {
		t.Errorf("worker1's VXLAN device is not on its FLANNELD_IFACE address %s: %s %v", workerIP, out, err)
	}
	wpod := netns(t, "pod-worker1")
	wpodIP := cniAdd(t, wns, wroot, podCIDR, wpod)
	for _, c := range []struct{ from, to string }{{pod, wpodIP}, {wpod, podIP}} {
		to := strings.SplitN(c.to, "/", 2)[0]
		waitFor(t, "pod to pod over flannel: "+c.from+" to "+to, 60*time.Second, func() error {
			out, err := exec.Command("ip", "netns", "exec", c.from, busybox, "ping", "-c", "1", "-W", "2", to).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s %v", out, err)
			}
			return nil
		})
	}
	if out, err := exec.Command("ip", "-n", ns.Name, "route", "get", strings.SplitN(wpodIP, "/", 2)[0]).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("dev flannel.1")) {
		t.Errorf("the master does not route worker1's pods over flannel.1: %s %v", out, err)
	}
	t.Logf("pod %s on master1 and pod %s on worker1 reach each other over flannel's VXLAN (%s <-> %s)", podIP, wpodIP, masterIP, workerIP)

	// The aggregation layer: the apiserver publishes the front-proxy CA and
	// names for aggregated API servers to trust.
	code, body = admin.do(t, "GET", api+"/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", nil)
	if code != 200 || !bytes.Contains(body, []byte("requestheader-client-ca-file")) || !bytes.Contains(body, []byte(`front-proxy-client`)) {
		t.Errorf("extension-apiserver-authentication: %d %s", code, body)
	}
	fpCA, _ := os.ReadFile(filepath.Join(root, "/etc/kubernetes/ssl/front-proxy-ca.pem"))
	want, _ := json.Marshal(strings.TrimSpace(string(fpCA)))
	if !bytes.Contains(body, bytes.Trim(want, `"`)[:60]) {
		t.Errorf("extension-apiserver-authentication does not carry the rendered front-proxy CA")
	}
	for _, n := range []string{"kube-apiserver.service", "kube-controller-manager.service"} {
		for _, l := range strings.Split(logOf(n), "\n") {
			if strings.Contains(l, "requestheader-client-ca-file") && (strings.HasPrefix(l, "E") || strings.HasPrefix(l, "W")) {
				t.Errorf("%s logs: %s", n, l)
			}
		}
	}

	// The rendered kubelet, as far as this machine goes.
	kl := startUnit("kubelet.service")
	// Wait for where this machine stops it (after its flags and config
	// were read), then check it did not refuse them.
	const cgroupStop = "kubelet is configured to not run on a host using cgroup v1"
	var klog string
	waitFor(t, "the kubelet to reach this machine's cgroup v1 check", 90*time.Second, func() error {
		if klog = logOf("kubelet.service"); !strings.Contains(klog, cgroupStop) {
			return fmt.Errorf("not yet; its log ends:\n%s", tail(klog, 1500))
		}
		return nil
	})
	for _, bad := range []string{"unknown flag", "failed to load Kubelet config file", "failed to decode", "strict decoding error"} {
		if strings.Contains(klog, bad) {
			t.Errorf("the kubelet refused its rendered flags or config (%q):\n%s", bad, klog)
		}
	}
	for _, l := range strings.Split(klog, "\n") {
		if strings.Contains(l, cgroupStop) {
			t.Logf("kubelet (%d restarts) stops here on this machine: %s", kl.Restarts(), l)
			break
		}
	}
	kl.Stop()

	// Renewal without a reinstall: the master's own renewal script (the
	// one its timer runs) fetches /certs from its own address with its own
	// token. It runs in a mount namespace where /etc is an overlay on the
	// host's, holding what Ignition wrote under /etc/bootsrv and
	// /etc/kubernetes/ssl: the host's /etc is never written. systemctl,
	// which this machine lacks, is a stand-in that records what it was
	// asked to restart.
	orig, _ := ignitionFiles(t, masterCfg)
	upper, work, shim := filepath.Join(dir, "renew", "etc"), filepath.Join(dir, "renew", "work"), filepath.Join(dir, "renew", "bin")
	for p, b := range orig {
		if rel, ok := strings.CutPrefix(p, "/etc/"); ok && (strings.HasPrefix(rel, "bootsrv/") || strings.HasPrefix(rel, "kubernetes/ssl/")) {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(upper, rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(upper, rel), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	calls := filepath.Join(dir, "renew", "systemctl.calls")
	os.MkdirAll(work, 0o755)
	os.MkdirAll(shim, 0o755)
	if err := os.WriteFile(filepath.Join(shim, "systemctl"), []byte("#!/bin/sh\necho \"$@\" >>"+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	renew := func() string {
		t.Helper()
		script := fmt.Sprintf("mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc && PATH=%s:$PATH exec sh /etc/bootsrv/renew-certs.sh", upper, work, shim)
		out, err := exec.Command("ip", "netns", "exec", ns.Name, "unshare", "-m", "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("the renewal script failed: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := renew(); !strings.Contains(out, "certificates are current") {
		t.Errorf("the renewal script before any renewal: %s", out)
	}
	if _, err := os.Stat(calls); err == nil {
		t.Errorf("the renewal script restarted units with nothing renewed")
	}
	oldCert := orig["/etc/kubernetes/ssl/apiserver.pem"]
	if _, err := svc.RenewCerts(ctx, []string{masterMAC}); err != nil {
		t.Fatal(err)
	}
	out := renew()
	newPEM := mustRead(t, upper, "kubernetes/ssl/apiserver.pem")
	if bytes.Equal(newPEM, oldCert) || !strings.Contains(out, "/etc/kubernetes/ssl/apiserver.pem") {
		t.Fatalf("after `certs renew` the script did not install a new apiserver certificate:\n%s", out)
	}
	if st, err := os.Stat(filepath.Join(upper, "kubernetes/ssl/apiserver-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the renewed apiserver key: %v %v, want mode 600", st, err)
	}
	restarted, _ := os.ReadFile(calls)
	for _, u := range []string{"kubelet.service", "kube-proxy.service", "flanneld.service", "etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service", "coredns.service"} {
		if !bytes.Contains(restarted, []byte(u)) || !bytes.HasPrefix(restarted, []byte("try-restart ")) {
			t.Errorf("the renewal script did not try-restart %s: %q", u, restarted)
		}
	}
	if out := renew(); !strings.Contains(out, "certificates are current") {
		t.Errorf("the renewal script right after installing: %s", out)
	}
	// What systemctl would have done: the apiserver restarts on the
	// installed files and serves the new certificate.
	entries, _ := os.ReadDir(filepath.Join(upper, "kubernetes", "ssl"))
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(root, "etc/kubernetes/ssl", e.Name()), mustRead(t, upper, "kubernetes/ssl/"+e.Name()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	apiserver.Stop()
	startUnit("kube-apiserver.service") // stopped with the namespace
	newCert, _ := pem.Decode(newPEM)
	waitFor(t, "the restarted apiserver serves the renewed certificate", 60*time.Second, func() error {
		conn, err := tls.Dial("tcp", masterIP+":6443", &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, newCert.Bytes) {
			return fmt.Errorf("it serves another certificate")
		}
		return nil
	})
	admin, _, _ = fromKubeconfig(t, root, "/etc/kubernetes/addons.conf")
	waitFor(t, "apiserver /readyz with renewed certificates", 90*time.Second, func() error {
		code, body := admin.do(t, "GET", api+"/readyz", nil)
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	// /certs answers only the machine's own address.
	certsEnv := orig["/etc/bootsrv/certs.env"]
	certsURL, err := strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(string(certsEnv), "BOOTSRV_CERTS_URL=")))
	if err != nil || !strings.HasPrefix(certsURL, base+"/certs?") {
		t.Fatalf("certs.env: %q", certsEnv)
	}
	if out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", certsURL).CombinedOutput(); err != nil || string(out) != "403" {
		t.Errorf("/certs asked from the host's own address: %s %v, want 403", out, err)
	}
	t.Logf("the master's renewal script installed renewed certificates (%s); the restarted apiserver serves the new one", strings.TrimSpace(string(restarted)))
}

func mustRead(t *testing.T, root, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// netns makes a bare network namespace (a pod's), removed at the end.
func netns(t *testing.T, what string) string {
	t.Helper()
	name := fmt.Sprintf("bootsrv-%s-%d", what, os.Getpid())
	exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %s %v", name, out, err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// cniAdd runs the master's rendered conflist for a pod namespace as a
// container runtime does (CNI spec: each plugin with the network's name
// and version, the previous result passed on), inside the master's
// namespace, and returns the pod's address. Only paths change: the
// plugins and flannel's subnet file are under root, and /var/lib (where
// host-local and flannel keep their state) is an overlay on the host's in
// a mount namespace, so the host's /var/lib is never written.
func cniAdd(t *testing.T, ns *noderun.Netns, root, podCIDR, pod string) string {
	t.Helper()
	var list struct {
		Name       string           `json:"name"`
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(mustRead(t, root, "/etc/cni/net.d/10-flannel.conflist"), &list); err != nil {
		t.Fatalf("the rendered conflist: %v", err)
	}
	varlib := filepath.Join(t.TempDir(), "varlib")
	os.MkdirAll(filepath.Join(varlib, "upper"), 0o755)
	os.MkdirAll(filepath.Join(varlib, "work"), 0o755)
	run := func(command string, conf map[string]any) []byte {
		t.Helper()
		in, _ := json.Marshal(conf)
		plugin := filepath.Join(root, "/opt/cni/bin", conf["type"].(string))
		script := fmt.Sprintf("mount -t overlay overlay -o lowerdir=/var/lib,upperdir=%s/upper,workdir=%s/work /var/lib && exec %s", varlib, varlib, plugin)
		cmd := exec.Command("ip", "netns", "exec", ns.Name, "unshare", "-m", "sh", "-c", script)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND=" + command, "CNI_CONTAINERID=bootsrv-test-pod",
			"CNI_NETNS=/run/netns/" + pod, "CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Join(root, "/opt/cni/bin")}
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("CNI %s %s: %v\n%s\n%s", command, conf["type"], err, out, stderr.String())
		}
		return out
	}
	confs := make([]map[string]any, len(list.Plugins))
	for i, p := range list.Plugins {
		c := map[string]any{"cniVersion": list.CNIVersion, "name": list.Name}
		for k, v := range p {
			c[k] = v
		}
		if c["type"] == "flannel" {
			c["subnetFile"] = filepath.Join(root, "/run/flannel/subnet.env")
		}
		confs[i] = c
	}
	var prev json.RawMessage
	for _, c := range confs {
		if prev != nil {
			c["prevResult"] = prev
		}
		prev = run("ADD", c)
	}
	t.Cleanup(func() {
		for i := len(confs) - 1; i >= 0; i-- {
			confs[i]["prevResult"] = prev
			run("DEL", confs[i])
		}
	})
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(prev, &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("CNI result without an address: %s", prev)
	}
	addr, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil || !netip.MustParsePrefix(podCIDR).Contains(addr.Addr()) {
		t.Fatalf("the pod's address %s is not in the node's pod CIDR %s", res.IPs[0].Address, podCIDR)
	}
	if out, err := exec.Command("ip", "-n", pod, "-4", "addr", "show", "eth0").CombinedOutput(); err != nil || !bytes.Contains(out, []byte(addr.String())) {
		t.Fatalf("the pod namespace has no %s on eth0: %s %v", addr, out, err)
	}
	return addr.String()
}

// etcdHandshake asks the master's etcd for /version with cert, trusting
// the etcd CA: nil when etcd lets the certificate in, else why not (a TLS
// alert from etcd names a refused certificate).
func etcdHandshake(cert tls.Certificate, etcdCA *x509.CertPool) error {
	// Always present cert, even one the server's list of CAs does not
	// name: the refusal must be etcd's, of this certificate.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: etcdCA, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + masterIP + ":2379/version")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("etcdserver")) {
		return fmt.Errorf("GET /version: %s %s", resp.Status, b)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
