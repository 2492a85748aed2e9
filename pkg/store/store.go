// Package store is the engine under pkg/state, and the one place that
// touches bbolt or etcd: it opens the state (a bbolt file, or a prefix in
// an etcd cluster shared by several servers), checks its schema version
// and offers transactions over keys in the buckets pkg/state names. The
// interface is narrow (get, put, delete, compare-and-swap, scan a prefix)
// so that both engines give the rest of bootsrv the same transactions.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Schema is what a state file holds: its layout version and its buckets
// (pkg/state owns both). The engine adds "meta", where it keeps the
// version.
type Schema struct {
	Version int
	Buckets []string
	// Secret buckets hold keys: a shared engine encrypts their values.
	Secret []string
}

// FileName is the state file's name inside the data dir.
const FileName = "bootsrv.db"

// ErrLocked means another process (normally a running bootsrv serve) holds
// the state file.
var ErrLocked = errors.New("state file is locked by another process")

// ErrNewerSchema means the file was written by a newer bootsrv.
var ErrNewerSchema = errors.New("state file has a newer schema")

// ErrConflict is returned by CompareAndSwap when the current value differs
// from the expected one.
var ErrConflict = errors.New("value changed concurrently")

// Tx is a transaction over keys in named buckets. Values returned by Get and
// passed to Scan are only valid inside the transaction: copy what you keep.
type Tx interface {
	Get(bucket string, key []byte) []byte
	Put(bucket string, key, value []byte) error
	Delete(bucket string, key []byte) error
	// CompareAndSwap stores value when the current value equals old (nil:
	// absent), and fails with ErrConflict otherwise.
	CompareAndSwap(bucket string, key, old, value []byte) error
	// Scan calls fn for every key with the prefix, in key order, until fn
	// returns an error (ErrStop ends it without error).
	Scan(bucket string, prefix []byte, fn func(k, v []byte) error) error
	// Count returns the number of keys in the bucket.
	Count(bucket string) int
}

// ErrStop ends a Scan early without an error.
var ErrStop = errors.New("stop scan")

// Store is a transactional key-value state.
type Store interface {
	View(fn func(Tx) error) error
	// Update runs fn in one read-write transaction, committed durably.
	Update(fn func(Tx) error) error
	// Batch is Update for many concurrent callers: their functions share one
	// commit (group commit). fn may run more than once, so it must only
	// depend on what it reads in the transaction.
	Batch(fn func(Tx) error) error
	Path() string
	Close() error
}

// Shared is what an engine shared by several servers (etcd) adds: changes
// made by other servers, and whether writes can be committed now.
type Shared interface {
	Store
	// Watch calls fn with every change to bucket, by any server, in
	// commit order (val nil: deleted).
	Watch(bucket string, fn func(key, val []byte))
	Available() bool
	// MaxBatchItems bounds how many queued items one transaction carries.
	MaxBatchItems() int
}

// DB is the bbolt implementation of Store.
type DB struct {
	db     *bolt.DB
	path   string
	schema Schema
}

// Open opens (creating if needed) the state file in dataDir. It fails with
// ErrLocked when another process holds the file for longer than lockWait.
func Open(dataDir string, lockWait time.Duration, schema Schema) (*DB, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w (choose another with --data-dir or BOOTSRV_DATA_DIR)", dataDir, err)
	}
	if err := checkWritable(dataDir); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, FileName)
	if lockWait <= 0 {
		lockWait = 100 * time.Millisecond
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w (is a bootsrv server running with this data dir?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Group commit: leases and events from many concurrent exchanges share
	// one fsync. 2 ms keeps a lone client's latency low.
	bdb.MaxBatchDelay = 2 * time.Millisecond
	bdb.MaxBatchSize = 2000
	s := &DB{db: bdb, path: path, schema: schema}
	if err := s.initSchema(); err != nil {
		bdb.Close()
		return nil, err
	}
	return s, nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w (fix its permissions, or choose another with --data-dir or BOOTSRV_DATA_DIR)", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func (s *DB) initSchema() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return fmt.Errorf("create bucket meta: %w", err)
		}
		if v := meta.Get([]byte("schema")); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return fmt.Errorf("%s: unreadable schema version %q", s.path, v)
			}
			if n > s.schema.Version {
				return fmt.Errorf("%s has schema %d, this bootsrv knows up to %d: %w; run a bootsrv at least as new as the one that wrote it",
					s.path, n, s.schema.Version, ErrNewerSchema)
			}
		}
		for _, b := range s.schema.Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return meta.Put([]byte("schema"), []byte(strconv.Itoa(s.schema.Version)))
	})
}

// SetSchemaForTest writes a schema version as a newer bootsrv would.
func (s *DB) SetSchemaForTest(v int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte(strconv.Itoa(v)))
	})
}

func (s *DB) View(fn func(Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (s *DB) Update(fn func(Tx) error) error {
	return writeErr(s.db.Update(func(tx *bolt.Tx) error { return fnErr(fn(boltTx{tx})) }))
}

func (s *DB) Batch(fn func(Tx) error) error {
	return writeErr(s.db.Batch(func(tx *bolt.Tx) error { return fnErr(fn(boltTx{tx})) }))
}

// ErrWriteFailed means a transaction's changes were sound but could not be
// written (a full disk, an I/O error): nothing of it is stored, and the
// same change may succeed once the disk has room. bbolt does not keep the
// cause's type in every path, so the engine marks it.
var ErrWriteFailed = errors.New("writing the state file failed")

// fnError carries an error of the transaction's own function through
// bbolt, so that writeErr tells it from a failed commit.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func fnErr(err error) error {
	if err == nil {
		return nil
	}
	return fnError{err}
}

func writeErr(err error) error {
	var fe fnError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe.err
	}
	return fmt.Errorf("%w (is the disk under the data dir full?): %v", ErrWriteFailed, err)
}

func (s *DB) Path() string { return s.path }

func (s *DB) Close() error { return s.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name string) *bolt.Bucket {
	b := t.tx.Bucket([]byte(name))
	if b == nil {
		// A bucket name not in the schema is a programming error, not bad input.
		panic("store: unknown bucket " + name)
	}
	return b
}

func (t boltTx) Get(bucket string, key []byte) []byte { return t.bucket(bucket).Get(key) }

func (t boltTx) Put(bucket string, key, value []byte) error {
	if err := t.bucket(bucket).Put(key, value); err != nil {
		return fmt.Errorf("put %s/%q: %w", bucket, key, err)
	}
	return nil
}

func (t boltTx) Delete(bucket string, key []byte) error {
	if err := t.bucket(bucket).Delete(key); err != nil {
		return fmt.Errorf("delete %s/%q: %w", bucket, key, err)
	}
	return nil
}

func (t boltTx) CompareAndSwap(bucket string, key, old, value []byte) error {
	cur := t.bucket(bucket).Get(key)
	if (cur == nil) != (old == nil) || !bytes.Equal(cur, old) {
		return fmt.Errorf("%s/%q: %w", bucket, key, ErrConflict)
	}
	return t.Put(bucket, key, value)
}

func (t boltTx) Scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	c := t.bucket(bucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (t boltTx) Count(bucket string) int { return t.bucket(bucket).Stats().KeyN }
