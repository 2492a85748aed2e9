package noderun

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v34 "github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"
)

// The etcd release examples/releases/build.sh builds from etcd's module.
var etcdTarball = filepath.Join(CacheDir(), "releases/etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz")

// The path prefixes a rendered node's files live under; Command moves them
// below the install root.
var testPrefixes = []string{"/etc/", "/opt/bin/", "/var/lib/", "/run/", "/usr/local/bin/"}

// ignitionForTest returns the real Ignition binary, or skips naming what is
// missing to build or run it.
func ignitionForTest(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: Ignition writes the node's files as root and chroots for users and owners")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	bin, err := IgnitionBinary(ctx)
	if errors.Is(err, ErrMissing) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("built Ignition %s in %s: %s", IgnitionVersion, d.Round(time.Second), bin)
	}
	return bin
}

// etcdForTest extracts the etcd binary of the release tarball into dir.
func etcdForTest(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open(etcdTarball)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("needs the etcd v3.6.16 release %s: run examples/releases/build.sh", etcdTarball)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", etcdTarball, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no etcd binary", etcdTarball)
		}
		if err != nil {
			t.Fatalf("%s: %v", etcdTarball, err)
		}
		if filepath.Base(h.Name) != "etcd" || h.Typeflag != tar.TypeReg {
			continue
		}
		out := filepath.Join(dir, "etcd")
		w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
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

func sha512File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

const etcdUnit = `[Unit]
Description=etcd
After=network-online.target

[Service]
Type=notify
EnvironmentFile=/etc/etcd/etcd.env
ExecStart=/opt/bin/etcd
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`

// etcdConfig is a small Ignition 3.4 config of a one-member etcd on ip:
// the binary from binURL checked against sha512 hash, its env file, and an
// enabled etcd.service.
func etcdConfig(t *testing.T, binURL, hash, ip string) []byte {
	t.Helper()
	env := strings.Join([]string{
		"ETCD_NAME=master1",
		"ETCD_DATA_DIR=/var/lib/etcd",
		"ETCD_LISTEN_CLIENT_URLS=http://" + ip + ":2379",
		"ETCD_ADVERTISE_CLIENT_URLS=http://" + ip + ":2379",
		"ETCD_LISTEN_PEER_URLS=http://" + ip + ":2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://" + ip + ":2380",
		"ETCD_INITIAL_CLUSTER=master1=http://" + ip + ":2380",
	}, "\n") + "\n"
	cfg := types.Config{
		Ignition: types.Ignition{Version: "3.4.0"},
		Storage: types.Storage{Files: []types.File{
			{
				Node: types.Node{Path: "/opt/bin/etcd"},
				FileEmbedded1: types.FileEmbedded1{
					Mode: ptr(0o755),
					Contents: types.Resource{
						Source:       ptr(binURL),
						Verification: types.Verification{Hash: ptr("sha512-" + hash)},
					},
				},
			},
			{
				Node: types.Node{Path: "/etc/etcd/etcd.env"},
				FileEmbedded1: types.FileEmbedded1{
					Mode:     ptr(0o644),
					Contents: types.Resource{Source: ptr(dataurl.EncodeBytes([]byte(env)))},
				},
			},
		}},
		Systemd: types.Systemd{Units: []types.Unit{
			{Name: "etcd.service", Enabled: ptr(true), Contents: ptr(etcdUnit)},
		}},
	}
	return marshalConfig(t, cfg)
}

