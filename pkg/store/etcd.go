package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrUnavailable means the shared store cannot be reached (no quorum, no
// member answering). Reads go on from what this server holds; writes fail
// at once until a probe finds the store back.
var ErrUnavailable = errors.New("etcd store unavailable")

// EtcdConfig says how to reach the etcd cluster bootsrv keeps its state in.
type EtcdConfig struct {
	Endpoints []string // host:port or URLs; https when TLS files are given
	// CAFile verifies the members; CertFile and KeyFile are bootsrv's
	// client certificate (its etcd user is the certificate's CN).
	CAFile, CertFile, KeyFile string
	// Prefix holds every key ("/bootsrv/" by default): the etcd role of
	// bootsrv's user needs read and write on it, and nobody else should.
	Prefix string
	// SecretKeyFile holds the key that encrypts the values of the schema's
	// secret buckets. It is created when absent; every server of one store
	// needs the same file.
	SecretKeyFile string
	Log           *slog.Logger
	// OpTimeout bounds one commit (default 3 s).
	OpTimeout time.Duration
}

// DefaultPrefix is where bootsrv's keys live in etcd.
const DefaultPrefix = "/bootsrv/"

// MaxTxnOps is what bootsrv needs of etcd's --max-txn-ops: a machine
// import is one transaction of about 9 operations per machine, so this
// takes about 1,800 machines at once (with --max-request-bytes 10 MiB).
const MaxTxnOps = 16384

// EtcdBatchItems is how many journal items go in one etcd transaction.
const EtcdBatchItems = 100

// Etcd is the etcd implementation of Store. It keeps a full copy of the
// state in memory, loaded at one revision and kept current by a watch:
// reads are local (a boot script costs no round trip, and a server that
// loses etcd still answers from what it holds), and every write is one
// etcd transaction guarded by the mod revisions of what it read, so two
// servers never lose each other's updates.
type Etcd struct {
	cli    *clientv3.Client
	cfg    EtcdConfig
	prefix string
	schema Schema
	secret map[string]bool
	box    *secretBox
	log    *slog.Logger

	mu   sync.Mutex
	cond *sync.Cond
	tree *btree.BTreeG[item] // guarded by mu; snap is its latest clone
	rev  int64
	snap atomic.Pointer[snapshot]

	smu  sync.RWMutex
	subs map[string][]func(key, val []byte)

	bmu     sync.Mutex
	pending []*batchCall

	up     atomic.Bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type item struct {
	key string // bucket "/" key, below the prefix
	val []byte
	mod int64
}

func itemLess(a, b item) bool { return a.key < b.key }

type snapshot struct {
	t   *btree.BTreeG[item]
	rev int64
}

// delMarker is the key every transaction that deletes in bucket also
// writes: a scan guards against concurrent deletes by its mod revision
// (etcd's range compares see changed and new keys, not removed ones).
func delMarker(bucket string) string { return "\x01del/" + bucket }

// OpenEtcd connects to etcd, checks the schema and the secret key, loads
// the state and starts watching it.
func OpenEtcd(cfg EtcdConfig, schema Schema) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints (give --store etcd://HOST:2379,...)")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 3 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	tlsCfg, err := etcdTLS(cfg)
	if err != nil {
		return nil, err
	}
	eps := make([]string, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		if !strings.Contains(ep, "://") {
			if tlsCfg != nil {
				ep = "https://" + ep
			} else {
				ep = "http://" + ep
			}
		}
		eps[i] = ep
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: eps, TLS: tlsCfg, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), AutoSyncInterval: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store %s: %w", strings.Join(eps, ","), err)
	}
	e := &Etcd{cli: cli, cfg: cfg, prefix: cfg.Prefix, schema: schema, secret: map[string]bool{},
		log: cfg.Log, subs: map[string][]func(key, val []byte){}}
	for _, b := range schema.Secret {
		e.secret[b] = true
	}
	e.cond = sync.NewCond(&e.mu)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := e.init(); err != nil {
		e.cancel()
		cli.Close()
		return nil, err
	}
	e.up.Store(true)
	e.wg.Add(2)
	go e.watch()
	go e.probe()
	return e, nil
}

func etcdTLS(cfg EtcdConfig) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && cfg.KeyFile == "" {
		return nil, nil
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.CAFile == "" {
		return nil, errors.New("etcd store: give all three of --etcd-ca, --etcd-cert and --etcd-key (or BOOTSRV_ETCD_CA, _CERT, _KEY)")
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", cfg.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s, key %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// init checks (or writes) the schema version and the secret key's check
// value in one guarded transaction, then loads the state.
func (e *Etcd) init() error {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	box, err := loadSecretBox(e.cfg.SecretKeyFile)
	if err != nil {
		return err
	}
	e.box = box
	schemaKey, checkKey := e.prefix+"meta/schema", e.prefix+"meta/keycheck"
	resp, err := e.cli.Get(ctx, e.prefix+"meta/", clientv3.WithPrefix())
	if err != nil {
		return e.opError("read schema", err)
	}
	var haveSchema, haveCheck int64
	for _, kv := range resp.Kvs {
		switch string(kv.Key) {
		case schemaKey:
			haveSchema = kv.ModRevision
			n, err := strconv.Atoi(string(kv.Value))
			if err != nil {
				return fmt.Errorf("%s: unreadable schema version %q", e.Path(), kv.Value)
			}
			if n > e.schema.Version {
				return fmt.Errorf("%s has schema %d, this bootsrv knows up to %d: %w; run a bootsrv at least as new as the one that wrote it",
					e.Path(), n, e.schema.Version, ErrNewerSchema)
			}
		case checkKey:
			haveCheck = kv.ModRevision
			if err := e.box.check(kv.Value); err != nil {
				return fmt.Errorf("%s: %w", e.Path(), err)
			}
		}
	}
	if haveSchema == 0 || haveCheck == 0 {
		var ops []clientv3.Op
		var cmps []clientv3.Cmp
		if haveSchema == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(schemaKey), "=", 0))
			ops = append(ops, clientv3.OpPut(schemaKey, strconv.Itoa(e.schema.Version)))
		}
		if haveCheck == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(checkKey), "=", 0))
			ops = append(ops, clientv3.OpPut(checkKey, string(e.box.checkValue())))
		}
		r, err := e.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return e.opError("write schema", err)
		}
		if !r.Succeeded {
			return e.init() // another server wrote them first: check theirs
		}
	}
	return e.load(ctx)
}

