// Package state owns bootsrv's state file: which buckets exist, how each
// record is keyed and encoded, and the indexes that must move with every
// machine. Everything above it reads and writes through typed methods of a
// Tx (machines, profiles, the cluster, events, leases, certificates,
// rendered configs, releases, settings), never through bucket names; the
// engine below it (pkg/store) only knows transactions over keys, so that
// an etcd engine can stand beside bbolt.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bootsrv/bootsrv/pkg/store"
)

// SchemaVersion is the layout this binary reads and writes. Bump it (and
// add a migration) whenever a bucket, key or encoding below changes.
const SchemaVersion = 1

// FileName is the state file's name inside the data dir.
const FileName = store.FileName

// Buckets of schema 1, and what each maps.
const (
	bCluster     = "cluster"       // the one cluster, its PKI, token key, release generation
	bMeta        = "meta"          // schema version (the engine's), next generation of removed MACs
	bProfiles    = "profiles"      // name -> profile
	bMachines    = "machines"      // mac -> machine
	bIdxIP       = "idx_ip"        // ip -> mac
	bIdxHostname = "idx_hostname"  // hostname -> mac
	bIdxProfile  = "idx_profile"   // profile \x00 mac -> ""
	bEvents      = "events"        // mac \x00 seq (8 bytes, big endian) -> event
	bLeases      = "leases"        // ip -> lease
	bIdxLeaseMAC = "idx_lease_mac" // mac -> ip of its bound lease
	bCerts       = "certs"         // mac -> the machine's issued certificates and keys
	bRendered    = "rendered"      // mac -> hash of its inputs + the validated Ignition config
	bReleases    = "releases"      // component/version/arch/name -> an imported release binary
)

var schema = store.Schema{Version: SchemaVersion, Buckets: []string{
	bCluster, bProfiles, bMachines, bIdxIP, bIdxHostname, bIdxProfile, bEvents,
	bLeases, bIdxLeaseMAC, bCerts, bRendered, bReleases,
}, Secret: []string{bCluster, bCerts, bRendered}}

// Errors of opening, passed on from the engine.
var (
	ErrLocked      = store.ErrLocked
	ErrNewerSchema = store.ErrNewerSchema
	// ErrUnavailable: a shared store lost its quorum; reads go on from
	// this server's copy, writes wait.
	ErrUnavailable = store.ErrUnavailable
	// ErrWriteFailed: the state file could not be written (disk full);
	// nothing of the transaction is stored.
	ErrWriteFailed = store.ErrWriteFailed
)

// Transient says whether err is one a later try of the same write may not
// meet: the store is away or its disk is full, not the change wrong.
func Transient(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrWriteFailed)
}

// DB is the state over one engine.
type DB struct{ kv store.Store }

// Open opens (creating if needed) the bbolt state file in dataDir.
func Open(dataDir string, lockWait time.Duration) (*DB, error) {
	kv, err := store.Open(dataDir, lockWait, schema)
	if err != nil {
		return nil, err
	}
	return &DB{kv: kv}, nil
}

// Options say where the state lives: the bbolt file in DataDir, or an
// etcd cluster when Etcd is set (several servers share it).
type Options struct {
	DataDir  string
	LockWait time.Duration
	Etcd     *store.EtcdConfig
}

// OpenWith opens the state o names.
func OpenWith(o Options) (*DB, error) {
	if o.Etcd == nil {
		return Open(o.DataDir, o.LockWait)
	}
	kv, err := store.OpenEtcd(*o.Etcd, schema)
	if err != nil {
		return nil, err
	}
	return &DB{kv: kv}, nil
}

// Shared is the engine when other servers share it (nil for bbolt).
func (d *DB) Shared() store.Shared {
	s, _ := d.kv.(store.Shared)
	return s
}

// Available reports whether writes can be committed now (a shared store
// may have lost its quorum; the bbolt file always can).
func (d *DB) Available() bool {
	if s := d.Shared(); s != nil {
		return s.Available()
	}
	return true
}

// MaxBatchItems bounds the queued items one transaction carries (0: no
// bound).
func (d *DB) MaxBatchItems() int {
	if s := d.Shared(); s != nil {
		return s.MaxBatchItems()
	}
	return 0
}

// New is the state over an engine that already holds schema's buckets
// (tests wrap an opened engine to count or fail its commits).
func New(kv store.Store) *DB { return &DB{kv: kv} }

// Engine is the engine under the state, for tests that wrap it.
func (d *DB) Engine() store.Store { return d.kv }

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(Tx) error) error {
	return d.kv.View(func(t store.Tx) error { return fn(Tx{t}) })
}

// Update runs fn in one read-write transaction, committed durably.
func (d *DB) Update(fn func(Tx) error) error {
	return d.kv.Update(func(t store.Tx) error { return fn(Tx{t}) })
}

