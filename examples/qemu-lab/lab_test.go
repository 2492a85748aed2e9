// Package lab_test is the end-to-end test of the QEMU lab (issue 7): real
// virtual machines network-boot against bootsrv's own DHCP, TFTP and HTTP,
// run the real Ignition, and report back; the test then checks bootsrv's
// state and what the machines reported.
//
// A master's and a worker's Ignition config makes Ignition download every
// Kubernetes, etcd, CNI, flannel and CoreDNS binary the node runs from
// bootsrv's /assets/ (sha512-verified by Ignition itself): the test imports
// the real releases (examples/releases/build.sh, cached in
// $BOOTSRV_TEST_CACHE/releases, default /var/cache/bootsrv-test/releases;
// about 10 minutes to build on a fresh machine, then instant) and gives each
// VM the RAM its tmpfs root needs to hold them (~740 MB on a master).
//
// It needs root, QEMU, OVMF, radvd, busybox-static, a Debian kernel and what
// build-os.sh needs to build Ignition; it skips, naming what is missing,
// without them and under -short. Run it alone with
//
//	go test -v -count=1 -timeout 30m ./examples/qemu-lab/
//
// The lab's logs (lab.sh's output, serial consoles, server.log) go to
// .cache/lab/runs/<time>-e2e-<pid>/; a failure names them, and keeps the
// data dir there too.
package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vincent-petithory/dataurl"
)

const (
	serverIP = "10.99.0.1" // lab.sh's bridge address
	baseURL  = "http://" + serverIP + ":8080"
	// Files whose contents differ per render: a fresh report token, and
	// Ignition's own record of its run.
	reportEnvPath      = "/etc/bootsrv/report.env"
	ignitionResultPath = "/etc/.ignition-result.json"
	ignitionPresetPath = "/etc/systemd/system-preset/20-ignition.preset"
	flannelOptionsPath = "/etc/flannel/options.env"
	kubeletCertPath    = "/etc/kubernetes/ssl/kubelet.pem"
	clusterCACertPath  = "/etc/kubernetes/ssl/ca.pem"
	// Per VM, QEMU start to its report (lab.sh's LAB_BOOT_TIMEOUT): a
	// master's Ignition downloads ~740 MB under TCG beside two workers
	// (measured on 2 cores: files stage 55-70 s, the whole boot 65-100 s).
	// More than init.sh's own bound on an Ignition stage (420 s), so that a
	// stuck download fails in the VM, with Ignition's log on the console.
	bootTimeout         = 10 * time.Minute
	firstRunTimeout     = 15 * time.Minute
	secondRunTimeout    = 12 * time.Minute
	labTeardownDeadline = 45 * time.Second
	releasesBuildTime   = 30 * time.Minute // examples/releases/build.sh on a fresh machine
)

// vm is one machine of examples/cluster booted in the lab.
type vm struct {
	name, mac, fw string
	memMiB        int // its RAM: the tmpfs root (half of it) holds the binaries Ignition downloads
}

// The first run: master1 under SeaBIOS with the NIC's iPXE ROM, worker1
// through OVMF's own PXE (TFTP ipxe.efi), worker2 under OVMF with the NIC's
// iPXE EFI ROM. A master's binaries are ~740 MB, a worker's ~250 MB, in a
// tmpfs of half the RAM.
var firstRun = []vm{
	{"master1", "52:54:00:00:00:01", "bios", 2048},
	{"worker1", "52:54:00:00:00:02", "uefi-pxe", 1024},
	{"worker2", "52:54:00:00:00:03", "uefi", 1024},
}

// expectedChain is the order of first occurrences every machine's history
// must show, per firmware. Only firmware PXE fetches the first stage over
// TFTP (the pxe event); SeaBIOS and OVMF with the NIC's iPXE ROM are iPXE
// from the first DHCP packet on.
var expectedChain = map[string][]string{
	"uefi-pxe": {"dhcp", "pxe", "ipxe", "kernel", "ignition", "provisioned"},
	"bios":     {"dhcp", "ipxe", "kernel", "ignition", "provisioned"},
	"uefi":     {"dhcp", "ipxe", "kernel", "ignition", "provisioned"},
}

type event struct {
	Time   time.Time         `json:"time"`
	Type   string            `json:"type"`
	Detail string            `json:"detail"`
	Fields map[string]string `json:"fields"`
}

// asset is one imported release binary (`bootsrv assets list -o json`),
// served as /assets/<Path>.
type asset struct {
	Component, Version, Arch, Name string
	Path                           string
	Size                           int64
	SHA256, SHA512                 string
}

type machine struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Profile  string `json:"profile"`
	State    string `json:"state"`
}

// result is one line of lab.sh's LAB_RESULTS_FILE.
type result struct {
	name, fw, mac, uuid, result, seconds, ip string
}

type lab struct {
	t       *testing.T
	repo    string
	bin     string // the bootsrv built for this test
	data    string // bootsrv's data dir
	base    string // this test's logs: <repo>/.cache/lab/runs/<time>-e2e-<pid>
	kernel  string
	initrd  string
	started time.Time
	logs    []string // lab.sh's output of each run, shown if the test fails
	shown   map[string]bool
	assets  map[string]asset // the imported releases by URL path (/assets/<Path>)
}