// load reads the whole prefix at one revision into a new tree.
func (e *Etcd) load(ctx context.Context) error {
	t := btree.NewG(32, itemLess)
	key, end := e.prefix, clientv3.GetPrefixRangeEnd(e.prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(2000)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := e.cli.Get(ctx, key, opts...)
		if err != nil {
			return e.opError("load state", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			it, err := e.decode(kv)
			if err != nil {
				return err
			}
			t.ReplaceOrInsert(it)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	e.mu.Lock()
	e.tree, e.rev = t, rev
	e.snap.Store(&snapshot{t: t.Clone(), rev: rev})
	e.cond.Broadcast()
	e.mu.Unlock()
	return nil
}

func (e *Etcd) decode(kv *mvccpb.KeyValue) (item, error) {
	rel := strings.TrimPrefix(string(kv.Key), e.prefix)
	val := kv.Value
	if b, _, ok := strings.Cut(rel, "/"); ok && e.secret[b] {
		plain, err := e.box.open(val, rel)
		if err != nil {
			return item{}, fmt.Errorf("%s: key %q: %w", e.Path(), rel, err)
		}
		val = plain
	}
	if val == nil {
		val = []byte{}
	}
	return item{key: rel, val: val, mod: kv.ModRevision}, nil
}

// watch applies every change under the prefix to the copy in memory, from
// the revision it was loaded at; a compacted history reloads it whole.
func (e *Etcd) watch() {
	defer e.wg.Done()
	for e.ctx.Err() == nil {
		e.mu.Lock()
		from := e.rev + 1
		e.mu.Unlock()
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(e.ctx))
		wch := e.cli.Watch(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		reload := false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				reload = true
				break
			}
			if resp.Err() != nil {
				break
			}
			e.apply(resp)
		}
		cancel()
		if reload && e.ctx.Err() == nil {
			lctx, lcancel := context.WithTimeout(e.ctx, 30*time.Second)
			if err := e.load(lctx); err != nil {
				e.log.Warn("etcd store: reload after compaction failed; retrying", "err", err)
			} else {
				e.log.Info("etcd store: history compacted past this server's copy; reloaded it whole")
				e.notifyAll()
			}
			lcancel()
		}
		select {
		case <-e.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type change struct {
	bucket   string
	key, val []byte
}

func (e *Etcd) apply(resp clientv3.WatchResponse) {
	var changes []change
	e.mu.Lock()
	rev := e.rev
	for _, ev := range resp.Events {
		rel := strings.TrimPrefix(string(ev.Kv.Key), e.prefix)
		b, k, _ := strings.Cut(rel, "/")
		switch ev.Type {
		case mvccpb.PUT:
			it, err := e.decode(ev.Kv)
			if err != nil {
				e.log.Error("etcd store: undecodable value ignored", "err", err)
				continue
			}
			e.tree.ReplaceOrInsert(it)
			changes = append(changes, change{b, []byte(k), it.val})
		case mvccpb.DELETE:
			e.tree.Delete(item{key: rel})
			changes = append(changes, change{b, []byte(k), nil})
		}
		rev = max(rev, ev.Kv.ModRevision)
	}
	if len(resp.Events) == 0 && resp.Header.Revision > rev {
		rev = resp.Header.Revision // a progress notice: nothing of ours changed up to it
	}
	e.rev = rev
	e.snap.Store(&snapshot{t: e.tree.Clone(), rev: rev})
	e.cond.Broadcast()
	e.mu.Unlock()
	e.notify(changes)
}

func (e *Etcd) notify(changes []change) {
	e.smu.RLock()
	defer e.smu.RUnlock()
	for _, c := range changes {
		for _, fn := range e.subs[c.bucket] {
			fn(c.key, c.val)
		}
	}
}

// notifyAll tells subscribers every key of their buckets after a reload
// (deletions in between are not replayed: they reload themselves if they
// keep more than the store holds).
func (e *Etcd) notifyAll() {
	s := e.snap.Load()
	var changes []change
	e.smu.RLock()
	for b := range e.subs {
		s.t.AscendRange(item{key: b + "/"}, item{key: b + "0"}, func(it item) bool {
			changes = append(changes, change{b, []byte(strings.TrimPrefix(it.key, b+"/")), it.val})
			return true
		})
	}
	e.smu.RUnlock()
	e.notify(changes)
}

// Watch calls fn with every change to bucket made by any server (this one
// included), in commit order: the key and its new value, nil when deleted.
// fn runs on the watch's goroutine and must not block.
func (e *Etcd) Watch(bucket string, fn func(key, val []byte)) {
	e.smu.Lock()
	defer e.smu.Unlock()
	e.subs[bucket] = append(e.subs[bucket], fn)
}

// probe checks a store marked unavailable every second with a quorum read,
// and logs each change of state once.
func (e *Etcd) probe() {
	defer e.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		if e.up.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(e.ctx, time.Second)
		_, err := e.cli.Get(ctx, e.prefix+"meta/schema")
		cancel()
		if err == nil && e.up.CompareAndSwap(false, true) {
			e.log.Info("etcd store reachable again: writes and new pool addresses resume")
		}
	}
}

// markDown records that etcd did not answer, logging it once.
func (e *Etcd) markDown(err error) {
	if e.up.CompareAndSwap(true, false) {
		e.log.Warn("etcd store unreachable: answering from this server's copy; reservations of known machines are still served, new pool addresses and other writes wait until it is back",
			"endpoints", strings.Join(e.cfg.Endpoints, ","), "err", err)
	}
}

// Available reports whether writes can be committed now.
func (e *Etcd) Available() bool { return e.up.Load() }

// opError names what etcd refused and how to fix it; a store that does not
// answer is marked unavailable.
func (e *Etcd) opError(what string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("%s: etcd refused a transaction with too many operations: start every etcd member with --max-txn-ops=%d or more", what, MaxTxnOps)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%s: etcd refused a request as too large: start every etcd member with --max-request-bytes=10485760 or more", what)
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("%s: etcd refused bootsrv's user: %w (its client certificate's CN names an etcd user whose role needs readwrite on the prefix %s)", what, err, e.prefix)
	case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
		return fmt.Errorf("%s: store closed", what)
	}
	e.markDown(err)
	return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
}

// Path names the store, for logs.
func (e *Etcd) Path() string { return "etcd://" + strings.Join(e.cfg.Endpoints, ",") + e.prefix }

// Close stops the watch and closes the client.
func (e *Etcd) Close() error {
	e.cancel()
	e.mu.Lock()
	e.cond.Broadcast()
	e.mu.Unlock()
	e.wg.Wait()
	return e.cli.Close()
}

// Revision is the etcd revision this server's copy is at.
func (e *Etcd) Revision() int64 { return e.snap.Load().rev }

// Client is the etcd client, for elections and server registration.
func (e *Etcd) Client() *clientv3.Client { return e.cli }

// Prefix is where bootsrv's keys live.
func (e *Etcd) Prefix() string { return e.prefix }

// waitRev waits until the copy in memory is at rev or later, or d passed.
func (e *Etcd) waitRev(rev int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		e.mu.Lock()
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	defer timer.Stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.rev < rev && time.Now().Before(deadline) && e.ctx.Err() == nil {
		e.cond.Wait()
	}
	return e.rev >= rev
}

func (e *Etcd) View(fn func(Tx) error) error {
	return fn(&etcdTx{e: e, s: e.snap.Load(), readonly: true})
}

// Update runs fn against this server's copy and commits what it wrote in
// one etcd transaction that holds only if nothing it read changed since;
// when something did, it waits for the change to arrive and runs fn again.
// It returns once the change is in this server's copy too, so a read
// after a write sees it.
func (e *Etcd) Update(fn func(Tx) error) error {
	for attempt := 0; ; attempt++ {
		if !e.up.Load() {
			return fmt.Errorf("%w (%s)", ErrUnavailable, e.Path())
		}
		s := e.snap.Load()
		tx := &etcdTx{e: e, s: s, reads: map[string]int64{}, writes: map[string][]byte{}}
		if err := fn(tx); err != nil {
			return err
		}
		if len(tx.order) == 0 {
			return nil
		}
		cmps, ops := tx.txn()
		// WithRequireLeader: a member that lost its leader says so at once
		// instead of holding the commit until the timeout.
		ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(e.ctx), e.cfg.OpTimeout)
		resp, err := e.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return e.opError("commit", err)
		}
		if resp.Succeeded {
			e.waitRev(resp.Header.Revision, 5*time.Second)
			return nil
		}
		if attempt >= 100 {
			return fmt.Errorf("commit: %w: %d attempts lost to concurrent writers", ErrConflict, attempt+1)
		}
		// Something read changed: wait for it to arrive, then redo.
		e.waitRev(s.rev+1, time.Second)
	}
}

