package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/store"
	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

// helperState opens the state the helper was given: the etcd store in
// $ETCD_ENDPOINTS, else the bbolt file in $DATA.
func helperState(log *slog.Logger) (*state.DB, error) {
	if os.Getenv("ETCD_ENDPOINTS") == "" {
		return state.Open(os.Getenv("DATA"), time.Second)
	}
	cfg := etcdConfigFromEnvList(os.Environ())
	cfg.Log = log
	return state.OpenWith(state.Options{Etcd: &cfg})
}

func setMAC(t *testing.T, ns, iface, mac string) {
	run(t, "ip", "-n", ns, "link", "set", iface, "address", mac)
}

// udhcpcIn runs busybox udhcpc once and returns what its script saw on
// "bound" (empty when it got no lease).
func udhcpcIn(t *testing.T, ns, iface, dir string, args ...string) map[string]string {
	out := filepath.Join(dir, "udhcpc.env")
	os.Remove(out)
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+out+"\nexit 0\n"), 0o755)
	a := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-T", "1", "-A", "1", "-s", script}, args...)
	b, _ := exec.Command("ip", a...).CombinedOutput()
	env := map[string]string{}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Logf("udhcpc got no lease: %s", b)
		return env
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// sharedLab is two DHCP servers (A, B) and a client namespace on one
// bridge the test creates, and a three-member etcd reachable from the
// servers' namespaces on the bridge's address.
type sharedLab struct {
	t        *testing.T
	id       string
	bridge   string
	ns       [3]string // A, B, clients
	ifs      [3]string
	addrs    [3]string
	etcd     *etcdtest.Cluster
	env      []string
	dir      string
	logs     [2]string
	pids     [2]int
	waits    [2]chan error
	st       *state.DB // the test's own view of the store
	poolFrom string
	poolTo   string
}

const sharedNet = "10.78.0"

func newSharedLab(t *testing.T) *sharedLab {
	return newSharedLabNet(t, 24, sharedNet+".100", sharedNet+".250")
}