func TestQEMULab(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the QEMU lab boots real VMs (minutes)")
	}
	requireLab(t)
	l := &lab{t: t, started: time.Now()}
	l.setup()

	// Run 1: three machines boot for the first time and are provisioned.
	res := l.run("run1", firstRun, nil, firstRunTimeout)
	for _, v := range firstRun {
		t.Run(v.name+"-"+v.fw, func(t *testing.T) { l.checkFirstBoot(t, v, res[v.name]) })
	}
	if t.Failed() {
		return
	}

	// Run 2: master1 boots again. Its profile (examples/cluster, os: lab)
	// is a live one (install: live, the default): the machine has no disk
	// to boot from, so a provisioned live machine is not sent to local disk
	// but gets its boot script again, runs its config again and reports
	// booted again, staying provisioned.
	before := map[string]int{}
	for _, v := range firstRun {
		before[v.mac] = len(l.events(t, v.mac))
	}
	again := firstRun[0]
	res2 := l.run("run2", []vm{again}, nil, secondRunTimeout)
	t.Run("second-boot-"+again.name, func(t *testing.T) { l.checkSecondBoot(t, again, res2[again.name], before[again.mac]) })
	t.Logf("whole test: %s; logs in %s", time.Since(l.started).Round(time.Second), l.base)
}

// requireLab skips the test, naming exactly what is missing, where the lab
// cannot run.
func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates a network namespace, a bridge and tap devices")
	}
	var missing []string
	cmds := []struct{ cmd, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"radvd", "radvd"},
		{"ip", "iproute2"},
		{"ss", "iproute2"},
		{"setpriv", "util-linux"},
		{"setsid", "util-linux"},
		{"curl", "curl"},
		{"cpio", "cpio"},
		{"modprobe", "kmod"},
		{"gcc", "gcc"},
		{"go", "golang (in PATH, for build-os.sh's Ignition build)"},
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian: %s)", c.cmd, c.pkg))
		}
	}
	files := []struct{ path, pkg string }{
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"},
		{"/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"},
		{"/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu: the NIC's iPXE ROM"},
		{"/usr/include/blkid/blkid.h", "libblkid-dev: Ignition's build"},
	}
	for _, f := range files {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian: %s)", f.path, f.pkg))
		}
	}
	// bootsrv embeds assets/ipxe when `make assets` fetched it, else serves
	// the ipxe package's builds.
	if wd, err := os.Getwd(); err == nil {
		_, e1 := os.Stat(filepath.Join(wd, "..", "..", "assets", "ipxe", "ipxe.efi"))
		_, e2 := os.Stat("/usr/lib/ipxe/ipxe.efi")
		if e1 != nil && e2 != nil {
			missing = append(missing, "ipxe.efi for UEFI PXE (Debian: ipxe, or `make assets`)")
		}
	}
	if !staticELF("/bin/busybox") {
		missing = append(missing, "a static /bin/busybox (Debian: busybox-static)")
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*-amd64"); len(k) == 0 {
		missing = append(missing, "/boot/vmlinuz-*-amd64 (Debian: linux-image-amd64)")
	}
	if len(missing) > 0 {
		t.Skipf("the QEMU lab needs: %s", strings.Join(missing, "; "))
	}
}

// staticELF says whether path is an ELF executable without an interpreter.
func staticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// setup builds bootsrv and the lab OS, and loads examples/cluster into a
// fresh data dir.
func (l *lab) setup() {
	t := l.t
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	l.repo = filepath.Clean(filepath.Join(wd, "..", ".."))
	// Named like lab.sh's own run dirs, so that its "keep the last 10" prunes them.
	l.base = filepath.Join(l.repo, ".cache", "lab", "runs", time.Now().Format("20060102-150405")+fmt.Sprintf("-e2e-%d", os.Getpid()))
	l.data = filepath.Join(l.base, "data")
	if err := os.MkdirAll(filepath.Join(l.data, "assets", "lab"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The logs and state are small and stay (lab.sh prunes old runs);
		// the copies of the kernel and initrd and the imported releases
		// (~760 MB, copies of the release dir's files) do not, even after a
		// failure: ten kept runs would hold gigabytes.
		os.RemoveAll(filepath.Join(l.data, "assets"))
		if t.Failed() {
			for _, p := range l.logs {
				if !l.shown[p] {
					l.showLog(p)
				}
			}
			t.Logf("kept for inspection: %s (bootsrv data dir %s; its assets dir is removed: to serve it again, copy the kernel and initrd to assets/lab/ and run `bootsrv --data-dir %s assets import %s`)",
				l.base, l.data, l.data, releasesDir())
		}
	})

	l.bin = filepath.Join(t.TempDir(), "bootsrv")
	start := time.Now()
	l.mustRun(filepath.Join(l.base, "go-build.log"), 5*time.Minute, l.repo, "go", "build", "-o", l.bin, "./cmd/bootsrv")
	t.Logf("go build ./cmd/bootsrv: %s", time.Since(start).Round(100*time.Millisecond))

	// build-os.sh is run here rather than by lab.sh, once for both runs; the
	// first build of Ignition takes ~2 min, then it is cached in .cache/lab.
	start = time.Now()
	out := l.mustRun(filepath.Join(l.base, "build-os.log"), 8*time.Minute, l.repo, "examples/qemu-lab/build-os.sh")
	for _, line := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(line, "kernel="); ok {
			l.kernel = k
		}
		if i, ok := strings.CutPrefix(line, "initrd="); ok {
			l.initrd = i
		}
	}
	if l.kernel == "" || l.initrd == "" {
		t.Fatalf("build-os.sh printed no kernel= and initrd= lines (log %s)", filepath.Join(l.base, "build-os.log"))
	}
	t.Logf("build-os.sh: %s", time.Since(start).Round(100*time.Millisecond))
	copyFile(t, l.kernel, filepath.Join(l.data, "assets", "lab", "vmlinuz"))
	copyFile(t, l.initrd, filepath.Join(l.data, "assets", "lab", "initrd.img"))

	l.bootsrv(t, "cluster", "init", "-f", "examples/cluster/cluster.yaml")
	l.bootsrv(t, "profile", "add", "-f", "examples/cluster/profiles.yaml")
	l.bootsrv(t, "machine", "import", "-f", "examples/cluster/machines.yaml")
	l.importReleases()
	for _, v := range firstRun {
		m := l.machine(t, v.mac)
		if m.Hostname != v.name || m.IP == "" || m.State != "registered" {
			t.Fatalf("after loading examples/cluster, %s is %+v: want hostname %s, a reserved ip, state registered", v.mac, m, v.name)
		}
	}
}