// Batch is Update for many concurrent callers (DHCP binds): their
// functions are gathered for up to batchDelay, run on one transaction and
// committed together, guarded by everything any of them read. A function
// that fails is taken out and run alone, so its error is its own; fn may
// run more than once.
func (e *Etcd) Batch(fn func(Tx) error) error {
	call := &batchCall{fn: fn, res: make(chan error, 1)}
	e.bmu.Lock()
	e.pending = append(e.pending, call)
	if len(e.pending) == 1 {
		time.AfterFunc(batchDelay, e.runBatch)
	} else if len(e.pending) >= batchMax {
		go e.runBatch()
	}
	e.bmu.Unlock()
	return <-call.res
}

const (
	batchDelay = 2 * time.Millisecond
	batchMax   = 64
)

type batchCall struct {
	fn  func(Tx) error
	res chan error
}

func (e *Etcd) runBatch() {
	e.bmu.Lock()
	calls := e.pending
	e.pending = nil
	e.bmu.Unlock()
	if len(calls) == 0 {
		return
	}
	for len(calls) > 0 {
		var failed *batchCall
		err := e.Update(func(tx Tx) error {
			for _, c := range calls {
				if err := c.fn(tx); err != nil {
					failed = c
					return errBatchCall
				}
			}
			return nil
		})
		if err == errBatchCall {
			calls = without(calls, failed)
			go func() { failed.res <- e.Update(failed.fn) }()
			continue
		}
		for _, c := range calls {
			c.res <- err
		}
		return
	}
}

