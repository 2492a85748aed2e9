package lab_test

// TestDemoCluster is issue 11's acceptance: `make demo` end to end. Three
// QEMU VMs netboot the lab's node OS (a Debian root with systemd and
// containerd that runs the real Ignition first) against `bootsrv serve`,
// fetch every binary from bootsrv's assets, and form a Kubernetes cluster;
// demo-cluster.sh then runs pods across nodes and reprovisions worker2. This
// test runs demo.sh as a user would and checks, from what it recorded
// (kubectl's and bootsrv's own JSON, the certificates worker2's kubelet
// served) and from bootsrv's state, that:
//
//   - every node is Ready, with the address bootsrv gave it;
//   - a pod on worker1 reached a pod on worker2 by pod IP, the Service's
//     ClusterIP, and the Service's DNS name, and resolved kubernetes.default;
//   - after `machine reprovision worker2` and a power cycle, worker2 is
//     provisioned a second time and Ready again, its kubelet serving a new
//     certificate that bootsrv issued, the old one no longer on record.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// demoTimeout bounds demo.sh: building the node OS the first time (~3 min),
// three VMs to Ready under TCG, the pods, and worker2's second install.
const demoTimeout = 45 * time.Minute

func TestDemoCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo boots a Kubernetes cluster in VMs (about 15 minutes)")
	}
	requireLab(t)
	var missing []string
	for _, c := range []struct{ cmd, pkg string }{
		{"mmdebstrap", "mmdebstrap"}, {"docker-registry", "docker-registry"}, {"jq", "jq"}, {"openssl", "openssl"},
	} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian: %s)", c.cmd, c.pkg))
		}
	}
	if len(missing) > 0 {
		t.Skipf("the demo cluster needs: %s", strings.Join(missing, "; "))
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Clean(filepath.Join(wd, "..", ".."))
	base := filepath.Join(repo, ".cache", "lab", "runs", time.Now().Format("20060102-150405")+fmt.Sprintf("-demo-%d", os.Getpid()))
	data, out := filepath.Join(base, "data"), filepath.Join(base, "demo")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bootsrv")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bootsrv")
	build.Dir = repo
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}

	logPath := filepath.Join(base, "demo.log")
	env := append(labEnv(), "DEMO_BIN="+bin, "DEMO_DIR="+data, "DEMO_OUT="+out, "DEMO_RELEASES="+releasesDir(),
		"LAB_RUN_DIR="+filepath.Join(base, "lab"))
	start := time.Now()
	err = runLab(filepath.Join(repo, "examples", "qemu-lab", "demo.sh"), repo, env, logPath, demoTimeout)
	t.Logf("demo.sh: %s (log %s)", time.Since(start).Round(time.Second), logPath)
	if b, rerr := os.ReadFile(logPath); rerr == nil {
		// The demo's own account: the board, the nodes, the checks, the times.
		t.Logf("demo.sh printed:\n%s", tail(string(b), 120))
	}
	if err != nil {
		t.Fatalf("demo.sh failed: %v (logs in %s)", err, base)
	}

	results := readEnv(t, filepath.Join(out, "results.env"))
	t.Logf("results.env: %v", results)

	// Every node Ready, at the address bootsrv reserved for it.
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Addresses  []struct{ Type, Address string }
				Conditions []struct{ Type, Status string }
			}
		}
	}
	readJSON(t, filepath.Join(out, "nodes.json"), &nodes)
	want := map[string]string{"master1": "10.99.0.10", "worker1": "10.99.0.11", "worker2": "10.99.0.12"}
	for _, n := range nodes.Items {
		ready, ip := false, ""
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == "Ready" && c.Status == "True")
		}
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				ip = a.Address
			}
		}
		if w, ok := want[n.Metadata.Name]; !ok || !ready || ip != w {
			t.Errorf("node %s: ready=%v InternalIP=%s; want a Ready node of the example cluster at %s", n.Metadata.Name, ready, ip, w)
		}
		delete(want, n.Metadata.Name)
	}
	if len(want) > 0 {
		t.Errorf("nodes missing from kubectl get nodes: %v", want)
	}

	// The pods: web on worker2, the client on worker1, every check ok.
	var pods struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct {
				Phase             string
				PodIP             string
				ContainerStatuses []struct {
					State struct {
						Terminated *struct{ Message string }
					}
				}
			}
		}
	}
	readJSON(t, filepath.Join(out, "pods.json"), &pods)
	var webIP, clientMsg, clientNode, clientPhase, webNode string
	for _, p := range pods.Items {
		switch p.Metadata.Name {
		case "web":
			webIP, webNode = p.Status.PodIP, p.Spec.NodeName
		case "client":
			clientNode, clientPhase = p.Spec.NodeName, p.Status.Phase
			if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
				clientMsg = cs[0].State.Terminated.Message
			}
		}
	}
	if webNode != "worker2" || clientNode != "worker1" || clientPhase != "Succeeded" {
		t.Errorf("pods: web on %q, client on %q ended %q; want web on worker2, client on worker1, Succeeded", webNode, clientNode, clientPhase)
	}
	if !strings.HasPrefix(webIP, "10.2.") {
		t.Errorf("web's pod IP %q is not in the pod network 10.2.0.0/16", webIP)
	}
	for _, w := range []string{"ok http://" + webIP + ":8080/: labpod web", "ok http://web.default.svc.cluster.local/: labpod web", "ok dns:kubernetes.default: resolves to 10.3.0.1"} {
		if !strings.Contains(clientMsg, w) {
			t.Errorf("the client pod's report lacks %q:\n%s", w, clientMsg)
		}
	}
	for _, k := range []string{"pod_to_pod", "service", "dns"} {
		if results[k] == "" {
			t.Errorf("results.env has no %s", k)
		}
	}

	// Reprovision: a new certificate, served by the rejoined kubelet and
	// issued by bootsrv; the old one gone from bootsrv's records.
	if os.Getenv("DEMO_REPROVISION") == "0" {
		return
	}
	before, after := pemFingerprint(t, filepath.Join(out, "serving-before.pem")), pemFingerprint(t, filepath.Join(out, "serving-after.pem"))
	if before == after {
		t.Fatalf("worker2's kubelet serves the same certificate (%s) after its reprovision", before)
	}
	certs := map[string]bool{}
	var infos []struct{ MAC, Name, SHA256 string }
	readJSON(t, filepath.Join(out, "certs-after.json"), &infos)
	for _, c := range infos {
		if c.MAC == "52:54:00:00:00:03" {
			certs[normFP(c.SHA256)] = true
		}
	}
	if !certs[after] || certs[before] {
		t.Errorf("bootsrv's certificates for worker2 after its reprovision: %v; want the served one %s, not the old %s", certs, after, before)
	}
	var m struct {
		State      string
		Generation int
		Events     []struct{ Type string }
	}
	b, err := exec.Command(bin, "--data-dir", data, "machine", "show", "worker2", "-o", "json").Output()
	if err != nil {
		t.Fatalf("bootsrv machine show worker2: %v", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, e := range m.Events {
		if e.Type == "provisioned" || e.Type == "reprovision" {
			seq = append(seq, e.Type)
		}
	}
	if m.State != "provisioned" || m.Generation != 1 || strings.Join(seq, ",") != "provisioned,reprovision,provisioned" {
		t.Errorf("worker2 is %s, generation %d, history %v; want provisioned, generation 1, provisioned,reprovision,provisioned", m.State, m.Generation, seq)
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func pemFingerprint(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}

func normFP(s string) string { return strings.ToLower(strings.ReplaceAll(s, ":", "")) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
