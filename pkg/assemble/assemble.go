// Package assemble makes a machine's Ignition config: bootsrv's own files
// and units, the profile's snippet, and for Kubernetes roles everything
// that makes the machine a node (nodeconfig's content with its
// certificates, the cluster's masters and the release binaries it runs),
// validated, and kept under a hash of its inputs so that a later render
// with the same inputs reads it back.
package assemble

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/render"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/token"
)

// Assembler renders machines' Ignition configs over the state.
type Assembler struct {
	st      *state.DB
	now     func() time.Time
	certs   *nodecerts.Issuer
	key     func() ([]byte, error)
	decoded decodeCache

	// Version is bootsrv's version: part of the key of kept configs, so
	// an upgraded bootsrv renders anew. ReportTTL bounds report tokens.
	Version   string
	ReportTTL time.Duration
}

// New is the assembler over st; key returns the token key report and
// renewal tokens are derived from.
func New(st *state.DB, now func() time.Time, certs *nodecerts.Issuer, key func() ([]byte, error)) *Assembler {
	return &Assembler{st: st, now: now, certs: certs, key: key}
}

// Render renders the machine's Ignition config for the machine's current install, or, when gen
// is given, only for that install: a token checked against one generation
// must never receive the next one's config and keys. A Flatcar profile
// installing to disk gets its installer config unless stage is final;
// ignTok is the Ignition token the installer fetches the final config
// with.
func (a *Assembler) Render(mac, baseURL string, gen *uint64, stage, ignTok string) ([]byte, error) {
	now := a.now()
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	rexp := now.Truncate(time.Hour).Add(a.ReportTTL + time.Hour)
	var in Inputs
	var cached []byte
	err = a.st.View(func(tx state.Tx) error {
		var err error
		if in, err = a.loadIgnitionInputs(tx, mac); err != nil {
			return err
		}
		if gen != nil && in.Machine.Generation != *gen {
			return &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("ignition for %s refused: the machine was re-provisioned since its token was issued", in.Machine.MAC)}
		}
		if in.Profile.Install == model.InstallDisk && stage != model.StageFinal {
			return nil // the installer config is never kept
		}
		h := in.hash(a.Version, baseURL, rexp, in.certsID)
		if v := tx.Rendered(in.Machine.MAC); len(v) > len(h) && bytes.Equal(v[:len(h)], h) {
			cached = append([]byte(nil), v[len(h):]...)
		}
		return nil
	})
	if err != nil || cached != nil {
		return cached, err
	}
	m, p, c := in.Machine, in.Profile, in.Cluster
	rtok := token.MintStable(key, m.MAC, ReportPurpose(m), rexp)
	reportURL := fmt.Sprintf("%s/report?mac=%s&token=%s", baseURL, m.MAC, rtok)
	if p.Install == model.InstallDisk && stage != model.StageFinal {
		// Not kept: it carries the Ignition token, and costs nothing.
		finalURL := fmt.Sprintf("%s/ignition?mac=%s&token=%s&stage=%s", baseURL, m.MAC, ignTok, model.StageFinal)
		out, err := render.Ignition(installerConfig(p, c, baseURL, finalURL, reportURL))
		if err != nil {
			return nil, fmt.Errorf("render installer ignition for %s (profile %s): %w", m.MAC, p.Name, err)
		}
		return out, nil
	}
	cfg := render.Config{SSHKeys: c.SSHKeys, Snippet: p.Ignition}
	cfg.Files = append(cfg.Files,
		render.File{Path: "/etc/hostname", Mode: 0o644, Contents: []byte(m.Hostname + "\n")},
		render.File{Path: model.ReportEnvPath, Mode: 0o600, Contents: []byte(fmt.Sprintf("BOOTSRV_REPORT_URL=%q\n", reportURL))},
	)
	cfg.Units = append(cfg.Units, render.Unit{Name: model.ReportUnit, Enabled: true, Contents: reportUnit})
	node, certs, err := a.nodeContent(in, baseURL)
	if err != nil {
		return nil, fmt.Errorf("render ignition for %s: %w", m.MAC, err)
	}
	cfg.Files = append(cfg.Files, node.Files...)
	cfg.Units = append(cfg.Units, node.Units...)
	out, err := render.Ignition(cfg)
	if err != nil {
		return nil, fmt.Errorf("render ignition for %s (profile %s): %w", m.MAC, p.Name, err)
	}
	h := in.hash(a.Version, baseURL, rexp, certs)
	if err := a.st.Batch(func(tx state.Tx) error {
		// Kept only while the machine is still this install: a machine
		// removed or re-provisioned meanwhile keeps nothing of it.
		var cur model.Machine
		if inventory.GetMachine(tx, m.MAC, &cur) != nil || cur.Generation != m.Generation {
			return nil
		}
		return tx.PutRendered(m.MAC, append(append([]byte(nil), h...), out...))
	}); err != nil {
		return nil, fmt.Errorf("keep rendered ignition for %s: %w", m.MAC, err)
	}
	return out, nil
}

