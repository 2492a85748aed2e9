package state

import (
	"encoding/binary"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// Keys of the cluster bucket.
const (
	kCluster     = "cluster"
	kPKI         = "pki"
	kTokenKey    = "token-key"
	kReleasesGen = "releases_generation"
	// kGenPrefix keys, in the meta bucket, the next install generation
	// of a removed machine's MAC.
	kGenPrefix = "gen/"
)

// Cluster returns the cluster; ok is false when there is none yet.
func (t Tx) Cluster() (c model.Cluster, ok bool, err error) {
	ok, err = getJSON(t.kv, bCluster, []byte(kCluster), &c)
	return c, ok, err
}

// ClusterRaw is the cluster's stored bytes (nil: none), for callers that
// cache its decoding or hash it.
func (t Tx) ClusterRaw() []byte { return t.kv.Get(bCluster, []byte(kCluster)) }

// PutCluster stores the cluster.
func (t Tx) PutCluster(c model.Cluster) error { return putJSON(t.kv, bCluster, []byte(kCluster), c) }

// PKIRaw is the cluster's authorities as the core encoded them (nil: none).
func (t Tx) PKIRaw() []byte { return t.kv.Get(bCluster, []byte(kPKI)) }

// PutPKI stores the cluster's authorities (v is encoded as JSON).
func (t Tx) PutPKI(v any) error { return putJSON(t.kv, bCluster, []byte(kPKI), v) }

// TokenKey is the key tokens are signed with (nil: none yet).
func (t Tx) TokenKey() []byte { return t.kv.Get(bCluster, []byte(kTokenKey)) }

// PutTokenKey stores the token key.
func (t Tx) PutTokenKey(k []byte) error { return t.kv.Put(bCluster, []byte(kTokenKey), k) }

// ReleasesGeneration names the current release catalog: it changes with
// every import, so configs rendered from an older catalog are not reused.
func (t Tx) ReleasesGeneration() string { return string(t.kv.Get(bCluster, []byte(kReleasesGen))) }

// PutReleasesGeneration stores the catalog's generation.
func (t Tx) PutReleasesGeneration(g string) error {
	return t.kv.Put(bCluster, []byte(kReleasesGen), []byte(g))
}

// NextGeneration is the install generation a MAC added again starts at:
// a removed machine's next one, so tokens of its earlier installs stay
// dead (0 for a MAC never removed).
func (t Tx) NextGeneration(mac string) uint64 {
	if v := t.kv.Get(bMeta, []byte(kGenPrefix+mac)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// PutNextGeneration records the generation a removed MAC starts at.
func (t Tx) PutNextGeneration(mac string, gen uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], gen)
	return t.kv.Put(bMeta, []byte(kGenPrefix+mac), v[:])
}