// releasesDir is where examples/releases/build.sh keeps the real releases.
func releasesDir() string {
	if d := os.Getenv("BOOTSRV_TEST_CACHE"); d != "" {
		return filepath.Join(d, "releases")
	}
	return "/var/cache/bootsrv-test/releases"
}

// importReleases builds (or finds cached) the real releases and imports
// them into the data dir: without them a master's or worker's Ignition
// does not render. `bootsrv serve` is given no --assets-dir, so the import
// lays them out where it serves /assets/ from, DATA-DIR/assets.
func (l *lab) importReleases() {
	t := l.t
	dir := releasesDir()
	start := time.Now()
	l.mustRun(filepath.Join(l.base, "releases-build.log"), releasesBuildTime, l.repo, "examples/releases/build.sh", dir)
	t.Logf("examples/releases/build.sh %s: %s (log %s)", dir, time.Since(start).Round(100*time.Millisecond), filepath.Join(l.base, "releases-build.log"))
	start = time.Now()
	l.bootsrv(t, "assets", "import", dir)
	var list []asset
	if err := json.Unmarshal([]byte(l.bootsrv(t, "assets", "list", "-o", "json")), &list); err != nil {
		t.Fatalf("bootsrv assets list -o json: %v", err)
	}
	if len(list) == 0 {
		t.Fatalf("bootsrv assets import %s imported nothing", dir)
	}
	l.assets = map[string]asset{}
	var total int64
	var names []string
	for _, a := range list {
		l.assets["/assets/"+a.Path] = a
		total += a.Size
		names = append(names, a.Name)
	}
	t.Logf("bootsrv assets import %s: %d binaries, %.0f MB, in %s: %s", dir, len(list), float64(total)/1e6,
		time.Since(start).Round(100*time.Millisecond), strings.Join(names, " "))
}

// run runs lab.sh against `bootsrv serve` on the data dir, booting vms, and
// returns LAB_RESULTS_FILE by VM name. lab.sh's output goes to a file,
// shown (with the path) only on failure.
func (l *lab) run(label string, vms []vm, extraEnv []string, timeout time.Duration) map[string]result {
	t := l.t
	runDir := filepath.Join(l.base, label)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(runDir, "lab.out")
	l.logs = append(l.logs, logPath)
	var names, macs, fws, mems []string
	for _, v := range vms {
		names, macs, fws = append(names, v.name), append(macs, v.mac), append(fws, v.fw)
		mems = append(mems, strconv.Itoa(v.memMiB))
	}
	env := append(labEnv(),
		"LAB_NO_BUILD=1", "LAB_NO_LIVE=1",
		"LAB_KERNEL="+l.kernel, "LAB_INITRD="+l.initrd,
		"LAB_RUN_DIR="+runDir,
		fmt.Sprintf("LAB_N=%d", len(vms)),
		"LAB_NAMES="+strings.Join(names, " "),
		"LAB_MACS="+strings.Join(macs, " "),
		"FW="+strings.Join(fws, " "),
		"LAB_MEM="+strings.Join(mems, " "),
		fmt.Sprintf("LAB_BOOT_TIMEOUT=%d", int(bootTimeout.Seconds())),
		"LAB_SERVER_CMD=exec "+l.bin+" serve --data-dir "+l.data+
			" --interface \"$LAB_BRIDGE\" --listen \"$LAB_SERVER_IP\" --http-addr \"$LAB_SERVER_IP:8080\" --tftp-addr \"$LAB_SERVER_IP:69\"",
		"LAB_READY_CMD=curl -fsS -o /dev/null "+baseURL+"/healthz",
		"LAB_STATUS_CMD="+l.bin+" --data-dir "+l.data+" machine list",
	)
	env = append(env, extraEnv...)

	// Leave lab.sh time to tear down before the test binary's own deadline.
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - labTeardownDeadline - 15*time.Second; left < timeout {
			timeout = left
		}
	}
	if timeout <= 0 {
		t.Fatalf("%s: no time left before the test's deadline (-timeout)", label)
	}
	start := time.Now()
	err := runLab(filepath.Join(l.repo, "examples", "qemu-lab", "lab.sh"), l.repo, env, logPath, timeout)
	took := time.Since(start).Round(100 * time.Millisecond)
	res, rerr := readResults(filepath.Join(runDir, "results"))
	if err != nil || rerr != nil {
		l.showLog(logPath)
		t.Fatalf("%s: lab.sh failed after %s: %v (results: %v); lab output %s, serial logs and server.log in %s",
			label, took, err, rerr, logPath, runDir)
	}
	t.Logf("%s: lab.sh booted %s in %s (logs %s)", label, strings.Join(names, ", "), took, runDir)
	for _, v := range vms {
		r, ok := res[v.name]
		if !ok {
			l.showLog(logPath)
			t.Fatalf("%s: no result for %s in %s/results (lab output %s)", label, v.name, runDir, logPath)
		}
		t.Logf("  %-8s %-9s %5d MiB %-8s %6ss  ip %s  %s", r.name, r.fw, v.memMiB, r.result, r.seconds, r.ip,
			ignitionTimes(filepath.Join(runDir, v.name+".serial.log")))
	}
	return res
}

