package bootchain

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/bootsrv/bootsrv/pkg/assemble"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/render"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/token"
)

// BootConfig tunes the boot chain.
type BootConfig struct {
	// TokenTTL is how long the Ignition token in a boot script is good for.
	TokenTTL time.Duration
	// ReportTTL bounds the report token: an install to disk and a reboot
	// can take far longer than TokenTTL. It also dies when the machine is
	// provisioned or re-provisioned.
	ReportTTL time.Duration
	// BaseURL is how machines reach the HTTP server, for previews that do
	// not come in over HTTP (`bootsrv render`).
	BaseURL string
	// AnyAddress hands out a machine's boot script and accepts its tokens
	// from any address. By default only the machine's own address may:
	// the one bootsrv leased it, else its reservation. Private keys travel
	// in the Ignition, so turn this on only where another DHCP server
	// hands machines addresses other than their reservations.
	AnyAddress bool
	// Version is bootsrv's version: part of the key of kept Ignition
	// configs, so an upgraded bootsrv renders anew.
	Version string
	// AssetsDir is where imported releases are laid out (served under
	// /assets/).
	AssetsDir string
}

// DefaultBootConfig: 30 minutes to fetch Ignition, a week to report.
var DefaultBootConfig = BootConfig{TokenTTL: 30 * time.Minute, ReportTTL: 7 * 24 * time.Hour, BaseURL: "http://127.0.0.1:8080"}

// LeaseView answers which address the DHCP server leased to a MAC, so that
// a token is only accepted from that address.
type LeaseView interface {
	LeasedIP(mac string) (netip.Addr, bool)
	LeasedMAC(ip netip.Addr) (string, bool)
}

// Configure sets the boot chain's settings.
func (s *Chain) Configure(cfg BootConfig) {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultBootConfig.TokenTTL
	}
	if cfg.ReportTTL <= 0 {
		cfg.ReportTTL = DefaultBootConfig.ReportTTL
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBootConfig.BaseURL
	}
	s.boot = cfg
	s.asm.Version, s.asm.ReportTTL = cfg.Version, cfg.ReportTTL
}

func (s *Chain) bootConfig() BootConfig {
	if s.boot.TokenTTL == 0 {
		return DefaultBootConfig
	}
	return s.boot
}