// marshalConfig marshals cfg and parses it back as Ignition 3.4 would,
// warnings counted as errors.
func marshalConfig(t *testing.T, cfg types.Config) []byte {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, rpt, err := v34.Parse(b); err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("config does not parse cleanly: %v %v", err, rpt)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// TestEtcdFromIgnition is the whole path: a config with an etcd binary by
// URL and hash, installed by the real Ignition, its unit read back and
// started exactly as it says (paths moved under the root) in a namespace
// holding the node's IP, answering /health from the host.
func TestEtcdFromIgnition(t *testing.T) {
	start := time.Now()
	ign := ignitionForTest(t)
	needNetnsPrereqs(t)
	dir := t.TempDir()
	etcdBin := etcdForTest(t, dir)

	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	ip := testNSIP.Addr().String()
	cfg := etcdConfig(t, srv.URL+"/etcd", sha512File(t, etcdBin), ip)

	root := filepath.Join(dir, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log, err := Install(ctx, ign, cfg, root)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, log)
	}
	// Ignition itself downloaded the binary and checked it.
	if !strings.Contains(log, "GET "+srv.URL+"/etcd") || !strings.Contains(log, "file matches expected sum") {
		t.Errorf("Ignition's log does not show the download and hash check:\n%s", log)
	}
	t.Logf("installed with Ignition in %s", time.Since(start).Round(time.Millisecond))

	units, err := LoadUnits(root)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := units["etcd.service"]
	if !ok || !u.Enabled {
		t.Fatalf("etcd.service missing or not enabled: %+v", units)
	}
	argv, env, err := u.Command(root, testPrefixes)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{root + "/opt/bin/etcd"}; strings.Join(argv, " ") != strings.Join(want, " ") {
		t.Errorf("argv %q, want %q", argv, want)
	}
	if !contains(env, "ETCD_DATA_DIR="+root+"/var/lib/etcd") || !contains(env, "ETCD_NAME=master1") {
		t.Errorf("env %q lacks the env file's variables", env)
	}

	ns := NewNetns(t, testHostIP, testNSIP)
	p, err := ns.Start("etcd", argv, env, filepath.Join(dir, "etcd.log"), WithRestart(u.Restart, 3, time.Second))
	if err != nil {
		t.Fatal(err)
	}

	health := fmt.Sprintf("http://%s:2379/health", ip)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		last = getHealth(client, health)
		if last == "true" {
			break
		}
		select {
		case <-p.Done():
			t.Fatalf("etcd ended (%v); log:\n%s", p.Err(), tail(readFile(t, p.LogPath), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %s after 30 s; etcd log:\n%s", health, last, tail(readFile(t, p.LogPath), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("etcd healthy at %s, %s after the test began", health, time.Since(start).Round(time.Millisecond))

	// etcd took its data dir from the env file, moved under the root.
	if _, err := os.Stat(filepath.Join(root, "var/lib/etcd/member")); err != nil {
		t.Errorf("etcd's data dir is not under the root: %v", err)
	}
	pid := p.PID()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("etcd pid %d still there after Stop: %v", pid, err)
	}
}

// getHealth returns etcd's "health" field, or what went wrong.
func getHealth(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Sprintf("HTTP %d, body: %v", resp.StatusCode, err)
	}
	if h.Health != "true" {
		return fmt.Sprintf("HTTP %d health %q reason %q", resp.StatusCode, h.Health, h.Reason)
	}
	return "true"
}

// TestInstallRefusesWrongHash: the real Ignition refuses a binary whose
// sha512 is not the config's, and Install says so.
func TestInstallRefusesWrongHash(t *testing.T) {
	ign := ignitionForTest(t)
	dir := t.TempDir()
	etcdForTest(t, dir) // served, but the config names another hash
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)

	wrong := sha512.Sum512([]byte("not etcd"))
	cfg := etcdConfig(t, srv.URL+"/etcd", hex.EncodeToString(wrong[:]), testNSIP.Addr().String())
	root := filepath.Join(dir, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log, err := Install(ctx, ign, cfg, root)
	if err == nil {
		t.Fatalf("Install accepted a wrong hash; log:\n%s", log)
	}
	for _, s := range []string{err.Error(), log} {
		if !strings.Contains(s, "hash verification failed") || !strings.Contains(s, hex.EncodeToString(wrong[:])) {
			t.Errorf("does not say the hash failed: %q", s)
		}
	}
	if !strings.Contains(err.Error(), "ignition files stage") {
		t.Errorf("error does not name the stage: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "opt/bin/etcd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused binary was left at /opt/bin/etcd: %v", err)
	}
}

// TestInstallUsers: passwd.users works on a host because Install seeds the
// account files the host's `useradd --root` edits.
func TestInstallUsers(t *testing.T) {
	ign := ignitionForTest(t)
	found := false
	for _, d := range filepath.SplitList(defaultPath) {
		if _, err := os.Stat(filepath.Join(d, "useradd")); err == nil {
			found = true
		}
	}
	if !found {
		t.Skip("needs useradd (Debian: passwd), which Ignition runs for passwd.users")
	}
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjur0FJZAc31HwF4do2GMidUWq2fEt5GgYFr8wN3PTM ops@noderun-test"
	cfg := marshalConfig(t, types.Config{
		Ignition: types.Ignition{Version: "3.4.0"},
		Passwd: types.Passwd{Users: []types.PasswdUser{
			{Name: "core", SSHAuthorizedKeys: []types.SSHAuthorizedKey{types.SSHAuthorizedKey(key)}},
		}},
		Storage: types.Storage{Files: []types.File{{
			Node: types.Node{Path: "/etc/core-owned", User: types.NodeUser{Name: ptr("core")}},
			FileEmbedded1: types.FileEmbedded1{
				Contents: types.Resource{Source: ptr("data:,hello")},
			},
		}}},
	})
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// t.TempDir() and its parent are 0700, and Ignition writes the keys as
	// core: Install says so before running anything.
	if _, err := Install(ctx, ign, cfg, root); err == nil || !strings.Contains(err.Error(), "writes users' ssh keys as the user") {
		t.Fatalf("Install below a 0700 directory: %v", err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log, err := Install(ctx, ign, cfg, root)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, log)
	}
	if !strings.Contains(log, "seeded /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow") {
		t.Errorf("log does not say what was seeded:\n%s", log)
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "etc/passwd")), "\ncore:x:") {
		t.Errorf("no core user in %s/etc/passwd", root)
	}
	keys := readFile(t, filepath.Join(root, "home/core/.ssh/authorized_keys.d/ignition"))
	if !strings.Contains(keys, key) {
		t.Errorf("authorized keys: %q", keys)
	}
	fi, err := os.Stat(filepath.Join(root, "etc/core-owned"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
		t.Errorf("/etc/core-owned is owned by root, want core's uid")
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
