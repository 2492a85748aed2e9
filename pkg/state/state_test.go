package state

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/store"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A machine written again with another address, hostname and profile
// moves its index entries: the old ones go, the new ones point at it.
func TestPutMachineMovesIndexes(t *testing.T) {
	db := open(t)
	const mac = "52:54:00:00:00:01"
	m := model.Machine{MAC: mac, IP: "10.0.0.11", Hostname: "n1", Profile: "worker"}
	if err := db.Update(func(tx Tx) error { return tx.PutMachine(m) }); err != nil {
		t.Fatal(err)
	}
	m.IP, m.Hostname, m.Profile = "10.0.0.12", "n2", "master"
	if err := db.Update(func(tx Tx) error { return tx.PutMachine(m) }); err != nil {
		t.Fatal(err)
	}
	err := db.View(func(tx Tx) error {
		if tx.MachineByIP("10.0.0.11") != "" || tx.MachineByHostname("n1") != "" {
			t.Errorf("old address or hostname still indexed")
		}
		if tx.MachineByIP("10.0.0.12") != mac || tx.MachineByHostname("n2") != mac {
			t.Errorf("new address or hostname not indexed")
		}
		var workers, masters []string
		_ = tx.MachinesOfProfile("worker", func(m string) error { workers = append(workers, m); return nil })
		_ = tx.MachinesOfProfile("master", func(m string) error { masters = append(masters, m); return nil })
		if len(workers) != 0 || len(masters) != 1 || masters[0] != mac {
			t.Errorf("profile index: workers %v, masters %v", workers, masters)
		}
		if z := tx.Sizes(); z.IPIndex != 1 || z.HostnameIndex != 1 || z.ProfileIndex != 1 || z.Machines != 1 {
			t.Errorf("sizes %+v, want one of each", z)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Removing a machine removes everything kept for it, in one transaction.
func TestDeleteMachineRemovesAll(t *testing.T) {
	db := open(t)
	const mac = "52:54:00:00:00:02"
	err := db.Update(func(tx Tx) error {
		if err := tx.PutMachine(model.Machine{MAC: mac, IP: "10.0.0.21", Hostname: "n", Profile: "p"}); err != nil {
			return err
		}
		for i := range uint64(3) {
			if err := tx.PutEvent(mac, i, model.Event{Type: "x"}); err != nil {
				return err
			}
		}
		if err := tx.PutCerts(mac, []byte("{}")); err != nil {
			return err
		}
		return tx.PutRendered(mac, []byte("h+cfg"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx Tx) error { return tx.DeleteMachine(mac) }); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx Tx) error {
		if z := tx.Sizes(); z != (Sizes{}) {
			t.Errorf("left after delete: %+v", z)
		}
		return nil
	})
}

// Leases and their index round-trip with their encoding.
func TestLeasesRoundTrip(t *testing.T) {
	db := open(t)
	ip := netip.MustParseAddr("10.0.0.100")
	le := model.Lease{IP: ip, MAC: "aa:00:00:00:00:01", Expiry: time.Unix(1700000000, 0).UTC(), State: model.LeaseBound, Hostname: "h"}
	if err := db.Update(func(tx Tx) error {
		if err := tx.PutLease(le); err != nil {
			return err
		}
		return tx.PutBoundLease(le.MAC, ip)
	}); err != nil {
		t.Fatal(err)
	}
	var got []model.Lease
	idx := map[string]netip.Addr{}
	_ = db.View(func(tx Tx) error {
		_ = tx.Leases(func(l model.Lease) error { got = append(got, l); return nil })
		return tx.BoundLeases(func(mac string, a netip.Addr) error { idx[mac] = a; return nil })
	})
	if len(got) != 1 || got[0] != le || idx[le.MAC] != ip {
		t.Fatalf("leases %+v, index %v", got, idx)
	}
}

// A wrapped engine (as tests wrap it to fail commits) is used as given.
func TestNewOverEngine(t *testing.T) {
	db := open(t)
	boom := errors.New("disk full")
	failing := New(failEngine{db.Engine(), boom})
	if err := failing.Update(func(tx Tx) error { return tx.PutTokenKey([]byte("k")) }); !errors.Is(err, boom) {
		t.Fatalf("Update through a failing engine = %v, want %v", err, boom)
	}
	_ = db.View(func(tx Tx) error {
		if tx.TokenKey() != nil {
			t.Errorf("a failed write was stored")
		}
		return nil
	})
}

type failEngine struct {
	store.Store
	err error
}

func (f failEngine) Update(func(store.Tx) error) error { return f.err }

// Discovered machines (no profile) are indexed as they are written, a
// profile moves them out, and records an older bootsrv wrote without the
// entry are indexed once by IndexDiscovered.
func TestDiscoveredIndex(t *testing.T) {
	db := open(t)
	count := func() (n int) {
		_ = db.View(func(tx Tx) error { n = tx.CountDiscovered(100); return nil })
		return n
	}
	err := db.Update(func(tx Tx) error {
		for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
			if err := tx.PutMachine(model.Machine{MAC: mac, State: model.StateDiscovered}); err != nil {
				return err
			}
		}
		// As an older bootsrv wrote it: the record, no index entry.
		return putJSON(tx.kv, bMachines, []byte("52:54:00:00:00:03"), model.Machine{MAC: "52:54:00:00:00:03", State: model.StateDiscovered})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d discovered indexed, want 2", n)
	}
	var found int
	if err := db.Update(func(tx Tx) (err error) { found, err = tx.IndexDiscovered(); return err }); err != nil || found != 1 || count() != 3 {
		t.Fatalf("IndexDiscovered found %d (%v), %d indexed; want 1 found, 3 indexed", found, err, count())
	}
	if err := db.Update(func(tx Tx) error {
		return tx.PutMachine(model.Machine{MAC: "52:54:00:00:00:01", IP: "10.0.0.11", Hostname: "n1", Profile: "worker"})
	}); err != nil || count() != 2 {
		t.Fatalf("a profile given: %v, %d discovered indexed, want 2", err, count())
	}
	if err := db.Update(func(tx Tx) error { return tx.DeleteMachine("52:54:00:00:00:02") }); err != nil || count() != 1 {
		t.Fatalf("a discovered machine deleted: %v, %d indexed, want 1", err, count())
	}
}
