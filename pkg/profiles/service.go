// Package profiles is the boot chain (a machine's boot script, its
// Ignition config, its reports, re-provisioning, the silent-failure sweep)
// and the Service every door holds: the inventory, the certificate
// authority and the boot chain over one state, recording through one
// journal. The parts live in their own packages (see docs/architecture.md).
package profiles

import (
	"log/slog"
	"sync"
	"time"

	"github.com/bootsrv/bootsrv/pkg/assemble"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Service is the core behind every door (CLI, admin API, DHCP, TFTP,
// HTTP): the inventory's and the certificate authority's methods are
// promoted from them, the boot chain's are its own.
type Service struct {
	*inventory.Inventory
	*nodecerts.Issuer

	st  *state.DB
	now func() time.Time
	j   *journey.Journal

	asm      *assemble.Assembler
	boot     BootConfig
	leases   LeaseView
	keyMu    sync.Mutex
	tokenKey []byte
}

// NewService returns the core over st. leases is the DHCP lease table
// when bootsrv hands out addresses (nil otherwise): a token is then only
// accepted from the address a machine holds.
func NewService(st *state.DB, leases LeaseView) *Service {
	now := func() time.Time { return time.Now().UTC() }
	j := journey.New(st, now)
	certs := nodecerts.NewIssuer(st, now)
	s := &Service{Inventory: inventory.New(st, j, now), Issuer: certs, st: st, now: now, j: j}
	s.asm = assemble.New(st, now, certs, s.key)
	s.asm.ReportTTL = DefaultBootConfig.ReportTTL
	if leases != nil && !isNilTable(leases) {
		s.leases = leases
	}
	return s
}

// StartRecorder makes event recording asynchronous and batched until
// Close. Without it (the CLI path) events are written at once.
func (s *Service) StartRecorder(log *slog.Logger) { s.j.Start(log) }

// Close records every held and queued event and stops the journal.
func (s *Service) Close() { s.j.Close() }

// record stores an event for a known machine.
func (s *Service) record(mac string, e model.Event) { s.j.Record(mac, e) }
