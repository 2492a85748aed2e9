package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

// storeEnv points every bootsrv this test starts at the etcd cluster.
func storeEnv(t *testing.T, c *etcdtest.Cluster, keyFile string) string {
	spec := c.Spec(true)
	t.Setenv("BOOTSRV_STORE", spec)
	t.Setenv("BOOTSRV_ETCD_CA", c.CAFile)
	t.Setenv("BOOTSRV_ETCD_CERT", c.CertFile)
	t.Setenv("BOOTSRV_ETCD_KEY", c.KeyFile)
	t.Setenv("BOOTSRV_STORE_KEY", keyFile)
	return spec
}

// TestSharedChain runs two bootsrv serve on one etcd store: a machine
// added through A is served by B within a second; /ipxe from A, /ignition
// with A's token from B, /report to A leave it provisioned once; the
// servers list each other and elect one for the timed jobs; B goes on
// when A is killed; and the state moves to a bbolt file and back intact.
func TestSharedChain(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	ec := etcdtest.Start(t)
	dir := t.TempDir()
	storeEnv(t, ec, filepath.Join(dir, "store.key"))
	bin := chainBuild(t, dir)
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(filepath.Join(assets, "lab"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(assets, "lab", n), []byte("stand-in "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := &lockedBuf{}
	a := &chainEnv{t: t, bin: bin, dataDir: filepath.Join(dir, "a"), log: log}
	b := &chainEnv{t: t, bin: bin, dataDir: filepath.Join(dir, "b"), log: log}
	for _, e := range []*chainEnv{a, b} {
		if err := os.MkdirAll(e.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chainServe(t, a, assets, "--tftp-addr", "")
	chainServe(t, b, assets, "--tftp-addr", "")

	const mac, hyp = "52:54:00:c4:b2:01", "52-54-00-c4-b2-01"
	a.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	a.cli("profile", "add", "--role", "custom", "--os", "lab", "--kernel", "/assets/lab/vmlinuz",
		"--initrd", "/assets/lab/initrd.img", "lab")
	added := time.Now()
	a.cli("machine", "add", "--profile", "lab", "--hostname", "node1", "--ip", "127.0.0.1", mac)
	for {
		code, _ := b.fetch(http.MethodGet, b.base+"/ipxe?mac="+hyp)
		if code == http.StatusOK {
			break
		}
		if time.Since(added) > time.Second {
			t.Fatalf("server B does not serve the machine added through A a second later (last: %d)\n%s", code, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("B served the machine added through A after %v", time.Since(added))

	script := string(a.get200(a.base + "/ipxe?mac=" + hyp))
	gm := chainIgnRe.FindStringSubmatch(script)
	if gm == nil {
		t.Fatalf("A's script has no Ignition URL:\n%s", script)
	}
	ignURL := strings.Replace(gm[1], a.base, b.base, 1)
	if ignURL == gm[1] {
		t.Fatalf("Ignition URL %s does not name A (%s)", gm[1], a.base)
	}
	ign := b.get200(ignURL)
	if !bytes.Contains(ign, []byte("/etc/hostname")) {
		t.Fatalf("B's config: %s", ign)
	}
	report := chainReportURL(t, ign)
	report = strings.Replace(report, b.base, a.base, 1)
	if code, body := a.fetch(http.MethodPost, report+"&state=booted"); code != http.StatusOK {
		t.Fatalf("report to A: %d %s", code, body)
	}
	var m struct {
		State  string `json:"state"`
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
	}
	out := b.cli("machine", "show", "-o", "json", mac)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	n := 0
	var types []string
	for _, e := range m.Events {
		types = append(types, e.Type)
		if e.Type == "provisioned" {
			n++
		}
	}
	if m.State != "provisioned" || n != 1 {
		t.Fatalf("seen from B: state %s, %d provisioned events (history %v), want provisioned once", m.State, n, types)
	}
	// B's first /ipxe (the poll above), then A's, B's /ignition, A's report.
	if want := []string{"registered", "ipxe", "ipxe", "ignition", "report", "provisioned"}; strings.Join(types, ",") != strings.Join(want, ",") {
		t.Errorf("one history from both servers: %v, want %v", types, want)
	}

	// A rack's import through B is one transaction, served by A at once.
	var csv strings.Builder
	csv.WriteString("mac,hostname,ip,profile\n")
	for i := 0; i < 200; i++ { // about 1,800 etcd operations: more than etcd's default 128
		fmt.Fprintf(&csv, "52:54:00:c5:00:%02x,rack-%d,127.0.0.%d,lab\n", i, i, i+2)
	}
	rack := filepath.Join(dir, "rack.csv")
	if err := os.WriteFile(rack, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b.cli("machine", "import", "-f", rack)
	// (A's own admin socket: what A's copy holds.)
	if show := a.cli("machine", "show", "-o", "json", "52:54:00:c5:00:c7"); !strings.Contains(show, "127.0.0.201") {
		t.Fatalf("A's view of the last machine B imported: %s", show)
	}

	// Both servers registered, one elected.
	type listing struct {
		Servers []struct{ ID, Role, URL string }
		Etcd    []struct {
			Name    string
			Healthy bool
		}
	}
	var ls listing
	if err := json.Unmarshal([]byte(a.cli("server", "list", "-o", "json")), &ls); err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, s := range ls.Servers {
		if s.Role == "leader" {
			leaders++
		}
	}
	if len(ls.Servers) != 2 || leaders != 1 || len(ls.Etcd) != 3 {
		t.Fatalf("server list: %+v, want 2 servers, 1 leader, 3 etcd members", ls)
	}
	for _, m := range ls.Etcd {
		if !m.Healthy {
			t.Errorf("etcd member %s unhealthy", m.Name)
		}
	}

	// kill -9 A: B goes on, and is alone (and leader) once A's session lapses.
	killServe(t, a)
	b.get200(b.base + "/ipxe?mac=" + hyp)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ls = listing{}
		_ = json.Unmarshal([]byte(b.cli("server", "list", "-o", "json")), &ls)
		if len(ls.Servers) == 1 && ls.Servers[0].Role == "leader" && strings.Contains(ls.Servers[0].URL, strings.TrimPrefix(b.base, "http://")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after A's kill -9 the list is %+v, want B alone as leader", ls)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The whole state to a bbolt file, verified, and back to another
	// (empty) etcd.
	copied := filepath.Join(dir, "copied")
	out = b.cli("store", "copy", "--to", "bolt:"+copied, "-o", "json")
	var cp struct {
		Records  int
		Verified bool
		Buckets  map[string]int
	}
	if err := json.Unmarshal([]byte(out), &cp); err != nil || !cp.Verified || cp.Buckets["machines"] != 201 || cp.Buckets["events"] != len(types)+200+1 { // the rack's registrations, B's /ipxe after the kill
		t.Fatalf("store copy to bbolt: %v\n%s", err, out)
	}
	ec2 := etcdtest.Start(t)
	t.Setenv("BOOTSRV_ETCD_CA", ec2.CAFile)
	t.Setenv("BOOTSRV_ETCD_CERT", ec2.CertFile)
	t.Setenv("BOOTSRV_ETCD_KEY", ec2.KeyFile)
	back := &chainEnv{t: t, bin: bin, dataDir: copied, log: log}
	out = back.cli("store", "copy", "--store", "bolt", "--to", ec2.Spec(false), "-o", "json")
	cp = struct {
		Records  int
		Verified bool
		Buckets  map[string]int
	}{}
	if err := json.Unmarshal([]byte(out), &cp); err != nil || !cp.Verified || cp.Buckets["machines"] != 201 {
		t.Fatalf("store copy back to etcd: %v\n%s", err, out)
	}
	// The copy serves: the machine is there, provisioned.
	show := back.cli("machine", "show", "-o", "json", "--store", ec2.Spec(false), mac)
	if !strings.Contains(show, `"provisioned"`) {
		t.Fatalf("machine in the copied-back store: %s", show)
	}
}

// killServe sends SIGKILL to the server chainServe started for e (by its
// PID) and waits until it no longer answers.
func killServe(t *testing.T, e *chainEnv) {
	t.Helper()
	if e.proc == nil {
		t.Fatal("no server process recorded for this env")
	}
	if err := e.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		res, err := http.Get(e.base + "/healthz")
		if err != nil {
			return
		}
		res.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the killed server still answers")
}
