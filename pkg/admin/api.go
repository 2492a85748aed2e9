// Package admin is bootsrv's admin API: JSON over HTTP on a Unix socket in
// the data dir. The server side maps routes onto the core service; the
// client side implements the same API interface, so the CLI calls one set of
// methods whether a server holds the state file or not.
package admin

import (
	"context"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/release"
)

// SocketName is the admin socket's name inside the data dir.
const SocketName = "bootsrv.sock"

// API is what the CLI can ask of bootsrv. The core (core.Service) implements it
// directly (no server running) and *Client over the socket.
type API interface {
	ClusterInit(ctx context.Context, c model.Cluster) (model.Cluster, error)
	Cluster(ctx context.Context) (model.Cluster, error)
	AddProfiles(ctx context.Context, ps []model.Profile, replace bool) ([]model.Profile, error)
	Profiles(ctx context.Context) ([]model.Profile, error)
	Profile(ctx context.Context, name string) (model.Profile, error)
	RemoveProfile(ctx context.Context, name string) error
	AddMachines(ctx context.Context, ms []model.Machine) ([]model.Machine, error)
	Machines(ctx context.Context) ([]model.Machine, error)
	Machine(ctx context.Context, mac string) (model.Machine, error)
	MachineEvents(ctx context.Context, mac string) ([]model.Event, error)
	RemoveMachine(ctx context.Context, mac string) error
	Reprovision(ctx context.Context, mac string) (model.Machine, error)
	Render(ctx context.Context, kind, mac, baseURL string) (string, error)
	CAs(ctx context.Context) ([]nodecerts.CertInfo, error)
	Certs(ctx context.Context) ([]nodecerts.CertInfo, error)
	AdminKubeconfig(ctx context.Context, user string) (string, error)
	ImportReleases(ctx context.Context, src, assetsDir string) (inventory.ImportResult, error)
	Releases(ctx context.Context) ([]release.Asset, error)
	RenewCerts(ctx context.Context, macs []string) ([]nodecerts.CertInfo, error)
}

var _ API = (*Client)(nil)

type errorBody struct {
	Error string     `json:"error"`
	Kind  fault.Kind `json:"kind,omitempty"`
	// Field is the input field at fault, as the model names it.
	Field string `json:"field,omitempty"`
	// Also are other fields the message names.
	Also []string `json:"also,omitempty"`
}
