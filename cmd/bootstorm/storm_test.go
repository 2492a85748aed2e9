package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// The script bootsrv serves a machine (bootsrv render ipxe), three tries.
const testScript = `#!ipxe
echo bootsrv: booting node-00005 (02:b5:00:00:00:05) with profile worker
:attempt1
kernel http://10.80.0.1:8080/assets/storm/vmlinuz flatcar.first_boot=1 ignition.config.url=http://10.80.0.1:8080/ignition?mac=02:b5:00:00:00:05&token=AAAA-_x initrd=initrd.img || goto attempt2
initrd --name initrd.img http://10.80.0.1:8080/assets/storm/initrd.img || goto attempt2
boot || goto attempt2
:attempt2
kernel http://10.80.0.1:8080/assets/storm/vmlinuz flatcar.first_boot=1 ignition.config.url=http://10.80.0.1:8080/ignition?mac=02:b5:00:00:00:05&token=AAAA-_x initrd=initrd.img || goto attempt3
initrd --name initrd.img http://10.80.0.1:8080/assets/storm/initrd.img || goto attempt3
boot || goto attempt3
`

func TestParseScript(t *testing.T) {
	b, err := parseScript(testScript)
	if err != nil {
		t.Fatal(err)
	}
	if b.kernel != "http://10.80.0.1:8080/assets/storm/vmlinuz" ||
		b.ignition != "http://10.80.0.1:8080/ignition?mac=02:b5:00:00:00:05&token=AAAA-_x" ||
		len(b.initrds) != 1 || b.initrds[0] != "http://10.80.0.1:8080/assets/storm/initrd.img" {
		t.Errorf("parsed %+v", b)
	}
	if _, err := parseScript("#!ipxe\necho bootsrv: machine unknown\nsleep 30\nreboot\n"); err == nil || !strings.Contains(err.Error(), "machine unknown") {
		t.Errorf("a script without a kernel: %v, want an error quoting it", err)
	}
	if _, err := parseScript("#!ipxe\nkernel http://x/vmlinuz quiet\nboot\n"); err == nil {
		t.Error("a kernel without ignition.config.url parsed")
	}
}

func TestExpandIPXE(t *testing.T) {
	mac, _ := net.ParseMAC("02:b5:00:00:00:05")
	got := expandIPXE("http://s/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&arch=${buildarch}", mac)
	if got != "http://s/ipxe?mac=02-b5-00-00-00-05&uuid=&arch=x86_64" {
		t.Errorf("expanded to %s", got)
	}
}

func TestReportURL(t *testing.T) {
	ign := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/bootsrv/report.env","contents":{"source":"data:,BOOTSRV_REPORT_URL=%22http%3A%2F%2F10.80.0.1%3A8080%2Freport%3Fmac%3D02%3Ab5%26token%3DXY%22%0A"}}]}}`
	u, err := reportURL([]byte(ign))
	if err != nil || u != "http://10.80.0.1:8080/report?mac=02:b5&token=XY" {
		t.Errorf("reportURL = %q, %v", u, err)
	}
	if _, err := reportURL([]byte(`{"ignition":{"version":"3.4.0"}}`)); err == nil {
		t.Error("a config without report.env gave a URL")
	}
}

func TestErrKindAndRetry(t *testing.T) {
	for err, want := range map[error]string{
		errors.New("dhcp-timeout: no ACK"):        "dhcp-timeout",
		httpStatusError{503, "store unavailable"}: "http-503",
		errNAK: "dhcp-nak",
		errors.New("tftp-error: server busy, try later"): "tftp-error",
	} {
		if got := errKind(err); got != want {
			t.Errorf("errKind(%v) = %s, want %s", err, got, want)
		}
	}
	if retryable(httpStatusError{403, "forbidden"}) || !retryable(httpStatusError{503, ""}) || !retryable(errors.New("http-conn: refused")) {
		t.Error("a 403 is final; a 503 and a refused connection are retried")
	}
}

