package assemble

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// decodeCache keeps profiles and the cluster decoded, keyed by their stored
// bytes: a boot request compares a few hundred bytes instead of decoding
// JSON, and a change to the stored record is seen at once because its bytes
// differ. There are few profiles and one cluster, so it stays small.
type decodeCache struct {
	mu       sync.RWMutex
	profiles map[string]rawProfile
	cl       rawCluster
}

type rawProfile struct {
	raw []byte
	p   model.Profile
}

type rawCluster struct {
	raw []byte
	c   model.Cluster
}

// maxCachedProfiles bounds the cache: an operator has tens of profiles,
// not thousands; past this the cache starts over.
const maxCachedProfiles = 1024

func (d *decodeCache) profile(name string, raw []byte) (model.Profile, error) {
	d.mu.RLock()
	e, ok := d.profiles[name]
	d.mu.RUnlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.p, nil
	}
	var p model.Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, err
	}
	d.mu.Lock()
	if d.profiles == nil || len(d.profiles) >= maxCachedProfiles {
		d.profiles = map[string]rawProfile{}
	}
	d.profiles[name] = rawProfile{raw: append([]byte(nil), raw...), p: p}
	d.mu.Unlock()
	return p, nil
}

func (d *decodeCache) cluster(raw []byte) (model.Cluster, error) {
	d.mu.RLock()
	e := d.cl
	d.mu.RUnlock()
	if e.raw != nil && bytes.Equal(e.raw, raw) {
		return e.c, nil
	}
	var c model.Cluster
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, err
	}
	d.mu.Lock()
	d.cl = rawCluster{raw: append([]byte(nil), raw...), c: c}
	d.mu.Unlock()
	return c, nil
}