// ignitionTimes is what the lab OS said about its Ignition stages on the
// serial console ("ignition -stage files: rc 0 after 93.1s, ..."), for the log.
func ignitionTimes(serialLog string) string {
	b, err := os.ReadFile(serialLog)
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		if _, rest, ok := strings.Cut(line, "BOOTSRV-LAB: ignition -stage "); ok && strings.Contains(rest, ": rc ") {
			out = append(out, rest)
		}
		if _, rest, ok := strings.Cut(line, "BOOTSRV-LAB: ignition done "); ok {
			out = append(out, strings.Trim(rest, "()"))
		}
	}
	return strings.Join(out, "; ")
}

// labEnv is the test's environment without LAB_* and FW settings of the
// caller's shell, except the ones about this host (accelerator, cache).
func labEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "LAB_") || k == "FW") && k != "LAB_ACCEL" && k != "LAB_CACHE" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// runLab runs lab.sh and waits for it. On timeout it sends lab.sh SIGTERM
// (it tears down its namespace, QEMUs, server and radvd) and waits for it;
// only if it is still there after labTeardownDeadline is it killed (its
// QEMUs and server carry a parent-death signal). If the test binary itself
// dies (go test's -timeout), lab.sh gets SIGTERM by parent-death signal.
func runLab(script, dir string, env []string, logPath string, timeout time.Duration) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("bash", script)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// The parent-death signal fires when the thread that forked exits:
	// keep this goroutine on its thread until lab.sh is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
	}
	fmt.Fprintf(f, "\n[lab_test] timeout after %s: SIGTERM to lab.sh (pid %d)\n", timeout, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return fmt.Errorf("timed out after %s; lab.sh stopped on SIGTERM (%v)", timeout, err)
	case <-time.After(labTeardownDeadline):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("timed out after %s; lab.sh did not stop within %s of SIGTERM and was killed", timeout, labTeardownDeadline)
}

func readResults(path string) (map[string]result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	res := map[string]result{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 7 {
			continue
		}
		res[f[0]] = result{f[0], f[1], f[2], f[3], f[4], f[5], f[6]}
	}
	return res, nil
}

func (l *lab) showLog(path string) {
	if l.shown == nil {
		l.shown = map[string]bool{}
	}
	l.shown[path] = true
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Logf("no lab output at %s: %v", path, err)
		return
	}
	l.t.Logf("lab.sh output (%s):\n%s", path, b)
}

// checkFirstBoot asserts issue 7's acceptance for one machine of run 1.
func (l *lab) checkFirstBoot(t *testing.T, v vm, r result) {
	m := l.machine(t, v.mac)
	evs := l.events(t, v.mac)
	defer func() {
		if t.Failed() {
			t.Logf("%s events:\n%s", v.name, formatEvents(evs))
		}
	}()
	if r.result != "booted" {
		t.Errorf("lab result %q, want booted", r.result)
	}
	if m.State != "provisioned" {
		t.Errorf("state %q, want provisioned", m.State)
	}

	// 1. The address it got is its reservation: what the VM's own DHCP
	// client printed (results' ip column) and what bootsrv recorded.
	if r.ip != m.IP {
		t.Errorf("the VM got ip %s (LAB_RESULTS_FILE), its reservation is %s", r.ip, m.IP)
	}
	dhcp := 0
	for _, e := range evs {
		if e.Type == "dhcp" {
			dhcp++
			if e.Fields["ip"] != m.IP {
				t.Errorf("dhcp event at %s leased ip %q, want the reservation %s (fields %v)", e.Time.Format(time.StampMilli), e.Fields["ip"], m.IP, e.Fields)
			}
		}
	}
	if dhcp == 0 {
		t.Errorf("no dhcp event")
	}

	// 2. The chain, in order of first occurrence.
	want := expectedChain[v.fw]
	if err := checkChain(evs, want); err != nil {
		byTime := slices.Clone(evs)
		slices.SortStableFunc(byTime, func(a, b event) int { return a.Time.Compare(b.Time) })
		if checkChain(byTime, want) == nil {
			err = fmt.Errorf("%w; by their timestamps they are in order: bootsrv appended events out of order", err)
		}
		t.Errorf("event history: %v", err)
	}
	if v.fw != "uefi-pxe" {
		// Only firmware PXE fetches a first stage over TFTP: an iPXE ROM
		// goes straight to the boot script.
		if i := firstIndex(evs, "pxe"); i >= 0 {
			t.Logf("note: %s (%s) has a pxe event: %s", v.name, v.fw, evs[i].Detail)
		}
	}

	// 3. What Ignition wrote in the VM is what bootsrv renders.
	report, ok := lastOf(evs, "report")
	if !ok {
		t.Fatalf("no report event")
	}
	if report.Fields["state"] != "booted" {
		t.Errorf("report state %q, want booted", report.Fields["state"])
	}
	if report.Fields["from"] != m.IP {
		t.Errorf("report came from %q, want %s", report.Fields["from"], m.IP)
	}
	got, err := parseReport(report.Detail)
	if err != nil {
		t.Fatalf("the report bootsrv kept (%d bytes) does not parse: %v", len(report.Detail), err)
	}
	l.checkFiles(t, v, m, r.ip, got, len(report.Detail))
}

// checkChain says whether the first occurrences of want appear in order.
func checkChain(evs []event, want []string) error {
	prev, prevType := -1, ""
	for _, typ := range want {
		i := firstIndex(evs, typ)
		if i < 0 {
			return fmt.Errorf("no %s event (want %s)", typ, strings.Join(want, " → "))
		}
		if i < prev {
			return fmt.Errorf("first %s (event %d) comes before first %s (event %d); want %s", typ, i, prevType, prev, strings.Join(want, " → "))
		}
		prev, prevType = i, typ
	}
	return nil
}

func firstIndex(evs []event, typ string) int {
	return slices.IndexFunc(evs, func(e event) bool { return e.Type == typ })
}

func lastOf(evs []event, typ string) (event, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i], true
		}
	}
	return event{}, false
}

