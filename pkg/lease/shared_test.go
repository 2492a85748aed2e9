package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/store"
	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

func openShared(t *testing.T, c *etcdtest.Cluster, keyFile string) *state.DB {
	t.Helper()
	st, err := state.OpenWith(state.Options{Etcd: &store.EtcdConfig{Endpoints: c.Endpoints, CAFile: c.CAFile,
		CertFile: c.CertFile, KeyFile: c.KeyFile, Prefix: c.Prefix, SecretKeyFile: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeLeases reads the bound leases as etcd holds them, through a third
// server's fresh copy.
func storeLeases(t *testing.T, st *state.DB) (byIP map[netip.Addr]string, byMAC map[string][]netip.Addr) {
	t.Helper()
	byIP, byMAC = map[netip.Addr]string{}, map[string][]netip.Addr{}
	err := st.View(func(tx state.Tx) error {
		return tx.Leases(func(le model.Lease) error {
			if le.State == model.LeaseBound {
				byIP[le.IP] = le.MAC
				byMAC[le.MAC] = append(byMAC[le.MAC], le.IP)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return byIP, byMAC
}

// Two servers binding for many clients at once, each client answered by
// one of them (as a relay forwarding to both, the client taking the first
// offer): no address goes to two MACs, no MAC holds two addresses, and
// every bind that returned is in etcd.
func TestSharedBindsNeverCollide(t *testing.T) {
	c := etcdtest.Start(t)
	key := filepath.Join(t.TempDir(), "store.key")
	stA, stB := openShared(t, c, key), openShared(t, c, key)
	now := func() time.Time { return time.Now().UTC() }
	a, err := Open(stA, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(stB, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := Pool{Start: netip.MustParseAddr("10.98.0.10"), End: netip.MustParseAddr("10.98.0.89")} // 80 addresses
	const clients = 60
	var mu sync.Mutex
	got := map[string]netip.Addr{}
	who := map[string]string{}
	taken := 0
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		mac := fmt.Sprintf("52:54:00:aa:00:%02x", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; try < 20; try++ {
				tb := []*Table{a, b}[rand.IntN(2)]
				ip, ok := tb.Candidate(mac, pool)
				if !ok {
					t.Errorf("%s: no candidate", mac)
					return
				}
				until := now().Add(time.Hour)
				if err := tb.Offer(mac, ip, now().Add(time.Minute)); err != nil {
					continue
				}
				err := tb.Bind(mac, ip, until, "")
				if errors.Is(err, ErrTaken) {
					mu.Lock()
					taken++
					mu.Unlock()
					continue // the client starts over: DISCOVER again
				}
				if err != nil {
					t.Errorf("%s: bind %s: %v", mac, ip, err)
					return
				}
				mu.Lock()
				got[mac] = ip
				who[mac] = fmt.Sprintf("%p try %d", tb, try)
				mu.Unlock()
				return
			}
			t.Errorf("%s: no address after 20 tries", mac)
		}()
	}
	wg.Wait()
	if len(got) != clients {
		t.Fatalf("%d of %d clients bound", len(got), clients)
	}
	seen := map[netip.Addr]string{}
	for mac, ip := range got {
		if o, dup := seen[ip]; dup {
			byIP, _ := storeLeases(t, openShared(t, c, key))
			t.Fatalf("%s given to %s (%s) and %s (%s); etcd says %s", ip, o, who[o], mac, who[mac], byIP[ip])
		}
		seen[ip] = mac
	}
	byIP, byMAC := storeLeases(t, openShared(t, c, key))
	for mac, ip := range got {
		if byIP[ip] != mac {
			t.Errorf("etcd holds %s for %q, the client was ACKed it for %s", ip, byIP[ip], mac)
		}
		if len(byMAC[mac]) != 1 {
			t.Errorf("%s holds %v in etcd", mac, byMAC[mac])
		}
	}
	t.Logf("%d clients bound across two servers; %d binds lost a race and started over", clients, taken)

	// Each server learns the other's leases through the watch.
	deadline := time.Now().Add(2 * time.Second)
	for mac, ip := range got {
		for _, tb := range []*Table{a, b} {
			for {
				if m, ok := tb.LeasedMAC(ip); ok && m == mac {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a server does not know %s holds %s", mac, ip)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// A MAC bound on one server and then on the other (before the first's
// lease reached it) holds one address in etcd: the second bind drops the
// first lease in its own transaction.
func TestSharedOneAddressPerMAC(t *testing.T) {
	c := etcdtest.Start(t)
	key := filepath.Join(t.TempDir(), "store.key")
	stA, stB := openShared(t, c, key), openShared(t, c, key)
	now := func() time.Time { return time.Now().UTC() }
	a, _ := Open(stA, now)
	b, _ := Open(stB, now)
	const mac = "52:54:00:aa:01:01"
	ip1, ip2 := netip.MustParseAddr("10.98.1.10"), netip.MustParseAddr("10.98.1.11")
	if err := a.Bind(mac, ip1, now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(mac, ip2, now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	_, byMAC := storeLeases(t, openShared(t, c, key))
	if len(byMAC[mac]) != 1 || byMAC[mac][0] != ip2 {
		t.Fatalf("%s holds %v in etcd, want only %s", mac, byMAC[mac], ip2)
	}
	// And another MAC cannot take ip2 through either server.
	for _, tb := range []*Table{a, b} {
		if err := tb.Bind("52:54:00:aa:01:02", ip2, now().Add(time.Hour), ""); !errors.Is(err, ErrTaken) {
			t.Fatalf("bind of a held address: %v, want ErrTaken", err)
		}
	}
}