// key returns the token key, made once per state file and kept, so tokens
// survive a restart of the server. A failure (disk full) is not kept: the
// next call tries again.
func (s *Chain) key() ([]byte, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.tokenKey != nil {
		return s.tokenKey, nil
	}
	var k []byte
	err := s.st.View(func(tx state.Tx) error {
		if v := tx.TokenKey(); v != nil {
			k = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	if k == nil {
		fresh, err := token.NewKey()
		if err != nil {
			return nil, err
		}
		err = s.st.Update(func(tx state.Tx) error {
			if v := tx.TokenKey(); v != nil {
				k = append([]byte(nil), v...)
				return nil
			}
			k = fresh
			return tx.PutTokenKey(k)
		})
		if err != nil {
			return nil, fmt.Errorf("store token key: %w", err)
		}
	}
	s.tokenKey = k
	return k, nil
}

// fromMachine says whether a request from remote may act for m: it comes
// from the address bootsrv leased m, else from m's reservation. An invalid
// remote is a preview (`bootsrv render`), not a request.
func (s *Chain) fromMachine(m model.Machine, remote netip.Addr) (netip.Addr, bool) {
	if s.boot.AnyAddress || !remote.IsValid() {
		return netip.Addr{}, true
	}
	want, ok := netip.Addr{}, false
	if s.leases != nil {
		want, ok = s.leases.LeasedIP(m.MAC)
	}
	if !ok {
		var err error
		if want, err = netip.ParseAddr(m.IP); err != nil {
			return netip.Addr{}, false
		}
	}
	return want, remote.Unmap() == want
}

// Tokens name the machine's install generation in their purpose, so that
// re-provisioning kills every token of the earlier install, and the count
// of its reports, so that the machine's report (booted, installed,
// failed) kills every token issued before it: the config, private keys
// included, is served to the boot that asked for it and not after.
func ignitionPurpose(m model.Machine) string {
	return ignitionPurposeAt(m, m.Reports)
}

func ignitionPurposeAt(m model.Machine, reports uint64) string {
	return fmt.Sprintf("%s/%d/%d", token.PurposeIgnition, m.Generation, reports)
}

// spentIgnition says whether tok is one of m's Ignition tokens from before
// one of its last few reports: refused all the same, but the operator is
// told why.
func spentIgnition(key []byte, m model.Machine, tok string, now time.Time) bool {
	for r := m.Reports; r > 0 && m.Reports-r < 16; r-- {
		if _, err := token.Check(key, tok, m.MAC, ignitionPurposeAt(m, r-1), now); err == nil || errors.Is(err, token.ErrExpired) {
			return true
		}
	}
	return false
}

// BootRequest is what a booting machine asks with.
type BootRequest struct {
	MAC      string
	BaseURL  string // http://host:port the request came to
	RemoteIP netip.Addr
	Token    string
	// Stage is "final" when an installer asks for the config of the
	// installed system (install: disk); empty for what the boot runs.
	Stage string
}

// bootable loads the machine and its profile for a boot request.
func (s *Chain) bootable(mac string) (model.Machine, model.Profile, model.Cluster, error) {
	var in assemble.Inputs
	err := s.st.View(func(tx state.Tx) (err error) {
		in, err = s.asm.LoadBoot(tx, mac)
		return err
	})
	return in.Machine, in.Profile, in.Cluster, err
}

// IPXE returns the iPXE script for a machine: its profile's kernel and
// initrds with a fresh Ignition token, or "boot from disk" once it is
// provisioned (unless re-provisioning was asked). record says whether this
// is a real boot (an event) or a preview (`bootsrv render`).
func (s *Chain) IPXE(_ context.Context, req BootRequest, record bool) (string, error) {
	m, p, c, err := s.bootable(req.MAC)
	if err != nil {
		return "", err
	}
	if want, ok := s.fromMachine(m, req.RemoteIP); !ok {
		s.record(m.MAC, model.Event{Type: "denied", Detail: fmt.Sprintf("boot script asked from %s, the machine's address is %s", req.RemoteIP, want)})
		return "", &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("boot script for %s refused: asked from %s, but the machine's address is %s", m.MAC, req.RemoteIP, want)}
	}
	// Only a machine installed to disk is sent to it; a live (diskless)
	// one has nothing there and netboots into its config every time.
	if p.Install == model.InstallDisk && (m.State == model.StateProvisioned || m.State == model.StateInstalled) && !m.Reprovision {
		if record {
			s.record(m.MAC, model.Event{Type: "localboot", Detail: m.State + ": told to boot from disk"})
		}
		return render.LocalBootScript(m.MAC, m.Hostname), nil
	}
	key, err := s.key()
	if err != nil {
		return "", err
	}
	tok, err := token.Mint(key, m.MAC, ignitionPurpose(m), s.now().Add(s.bootConfig().TokenTTL))
	if err != nil {
		return "", err
	}
	b := render.Boot{MAC: m.MAC, Hostname: m.Hostname, Profile: p.Name, Kernel: absURL(req.BaseURL, p.Kernel)}
	for _, i := range p.Initrds {
		b.Initrds = append(b.Initrds, absURL(req.BaseURL, i))
	}
	ignURL := fmt.Sprintf("%s/ignition?mac=%s&token=%s", req.BaseURL, m.MAC, tok)
	b.Args = kernelArgs(p, c, ignURL)
	script, err := render.BootScript(b)
	if err != nil {
		// The operator's configuration is at fault, not the request: a 500
		// and an error in the log.
		return "", fmt.Errorf("boot script for %s: %w: give the profile a kernel (bootsrv profile add %s --replace --kernel ...)", m.MAC, err, p.Name)
	}
	if record {
		s.record(m.MAC, model.Event{Type: model.StateIPXE, Detail: "boot script for profile " + p.Name})
	}
	return script, nil
}

// kernelArgs are the OS's own arguments for a network boot with Ignition,
// then the profile's. Installing to disk: Flatcar's live image runs
// bootsrv's installer config (which fetches the final one itself); Fedora
// CoreOS's live image installs by itself, given the device and the final
// config's URL, and must not apply that config to the live system.
func kernelArgs(p model.Profile, c model.Cluster, ignURL string) []string {
	var a []string
	switch {
	case p.OS == model.OSFCOS && p.Install == model.InstallDisk:
		// The live system runs bootsrv's installer config (which only
		// reports "installed" once coreos-installer is done), never the
		// final one: that is the installed system's.
		a = []string{"ignition.firstboot", "ignition.platform.id=metal", "ignition.config.url=" + ignURL,
			"coreos.inst.install_dev=" + p.InstallDevice, "coreos.inst.ignition_url=" + ignURL + "&stage=" + model.StageFinal}
	case p.OS == model.OSFlatcar:
		a = []string{"flatcar.first_boot=1", "ignition.config.url=" + ignURL}
	case p.OS == model.OSFCOS:
		a = []string{"ignition.firstboot", "ignition.platform.id=metal", "ignition.config.url=" + ignURL}
	case p.OS == model.OSLab:
		a = []string{"console=ttyS0,115200n8", "quiet", "ignition.platform.id=metal", "ignition.config.url=" + ignURL}
	default:
		a = []string{"ignition.config.url=" + ignURL}
	}
	return append(a, p.Args...)
}

// absURL makes a profile's kernel or initrd location absolute on the
// address the request came to; full URLs stay as they are.
func absURL(base, u string) string {
	if p := assetPath(u); p != "" {
		return base + p
	}
	return u
}

// assetPath is the path on bootsrv's HTTP server a profile's location is
// fetched at: a path as it is, a bare name under /assets/, and "" for a
// full URL (served elsewhere) or nothing.
func assetPath(u string) string {
	switch {
	case u == "" || strings.Contains(u, "://"):
		return ""
	case strings.HasPrefix(u, "/"):
		return u
	}
	return "/assets/" + u
}

// ignitionRecordWait bounds how long /ignition waits for its event to be
// committed (a full disk, an etcd without quorum) before it answers 500
// and the machine's Ignition retries.
const ignitionRecordWait = 10 * time.Second

// Ignition serves a machine's Ignition config to the machine itself: the
// token must be its own, unexpired, and come from the address bootsrv
// leased it.
func (s *Chain) Ignition(ctx context.Context, req BootRequest) ([]byte, error) {
	m, err := s.tokenHolder(req, "ignition", ignitionPurpose)
	if err != nil {
		return nil, err
	}
	mac := m.MAC
	if req.Stage != "" && req.Stage != model.StageFinal {
		return nil, fault.Invalidf("stage %q: the only stage is %q (the installed system's config)", req.Stage, model.StageFinal)
	}
	cfg, err := s.asm.Render(mac, req.BaseURL, &m.Generation, req.Stage, req.Token)
	if err != nil {
		s.record(mac, model.Event{Type: "error", Detail: "ignition: " + err.Error()})
		return nil, err
	}
	fields := map[string]string{"from": req.RemoteIP.String()}
	if req.Stage != "" {
		fields["stage"] = req.Stage
	}
	// Durable before it is served: the config holds the machine's private
	// keys, and a crash must not leave a handout with no record of it.
	if err := s.j.RecordDurable(mac, model.Event{Type: model.StateIgnition, Fields: fields}, ignitionRecordWait); err != nil {
		return nil, fmt.Errorf("ignition for %s not served, its handout could not be recorded (it is retried): %w", mac, err)
	}
	return cfg, nil
}

// tokenHolder is the machine a token-bearing request names, once its
// token (for purpose) checks out. An unknown MAC is refused like a bad
// token: whether a MAC is known is not told to a caller without one.
func (s *Chain) tokenHolder(req BootRequest, what string, purpose func(model.Machine) string) (model.Machine, error) {
	var m model.Machine
	mac, err := model.NormalizeMAC(req.MAC)
	if err != nil {
		return m, err
	}
	if err := s.st.View(func(tx state.Tx) error { return inventory.GetMachine(tx, mac, &m) }); err != nil {
		if fault.KindOf(err) == fault.KindNotFound {
			return m, &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("%s token for %s refused", what, mac)}
		}
		return m, err
	}
	return m, s.checkToken(m, req, purpose(m))
}

func (s *Chain) checkToken(m model.Machine, req BootRequest, purpose string) error {
	key, err := s.key()
	if err != nil {
		return err
	}
	from := map[string]string{"from": req.RemoteIP.String()}
	if req.Token == "" {
		s.record(m.MAC, model.Event{Type: "denied", Detail: purpose + ": no token", Fields: from})
		return &fault.Error{Kind: fault.KindDenied, Msg: "no token: use the URL from the machine's boot script"}
	}
	if _, err := token.Check(key, req.Token, m.MAC, purpose, s.now()); err != nil {
		if errors.Is(err, token.ErrForged) && purpose == ignitionPurpose(m) && spentIgnition(key, m, req.Token, s.now()) {
			s.record(m.MAC, model.Event{Type: "denied", Detail: "ignition: token spent: the machine reported after it was issued", Fields: from})
			return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("ignition token for %s refused: spent, the machine reported since it was issued (a new network boot gets a new one; bootsrv machine reprovision installs again)", m.MAC)}
		}
		s.record(m.MAC, model.Event{Type: "denied", Detail: purpose + ": " + err.Error(), Fields: from})
		return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("%s token for %s refused: %v", purpose, m.MAC, err)}
	}
	if want, ok := s.fromMachine(m, req.RemoteIP); !ok {
		s.record(m.MAC, model.Event{Type: "denied", Detail: fmt.Sprintf("%s token used from %s, the machine's address is %s", purpose, req.RemoteIP, want)})
		return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("%s token for %s refused: request from %s, but the machine's address is %s", purpose, m.MAC, req.RemoteIP, want)}
	}
	return nil
}

