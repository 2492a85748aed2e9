package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

var etcdSchema = Schema{Version: 1, Buckets: []string{"machines", "events", "leases", "cluster"}, Secret: []string{"cluster"}}

func openEtcd(t *testing.T, c *etcdtest.Cluster, keyFile string) *Etcd {
	t.Helper()
	e, err := OpenEtcd(EtcdConfig{Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		Prefix: c.Prefix, SecretKeyFile: keyFile, OpTimeout: 2 * time.Second}, etcdSchema)
	if err != nil {
		t.Fatalf("open etcd store: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func counter(tx Tx, key string) uint64 {
	v := tx.Get("machines", []byte(key))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Two servers incrementing one record never lose an increment: each
// write is guarded by the mod revision of what it read.
func TestEtcdNoLostUpdates(t *testing.T) {
	c := etcdtest.Start(t)
	key := filepath.Join(t.TempDir(), "store.key")
	a, b := openEtcd(t, c, key), openEtcd(t, c, key)
	const each = 60
	var wg sync.WaitGroup
	errs := make(chan error, 4*each)
	for _, s := range []*Etcd{a, b, a, b} {
		wg.Add(1)
		go func(s *Etcd) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				errs <- s.Update(func(tx Tx) error {
					var v [8]byte
					binary.BigEndian.PutUint64(v[:], counter(tx, "n")+1)
					return tx.Put("machines", []byte("n"), v[:])
				})
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Etcd{a, b} {
		if !s.waitRev(maxRev(a, b), 2*time.Second) {
			t.Fatal("copies did not catch up")
		}
		var n uint64
		_ = s.View(func(tx Tx) error { n = counter(tx, "n"); return nil })
		if n != 4*each {
			t.Errorf("%s: counter %d after %d increments", s.Path(), n, 4*each)
		}
	}
}

func maxRev(a, b *Etcd) int64 { return max(a.Revision(), b.Revision()) }

// A scan guards against keys added and removed in its range by others:
// "at most 3 in the bucket" holds across two servers.
func TestEtcdScanGuards(t *testing.T) {
	c := etcdtest.Start(t)
	key := filepath.Join(t.TempDir(), "store.key")
	a, b := openEtcd(t, c, key), openEtcd(t, c, key)
	var wg sync.WaitGroup
	for i, s := range []*Etcd{a, b, a, b, a, b} {
		wg.Add(1)
		go func(i int, s *Etcd) {
			defer wg.Done()
			_ = s.Update(func(tx Tx) error {
				if tx.Count("leases") >= 3 {
					return nil
				}
				return tx.Put("leases", []byte{byte('a' + i)}, []byte("x"))
			})
		}(i, s)
	}
	wg.Wait()
	a.waitRev(maxRev(a, b), 2*time.Second)
	var n int
	_ = a.View(func(tx Tx) error { n = tx.Count("leases"); return nil })
	if n != 3 {
		t.Fatalf("%d leases, want exactly 3 (the guard let a scan's result go stale)", n)
	}
	// A delete is seen by a scan too.
	err := a.Update(func(tx Tx) error {
		return tx.Scan("leases", nil, func(k, v []byte) error { return tx.Delete("leases", k) })
	})
	if err != nil {
		t.Fatal(err)
	}
	b.waitRev(a.Revision(), 2*time.Second)
	_ = b.View(func(tx Tx) error { n = tx.Count("leases"); return nil })
	if n != 0 {
		t.Fatalf("%d leases on the other server after deleting all", n)
	}
}

// What one server writes, the other serves within a second, through its
// watch; a transaction sees its own writes in scans.
func TestEtcdWatchAndOverlay(t *testing.T) {
	c := etcdtest.Start(t)
	key := filepath.Join(t.TempDir(), "store.key")
	a, b := openEtcd(t, c, key), openEtcd(t, c, key)
	changed := make(chan string, 10)
	b.Watch("machines", func(k, v []byte) { changed <- string(k) + "=" + string(v) })
	start := time.Now()
	if err := a.Update(func(tx Tx) error { return tx.Put("machines", []byte("m1"), []byte("v1")) }); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changed:
		if got != "m1=v1" {
			t.Fatalf("watch said %q", got)
		}
	case <-time.After(time.Second):
		t.Fatal("the other server did not hear of the write within a second")
	}
	var v []byte
	_ = b.View(func(tx Tx) error { v = bytes.Clone(tx.Get("machines", []byte("m1"))); return nil })
	if string(v) != "v1" {
		t.Fatalf("other server reads %q", v)
	}
	t.Logf("seen by the other server after %v", time.Since(start))
	err := a.Update(func(tx Tx) error {
		_ = tx.Put("machines", []byte("m0"), []byte("new"))
		_ = tx.Delete("machines", []byte("m1"))
		_ = tx.Put("machines", []byte("m2"), []byte("new"))
		var keys []string
		_ = tx.Scan("machines", []byte("m"), func(k, v []byte) error { keys = append(keys, string(k)); return nil })
		if strings.Join(keys, ",") != "m0,m2" {
			t.Errorf("scan inside the transaction: %v, want m0,m2", keys)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Secret buckets are encrypted in etcd; a server with another key is
// refused with a message that says what to copy.
func TestEtcdSecrets(t *testing.T) {
	c := etcdtest.Start(t)
	dir := t.TempDir()
	a := openEtcd(t, c, filepath.Join(dir, "store.key"))
	secret := []byte("-----BEGIN EC PRIVATE KEY----- cluster CA")
	if err := a.Update(func(tx Tx) error { return tx.Put("cluster", []byte("pki"), secret) }); err != nil {
		t.Fatal(err)
	}
	root := c.Client(t)
	resp, err := root.Get(context.Background(), c.Prefix+"cluster/pki")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw read: %v %v", resp, err)
	}
	if bytes.Contains(resp.Kvs[0].Value, []byte("PRIVATE KEY")) {
		t.Fatal("the secret is stored in clear in etcd")
	}
	_, err = OpenEtcd(EtcdConfig{Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		Prefix: c.Prefix, SecretKeyFile: filepath.Join(dir, "other.key")}, etcdSchema)
	if err == nil || !strings.Contains(err.Error(), "another secret key") {
		t.Fatalf("open with another key: %v, want a refusal naming the key file", err)
	}
	b := openEtcd(t, c, filepath.Join(dir, "store.key"))
	var got []byte
	_ = b.View(func(tx Tx) error { got = bytes.Clone(tx.Get("cluster", []byte("pki"))); return nil })
	if !bytes.Equal(got, secret) {
		t.Fatalf("second server reads %q", got)
	}
	// The root user of etcd is not bootsrv: without bootsrv's certificate
	// the prefix is closed (etcd's auth, set up by etcdtest).
}

// Quorum lost: reads go on from the copy, writes fail at once with
// ErrUnavailable; quorum back: writes resume by themselves.
func TestEtcdQuorumLoss(t *testing.T) {
	c := etcdtest.Start(t)
	a := openEtcd(t, c, filepath.Join(t.TempDir(), "store.key"))
	put := func(k string) error {
		return a.Update(func(tx Tx) error { return tx.Put("machines", []byte(k), []byte("v")) })
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	c.StopMember(t, 0)
	if err := put("one-down"); err != nil {
		t.Fatalf("one member down: %v", err)
	}
	c.StopMember(t, 1)
	err := put("no-quorum")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write without quorum: %v, want ErrUnavailable", err)
	}
	if a.Available() {
		t.Fatal("store still says available")
	}
	t0 := time.Now()
	if err := put("again"); !errors.Is(err, ErrUnavailable) || time.Since(t0) > 100*time.Millisecond {
		t.Fatalf("second write without quorum: %v after %v, want ErrUnavailable at once", err, time.Since(t0))
	}
	var v []byte
	_ = a.View(func(tx Tx) error { v = bytes.Clone(tx.Get("machines", []byte("one-down"))); return nil })
	if string(v) != "v" {
		t.Fatal("reads stopped with the quorum")
	}
	c.StartMember(t, 1)
	deadline := time.Now().Add(15 * time.Second)
	for !a.Available() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := put("after"); err != nil {
		t.Fatalf("write after quorum returned: %v", err)
	}
	_ = a.View(func(tx Tx) error {
		for _, k := range []string{"before", "one-down", "after"} {
			if tx.Get("machines", []byte(k)) == nil {
				t.Errorf("%s lost", k)
			}
		}
		return nil
	})
}
