package admin

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// serve runs the admin API over a fresh store on a socket in a temp dir and
// returns a client for it.
func serve(t *testing.T) (*Client, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, SocketName)
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, core.NewService(st, nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	return c, sock
}

// TestClientKinds: errors keep their kind across the socket, so the CLI
// exits with the same code on both paths.
func TestClientKinds(t *testing.T) {
	c, sock := serve(t)
	ctx := context.Background()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode(), err)
	}
	_, err := c.Cluster(ctx)
	if fault.KindOf(err) != fault.KindNotFound || !strings.Contains(err.Error(), "no cluster yet") {
		t.Errorf("Cluster before init = %v (kind %q)", err, fault.KindOf(err))
	}
	cl, err := c.ClusterInit(ctx, model.Cluster{Name: "lab", APIServer: "192.168.1.10"})
	if err != nil || cl.DNSServiceIP != "10.3.0.10" || cl.Network.Subnet != "192.168.1.0/24" {
		t.Fatalf("ClusterInit = %+v, %v", cl, err)
	}
	_, err = c.ClusterInit(ctx, model.Cluster{Name: "lab", APIServer: "192.168.1.10"})
	if fault.KindOf(err) != fault.KindConflict {
		t.Errorf("second ClusterInit = %v (kind %q)", err, fault.KindOf(err))
	}
	_, err = c.AddProfiles(ctx, []model.Profile{{Name: "w", Role: "boss", Source: "p.yaml:3"}}, false)
	if fault.KindOf(err) != fault.KindInvalid || !strings.Contains(err.Error(), `p.yaml:3: profile w: role "boss"`) {
		t.Errorf("bad profile = %v (kind %q)", err, fault.KindOf(err))
	}
	if _, err := c.AddProfiles(ctx, []model.Profile{{Name: "worker", Role: "worker"}}, false); err != nil {
		t.Fatal(err)
	}
	ms, err := c.AddMachines(ctx, []model.Machine{{MAC: "AA-BB-CC-DD-EE-01", Hostname: "n1", IP: "192.168.1.11", Profile: "worker", Source: "rack.csv:2"}})
	if err != nil || len(ms) != 1 || ms[0].MAC != "aa:bb:cc:dd:ee:01" {
		t.Fatalf("AddMachines = %+v, %v", ms, err)
	}
	_, err = c.AddMachines(ctx, []model.Machine{{MAC: "aa:bb:cc:dd:ee:02", Hostname: "n2", IP: "192.168.1.11", Profile: "worker", Source: "rack.csv:3"}})
	if fault.KindOf(err) != fault.KindConflict || !strings.Contains(err.Error(), "rack.csv:3: field ip: 192.168.1.11 is already used") {
		t.Errorf("duplicate IP = %v (kind %q)", err, fault.KindOf(err))
	}
	if err := c.RemoveProfile(ctx, "worker"); fault.KindOf(err) != fault.KindConflict {
		t.Errorf("rm profile in use = %v", err)
	}
	m, err := c.Machine(ctx, "aabb.ccdd.ee01")
	if err != nil || m.Hostname != "n1" {
		t.Errorf("Machine = %+v, %v", m, err)
	}
	evs, err := c.MachineEvents(ctx, m.MAC)
	if err != nil || len(evs) != 1 || evs[0].Type != model.StateRegistered {
		t.Errorf("MachineEvents = %#v, %v; want only the registered event", evs, err)
	}
	if _, err := c.Machine(ctx, "aa:bb:cc:dd:ee:09"); fault.KindOf(err) != fault.KindNotFound {
		t.Errorf("unknown machine = %v", err)
	}
	if _, err := c.Machine(ctx, "garbage"); fault.KindOf(err) != fault.KindInvalid {
		t.Errorf("bad MAC = %v", err)
	}
	if err := c.RemoveMachine(ctx, "AA:BB:CC:DD:EE:01"); err != nil {
		t.Errorf("RemoveMachine: %v", err)
	}
	if ps, err := c.Profiles(ctx); err != nil || len(ps) != 1 {
		t.Errorf("Profiles = %+v, %v", ps, err)
	}
	if ms, err := c.Machines(ctx); err != nil || ms == nil || len(ms) != 0 {
		t.Errorf("Machines = %#v, %v; want an empty list", ms, err)
	}
}

// TestClientPathNames: names the client puts in the URL path are answered
// like the service answers them, not with the router's plain 404.
func TestClientPathNames(t *testing.T) {
	c, _ := serve(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		kind fault.Kind
	}{
		{"MAC with a slash", func() error { _, err := c.Machine(ctx, "aa/bb"); return err }, fault.KindInvalid},
		{"empty MAC", func() error { _, err := c.Machine(ctx, ""); return err }, fault.KindInvalid},
		{"empty profile name", func() error { _, err := c.Profile(ctx, ""); return err }, fault.KindNotFound},
		{"profile name with a slash", func() error { _, err := c.Profile(ctx, "a/b"); return err }, fault.KindNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if fault.KindOf(err) != tc.kind {
				t.Errorf("over the socket %s gives %v (kind %q), the service gives kind %q", tc.name, err, fault.KindOf(err), tc.kind)
			}
		})
	}
}

func TestBadRequestBody(t *testing.T) {
	_, sock := serve(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, body := range []string{`{"name":"lab","colour":"red"}`, `not json`} {
		resp, err := hc.Post("http://bootsrv/v1/cluster", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"kind":"invalid"`) || !strings.Contains(string(b), "request body is not the expected JSON") {
			t.Errorf("body %s: HTTP %d %s", body, resp.StatusCode, b)
		}
	}
}

func TestListen(t *testing.T) {
	_, sock := serve(t)
	if l, err := Listen(sock); err == nil {
		l.Close()
		t.Fatal("Listen took over a live socket")
	} else if !strings.Contains(err.Error(), "is served by another bootsrv: stop it first") {
		t.Errorf("Listen on a live socket: %v", err)
	}

	// A stale socket (its server gone) is replaced.
	stale := filepath.Join(t.TempDir(), SocketName)
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := Dial(stale); err != ErrNoServer {
		t.Errorf("Dial of a stale socket = %v, want ErrNoServer", err)
	}
	l, err = Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	if _, err := Dial(filepath.Join(t.TempDir(), "none.sock")); err != ErrNoServer {
		t.Errorf("Dial of a missing socket = %v, want ErrNoServer", err)
	}
}
