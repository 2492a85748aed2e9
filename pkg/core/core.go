// Package core is the one object every door holds (the CLI, the admin
// API, DHCP, TFTP, HTTP): the inventory, the certificate authority and the
// boot chain over one state, recording through one journal. It only wires
// them: each part's methods are promoted from its own package, and each
// door sees them through a small interface it owns.
package core

import (
	"log/slog"
	"time"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Service is the core behind every door.
type Service struct {
	*inventory.Inventory
	*nodecerts.Issuer
	*bootchain.Chain

	j *journey.Journal
}

// NewService returns the core over st. leases is the DHCP lease table
// when bootsrv hands out addresses (nil otherwise).
func NewService(st *state.DB, leases bootchain.LeaseView) *Service {
	now := func() time.Time { return time.Now().UTC() }
	j := journey.New(st, now)
	certs := nodecerts.NewIssuer(st, now)
	return &Service{
		Inventory: inventory.New(st, j, now),
		Issuer:    certs,
		Chain:     bootchain.New(st, j, certs, leases, now),
		j:         j,
	}
}

// Configure sets the boot chain's settings, and the assets dir the
// release catalog imports into.
func (s *Service) Configure(cfg bootchain.BootConfig) {
	s.Chain.Configure(cfg)
	s.Inventory.AssetsDir = cfg.AssetsDir
}

// StartRecorder makes event recording asynchronous and batched until
// Close. Without it (the CLI path) events are written at once.
func (s *Service) StartRecorder(log *slog.Logger) { s.j.Start(log) }

// SetMaxDiscovered caps the discovered machines unknown MACs may create
// (see journey.DefaultMaxDiscovered). Call before StartRecorder.
func (s *Service) SetMaxDiscovered(n int) { s.j.SetMaxDiscovered(n) }

// Close records every held and queued event and stops the journal.
func (s *Service) Close() { s.j.Close() }