// newSharedLabNet is the lab on 10.78.0.0/bits with the pool given.
func newSharedLabNet(t *testing.T, bits int, poolFrom, poolTo string) *sharedLab {
	need(t, "ip", "perfdhcp", "busybox")
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &sharedLab{t: t, id: id, bridge: "bsbr" + id, dir: t.TempDir(), poolFrom: poolFrom, poolTo: poolTo}
	run(t, "ip", "link", "add", l.bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.bridge).Run() })
	run(t, "ip", "addr", "add", fmt.Sprintf("%s.254/%d", sharedNet, bits), "dev", l.bridge)
	run(t, "ip", "link", "set", l.bridge, "up")
	for i, tag := range []string{"a", "b", "c"} {
		l.ns[i] = "bssh" + tag + id
		l.ifs[i] = "bsh" + tag + id
		l.addrs[i] = fmt.Sprintf("%s.%d", sharedNet, i+1)
		peer := "bsp" + tag + id
		run(t, "ip", "netns", "add", l.ns[i])
		ns := l.ns[i]
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "link", "add", l.ifs[i], "netns", l.ns[i], "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", peer, "master", l.bridge, "up")
		run(t, "ip", "-n", l.ns[i], "addr", "add", fmt.Sprintf("%s/%d", l.addrs[i], bits), "dev", l.ifs[i])
		run(t, "ip", "-n", l.ns[i], "link", "set", l.ifs[i], "up")
		run(t, "ip", "-n", l.ns[i], "link", "set", "lo", "up")
	}
	l.etcd = etcdtest.StartOn(t, sharedNet+".254")
	key := filepath.Join(l.dir, "store.key")
	l.env = []string{"ETCD_ENDPOINTS=" + strings.Join(l.etcd.Endpoints, ","), "ETCD_CA=" + l.etcd.CAFile,
		"ETCD_CERT=" + l.etcd.CertFile, "ETCD_KEY=" + l.etcd.KeyFile, "ETCD_PREFIX=" + l.etcd.Prefix, "STORE_KEY=" + key}
	st, err := state.OpenWith(state.Options{Etcd: &store.EtcdConfig{Endpoints: l.etcd.Endpoints, CAFile: l.etcd.CAFile,
		CertFile: l.etcd.CertFile, KeyFile: l.etcd.KeyFile, Prefix: l.etcd.Prefix, SecretKeyFile: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l.st = st
	svc := core.NewService(st, nil)
	ctx := context.Background()
	if _, err := svc.ClusterInit(ctx, model.Cluster{Name: "lab", APIServer: sharedNet + ".254",
		Network: model.Network{Subnet: fmt.Sprintf("%s.0/%d", sharedNet, bits), Gateway: sharedNet + ".254", DNS: []string{sharedNet + ".254"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddProfiles(ctx, []model.Profile{{Name: "worker", Role: model.RoleWorker}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMachines(ctx, []model.Machine{{MAC: sharedResMAC, Hostname: "node1", IP: sharedNet + ".11", Profile: "worker"}}); err != nil {
		t.Fatal(err)
	}
	return l
}

const sharedResMAC = "52:54:00:bb:00:01"

// start runs server i (0: A, 1: B) in its namespace, on the etcd store.
func (l *sharedLab) start(i int, env ...string) {
	l.startWith(i, append(append([]string{}, l.env...), env...)...)
}

// startWith runs server i with exactly the store env given.
func (l *sharedLab) startWith(i int, storeEnv ...string) {
	l.logs[i] = filepath.Join(l.dir, fmt.Sprintf("server-%c-%d.log", 'A'+i, time.Now().UnixNano()))
	pid, wait, err := startHelper(l.t, l.ns[i], l.logs[i], append([]string{"IFACE=" + l.ifs[i], "MODE=full", "UNKNOWN=discover",
		"RANGE=" + l.poolFrom + "-" + l.poolTo}, storeEnv...)...)
	if err != nil {
		l.t.Fatal(err)
	}
	l.pids[i], l.waits[i] = pid, wait
}

func (l *sharedLab) kill(i int) {
	syscall.Kill(l.pids[i], syscall.SIGKILL)
	<-l.waits[i]
}

// stop ends server i with SIGTERM (it commits what it queued) and waits.
func (l *sharedLab) stop(i int) {
	syscall.Kill(l.pids[i], syscall.SIGTERM)
	select {
	case <-l.waits[i]:
	case <-time.After(20 * time.Second):
		syscall.Kill(l.pids[i], syscall.SIGKILL)
		<-l.waits[i]
	}
}

// perfdhcp runs a relayed perfdhcp from the client namespace, broadcast
// on the bridge, so that both servers hear every DISCOVER.
func (l *sharedLab) perfdhcp(clients, exchanges int, mac string, extra ...string) perfResult {
	args := append([]string{"netns", "exec", l.ns[2], "perfdhcp", "-4", "-l", l.ifs[2], "-r", "100", "-R", fmt.Sprint(clients),
		"-n", fmt.Sprint(exchanges), "-b", "mac=" + mac, "-W", "1000000", "-o", fmt.Sprintf("60,%x", vcBIOS), "-o", "93,0000"}, extra...)
	out, _ := exec.Command("ip", args...).CombinedOutput()
	r := parsePerfdhcp(string(out))
	r.raw = string(out)
	return r
}

// verify reads etcd through a fresh copy: no address for two MACs, no
// MAC with two addresses, and every machine ACKed (state dhcp) holds one.
func (l *sharedLab) verify() (bound int) {
	t := l.t
	st, err := state.OpenWith(state.Options{Etcd: func() *store.EtcdConfig {
		c := etcdConfigFromEnvList(l.env)
		return &c
	}()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	byIP, byMAC := map[netip.Addr]string{}, map[string]int{}
	machines := map[string]model.Machine{}
	err = st.View(func(tx state.Tx) error {
		if err := tx.Leases(func(le model.Lease) error {
			if le.State != model.LeaseBound {
				return nil
			}
			if o, dup := byIP[le.IP]; dup {
				t.Errorf("%s bound to %s and %s", le.IP, o, le.MAC)
			}
			byIP[le.IP] = le.MAC
			byMAC[le.MAC]++
			return nil
		}); err != nil {
			return err
		}
		return tx.Machines(func(m model.Machine) error { machines[m.MAC] = m; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	for mac, n := range byMAC {
		if n != 1 {
			t.Errorf("%s holds %d addresses", mac, n)
		}
	}
	for mac, m := range machines {
		if m.State == model.StateDHCP && byMAC[mac] != 1 {
			t.Errorf("machine %s was ACKed (state dhcp) but etcd holds no lease for it", mac)
		}
	}
	return len(byIP)
}

func etcdConfigFromEnvList(env []string) store.EtcdConfig {
	get := func(k string) string {
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, k+"="); ok {
				return v
			}
		}
		return ""
	}
	return store.EtcdConfig{Endpoints: strings.Split(get("ETCD_ENDPOINTS"), ","), CAFile: get("ETCD_CA"), CertFile: get("ETCD_CERT"),
		KeyFile: get("ETCD_KEY"), Prefix: get("ETCD_PREFIX"), SecretKeyFile: get("STORE_KEY")}
}

// TestSharedDHCP: two bootsrv DHCP servers on one segment over a three-
// member etcd. perfdhcp's clients each get one address, none twice, all in
// etcd; one server killed -9 mid-run, the other completes; one etcd member
// down changes nothing; two down (no quorum): the reservation is still
// answered, pool addresses are refused with one log line, and all is
// written once quorum is back.
func TestSharedDHCP(t *testing.T) {
	l := newSharedLab(t)
	l.start(0)
	l.start(1)

	// Both servers answer; kill -9 A in the middle of the run.
	done := make(chan perfResult, 1)
	go func() { done <- l.perfdhcp(100, 400, "52:54:00:cc:00:00") }()
	time.Sleep(1500 * time.Millisecond)
	l.kill(0)
	r1 := <-done
	t.Logf("run 1 (A killed at 1.5 s): %d sent, %d lost", r1.sent, r1.lost)
	// The survivor completes: every client again, each its address back.
	r2 := l.perfdhcp(100, 200, "52:54:00:cc:00:00")
	if r2.sent == 0 || r2.lossPct() > 2 {
		t.Fatalf("after A's kill, B alone: %d sent, %d lost\n%s", r2.sent, r2.lost, r2.raw)
	}
	bound := l.verify()
	if bound == 0 || bound > 100 {
		t.Fatalf("%d bound leases in etcd for at most 100 clients", bound)
	}

	// One etcd member down: nothing fails.
	l.etcd.StopMember(t, 0)
	if r := l.perfdhcp(100, 100, "52:54:00:cc:00:00"); r.sent == 0 || r.lossPct() > 2 {
		t.Fatalf("one etcd member down: %d sent, %d lost\n%s", r.sent, r.lost, r.raw)
	}

	// Two down: the reservation is answered, new pool addresses are not.
	l.etcd.StopMember(t, 1)
	// udhcpc as the reserved machine; the interface gets its own MAC
	// back after, for the servers' ARP entries of the relay address.
	own := strings.TrimSpace(run(t, "ip", "netns", "exec", l.ns[2], "cat", "/sys/class/net/"+l.ifs[2]+"/address"))
	setMAC(t, l.ns[2], l.ifs[2], sharedResMAC)
	env := udhcpcIn(t, l.ns[2], l.ifs[2], l.dir, "-t", "8")
	setMAC(t, l.ns[2], l.ifs[2], own)
	if env["ip"] != sharedNet+".11" {
		t.Fatalf("reservation without quorum: got %v", env)
	}
	if r := l.perfdhcp(20, 20, "52:54:00:dd:00:00"); r.sent == 0 || r.lost != r.sent {
		t.Fatalf("new clients without quorum: %d sent, %d lost: pool addresses must be refused\n%s", r.sent, r.lost, r.raw)
	}
	b, _ := os.ReadFile(l.logs[1])
	if n := strings.Count(string(b), "etcd store unreachable"); n != 1 {
		t.Fatalf("the outage logged %d times, want once:\n%s", n, tail(l.logs[1], 40))
	}

	// Quorum back: the reservation's lease and its events are written,
	// once; pool addresses resume.
	l.etcd.StartMember(t, 1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(l.logs[1])
		if strings.Contains(string(b), "leases answered during the store outage written") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reservation's lease was not written 20 s after quorum returned:\n%s", tail(l.logs[1], 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := l.perfdhcp(20, 40, "52:54:00:dd:00:00"); r.sent == 0 || r.lossPct() > 2 {
		t.Fatalf("after quorum returned: %d sent, %d lost\n%s", r.sent, r.lost, r.raw)
	}
	l.verify()
	deadline = time.Now().Add(10 * time.Second)
	for {
		var le model.Lease
		var ok bool
		var dhcpEvents int
		_ = l.st.View(func(tx state.Tx) error {
			le, ok, _ = tx.Lease(netip.MustParseAddr(sharedNet + ".11"))
			return tx.Events(sharedResMAC, func(e model.Event) error {
				if e.Type == model.StateDHCP {
					dhcpEvents++
				}
				return nil
			})
		})
		// One event per ACK the server sent (udhcpc may have asked twice
		// while the outage was being found): none lost, none twice.
		b, _ := os.ReadFile(l.logs[1])
		acks := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "mac="+sharedResMAC) && strings.Contains(line, "out=ACK") {
				acks++
			}
		}
		if ok && le.MAC == sharedResMAC && acks > 0 && dhcpEvents == acks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: lease %+v (%v), %d dhcp events for the reserved machine, %d ACKs sent; want its lease and one event per ACK", le, ok, dhcpEvents, acks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