var errBatchCall = errors.New("a batched call failed")

func without(calls []*batchCall, c *batchCall) []*batchCall {
	out := calls[:0:0]
	for _, x := range calls {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

// MaxBatchItems is how many journal items one transaction may carry.
func (e *Etcd) MaxBatchItems() int { return EtcdBatchItems }

type scanRec struct {
	bucket     string
	start, end string // below the prefix
	markerMod  int64
}

type etcdTx struct {
	e        *Etcd
	s        *snapshot
	readonly bool
	reads    map[string]int64 // key -> mod revision seen (0: absent)
	scans    []scanRec
	writes   map[string][]byte // key -> value; nil: deleted
	order    []string
}

func (t *etcdTx) get(rel string) []byte {
	if v, ok := t.writes[rel]; ok {
		return v
	}
	it, ok := t.s.t.Get(item{key: rel})
	if !t.readonly {
		if _, seen := t.reads[rel]; !seen {
			t.reads[rel] = it.mod
		}
	}
	if !ok {
		return nil
	}
	return it.val
}

func (t *etcdTx) Get(bucket string, key []byte) []byte { return t.get(bucket + "/" + string(key)) }

func (t *etcdTx) put(rel string, value []byte) {
	if t.readonly {
		panic("store: write in a read-only transaction")
	}
	if _, ok := t.writes[rel]; !ok {
		t.order = append(t.order, rel)
	}
	t.writes[rel] = value
}

func (t *etcdTx) Put(bucket string, key, value []byte) error {
	v := make([]byte, len(value))
	copy(v, value)
	t.put(bucket+"/"+string(key), v)
	return nil
}

func (t *etcdTx) Delete(bucket string, key []byte) error {
	t.put(bucket+"/"+string(key), nil)
	return nil
}

func (t *etcdTx) CompareAndSwap(bucket string, key, old, value []byte) error {
	cur := t.Get(bucket, key)
	if (cur == nil) != (old == nil) || string(cur) != string(old) {
		return fmt.Errorf("%s/%q: %w", bucket, key, ErrConflict)
	}
	return t.Put(bucket, key, value)
}

func (t *etcdTx) scanRange(bucket string, prefix []byte) (string, string) {
	start := bucket + "/" + string(prefix)
	return start, strings.TrimPrefix(clientv3.GetPrefixRangeEnd(t.e.prefix+start), t.e.prefix)
}

func (t *etcdTx) noteScan(bucket, start, end string) {
	if t.readonly {
		return
	}
	m, _ := t.s.t.Get(item{key: delMarker(bucket)})
	t.scans = append(t.scans, scanRec{bucket: bucket, start: start, end: end, markerMod: m.mod})
}

func (t *etcdTx) Scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	start, end := t.scanRange(bucket, prefix)
	t.noteScan(bucket, start, end)
	cut := len(bucket) + 1
	var pending []string
	for _, rel := range t.order {
		if rel >= start && rel < end {
			pending = append(pending, rel)
		}
	}
	var ferr error
	visit := func(rel string, v []byte) bool {
		if err := fn([]byte(rel[cut:]), v); err != nil {
			if !errors.Is(err, ErrStop) {
				ferr = err
			}
			return false
		}
		return true
	}
	if len(pending) == 0 {
		t.s.t.AscendRange(item{key: start}, item{key: end}, func(it item) bool { return visit(it.key, it.val) })
		return ferr
	}
	// This transaction wrote in the range: merge its writes over the copy.
	sort.Strings(pending)
	i := 0
	more := true
	t.s.t.AscendRange(item{key: start}, item{key: end}, func(it item) bool {
		for ; i < len(pending) && pending[i] < it.key; i++ {
			if v := t.writes[pending[i]]; v != nil && !visit(pending[i], v) {
				more = false
				return false
			}
		}
		if i < len(pending) && pending[i] == it.key {
			v := t.writes[pending[i]]
			i++
			if v == nil {
				return true
			}
			more = visit(it.key, v)
			return more
		}
		more = visit(it.key, it.val)
		return more
	})
	for ; more && i < len(pending); i++ {
		if v := t.writes[pending[i]]; v != nil && !visit(pending[i], v) {
			break
		}
	}
	return ferr
}

func (t *etcdTx) Count(bucket string) int {
	n := 0
	_ = t.Scan(bucket, nil, func(k, v []byte) error { n++; return nil })
	return n
}

// txn builds the guarded transaction: every key read must still have the
// mod revision it was read at, every scanned range no key changed after
// the copy's revision and no delete in its bucket since.
func (t *etcdTx) txn() ([]clientv3.Cmp, []clientv3.Op) {
	p := t.e.prefix
	var cmps []clientv3.Cmp
	covered := func(rel string) bool {
		for _, s := range t.scans {
			if rel >= s.start && rel < s.end {
				return true
			}
		}
		return false
	}
	keys := make([]string, 0, len(t.reads))
	for rel := range t.reads {
		keys = append(keys, rel)
	}
	sort.Strings(keys)
	for _, rel := range keys {
		if !covered(rel) {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+rel), "=", t.reads[rel]))
		}
	}
	seenMarker := map[string]bool{}
	for _, s := range t.scans {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+s.start), "<", t.s.rev+1).WithRange(p+s.end))
		if !seenMarker[s.bucket] {
			seenMarker[s.bucket] = true
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+delMarker(s.bucket)), "=", s.markerMod))
		}
	}
	ops := make([]clientv3.Op, 0, len(t.order)+1)
	deleted := map[string]bool{}
	for _, rel := range t.order {
		v := t.writes[rel]
		b, _, _ := strings.Cut(rel, "/")
		if v == nil {
			ops = append(ops, clientv3.OpDelete(p+rel))
			deleted[b] = true
			continue
		}
		if t.e.secret[b] {
			v = t.e.box.seal(v, rel)
		}
		ops = append(ops, clientv3.OpPut(p+rel, string(v)))
	}
	bs := make([]string, 0, len(deleted))
	for b := range deleted {
		bs = append(bs, b)
	}
	sort.Strings(bs)
	for _, b := range bs {
		ops = append(ops, clientv3.OpPut(p+delMarker(b), ""))
	}
	return cmps, ops
}