// Inputs is everything a machine's Ignition is made of.
type Inputs struct {
	Machine           model.Machine
	Profile           model.Profile
	Cluster           model.Cluster
	profileRaw, clRaw []byte
	masters           []nodeconfig.Member
	certsID           string
	bins              map[string]nodeconfig.Binary
	releasesID        string
}

func (a *Assembler) loadIgnitionInputs(tx state.Tx, mac string) (Inputs, error) {
	in, err := a.LoadBoot(tx, mac)
	if err != nil {
		return in, err
	}
	// bbolt's bytes live only as long as the transaction; the hash is
	// computed again after it when the config is rendered anew.
	in.profileRaw = append([]byte(nil), in.profileRaw...)
	in.clRaw = append([]byte(nil), in.clRaw...)
	if model.IsKubernetes(in.Profile) {
		if in.masters, err = a.masters(tx); err != nil {
			return in, err
		}
		in.certsID = nodecerts.ID(tx, in.Machine.MAC)
		if in.bins, err = binariesFor(tx, in.Cluster, in.Profile.Role); err != nil {
			return in, fmt.Errorf("render ignition for %s: %w", in.Machine.MAC, err)
		}
		in.releasesID = releasesID(tx)
	}
	return in, nil
}

// LoadBoot reads a machine, its profile and the cluster; profile
// and cluster come decoded from the cache when their bytes are unchanged.
// The raw bytes it returns are only valid inside tx.
func (a *Assembler) LoadBoot(tx state.Tx, mac string) (Inputs, error) {
	var in Inputs
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return in, err
	}
	if err := inventory.GetMachine(tx, n, &in.Machine); err != nil {
		return in, err
	}
	if in.Machine.Profile == "" {
		return in, fault.NotFoundf("machine %s was discovered but has no profile: assign one with `bootsrv machine add %s --profile NAME --hostname H --ip IP`", n, n)
	}
	if in.profileRaw = tx.ProfileRaw(in.Machine.Profile); in.profileRaw == nil {
		return in, inventory.GetProfile(tx, in.Machine.Profile, &in.Profile)
	}
	if in.clRaw = tx.ClusterRaw(); in.clRaw == nil {
		return in, inventory.ErrNoCluster
	}
	if in.Profile, err = a.decoded.profile(in.Machine.Profile, in.profileRaw); err != nil {
		return in, err
	}
	if in.Cluster, err = a.decoded.cluster(in.clRaw); err != nil {
		return in, err
	}
	return in, nil
}

// renderVersion changes whenever what bootsrv renders changes, so that
// configs kept by an older bootsrv are not served by a newer one.
const renderVersion = "ignition/3"