func TestPercentiles(t *testing.T) {
	var xs []float64
	for i := 1; i <= 100; i++ {
		xs = append(xs, float64(i))
	}
	if p := pct(xs); p.P50 != 50 || p.P99 != 99 || p.Max != 100 {
		t.Errorf("pct(1..100) = %+v", p)
	}
	if p := pct([]float64{7}); p.P50 != 7 || p.P99 != 7 {
		t.Errorf("pct([7]) = %+v", p)
	}
	if p := pct(nil); p != (percentiles{}) {
		t.Errorf("pct(nil) = %+v", p)
	}
}

func TestHistoryProblem(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	var evs []model.Event
	for i, typ := range []string{"registered", "dhcp", "pxe", "dhcp", "ipxe", "kernel", "initrd", "ignition", "report", "provisioned"} {
		evs = append(evs, model.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Type: typ})
	}
	if p := historyProblem(evs, historySteps); p != "" {
		t.Errorf("a complete history: %s", p)
	}
	if p := historyProblem(append(evs[:5:5], evs[7:]...), historySteps); !strings.Contains(p, "no kernel after") {
		t.Errorf("a history without kernel: %q", p)
	}
	swapped := append([]model.Event(nil), evs...)
	swapped[3].Time = t0.Add(-time.Second)
	if p := historyProblem(swapped, durableSteps); !strings.Contains(p, "is before") {
		t.Errorf("events out of time order: %q", p)
	}
}

func TestMachineAddresses(t *testing.T) {
	seen := map[string]int{}
	for i := range maxMachines {
		ip := machineIP(i)
		if j, ok := seen[ip]; ok {
			t.Fatalf("machines %d and %d share %s", j, i, ip)
		}
		seen[ip] = i
		if !strings.HasPrefix(ip, netPrefix) {
			t.Fatalf("machine %d at %s", i, ip)
		}
	}
	if machineIP(0) != "10.80.64.1" || machineIP(maxMachines-1) != "10.80.126.128" {
		t.Errorf("first %s, last %s", machineIP(0), machineIP(maxMachines-1))
	}
}

// TestStormWithKills is `make test-faults` small: 80 machines through the
// whole journey against bin/bootsrv serve, SIGKILLed five times and SIGTERMed once mid-storm, then the
// state checked (every machine provisioned, each ACKed lease on disk, no
// address twice, histories in order) and a SIGTERM drain within 10 s.
func TestStormWithKills(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the storm builds namespaces and runs bootsrv serve")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the storm builds network namespaces (make test runs as root in CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (apt-get install iproute2)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bootsrv")
	if out, err := exec.Command("go", "build", "-o", bin, "../bootsrv").CombinedOutput(); err != nil {
		t.Fatalf("go build bootsrv: %v\n%s", err, out)
	}
	self := filepath.Join(dir, "bootstorm")
	if out, err := exec.Command("go", "build", "-o", self, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build bootstorm: %v\n%s", err, out)
	}
	// The client runs in the client namespace as this package's binary.
	// Small assets only (-big-every 0): it runs beside the other packages.
	cmd := exec.Command(self, "-n", "80", "-big-every", "0", "-kills", "5", "-terms", "1", "-ramp", "12s", "-bin", bin, "-o", "json")
	var log strings.Builder
	cmd.Stderr = &log
	out, err := cmd.Output()
	t.Logf("bootstorm's progress:\n%s", log.String())
	t.Logf("report: %s", out)
	if err != nil {
		t.Fatalf("bootstorm -n 80 -kills 5 -terms 1: %v", err)
	}
	if !strings.Contains(string(out), `"failures":null`) && !strings.Contains(string(out), `"failures":[]`) {
		t.Errorf("the storm's report lists failures")
	}
	if !strings.Contains(string(out), `"provisioned":80`) {
		t.Errorf("not every machine was provisioned")
	}
}
