package state

import (
	"encoding/json"
	"fmt"

	"github.com/bootsrv/bootsrv/pkg/model"
)

// Profile returns the named profile; ok is false when there is none.
func (t Tx) Profile(name string) (p model.Profile, ok bool, err error) {
	ok, err = getJSON(t.kv, bProfiles, []byte(name), &p)
	return p, ok, err
}

// ProfileRaw is a profile's stored bytes (nil: none), for callers that
// cache its decoding or hash it.
func (t Tx) ProfileRaw(name string) []byte { return t.kv.Get(bProfiles, []byte(name)) }

// PutProfile stores p under its name.
func (t Tx) PutProfile(p model.Profile) error {
	p.Source = ""
	return putJSON(t.kv, bProfiles, []byte(p.Name), p)
}

// DeleteProfile removes a profile (the caller checked no machine uses it).
func (t Tx) DeleteProfile(name string) error { return t.kv.Delete(bProfiles, []byte(name)) }

// ProfilesRaw calls fn with every profile's name and stored bytes, by name.
func (t Tx) ProfilesRaw(fn func(name string, raw []byte) error) error {
	return t.kv.Scan(bProfiles, nil, func(k, v []byte) error { return stopped(fn(string(k), v)) })
}

// Profiles calls fn with every profile, by name.
func (t Tx) Profiles(fn func(model.Profile) error) error {
	return t.kv.Scan(bProfiles, nil, func(k, v []byte) error {
		var p model.Profile
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode profile %s: %w", k, err)
		}
		return stopped(fn(p))
	})
}

// MachinesOfProfile calls fn with the MAC of every machine of a profile,
// through the profile index: the cost is theirs, not the fleet's.
func (t Tx) MachinesOfProfile(profile string, fn func(mac string) error) error {
	prefix := []byte(profile + "\x00")
	return t.kv.Scan(bIdxProfile, prefix, func(k, _ []byte) error { return stopped(fn(string(k[len(prefix):]))) })
}