// RenderIgnition builds the machine's Ignition config (without checking a
// token): what /ignition serves, and what `bootsrv render ignition` shows.
//
// Building and validating a node's config costs milliseconds, so the
// validated bytes are kept in the state file under a hash of everything
// they are made from (machine, profile, cluster, masters, certificates,
// base URL, report token); a later render with the same inputs reads them
// back. The report token is therefore derived (token.MintStable) with an
// expiry rounded to the hour.
func (s *Chain) RenderIgnition(_ context.Context, mac, baseURL string) ([]byte, error) {
	return s.asm.Render(mac, baseURL, nil, model.StageFinal, "")
}

// Report records what a machine says about itself; "booted" makes it
// provisioned, after which its report token is spent.
func (s *Chain) Report(_ context.Context, req BootRequest, said, detail string) (model.Machine, error) {
	var m model.Machine
	mac, err := model.NormalizeMAC(req.MAC)
	if err != nil {
		return m, err
	}
	switch said {
	case model.ReportInstalled, model.ReportBooted, model.ReportFailed:
	default:
		return m, fault.Invalidf("state %q is not one of installed, booted, failed", said)
	}
	// A master's file list (the lab reports one) is a few KB.
	if len(detail) > 32<<10 {
		detail = detail[:32<<10]
	}
	cur, err := s.tokenHolder(req, "report", assemble.ReportPurpose)
	if err != nil {
		return m, err
	}
	gen := cur.Generation
	e := model.Event{Time: s.now(), Type: "report", Detail: detail, Fields: map[string]string{"state": said, "from": req.RemoteIP.String()}}
	// The journal's writer commits it after every event queued before it
	// (ignition, kernel): a late one cannot move a provisioned machine back.
	err = s.j.Do(func(tx state.Tx) error {
		if err := inventory.GetMachine(tx, mac, &m); err != nil {
			return err
		}
		if m.Generation != gen {
			// Re-provisioned between the token check and now.
			return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("report token for %s refused: the machine was re-provisioned", mac)}
		}
		var p model.Profile
		live := m.Profile != "" && inventory.GetProfile(tx, m.Profile, &p) == nil && p.Install != model.InstallDisk
		// A live machine boots its config again on every netboot and says
		// so each time; an installed one reports its first boot once.
		if m.State == model.StateProvisioned && !m.Reprovision && !live {
			return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("machine %s is already provisioned: its report token is spent", mac)}
		}
		if err := journey.Append(tx, &m, e); err != nil {
			return err
		}
		m.Reports++ // ends the Ignition tokens handed out so far
		switch said {
		case model.ReportInstalled:
			if err := journey.Append(tx, &m, model.Event{Time: e.Time, Type: model.StateInstalled, Detail: "installed to disk: rebooting into it"}); err != nil {
				return err
			}
		case model.ReportBooted:
			m.Reprovision = false
			if err := journey.Append(tx, &m, model.Event{Time: e.Time, Type: model.StateProvisioned}); err != nil {
				return err
			}
		case model.ReportFailed:
			if err := journey.Append(tx, &m, model.Event{Time: e.Time, Type: model.StateFailed, Detail: "machine reported failure: " + detail}); err != nil {
				return err
			}
		}
		return tx.PutMachine(m)
	})
	return m, err
}

