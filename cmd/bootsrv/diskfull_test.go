package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With the disk under the data dir full, bootsrv serve keeps answering
// /healthz and a provisioned machine's boot script, a write (machine add)
// fails with an error that names the disk, and once space returns the
// same write succeeds with no restart. The disk is a real 16 MB tmpfs.
func TestServeDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips building and running bootsrv serve")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs under the data dir")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("needs mount -t tmpfs: %v: %s", err, out)
	}
	// Registered first, so it runs after the server (stopped by a later
	// cleanup) has let go of the disk.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", data, err, out)
		}
	})
	c := &chainEnv{t: t, bin: chainBuild(t, dir), dataDir: data, log: &lockedBuf{}}
	const mac = "52:54:00:d1:5c:01"
	c.cli("cluster", "init", "--name", "lab", "--api-server", "127.0.0.10")
	c.cli("profile", "add", "--role", "custom", "--kernel", "/assets/k", "p")
	c.cli("machine", "add", "--profile", "p", "--hostname", "full", "--ip", "127.0.0.1", mac)
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := chainServe(t, c, assets, "--tftp-addr", "")

	gm := chainIgnRe.FindStringSubmatch(string(c.get200(c.base + "/ipxe?mac=" + mac)))
	if gm == nil {
		t.Fatal("no ignition URL in the boot script")
	}
	report := chainReportURL(t, c.get200(gm[1]))
	if code, body := c.fetch(http.MethodPost, report+"&state=booted"); code != http.StatusOK {
		t.Fatalf("report: %d %s", code, body)
	}
	c.wantState(mac, "provisioned", "the report")

	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{'x'}, 1<<16)
	for {
		if _, err := f.Write(buf); err != nil {
			break // ENOSPC: the disk is full
		}
	}
	f.Close()

	for i := 0; i < 5; i++ {
		if code, _ := c.fetch(http.MethodGet, c.base+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz on a full disk: %d", code)
		}
		if code, body := c.fetch(http.MethodGet, c.base+"/ipxe?mac="+mac); code != http.StatusOK || !chainKernelRe.Match(body) {
			t.Errorf("a provisioned machine's boot script on a full disk: %d\n%s", code, body)
		}
	}
	add := func() (string, error) {
		out, err := exec.Command(c.bin, "--data-dir", data, "machine", "add", "--profile", "p", "--hostname", "late",
			"--ip", "127.0.0.2", "52:54:00:d1:5c:02").CombinedOutput()
		return string(out), err
	}
	// Fill what bbolt had free inside its file too, then the add must fail.
	var out string
	for i := 0; i < 50; i++ {
		if out, err = add(); err != nil {
			break
		}
		c.cli("machine", "rm", "52:54:00:d1:5c:02")
	}
	if err == nil {
		t.Fatalf("machine add kept succeeding on a full disk:\n%s", out)
	}
	t.Logf("machine add on a full disk: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "disk") && !strings.Contains(out, "no space") {
		t.Errorf("machine add on a full disk says:\n%s\nwant the disk named", out)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if out, err = add(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine add still fails 15 s after space returned:\n%s\nserver log:\n%s", out, c.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _ := c.fetch(http.MethodGet, c.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the disk recovered: %d", code)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v\n%s", err, c.log.String())
	}
}