// Batch is Update for many concurrent callers sharing one commit; fn may
// run more than once, so it must only depend on what it reads in tx.
func (d *DB) Batch(fn func(Tx) error) error {
	return d.kv.Batch(func(t store.Tx) error { return fn(Tx{t}) })
}

// Path is where the state lives, for logs.
func (d *DB) Path() string { return d.kv.Path() }

// Close closes the engine.
func (d *DB) Close() error { return d.kv.Close() }

// Tx is one transaction over the state. Raw byte slices it returns are
// only valid inside the transaction: copy what you keep.
type Tx struct{ kv store.Tx }

// ErrStop ends a listing early without an error.
var ErrStop = store.ErrStop

func putJSON(tx store.Tx, bucket string, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%q: %w", bucket, key, err)
	}
	return tx.Put(bucket, key, b)
}

func getJSON(tx store.Tx, bucket string, key []byte, v any) (bool, error) {
	raw := tx.Get(bucket, key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode %s/%q: %w", bucket, key, err)
	}
	return true, nil
}

// stopped turns ErrStop from a caller's function into the end of a scan.
func stopped(err error) error {
	if errors.Is(err, ErrStop) {
		return store.ErrStop
	}
	return err
}

// SetSchemaForTest writes a schema version as a newer bootsrv would.
func (d *DB) SetSchemaForTest(v int) error {
	e, ok := d.kv.(*store.DB)
	if !ok {
		return fmt.Errorf("SetSchemaForTest: engine %T is not bbolt", d.kv)
	}
	return e.SetSchemaForTest(v)
}

// copyBuckets are what a whole-state copy carries: every bucket and the
// meta bucket's records (the engine keeps its own schema keys there).
func copyBuckets() []string { return append([]string{bMeta}, schema.Buckets...) }

func engineKey(bucket string, k []byte) bool {
	return bucket == bMeta && (string(k) == "schema" || string(k) == "keycheck")
}

// Copy writes every record of from into to, which must hold none, in
// transactions of at most chunk records, and returns how many of each
// bucket it copied. Stop the servers of both first: records written
// during the copy may be missed (Verify tells).
func Copy(from, to *DB, chunk int, progress func(bucket string, n int)) (map[string]int, error) {
	if n, err := records(to); err != nil {
		return nil, err
	} else if n > 0 {
		return nil, fmt.Errorf("the target %s already holds %d records: copy only into an empty store", to.Path(), n)
	}
	counts := map[string]int{}
	for _, b := range copyBuckets() {
		type kv struct{ k, v []byte }
		var all []kv
		if err := from.kv.View(func(tx store.Tx) error {
			return tx.Scan(b, nil, func(k, v []byte) error {
				if !engineKey(b, k) {
					all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
				}
				return nil
			})
		}); err != nil {
			return counts, fmt.Errorf("read %s of %s: %w", b, from.Path(), err)
		}
		for len(all) > 0 {
			n := min(chunk, len(all))
			part := all[:n]
			if err := to.kv.Update(func(tx store.Tx) error {
				for _, r := range part {
					if err := tx.Put(b, r.k, r.v); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return counts, fmt.Errorf("write %s to %s: %w", b, to.Path(), err)
			}
			all = all[n:]
			counts[b] += n
			if progress != nil {
				progress(b, counts[b])
			}
		}
	}
	return counts, nil
}

// records counts the records of every bucket a copy carries.
func records(d *DB) (int, error) {
	n := 0
	err := d.kv.View(func(tx store.Tx) error {
		for _, b := range copyBuckets() {
			if err := tx.Scan(b, nil, func(k, v []byte) error {
				if !engineKey(b, k) {
					n++
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// Verify compares two states record by record and names the first
// difference.
func Verify(a, b *DB) error {
	dump := func(d *DB, bucket string) (map[string]string, error) {
		m := map[string]string{}
		err := d.kv.View(func(tx store.Tx) error {
			return tx.Scan(bucket, nil, func(k, v []byte) error {
				if !engineKey(bucket, k) {
					m[string(k)] = string(v)
				}
				return nil
			})
		})
		return m, err
	}
	for _, bk := range copyBuckets() {
		ma, err := dump(a, bk)
		if err != nil {
			return err
		}
		mb, err := dump(b, bk)
		if err != nil {
			return err
		}
		if len(ma) != len(mb) {
			return fmt.Errorf("bucket %s: %d records in %s, %d in %s", bk, len(ma), a.Path(), len(mb), b.Path())
		}
		for k, v := range ma {
			if w, ok := mb[k]; !ok || w != v {
				return fmt.Errorf("bucket %s: record %q differs between %s and %s", bk, k, a.Path(), b.Path())
			}
		}
	}
	return nil
}