// Reprovision asks that the machine installs again on its next network
// boot: it gets a boot script instead of "boot from disk", and the tokens
// (and, with Kubernetes roles, certificates) of its earlier install die.
func (s *Chain) Reprovision(_ context.Context, mac string) (model.Machine, error) {
	var m model.Machine
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return m, err
	}
	err = s.st.Update(func(tx state.Tx) error {
		if err := inventory.GetMachine(tx, n, &m); err != nil {
			return err
		}
		m.Reprovision = true
		m.Generation++
		if err := tx.DeleteCerts(n); err != nil {
			return err
		}
		if err := journey.Append(tx, &m, model.Event{Time: s.now(), Type: "reprovision", Detail: "operator asked to install again"}); err != nil {
			return err
		}
		return tx.PutMachine(m)
	})
	return m, err
}

// AssetFetched records that the machine at ip fetched path: its kernel, an
// initrd, or another file.
func (s *Chain) AssetFetched(ip netip.Addr, path string, status int) {
	mac, p, ok := s.machineAt(ip)
	if !ok {
		return
	}
	typ := "asset"
	if status < 400 {
		if path == assetPath(p.Kernel) {
			typ = model.StateKernel
		}
		for _, i := range p.Initrds {
			if path == assetPath(i) {
				typ = "initrd"
			}
		}
	}
	s.record(mac, model.Event{Type: typ, Detail: path, Fields: map[string]string{"status": fmt.Sprint(status)}})
}