// reportedFile is one line of the lab OS's report: a file under 1 MiB by
// its sha256, a larger one by its size (init.sh: Ignition already checked
// the sha512 of every binary it downloaded; hashing them again with busybox
// under TCG would take minutes and prove nothing more).
type reportedFile struct {
	sha256 string // hex, or empty
	size   int64  // when sha256 is empty
}

func (r reportedFile) String() string {
	if r.sha256 != "" {
		return "sha256 " + r.sha256
	}
	return fmt.Sprintf("size %d", r.size)
}

// parseReport reads the "<sha256>  <path>" and "size=<bytes>  <path>"
// lines the lab OS posts.
func parseReport(body string) (map[string]reportedFile, error) {
	files := map[string]reportedFile{}
	sc := bufio.NewScanner(strings.NewReader(body))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		what, path, ok := strings.Cut(line, "  ")
		if !ok || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("line %d %q is not \"<sha256>  /path\" or \"size=<bytes>  /path\" (truncated?)", n, line)
		}
		if sz, isSize := strings.CutPrefix(what, "size="); isSize {
			size, err := strconv.ParseInt(sz, 10, 64)
			if err != nil || size < 0 {
				return nil, fmt.Errorf("line %d %q: bad size %q", n, line, sz)
			}
			files[path] = reportedFile{size: size}
			continue
		}
		if _, err := hex.DecodeString(what); err != nil || len(what) != 64 {
			return nil, fmt.Errorf("line %d %q is not \"<sha256>  /path\" or \"size=<bytes>  /path\" (truncated?)", n, line)
		}
		files[path] = reportedFile{sha256: what}
	}
	if !strings.HasSuffix(body, "\n") {
		return nil, fmt.Errorf("the last line %q has no newline: bootsrv kept a truncated report", lastLine(body))
	}
	if len(files) == 0 {
		return nil, errors.New("no files")
	}
	return files, nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// ignitionConfig is the part of an Ignition spec 3 config the lab applies.
type ignitionConfig struct {
	Ignition struct {
		Version string `json:"version"`
	} `json:"ignition"`
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Contents struct {
				Source       *string `json:"source"`
				Verification struct {
					Hash *string `json:"hash"`
				} `json:"verification"`
			} `json:"contents"`
			Append []json.RawMessage `json:"append"`
		} `json:"files"`
	} `json:"storage"`
	Systemd struct {
		Units []struct {
			Name     string  `json:"name"`
			Enabled  *bool   `json:"enabled"`
			Contents *string `json:"contents"`
			Dropins  []struct {
				Name     string  `json:"name"`
				Contents *string `json:"contents"`
			} `json:"dropins"`
		} `json:"units"`
	} `json:"systemd"`
	Passwd struct {
		Users []struct {
			Name              string   `json:"name"`
			HomeDir           *string  `json:"homeDir"`
			SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
		} `json:"users"`
		Groups []json.RawMessage `json:"groups"`
	} `json:"passwd"`
}

// expectation is what Ignition v2.24.0's files stage writes for a config.
type expectation struct {
	files map[string][]byte // path → contents, for the config's inline (data URL) files
	// path → the file Ignition downloads (contents.source http(s)): the
	// node's binaries, from bootsrv's /assets/
	remote map[string]remoteFile
	// paths it may write too, whose contents this test does not compute
	// (the passwd databases the lab's shim edits)
	others map[string]bool
}

// remoteFile is a storage.files entry Ignition fetches over HTTP.
type remoteFile struct {
	source string // contents.source
	hash   string // contents.verification.hash ("sha512-HEX"), or empty
}

// expectedFiles computes, from a rendered config, the regular files
// Ignition writes into the lab's root: storage.files (inline, or fetched
// over HTTP), units and dropins, the preset file for enabled units, and
// SSH keys.
func expectedFiles(cfgJSON []byte) (expectation, error) {
	x := expectation{files: map[string][]byte{}, remote: map[string]remoteFile{}, others: map[string]bool{}}
	var c ignitionConfig
	if err := json.Unmarshal(cfgJSON, &c); err != nil {
		return x, fmt.Errorf("not JSON: %w", err)
	}
	if !strings.HasPrefix(c.Ignition.Version, "3.") {
		return x, fmt.Errorf("ignition.version %q, want 3.x", c.Ignition.Version)
	}
	for _, f := range c.Storage.Files {
		if len(f.Append) > 0 {
			return x, fmt.Errorf("%s: append is not handled by this test", f.Path)
		}
		if f.Contents.Source == nil {
			x.files[f.Path] = nil // an empty file
			continue
		}
		src := *f.Contents.Source
		if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
			var h string
			if f.Contents.Verification.Hash != nil {
				h = *f.Contents.Verification.Hash
			}
			x.remote[f.Path] = remoteFile{source: src, hash: h}
			continue
		}
		du, err := dataurl.DecodeString(src)
		if err != nil {
			return x, fmt.Errorf("%s: contents.source is neither a data URL nor http(s) (%.60q): %w", f.Path, src, err)
		}
		x.files[f.Path] = du.Data
	}
	var preset []string
	for _, u := range c.Systemd.Units {
		if u.Contents != nil {
			x.files["/etc/systemd/system/"+u.Name] = []byte(*u.Contents)
		}
		for _, d := range u.Dropins {
			if d.Contents != nil {
				x.files["/etc/systemd/system/"+u.Name+".d/"+d.Name] = []byte(*d.Contents)
			}
		}
		if u.Enabled != nil {
			if strings.Contains(u.Name, "@") {
				return x, fmt.Errorf("unit %s: presets of instantiated units are not computed by this test", u.Name)
			}
			// A disabled unit gets a line only if systemctl says it is
			// enabled: the lab's OS has no systemctl, so never.
			if *u.Enabled {
				preset = append(preset, "enable "+u.Name+"\n")
			}
		}
	}
	if len(preset) > 0 {
		// One line per enabled unit, sorted by name
		// (internal/exec/stages/files/units.go, createSystemdPresetFile).
		sort.Strings(preset)
		x.files[ignitionPresetPath] = []byte(strings.Join(preset, ""))
	}
	if len(c.Passwd.Users)+len(c.Passwd.Groups) > 0 {
		for _, p := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
			x.others[p] = true
		}
	}
	for _, u := range c.Passwd.Users {
		if len(u.SSHAuthorizedKeys) == 0 {
			continue
		}
		home := "/home/" + u.Name // the shim's default, as useradd's
		if u.Name == "root" {
			home = "/root"
		}
		if u.HomeDir != nil && *u.HomeDir != "" {
			home = *u.HomeDir
		}
		// internal/exec/util/passwd.go, AuthorizeSSHKeys.
		ks := strings.Join(u.SSHAuthorizedKeys, "\n")
		if !strings.HasSuffix(ks, "\n") {
			ks += "\n"
		}
		x.files[home+"/.ssh/authorized_keys.d/ignition"] = []byte(ks)
	}
	return x, nil
}

