package dhcp

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// The integration tests run bootsrv's DHCP server in a network namespace
// of their own (this test binary, re-executed as a helper) and real clients
// (dhclient, busybox udhcpc, perfdhcp) in another, joined by a veth pair
// the test creates and removes. Nothing leaves the two namespaces.

const helperEnv = "BOOTSRV_DHCP_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "client":
		os.Exit(runProxyClient())
	default:
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

// runHelper is the server process: it serves DHCP on $IFACE from the
// state in $DATA until SIGTERM.
func runHelper() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if os.Getenv("BOOTSRV_DHCP_QUIET") != "" {
		// Benchmarks: keep the start-up line, drop the per-exchange ones.
		log = slog.New(quietHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if p := os.Getenv("BOOTSRV_DHCP_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	st, err := helperState(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	defer st.Close()
	leases, err := lease.Open(st, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	svc := core.NewService(st, leases)
	mode, _ := ParseMode(os.Getenv("MODE"))
	unknown, _ := ParseUnknown(os.Getenv("UNKNOWN"))
	set := Settings{Mode: mode, Unknown: unknown, LeaseTime: time.Hour}
	if r := os.Getenv("RANGE"); r != "" {
		pool, err := ParseRange(r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		c, err := svc.Cluster(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		sub, err := SubnetFromCluster(c, pool)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		set.Subnets = []Subnet{sub}
	}
	srv, err := New(ctx, Config{Settings: set, Interfaces: []string{os.Getenv("IFACE")}, Logger: log}, svc, leases)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	// As bootsrv serve does: events go through the batched recorder, and
	// every queued one is committed before the state file closes; with a
	// shared store, reservations answered during an outage are written
	// once it is back.
	svc.StartRecorder(log)
	if st.Shared() != nil {
		go func() {
			for ctx.Err() == nil {
				time.Sleep(500 * time.Millisecond)
				if n, err := leases.FlushDeferred(); n > 0 || err != nil {
					log.Info("leases answered during the store outage written", "count", n, "err", err)
				}
			}
		}()
	}
	err = srv.Serve(ctx)
	svc.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	return 0
}

type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "dhcp" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(a)}
}

type lab struct {
	t          *testing.T
	srvNS      string
	cliNS      string
	srvIf      string
	cliIf      string
	dir        string // scratch
	data       string // server data dir
	serverPID  int
	serverWait chan error
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab creates the namespaces and the veth pair 10.77.0.1 (server) to
// the client side, and a cluster on 10.77.0.0/24.
func newLab(t *testing.T, tag string) *lab { return newLabNet(t, tag, "10.77.0", 24) }

// newLabNet is newLab on net.0/bits (net is the first three octets).
func newLabNet(t *testing.T, tag, net string, bits int) *lab {
	need(t, "ip")
	subnet := netip.PrefixFrom(netip.MustParseAddr(net+".0"), bits).Masked()
	srvAddr := net + ".1"
	id := fmt.Sprintf("%d%s", os.Getpid()%100000, tag)
	l := &lab{t: t, srvNS: "bsds" + id, cliNS: "bsdc" + id, srvIf: "bsv" + id, cliIf: "bsc" + id, dir: t.TempDir()}
	l.data = filepath.Join(l.dir, "data")
	run(t, "ip", "netns", "add", l.srvNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.srvNS).Run() })
	run(t, "ip", "netns", "add", l.cliNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.cliNS).Run() })
	run(t, "ip", "link", "add", l.srvIf, "netns", l.srvNS, "type", "veth", "peer", "name", l.cliIf, "netns", l.cliNS)
	run(t, "ip", "-n", l.srvNS, "addr", "add", fmt.Sprintf("%s/%d", srvAddr, bits), "dev", l.srvIf)
	for _, x := range [][2]string{{l.srvNS, l.srvIf}, {l.srvNS, "lo"}, {l.cliNS, l.cliIf}, {l.cliNS, "lo"}} {
		run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
	st, err := state.Open(l.data, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := core.NewService(st, nil)
	ctx := context.Background()
	if _, err := svc.ClusterInit(ctx, model.Cluster{Name: "lab", APIServer: srvAddr,
		Network: model.Network{Subnet: subnet.String(), Gateway: srvAddr, DNS: []string{srvAddr}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddProfiles(ctx, []model.Profile{{Name: "worker", Role: model.RoleWorker}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMachines(ctx, []model.Machine{
		{MAC: "52:54:00:aa:00:01", Hostname: "node1", IP: net + ".11", Profile: "worker"},
		{MAC: "52:54:00:aa:00:02", Hostname: "node2", IP: net + ".12", Profile: "worker"},
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// startServer runs the helper in the server namespace and waits for it to
// listen (or to fail, which is returned).
func (l *lab) startServer(env ...string) error {
	logf := filepath.Join(l.dir, fmt.Sprintf("server-%d.log", time.Now().UnixNano()))
	pid, wait, err := startHelper(l.t, l.srvNS, logf, append([]string{"DATA=" + l.data, "IFACE=" + l.srvIf}, env...)...)
	if err == nil {
		l.serverPID, l.serverWait = pid, wait
	}
	return err
}

// startHelper runs this test binary as the DHCP server helper in ns, its
// output in logf, and waits until it listens; cleanup kills it by PID.
func startHelper(t *testing.T, ns, logf string, env ...string) (int, chan error, error) {
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=1"}, env...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL) // no-op if it already exited
		if t.Failed() {
			t.Logf("server log %s:\n%s", logf, tail(logf, 40))
		}
	})
	for range 200 {
		select {
		case err := <-wait:
			b, _ := os.ReadFile(logf)
			return 0, nil, fmt.Errorf("server exited (%v): %s", err, b)
		case <-time.After(50 * time.Millisecond):
		}
		if b, _ := os.ReadFile(logf); strings.Contains(string(b), "DHCP listening") {
			return pid, wait, nil
		}
	}
	t.Fatalf("server did not start listening: %s", tail(logf, 30))
	return 0, nil, nil
}

// stopServer ends the helper gracefully (SIGTERM) and waits for it.
func (l *lab) stopServer() {
	if l.serverPID == 0 {
		return
	}
	syscall.Kill(l.serverPID, syscall.SIGTERM)
	select {
	case err := <-l.serverWait:
		if err != nil {
			l.t.Errorf("server exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		syscall.Kill(l.serverPID, syscall.SIGKILL)
		l.t.Errorf("server did not stop on SIGTERM")
	}
	l.serverPID = 0
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (l *lab) setMAC(mac string) {
	run(l.t, "ip", "-n", l.cliNS, "link", "set", l.cliIf, "address", mac)
}

// udhcpc runs busybox udhcpc once in the client namespace and returns the
// variables its script saw on "bound".
func (l *lab) udhcpc(args ...string) map[string]string {
	t := l.t
	out := filepath.Join(l.dir, "udhcpc.env")
	os.Remove(out)
	script := filepath.Join(l.dir, "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+out+"\nexit 0\n"), 0o755)
	a := append([]string{"netns", "exec", l.cliNS, "busybox", "udhcpc", "-i", l.cliIf, "-f", "-q", "-n", "-t", "5", "-T", "1", "-A", "1", "-s", script}, args...)
	cmd := exec.Command("ip", a...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", args, err, b)
	}
	env := map[string]string{}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("udhcpc got no lease: %s", b)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

func (l *lab) withStore(fn func(svc *core.Service, st *state.DB)) {
	st, err := state.Open(l.data, 2*time.Second)
	if err != nil {
		l.t.Fatal(err)
	}
	defer st.Close()
	fn(core.NewService(st, nil), st)
}

func TestIntegrationUdhcpc(t *testing.T) {
	need(t, "ip", "busybox")
	l := newLab(t, "u")
	if err := l.startServer("MODE=full", "UNKNOWN=discover", "RANGE=10.77.0.100-10.77.0.150"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, mac, ip, file string
		args                []string
	}{
		{"BIOS", "52:54:00:aa:00:01", "10.77.0.11", "undionly.kpxe", []string{"-V", vcBIOS, "-x", "0x5d:0000"}},
		{"UEFI x86-64", "52:54:00:aa:00:02", "10.77.0.12", "ipxe.efi", []string{"-V", vcUEFI, "-x", "0x5d:0007"}},
		{"ARM64", "52:54:00:aa:00:01", "10.77.0.11", "ipxe-arm64.efi", []string{"-V", vcARM, "-x", "0x5d:000b"}},
		{"HTTP Boot", "52:54:00:aa:00:02", "10.77.0.12", "http://10.77.0.1:8080/assets/ipxe/ipxe.efi", []string{"-V", vcHTTP, "-x", "0x5d:0010"}},
		{"iPXE", "52:54:00:aa:00:01", "10.77.0.11", "http://10.77.0.1:8080/boot.ipxe", []string{"-V", vcBIOS, "-x", "0x5d:0000", "-x", "0x4d:69505845"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l.t = t
			l.setMAC(tc.mac)
			env := l.udhcpc(tc.args...)
			if env["ip"] != tc.ip || env["boot_file"] != tc.file || env["siaddr"] != "10.77.0.1" {
				t.Errorf("got ip %q boot_file %q siaddr %q, want %s %s 10.77.0.1", env["ip"], env["boot_file"], env["siaddr"], tc.ip, tc.file)
			}
			if env["subnet"] != "255.255.255.0" || env["router"] != "10.77.0.1" || env["hostname"] == "" {
				t.Errorf("subnet %q router %q hostname %q", env["subnet"], env["router"], env["hostname"])
			}
		})
	}
	l.t = t

	// Unknown PXE clients get pool addresses; a restart keeps them.
	l.setMAC("02:00:00:00:00:a1")
	first := l.udhcpc("-V", vcUEFI, "-x", "0x5d:0007", "-x", "0x61:00443322116655884799aabbccddeeff00")["ip"]
	if first != "10.77.0.100" {
		t.Fatalf("first pool client got %q", first)
	}
	l.stopServer()
	l.withStore(func(svc *core.Service, st *state.DB) {
		m, err := svc.Machine(context.Background(), "02:00:00:00:00:a1")
		if err != nil {
			t.Fatalf("unknown client not recorded as discovered: %v", err)
		}
		if m.Arch != "efi-x86_64" || m.UUID != "11223344-5566-4788-99aa-bbccddeeff00" || m.VendorClass != vcUEFI {
			t.Errorf("discovered machine %+v", m)
		}
		evs, _ := svc.MachineEvents(context.Background(), m.MAC)
		var types []string
		for _, e := range evs {
			types = append(types, e.Type)
		}
		// The OFFER is folded into the ACK's event.
		if got := strings.Join(types, ","); got != "discovered,dhcp" {
			t.Errorf("events %s", got)
		}
		if ack := evs[len(evs)-1]; ack.Fields["offer_ip"] != first || ack.Fields["offer_time"] == "" || ack.Fields["arch"] != "efi-x86_64" ||
			ack.Fields["uuid"] != m.UUID || ack.Fields["request"] != "REQUEST" || ack.Fields["reply"] != "ACK" {
			t.Errorf("ack event %+v", ack)
		}
		known, _ := svc.MachineEvents(context.Background(), "52:54:00:aa:00:01")
		if len(known) == 0 || known[len(known)-1].Type != model.StateDHCP || known[len(known)-1].Fields["arch"] != "bios" {
			t.Errorf("known machine events %+v", known)
		}
	})
	if err := l.startServer("MODE=full", "UNKNOWN=discover", "RANGE=10.77.0.100-10.77.0.150"); err != nil {
		t.Fatal(err)
	}
	l.setMAC("02:00:00:00:00:a2")
	if got := l.udhcpc("-V", vcUEFI, "-x", "0x5d:0007")["ip"]; got == first || got == "" {
		t.Fatalf("after restart a new client got %q, the first client's lease", got)
	}
	l.setMAC("02:00:00:00:00:a1")
	if got := l.udhcpc("-V", vcUEFI, "-x", "0x5d:0007")["ip"]; got != first {
		t.Fatalf("after restart the first client got %q, want its lease %s", got, first)
	}

	// A second server (its own data dir) on the same interface and port
	// refuses to start instead of sharing the port.
	if err := l.startServer("MODE=proxy", "DATA="+filepath.Join(l.dir, "data2")); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Fatalf("second server: %v", err)
	}
	l.stopServer()
}

func TestIntegrationDhclient(t *testing.T) {
	need(t, "ip", "dhclient")
	l := newLab(t, "d")
	if err := l.startServer("MODE=full", "UNKNOWN=ignore"); err != nil {
		t.Fatal(err)
	}
	l.setMAC("52:54:00:aa:00:02")
	conf := filepath.Join(l.dir, "dhclient.conf")
	os.WriteFile(conf, []byte(`option pxe-arch code 93 = unsigned integer 16;
send pxe-arch 7;
send vendor-class-identifier "`+vcUEFI+`";
request subnet-mask, routers, domain-name-servers, host-name;
timeout 20;
retry 1;
`), 0o644)
	// The script only configures the address in the client namespace; it
	// must not touch the host's resolv.conf.
	script := filepath.Join(l.dir, "dhclient-script")
	os.WriteFile(script, []byte(`#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/24" dev "$interface" 2>/dev/null; echo "$reason $new_ip_address $new_filename" >> "$0.log" ;;
RELEASE|EXPIRE|STOP) ip addr flush dev "$interface"; echo "$reason" >> "$0.log" ;;
esac
exit 0
`), 0o755)
	lf, pf := filepath.Join(l.dir, "dhclient.leases"), filepath.Join(l.dir, "dhclient.pid")
	dh := func(extra ...string) string {
		a := append([]string{"netns", "exec", l.cliNS, "dhclient", "-4", "-1", "-v", "-cf", conf, "-sf", script, "-lf", lf, "-pf", pf}, extra...)
		a = append(a, l.cliIf)
		out, err := exec.Command("ip", a...).CombinedOutput()
		if err != nil {
			t.Fatalf("dhclient %v: %v\n%s", extra, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		// dhclient daemonizes after BOUND: end it by its pid file.
		if b, err := os.ReadFile(pf); err == nil {
			var pid int
			if fmt.Sscan(string(b), &pid); pid > 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})
	out := dh()
	leases, _ := os.ReadFile(lf)
	if !strings.Contains(string(leases), "fixed-address 10.77.0.12;") || !strings.Contains(string(leases), `filename "ipxe.efi";`) ||
		!strings.Contains(string(leases), `option host-name "node2";`) {
		t.Fatalf("dhclient lease:\n%s\n%s", leases, out)
	}
	// RELEASE (dhclient -r) frees the lease; the running dhclient exits.
	dh("-r")
	l.stopServer()
	l.withStore(func(svc *core.Service, st *state.DB) {
		le, err := lease.Open(st, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := le.ForMAC("52:54:00:aa:00:02"); ok || le.OwnerOf(netip.MustParseAddr("10.77.0.12")) != "" {
			t.Errorf("lease still held after RELEASE: %+v", le.All())
		}
		evs, _ := svc.MachineEvents(context.Background(), "52:54:00:aa:00:02")
		if len(evs) == 0 || evs[len(evs)-1].Type != EventRelease {
			t.Errorf("events after release: %+v", evs)
		}
	})
}

// checkLeasesDurable: every machine bootsrv ACKed (state dhcp, recorded
// after its lease was committed) has its lease on disk, in the pool.
// It returns the number of leases and of ACKed machines.
func (l *lab) checkLeasesDurable(pool lease.Pool) (leases, acked int) {
	t := l.t
	l.withStore(func(svc *core.Service, st *state.DB) {
		le, err := lease.Open(st, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range le.All() {
			if x.State == model.LeaseBound {
				leases++
				if !pool.Contains(x.IP) {
					t.Errorf("lease %s outside the pool %s", x.IP, pool)
				}
			}
		}
		ms, err := svc.Machines(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.State != model.StateDHCP {
				continue
			}
			acked++
			if _, ok := le.ForMAC(m.MAC); !ok {
				t.Errorf("machine %s was ACKed but has no lease on disk", m.MAC)
			}
		}
	})
	return leases, acked
}

// TestIntegrationRelayPerfdhcp: perfdhcp is a relay agent (giaddr set,
// replies to giaddr:67); a gentle run must lose nothing, and every ACKed
// client's lease must be on disk after a graceful stop.
func TestIntegrationRelayPerfdhcp(t *testing.T) {
	need(t, "ip", "perfdhcp")
	l := newLab(t, "r")
	run(t, "ip", "-n", l.cliNS, "addr", "add", "10.77.0.2/24", "dev", l.cliIf)
	if err := l.startServer("MODE=full", "UNKNOWN=discover", "RANGE=10.77.0.100-10.77.0.199"); err != nil {
		t.Fatal(err)
	}
	vc := fmt.Sprintf("%x", vcBIOS)
	out, _ := exec.Command("ip", "netns", "exec", l.cliNS, "perfdhcp", "-4", "-l", l.cliIf, "-r", "50", "-R", "30",
		"-n", "100", "-g", "single", "-W", "1000000", "-o", "60,"+vc, "-o", "93,0000").CombinedOutput()
	r := parsePerfdhcp(string(out))
	if r.sent != 100 || r.lost != 0 {
		t.Fatalf("perfdhcp: %d sent, %d lost\n%s", r.sent, r.lost, out)
	}
	l.stopServer()
	leases, acked := l.checkLeasesDurable(lease.Pool{Start: netip.MustParseAddr("10.77.0.100"), End: netip.MustParseAddr("10.77.0.199")})
	if leases == 0 || acked == 0 || leases < acked {
		t.Fatalf("%d leases on disk for %d ACKed clients", leases, acked)
	}
}