// FirstStageFetched records a TFTP (or HTTP Boot) fetch of a first-stage
// binary by the machine at ip: the pxe step.
func (s *Chain) FirstStageFetched(ip netip.Addr, file string, bytes int64, ferr error) {
	mac, _, ok := s.machineAt(ip)
	if !ok {
		return
	}
	if len(file) > 128 {
		file = file[:128] + "…" // the name comes from the network
	}
	e := model.Event{Type: model.StatePXE, Detail: file, Fields: map[string]string{"bytes": fmt.Sprint(bytes)}}
	if ferr != nil {
		e.Type, e.Detail = "pxe-error", file+": "+ferr.Error()
	}
	s.record(mac, e)
}

// machineAt finds the machine that holds ip: its lease, else its
// reservation.
func (s *Chain) machineAt(ip netip.Addr) (string, model.Profile, bool) {
	ip = ip.Unmap()
	var mac string
	if s.leases != nil {
		mac, _ = s.leases.LeasedMAC(ip)
	}
	var p model.Profile
	found := false
	_ = s.st.View(func(tx state.Tx) error {
		if mac == "" {
			if mac = tx.MachineByIP(ip.String()); mac == "" {
				return nil
			}
		}
		var m model.Machine
		if err := inventory.GetMachine(tx, mac, &m); err != nil {
			return nil
		}
		found = true
		if m.Profile != "" {
			_ = inventory.GetProfile(tx, m.Profile, &p)
		}
		return nil
	})
	return mac, p, found
}

// FailSilent marks machines that were handed Ignition but did not report
// within timeout as failed, and those installed to disk whose installed
// system did not report its first boot within timeout; it returns how many.
func (s *Chain) FailSilent(timeout time.Duration) (int, error) {
	now := s.now()
	var late []string
	err := s.j.View(func(tx state.Tx) error {
		return tx.MachinesInState(func(m model.Machine) error {
			if waiting(m) && now.Sub(m.StateAt) > timeout {
				late = append(late, m.MAC)
			}
			return nil
		}, model.StateIgnition, model.StateInstalled)
	})
	if err != nil || len(late) == 0 {
		return 0, err
	}
	n := 0
	err = s.j.Do(func(tx state.Tx) error {
		n = 0 // a retried transaction counts again
		for _, mac := range late {
			var m model.Machine
			if err := inventory.GetMachine(tx, mac, &m); err != nil {
				continue
			}
			if !waiting(m) || now.Sub(m.StateAt) <= timeout {
				continue
			}
			why := fmt.Sprintf("no report within %s of fetching Ignition", timeout)
			if m.State == model.StateInstalled {
				why = fmt.Sprintf("installed to disk, but the installed system did not report within %s", timeout)
			}
			if err := journey.Append(tx, &m, model.Event{Time: now, Type: model.StateFailed, Detail: why}); err != nil {
				return err
			}
			if err := tx.PutMachine(m); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// waiting: the machine owes a report.
func waiting(m model.Machine) bool {
	return m.State == model.StateIgnition || m.State == model.StateInstalled
}

// Render kinds for Render.
const (
	RenderIPXE     = "ipxe"
	RenderIgnition = "ignition"
)

// Render shows exactly what the machine would get from /ipxe or
// /ignition, without recording an event. baseURL defaults to the
// server's.
func (s *Chain) Render(ctx context.Context, kind, mac, baseURL string) (string, error) {
	if baseURL == "" {
		baseURL = s.bootConfig().BaseURL
	}
	baseURL = strings.TrimSuffix(baseURL, "/")
	switch kind {
	case RenderIPXE:
		return s.IPXE(ctx, BootRequest{MAC: mac, BaseURL: baseURL}, false)
	case RenderIgnition:
		n, err := model.NormalizeMAC(mac)
		if err != nil {
			return "", err
		}
		b, err := s.RenderIgnition(ctx, n, baseURL)
		return string(b), err
	}
	return "", fault.Invalidf("nothing to render called %q: use ipxe or ignition", kind)
}
