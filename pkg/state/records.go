package state

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/release"
)

// Leases calls fn with every durable lease (bound or declined).
func (t Tx) Leases(fn func(model.Lease) error) error {
	return t.kv.Scan(bLeases, nil, func(k, v []byte) error {
		var le model.Lease
		if err := json.Unmarshal(v, &le); err != nil {
			return fmt.Errorf("lease %s: %w", k, err)
		}
		return stopped(fn(le))
	})
}

// Lease is the durable lease of ip (ok false: none).
func (t Tx) Lease(ip netip.Addr) (le model.Lease, ok bool, err error) {
	ok, err = getJSON(t.kv, bLeases, []byte(ip.String()), &le)
	return le, ok, err
}

// BoundLease is the address mac's bound lease is indexed under.
func (t Tx) BoundLease(mac string) (netip.Addr, bool) {
	v := t.kv.Get(bIdxLeaseMAC, []byte(mac))
	if v == nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(string(v))
	return ip, err == nil
}

// WatchLeases calls fn with every lease another server (or this one)
// changes in a shared store: the lease, or ok false when ip's was
// dropped. The bbolt file has one writer, so it never calls fn.
func (d *DB) WatchLeases(fn func(ip netip.Addr, le model.Lease, ok bool)) {
	s := d.Shared()
	if s == nil {
		return
	}
	s.Watch(bLeases, func(k, v []byte) {
		ip, err := netip.ParseAddr(string(k))
		if err != nil {
			return
		}
		if v == nil {
			fn(ip, model.Lease{}, false)
			return
		}
		var le model.Lease
		if json.Unmarshal(v, &le) == nil {
			fn(ip, le, true)
		}
	})
}

// PutLease stores a lease under its address.
func (t Tx) PutLease(le model.Lease) error {
	return putJSON(t.kv, bLeases, []byte(le.IP.String()), le)
}

// DeleteLease drops the lease of ip.
func (t Tx) DeleteLease(ip netip.Addr) error { return t.kv.Delete(bLeases, []byte(ip.String())) }

// BoundLeases calls fn with every MAC's bound address, as indexed.
func (t Tx) BoundLeases(fn func(mac string, ip netip.Addr) error) error {
	return t.kv.Scan(bIdxLeaseMAC, nil, func(k, v []byte) error {
		ip, err := netip.ParseAddr(string(v))
		if err != nil {
			return fmt.Errorf("lease index %s: %w", k, err)
		}
		return stopped(fn(string(k), ip))
	})
}

// PutBoundLease indexes mac's bound address.
func (t Tx) PutBoundLease(mac string, ip netip.Addr) error {
	return t.kv.Put(bIdxLeaseMAC, []byte(mac), []byte(ip.String()))
}

// DeleteBoundLease drops mac's bound-address index entry.
func (t Tx) DeleteBoundLease(mac string) error { return t.kv.Delete(bIdxLeaseMAC, []byte(mac)) }

// CertsRaw is a machine's issued certificate set as the core encoded it
// (nil: none).
func (t Tx) CertsRaw(mac string) []byte { return t.kv.Get(bCerts, []byte(mac)) }

// PutCerts stores a machine's certificate set and drops its rendered
// config, which holds the set it replaces.
func (t Tx) PutCerts(mac string, raw []byte) error {
	if err := t.kv.Delete(bRendered, []byte(mac)); err != nil {
		return err
	}
	return t.kv.Put(bCerts, []byte(mac), raw)
}

// DeleteCerts forgets a machine's certificates and its rendered config,
// so that the next render issues new ones.
func (t Tx) DeleteCerts(mac string) error {
	if err := t.kv.Delete(bRendered, []byte(mac)); err != nil {
		return err
	}
	return t.kv.Delete(bCerts, []byte(mac))
}

// AllCerts calls fn with every machine's certificate set, by MAC.
func (t Tx) AllCerts(fn func(mac string, raw []byte) error) error {
	return t.kv.Scan(bCerts, nil, func(k, v []byte) error { return stopped(fn(string(k), v)) })
}

// Rendered is a machine's kept Ignition config with the hash of its
// inputs in front (nil: none).
func (t Tx) Rendered(mac string) []byte { return t.kv.Get(bRendered, []byte(mac)) }

// PutRendered keeps a machine's rendered config.
func (t Tx) PutRendered(mac string, v []byte) error { return t.kv.Put(bRendered, []byte(mac), v) }

func releaseKey(a release.Asset) []byte {
	return []byte(a.Component + "/" + a.Version + "/" + a.Arch + "/" + a.Name)
}

// Release returns one imported binary; ok is false when it is not imported.
func (t Tx) Release(component, version, arch, name string) (a release.Asset, ok bool, err error) {
	key := release.Asset{Component: component, Version: version, Arch: arch, Name: name}
	ok, err = getJSON(t.kv, bReleases, releaseKey(key), &a)
	return a, ok, err
}

// Releases calls fn with every imported binary of the release dir
// COMPONENT/VERSION/ARCH/ that prefix names ("": all), by key.
func (t Tx) Releases(prefix string, fn func(release.Asset) error) error {
	return t.kv.Scan(bReleases, []byte(prefix), func(k, v []byte) error {
		var a release.Asset
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode release %s: %w", k, err)
		}
		return stopped(fn(a))
	})
}

// PutRelease records an imported binary.
func (t Tx) PutRelease(a release.Asset) error { return putJSON(t.kv, bReleases, releaseKey(a), a) }

// DeleteRelease drops a binary from the catalog.
func (t Tx) DeleteRelease(a release.Asset) error { return t.kv.Delete(bReleases, releaseKey(a)) }

// Sizes counts the records of each kind, for tests and diagnostics.
type Sizes struct {
	Machines, IPIndex, HostnameIndex, ProfileIndex int
	Events, Leases, LeaseIndex, Certs, Rendered    int
}

// Sizes counts every kind of record.
func (t Tx) Sizes() Sizes {
	return Sizes{
		Machines: t.kv.Count(bMachines), IPIndex: t.kv.Count(bIdxIP), HostnameIndex: t.kv.Count(bIdxHostname),
		ProfileIndex: t.kv.Count(bIdxProfile), Events: t.kv.Count(bEvents), Leases: t.kv.Count(bLeases),
		LeaseIndex: t.kv.Count(bIdxLeaseMAC), Certs: t.kv.Count(bCerts), Rendered: t.kv.Count(bRendered),
	}
}
