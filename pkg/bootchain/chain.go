// Package bootchain is what a booting machine asks of bootsrv, and what
// follows: its boot script (with a fresh Ignition token, or "boot from
// disk"), its Ignition config (token, address and install checked), its
// certificates for renewal, its reports, re-provisioning, the records of
// what it fetched, and the sweep that fails machines that went silent.
package bootchain

import (
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/assemble"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Chain is the boot chain over the state.
type Chain struct {
	st     *state.DB
	now    func() time.Time
	j      *journey.Journal
	certs  *nodecerts.Issuer
	asm    *assemble.Assembler
	boot   BootConfig
	leases LeaseView

	keyMu    sync.Mutex
	tokenKey []byte
}

// New is the boot chain over st, recording through j. leases is the DHCP
// lease table when bootsrv hands out addresses (nil otherwise): a token is
// then only accepted from the address a machine holds.
func New(st *state.DB, j *journey.Journal, certs *nodecerts.Issuer, leases LeaseView, now func() time.Time) *Chain {
	c := &Chain{st: st, now: now, j: j, certs: certs, leases: leases}
	c.asm = assemble.New(st, now, certs, c.key)
	c.asm.ReportTTL = DefaultBootConfig.ReportTTL
	return c
}

// record stores an event for a known machine.
func (s *Chain) record(mac string, e model.Event) { s.j.Record(mac, e) }