// rendered is what `bootsrv render ignition` says the machine gets.
func (l *lab) rendered(t *testing.T, mac string) expectation {
	t.Helper()
	x, err := expectedFiles([]byte(l.bootsrv(t, "render", "ignition", mac, "--base-url", baseURL)))
	if err != nil {
		t.Fatalf("bootsrv render ignition %s: %v", mac, err)
	}
	return x
}

// checkFiles: every file in the rendered config was written in the VM with
// the same contents, nothing else was, and the node-specific ones are right.
// Inline files are compared by sha256; each binary Ignition downloaded must
// be an imported release (by its URL path /assets/<Path>), carry that
// release's sha512 as its verification hash (Ignition refuses a download
// that does not match it), and have its size in the VM.
func (l *lab) checkFiles(t *testing.T, v vm, m machine, vmIP string, reported map[string]reportedFile, reportBytes int) {
	x := l.rendered(t, v.mac)
	want := x.files
	matched := 0
	for _, p := range sortedKeys(want) {
		if p == reportEnvPath {
			if _, ok := reported[p]; !ok {
				t.Errorf("%s is not in the VM's report", p)
			}
			continue // a fresh report token in every render
		}
		sum := sha256.Sum256(want[p])
		switch g, ok := reported[p]; {
		case !ok:
			t.Errorf("%s: in the rendered config, not in the VM's report", p)
		case g.sha256 == "" && g.size != int64(len(want[p])):
			t.Errorf("%s: the VM wrote %s, bootsrv render ignition has %d bytes", p, g, len(want[p]))
		case g.sha256 != "" && g.sha256 != hex.EncodeToString(sum[:]):
			t.Errorf("%s: the VM wrote %s, bootsrv render ignition has sha256 %x", p, g, sum)
		default:
			matched++
		}
	}
	fetched, fetchedBytes := 0, int64(0)
	for _, p := range sortedKeys(x.remote) {
		rf := x.remote[p]
		u, err := url.Parse(rf.source)
		if err != nil || u.Scheme+"://"+u.Host != baseURL || !strings.HasPrefix(u.Path, "/assets/") {
			t.Errorf("%s: fetched from %q, want %s/assets/...", p, rf.source, baseURL)
			continue
		}
		a, ok := l.assets[u.Path]
		if !ok {
			t.Errorf("%s: fetched from %s, which is not an imported release (bootsrv assets list)", p, rf.source)
			continue
		}
		if w := "sha512-" + a.SHA512; rf.hash != w {
			t.Errorf("%s: verification.hash %q, want %q (the imported %s)", p, rf.hash, w, a.Path)
		}
		switch g, ok := reported[p]; {
		case !ok:
			t.Errorf("%s: fetched from %s in the rendered config, not in the VM's report", p, u.Path)
		case g.sha256 == "" && g.size != a.Size:
			t.Errorf("%s: the VM wrote %s, the imported %s has %d bytes", p, g, a.Path, a.Size)
		case g.sha256 != "" && g.sha256 != a.SHA256:
			t.Errorf("%s: the VM wrote %s, the imported %s has sha256 %s", p, g, a.Path, a.SHA256)
		default:
			fetched++
			fetchedBytes += a.Size
		}
	}
	if len(x.remote) == 0 {
		t.Errorf("the rendered config fetches no binaries from %s/assets/: a %s must run its Kubernetes binaries", baseURL, m.Profile)
	}
	var extra []string
	for p := range reported {
		_, inline := want[p]
		_, remote := x.remote[p]
		if !inline && !remote && p != ignitionResultPath && !x.others[p] {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		t.Errorf("%s: written in the VM but not in the rendered config", p)
	}
	t.Logf("%s: %d of %d inline files match the VM's report by sha256 (%s differs per render); "+
		"%d of %d binaries (%.0f MB) fetched from /assets/ are imported releases with their sha512 and size (report: %d files, %d bytes)",
		v.name, matched, len(want), reportEnvPath, fetched, len(x.remote), float64(fetchedBytes)/1e6, len(reported), reportBytes)

	// FLANNELD_IFACE is the VM's own address.
	opts, ok := want[flannelOptionsPath]
	if !ok {
		t.Errorf("no %s in the rendered config", flannelOptionsPath)
	} else if !slices.Contains(strings.Split(string(opts), "\n"), "FLANNELD_IFACE="+vmIP) {
		t.Errorf("%s has no line FLANNELD_IFACE=%s:\n%s", flannelOptionsPath, vmIP, opts)
	}

	// The kubelet's certificate names the node, in the group the Node
	// authorizer wants, signed by the cluster CA the VM got.
	cert := parseCert(t, want, kubeletCertPath)
	ca := parseCert(t, want, clusterCACertPath)
	if cert == nil || ca == nil {
		return
	}
	if cn := "system:node:" + m.Hostname; cert.Subject.CommonName != cn {
		t.Errorf("%s: CN %q, want %q", kubeletCertPath, cert.Subject.CommonName, cn)
	}
	if !slices.Contains(cert.Subject.Organization, "system:nodes") {
		t.Errorf("%s: O %q, want system:nodes", kubeletCertPath, cert.Subject.Organization)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		t.Errorf("%s is not signed by %s: %v", kubeletCertPath, clusterCACertPath, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func parseCert(t *testing.T, files map[string][]byte, path string) *x509.Certificate {
	t.Helper()
	b, ok := files[path]
	if !ok {
		t.Errorf("no %s in the rendered config", path)
		return nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Errorf("%s: no PEM CERTIFICATE block", path)
		return nil
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	return c
}

// checkSecondBoot: the provisioned machine boots its config again. Its
// profile is live (install: live, the default; the lab's VMs have no disk):
// bootsrv sends only a machine that installs to disk to local disk once
// provisioned (the old lab test expected a localboot event and the
// local-boot script here). A live one gets its boot script again (an ipxe
// event, no localboot), fetches its kernel, Ignition config and binaries
// again, reports booted again with the same files, and is still
// provisioned.
func (l *lab) checkSecondBoot(t *testing.T, v vm, r result, before int) {
	m := l.machine(t, v.mac)
	evs := l.events(t, v.mac)
	defer func() {
		if t.Failed() {
			t.Logf("%s events:\n%s", v.name, formatEvents(evs))
		}
	}()
	if r.result != "booted" {
		t.Errorf("lab result %q, want booted (a live machine runs its config again)", r.result)
	}
	if m.State != "provisioned" {
		t.Errorf("state %q after the second boot, want still provisioned", m.State)
	}
	if before > len(evs) {
		// The history is capped (model.MaxEvents): not in this test.
		t.Fatalf("history shrank from %d to %d events", before, len(evs))
	}
	again := evs[before:]
	var types []string
	for _, e := range again {
		types = append(types, e.Type)
	}
	// The same chain as the first boot, but bootsrv's DHCP server records
	// its ACK to a provisioned machine as dhcp-ack (no state change), and
	// the report comes before provisioned.
	chain := append([]string{"dhcp-ack"}, expectedChain[v.fw][1:]...)
	chain = slices.Insert(chain, len(chain)-1, "report")
	if err := checkChain(again, chain); err != nil {
		t.Errorf("second boot's events %v: %v", types, err)
	}
	for _, bad := range []string{"localboot", "failed", "denied", "error"} {
		if slices.Contains(types, bad) {
			t.Errorf("the second boot has a %s event: events %v", bad, types)
		}
	}
	report, ok := lastOf(again, "report")
	if !ok {
		t.Fatalf("no report event in the second boot: events %v", types)
	}
	if report.Fields["state"] != "booted" {
		t.Errorf("second report state %q, want booted", report.Fields["state"])
	}
	got, err := parseReport(report.Detail)
	if err != nil {
		t.Fatalf("the second report (%d bytes) does not parse: %v", len(report.Detail), err)
	}
	l.checkFiles(t, v, m, r.ip, got, len(report.Detail))
	t.Logf("%s second boot (%s): events %s", v.name, v.fw, strings.Join(types, " "))
}

func formatEvents(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		d := e.Detail
		if i := strings.IndexByte(d, '\n'); i >= 0 {
			d = d[:i] + fmt.Sprintf(" …(%d bytes)", len(e.Detail))
		}
		var kv []string
		for k, v := range e.Fields {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		fmt.Fprintf(&b, "  %s %-12s %s %s\n", e.Time.Format("15:04:05.000"), e.Type, d, strings.Join(kv, " "))
	}
	return b.String()
}

func (l *lab) machine(t *testing.T, mac string) machine {
	t.Helper()
	var m machine
	if err := json.Unmarshal([]byte(l.bootsrv(t, "machine", "show", mac, "-o", "json")), &m); err != nil {
		t.Fatalf("bootsrv machine show %s -o json: %v", mac, err)
	}
	return m
}

func (l *lab) events(t *testing.T, mac string) []event {
	t.Helper()
	var evs []event
	if err := json.Unmarshal([]byte(l.bootsrv(t, "machine", "events", mac, "-o", "json")), &evs); err != nil {
		t.Fatalf("bootsrv machine events %s -o json: %v", mac, err)
	}
	return evs
}

// bootsrv runs the CLI on the data dir (the server is not running: it
// opens the state file itself) and returns its stdout.
func (l *lab) bootsrv(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, append([]string{"--data-dir", l.data}, args...)...)
	cmd.Dir = l.repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bootsrv %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// mustRun runs a build step with its output in logPath, and returns its stdout.
func (l *lab) mustRun(logPath string, timeout time.Duration, dir string, name string, args ...string) string {
	t := l.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	_ = os.WriteFile(logPath, append(stderr.Bytes(), stdout.Bytes()...), 0o644)
	if err != nil {
		t.Fatalf("%s %s: %v (log %s):\n%s%s", name, strings.Join(args, " "), err, logPath, stderr.String(), stdout.String())
	}
	return stdout.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The checks above, on made-up histories and reports: they must be able to
// fail. These run under -short too.
func TestCheckChain(t *testing.T) {
	ev := func(types ...string) []event {
		var evs []event
		for _, typ := range types {
			evs = append(evs, event{Type: typ})
		}
		return evs
	}
	want := expectedChain["uefi-pxe"]
	tests := []struct {
		name string
		evs  []event
		ok   bool
	}{
		{"exact", ev("dhcp", "pxe", "ipxe", "kernel", "ignition", "provisioned"), true},
		{"others between, repeats", ev("registered", "dhcp", "pxe", "dhcp", "ipxe", "kernel", "initrd", "dhcp", "ignition", "report", "provisioned", "localboot"), true},
		{"missing pxe", ev("dhcp", "ipxe", "kernel", "ignition", "provisioned"), false},
		{"ipxe before dhcp", ev("ipxe", "dhcp", "pxe", "kernel", "ignition", "provisioned"), false},
		{"provisioned before ignition", ev("dhcp", "pxe", "ipxe", "kernel", "provisioned", "ignition"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if err := checkChain(tt.evs, want); (err == nil) != tt.ok {
			t.Errorf("%s: checkChain = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestParseReport(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name, body string
		files      int
	}{
		{"two files", sum + "  /etc/a\n" + sum + "  /etc/b c\n", 2},
		{"sums and sizes", sum + "  /etc/a\n" + sum + "  /etc/b c\nsize=91975842  /opt/bin/kubelet\n", 3},
		{"truncated line", sum + "  /etc/a\n" + sum[:20], -1},
		{"truncated path", sum + "  /etc/a\n" + sum + "  /etc/fla", -1},
		{"truncated size line", sum + "  /etc/b c\nsize=919", -1},
		{"not a sum", "zz  /etc/a\n", -1},
		{"bad size", sum + "  /etc/b c\nsize=12k  /opt/bin/kubelet\n", -1},
		{"negative size", sum + "  /etc/b c\nsize=-1  /opt/bin/kubelet\n", -1},
		{"empty", "", -1},
	}
	for _, tt := range tests {
		got, err := parseReport(tt.body)
		if tt.files < 0 {
			if err == nil {
				t.Errorf("%s: parseReport = %v, want an error", tt.name, got)
			}
			continue
		}
		if err != nil || len(got) != tt.files || got["/etc/b c"].sha256 != sum {
			t.Errorf("%s: parseReport = %v, %v; want %d files", tt.name, got, err, tt.files)
		}
		if k, ok := got["/opt/bin/kubelet"]; tt.files == 3 && (!ok || k.sha256 != "" || k.size != 91975842) {
			t.Errorf("%s: /opt/bin/kubelet = %+v, %v; want size 91975842", tt.name, k, ok)
		}
	}
}

func TestExpectedFiles(t *testing.T) {
	cfg := `{"ignition":{"version":"3.4.0"},
	  "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA a@b","ssh-rsa BBBB c@d"]}]},
	  "storage":{"files":[
	    {"path":"/etc/a","contents":{"source":"data:,x%3Dy%0A"}},
	    {"path":"/etc/b","contents":{"source":"data:;base64,aGVsbG8K"}},
	    {"path":"/etc/empty"},
	    {"path":"/opt/bin/kubelet","mode":493,"contents":{"source":"http://10.99.0.1:8080/assets/kubernetes/v1.37.2/amd64/kubelet","verification":{"hash":"sha512-00ff"}}}]},
	  "systemd":{"units":[
	    {"name":"kubelet.service","enabled":true,"contents":"[Unit]\n"},
	    {"name":"bootsrv-report.service","enabled":true,"contents":"[Service]\n","dropins":[{"name":"10-x.conf","contents":"[Service]\nX=1\n"}]},
	    {"name":"etcd.service","enabled":true},
	    {"name":"off.service","enabled":false}]}}`
	x, err := expectedFiles([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/etc/a":                              "x=y\n",
		"/etc/b":                              "hello\n",
		"/etc/empty":                          "",
		"/etc/systemd/system/kubelet.service": "[Unit]\n",
		"/etc/systemd/system/bootsrv-report.service":             "[Service]\n",
		"/etc/systemd/system/bootsrv-report.service.d/10-x.conf": "[Service]\nX=1\n",
		ignitionPresetPath:                           "enable bootsrv-report.service\nenable etcd.service\nenable kubelet.service\n",
		"/home/core/.ssh/authorized_keys.d/ignition": "ssh-ed25519 AAAA a@b\nssh-rsa BBBB c@d\n",
	}
	if len(x.files) != len(want) {
		t.Errorf("%d files, want %d: %q", len(x.files), len(want), x.files)
	}
	for p, w := range want {
		if g, ok := x.files[p]; !ok || string(g) != w {
			t.Errorf("%s = %q (present %v), want %q", p, g, ok, w)
		}
	}
	// What Ignition v2.24.0 really wrote in a lab VM for master1's three
	// enabled units (its report, 22 Nov 2026).
	if sum := sha256.Sum256(x.files[ignitionPresetPath]); hex.EncodeToString(sum[:]) != "00cb6bf7f9eb1851d5657d65bb38c228261483e7bbb596cd8af41a0ca034e437" {
		t.Errorf("preset file sha256 %x differs from the one Ignition wrote in the lab", sum)
	}
	if r := x.remote["/opt/bin/kubelet"]; len(x.remote) != 1 || r.source != "http://10.99.0.1:8080/assets/kubernetes/v1.37.2/amd64/kubelet" || r.hash != "sha512-00ff" {
		t.Errorf("remote files %+v, want only /opt/bin/kubelet with its source and hash", x.remote)
	}
	if !x.others["/etc/passwd"] || !x.others["/etc/gshadow"] {
		t.Errorf("with passwd users, the passwd databases must be allowed: %v", x.others)
	}
	for _, bad := range []string{`{"ignition":{"version":"2.2.0"}}`, `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/x","contents":{"source":"s3://bucket/x"}}]}}`, `nope`} {
		if _, err := expectedFiles([]byte(bad)); err == nil {
			t.Errorf("expectedFiles(%s): no error", bad)
		}
	}
}
