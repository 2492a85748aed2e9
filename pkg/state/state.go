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
}}

// Errors of opening, passed on from the engine.
var (
	ErrLocked      = store.ErrLocked
	ErrNewerSchema = store.ErrNewerSchema
)

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