func (in Inputs) hash(version, baseURL string, reportExp time.Time, certs string) []byte {
	h := sha256.New()
	m := in.Machine
	// Only what the config is made of: not the machine's state or events.
	mj, _ := json.Marshal([]any{m.MAC, m.Hostname, m.IP, m.Iface, m.Labels, m.Generation})
	for _, part := range [][]byte{[]byte(renderVersion), []byte(version), mj, in.profileRaw, in.clRaw, []byte(baseURL),
		[]byte(reportExp.UTC().Format(time.RFC3339)), []byte(certs), []byte(in.releasesID)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	for _, ms := range in.masters {
		fmt.Fprintf(h, "master:%s=%s;", ms.Hostname, ms.IP)
	}
	return h.Sum(nil)
}

// reportUnit tells bootsrv the machine came up, once, retrying until
// bootsrv answers; the stamp file keeps it from reporting every boot.
const reportUnit = `[Unit]
Description=Report to bootsrv that this machine booted
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/var/lib/bootsrv-reported

[Service]
Type=oneshot
EnvironmentFile=/etc/bootsrv/report.env
ExecStart=/bin/sh -c 'until curl -fsS -X POST "$BOOTSRV_REPORT_URL&state=booted"; do sleep 10; done'
ExecStartPost=/bin/touch /var/lib/bootsrv-reported
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`

// Installing to disk runs from the OS's live image with a small installer
// config of bootsrv's, never with the final one (the installed system's).
// Flatcar: bootsrv-install.service fetches the final config and runs
// flatcar-install with it; the disk image comes from bootsrv's assets
// (ASSETS/flatcar/VERSION/flatcar_production_image.bin.bz2 and its .sig,
// VERSION being the live image's own, which flatcar-install asks for),
// never from the internet. Fedora CoreOS: coreos-installer, started by the
// kernel arguments, installs; bootsrv-installed.service only reports.
// Either way "installed" is reported before the reboot, so the next netboot
// is sent to the disk, and a failed install reports "failed".
const (
	installEnvPath   = "/etc/bootsrv/install.env" // the installer's settings (its tokens: owner only)
	installUnitName  = "bootsrv-install.service"
	installedName    = "bootsrv-installed.service"
	installFailedKey = "bootsrv-install-failed.service"
)

// flatcarInstallUnit: the fetch retries a few minutes, not forever, so an
// expired token ends as a reported failure rather than a hung install.
const flatcarInstallUnit = `[Unit]
Description=Install Flatcar to disk with this machine's final config (bootsrv)
Wants=network-online.target
After=network-online.target
OnFailure=` + installFailedKey + `

[Service]
Type=oneshot
TimeoutStartSec=1h
EnvironmentFile=` + installEnvPath + `
ExecStart=/usr/bin/curl -fsS --retry 20 --retry-delay 10 --retry-all-errors -o /run/bootsrv-final.ign ${BOOTSRV_FINAL_URL}
ExecStart=/usr/bin/flatcar-install -d ${BOOTSRV_INSTALL_DEVICE} -b ${BOOTSRV_IMAGE_URL} -i /run/bootsrv-final.ign
ExecStart=/usr/bin/curl -fsS --retry 20 --retry-delay 10 --retry-all-errors -X POST ${BOOTSRV_INSTALLED_URL}
ExecStart=/usr/bin/systemctl reboot

[Install]
WantedBy=multi-user.target
`

// fcosInstalledUnit reports once coreos-installer has written the disk and
// before its own reboot.
const fcosInstalledUnit = `[Unit]
Description=Report to bootsrv that coreos-installer installed this machine
Requires=coreos-installer.service
After=coreos-installer.service
Before=coreos-installer-reboot.service
OnFailure=` + installFailedKey + `

[Service]
Type=oneshot
EnvironmentFile=` + installEnvPath + `
ExecStart=/usr/bin/curl -fsS --retry 20 --retry-delay 10 --retry-all-errors -X POST ${BOOTSRV_INSTALLED_URL}

[Install]
RequiredBy=coreos-installer-reboot.service
`

const installFailedUnit = `[Unit]
Description=Report to bootsrv that installing this machine failed

[Service]
Type=oneshot
EnvironmentFile=` + installEnvPath + `
ExecStart=/usr/bin/curl -fsS --retry 5 --retry-delay 10 -X POST ${BOOTSRV_FAILED_URL}
`

func installerConfig(p model.Profile, c model.Cluster, baseURL, finalURL, reportURL string) render.Config {
	env := fmt.Sprintf("BOOTSRV_FINAL_URL=%q\nBOOTSRV_INSTALLED_URL=%q\nBOOTSRV_FAILED_URL=%q\nBOOTSRV_INSTALL_DEVICE=%s\nBOOTSRV_IMAGE_URL=%s/assets/flatcar\n",
		finalURL, reportURL+"&state="+model.ReportInstalled, reportURL+"&state="+model.ReportFailed+"&detail=install+failed", p.InstallDevice, baseURL)
	cfg := render.Config{
		SSHKeys: c.SSHKeys,
		Files:   []render.File{{Path: installEnvPath, Mode: 0o600, Contents: []byte(env)}},
		Units:   []render.Unit{{Name: installFailedKey, Contents: installFailedUnit}},
	}
	if p.OS == model.OSFCOS {
		cfg.Units = append(cfg.Units, render.Unit{Name: installedName, Enabled: true, Contents: fcosInstalledUnit})
	} else {
		cfg.Units = append(cfg.Units, render.Unit{Name: installUnitName, Enabled: true, Contents: flatcarInstallUnit})
	}
	return cfg
}

// RenewPurpose is the purpose of a machine's /certs token.
func RenewPurpose(m model.Machine) string { return fmt.Sprintf("renew/%d", m.Generation) }

// renewURL is the node's own /certs URL. Its token lives as long as the
// cluster CA, derived (not random) so that kept configs stay valid; it
// dies with the install (the generation is in its purpose) and works only
// from the machine's address.
func (a *Assembler) renewURL(m model.Machine, baseURL string, caPEM []byte) (string, error) {
	key, err := a.key()
	if err != nil {
		return "", err
	}
	exp := a.now().Add(10 * 365 * 24 * time.Hour).Truncate(24 * time.Hour)
	if b, _ := pem.Decode(caPEM); b != nil {
		if ca, err := x509.ParseCertificate(b.Bytes); err == nil {
			exp = ca.NotAfter.UTC().Truncate(time.Second)
		}
	}
	tok := token.MintStable(key, m.MAC, RenewPurpose(m), exp)
	return fmt.Sprintf("%s/certs?mac=%s&token=%s", baseURL, m.MAC, tok), nil
}

// ReportPurpose is the purpose of a machine's report token: it names the
// install, so re-provisioning kills every token of the earlier one.
func ReportPurpose(m model.Machine) string {
	return fmt.Sprintf("%s/%d", token.PurposeReport, m.Generation)
}
