package bootchain

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/assemble"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Certificates are renewed by bootsrv, not by the kubelet: the CA keys
// never leave this server, every certificate of a node (etcd's, the
// apiserver's, kube-proxy's, not only the kubelet's) is covered, and a
// node's set is issued anew 30 days before its first certificate expires
// (renewBefore) or when an operator asks (`bootsrv certs renew`). A running
// node's timer fetches its set from /certs with a token of its own and
// installs it when it changed (nodeconfig's renewal unit).

// NodeCertificates serves a machine its current certificates, issuing a
// new set first when it is due, as a tar of the files at their paths on
// the node (keys 0600). The token must be the machine's renewal token,
// used from its own address. have is the sha256 (hex) of the kubelet
// certificate the node holds: when it is the current one, nothing is sent
// (nil, with no error), so keys cross the network only when they changed.
func (s *Chain) NodeCertificates(_ context.Context, req BootRequest, have string) ([]byte, error) {
	m, err := s.tokenHolder(req, "certificates", assemble.RenewPurpose)
	if err != nil {
		return nil, err
	}
	mac := m.MAC
	var in assemble.Inputs
	if err := s.st.View(func(tx state.Tx) (err error) { in, err = s.asm.LoadBoot(tx, mac); return }); err != nil {
		return nil, fmt.Errorf("certificates for %s: %w", mac, err)
	}
	if in.Machine.Generation != m.Generation {
		return nil, &fault.Error{Kind: fault.KindDenied, Msg: fmt.Sprintf("certificates token for %s refused: the machine was re-provisioned", mac)}
	}
	if !model.IsKubernetes(in.Profile) {
		return nil, notKubernetes(in.Machine, in.Profile)
	}
	certs, cp, _, err := s.certs.For(in.Machine, in.Profile, in.Cluster, false)
	if err != nil {
		return nil, fmt.Errorf("certificates for %s: %w", mac, err)
	}
	if cur, ok := certs[nodeconfig.CertKubelet]; ok && have != "" {
		if sum := sha256.Sum256(cur.CertPEM); hex.EncodeToString(sum[:]) == strings.ToLower(have) {
			return nil, nil
		}
	}
	ni := nodeconfig.Input{Machine: nodeconfig.Machine{Role: in.Profile.Role}, CA: cp.CA.CertPEM, EtcdCA: cp.EtcdCA.CertPEM,
		FrontProxyCA: cp.FrontProxyCA.CertPEM, ServiceAccount: nodeconfig.KeyPair{Public: cp.SAPub, Private: cp.SAKey},
		Certs: make(map[string]nodeconfig.CertKey, len(certs))}
	for name, pair := range certs {
		ni.Certs[name] = nodeconfig.CertKey{Cert: pair.CertPEM, Key: pair.KeyPEM}
	}
	files, err := nodeconfig.CertificateFiles(ni)
	if err != nil {
		return nil, fmt.Errorf("certificates for %s: %w", mac, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: int64(f.Mode), Size: int64(len(f.Contents)),
			Typeflag: tar.TypeReg, ModTime: s.now()}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	s.record(mac, model.Event{Type: "certs", Detail: "renewed certificates served"})
	return buf.Bytes(), nil
}

func notKubernetes(m model.Machine, p model.Profile) error {
	return fault.Invalidf("machine %s (profile %s) is no Kubernetes node: it has no certificates", m.MAC, p.Name)
}

// RenewCerts issues new certificates now for the named machines (every
// Kubernetes machine when macs is empty); their nodes install them at
// their next check (within 12 hours), or at once with
// `systemctl start bootsrv-renew-certs`. It returns the new certificates.
func (s *Chain) RenewCerts(ctx context.Context, macs []string) ([]nodecerts.CertInfo, error) {
	var targets []assemble.Inputs
	err := s.st.View(func(tx state.Tx) error {
		if len(macs) == 0 {
			return tx.AllCerts(func(mac string, _ []byte) error {
				in, err := s.asm.LoadBoot(tx, mac)
				if err == nil && model.IsKubernetes(in.Profile) {
					targets = append(targets, in)
				}
				return nil
			})
		}
		for _, mac := range macs {
			in, err := s.asm.LoadBoot(tx, mac)
			if err != nil {
				return err
			}
			if !model.IsKubernetes(in.Profile) {
				return notKubernetes(in.Machine, in.Profile)
			}
			targets = append(targets, in)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	renewed := map[string]bool{}
	for _, in := range targets {
		// One transaction replaces the set (and forgets the kept config);
		// the event follows.
		if _, _, _, err := s.certs.For(in.Machine, in.Profile, in.Cluster, true); err != nil {
			return nil, fmt.Errorf("renew certificates of %s: %w", in.Machine.MAC, err)
		}
		s.record(in.Machine.MAC, model.Event{Type: "certs", Detail: "operator asked to renew the certificates"})
		renewed[in.Machine.MAC] = true
	}
	all, err := s.certs.Certs(ctx)
	if err != nil {
		return nil, err
	}
	var out []nodecerts.CertInfo
	for _, c := range all {
		if renewed[c.MAC] {
			out = append(out, c)
		}
	}
	return out, nil
}
