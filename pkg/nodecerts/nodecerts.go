// Package nodecerts is the cluster's certificate authority: it makes the
// cluster's CAs and service-account key, issues each Kubernetes machine its
// certificate set once (and again when its facts change, it is
// re-provisioned, or the set nears expiry), lists what was issued, and
// issues operators' admin kubeconfigs. Keys live only in the state file.
package nodecerts

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/pki"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// PKI is the cluster's authorities, kept in the state file only: the
// CA keys never leave the server.
type PKI struct {
	CA     pki.Pair `json:"ca"`
	EtcdCA pki.Pair `json:"etcd_ca"`
	// FrontProxyCA signs the apiserver's client cert to aggregated APIs.
	// A state file from before it existed gets one on the first render.
	FrontProxyCA pki.Pair `json:"front_proxy_ca"`
	SAKey        []byte   `json:"sa_key"`
	SAPub        []byte   `json:"sa_pub"`
	KeyAlg       string   `json:"key_algorithm"`
	Validity     int      `json:"validity_days"`
}

// NewPKI makes the cluster CA, the separate etcd CA and the
// service-account key pair.
func NewPKI(c model.Cluster, now time.Time) (PKI, error) {
	alg, err := pki.ParseKeyAlgorithm(c.KeyAlgorithm)
	if err != nil {
		return PKI{}, fault.Invalidf("--key-algorithm: %v", err)
	}
	ca, err := pki.NewCA("kubernetes-ca "+c.Name, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return PKI{}, fmt.Errorf("create cluster CA: %w", err)
	}
	etcd, err := pki.NewCA("etcd-ca "+c.Name, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return PKI{}, fmt.Errorf("create etcd CA: %w", err)
	}
	fp, err := newFrontProxyCA(c.Name, alg, now)
	if err != nil {
		return PKI{}, err
	}
	key, pub, err := pki.NewServiceAccountKey(alg)
	if err != nil {
		return PKI{}, fmt.Errorf("create service-account key: %w", err)
	}
	return PKI{CA: ca, EtcdCA: etcd, FrontProxyCA: fp, SAKey: key, SAPub: pub, KeyAlg: string(alg), Validity: c.CertValidityDays}, nil
}

func newFrontProxyCA(cluster string, alg pki.KeyAlgorithm, now time.Time) (pki.Pair, error) {
	fp, err := pki.NewCA("front-proxy-ca "+cluster, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return pki.Pair{}, fmt.Errorf("create front-proxy CA: %w", err)
	}
	return fp, nil
}

func loadPKI(tx state.Tx, p *PKI) error {
	v := tx.PKIRaw()
	if v == nil {
		return errNoPKI
	}
	return json.Unmarshal(v, p)
}

func (p PKI) CAs() pki.CAs {
	return pki.CAs{Cluster: p.CA, Etcd: p.EtcdCA, FrontProxy: p.FrontProxyCA}
}

func (p PKI) Options() pki.Options {
	return pki.Options{KeyAlgorithm: pki.KeyAlgorithm(p.KeyAlg), Validity: time.Duration(p.Validity) * 24 * time.Hour}
}

// nodeCerts is a machine's issued set. Facts names what the certificates
// were issued for: when the machine's name, address or role changes, or
// the set nears expiry, the next render issues a new one.
type nodeCerts struct {
	// Generation is the install the set was issued for: re-provisioning
	// must never find the earlier install's keys.
	Generation uint64              `json:"generation"`
	Facts      string              `json:"facts"`
	NotAfter   time.Time           `json:"not_after"`
	Certs      map[string]pki.Pair `json:"certs"`
}

// renewBefore re-issues a set this long before its first certificate expires.
const renewBefore = 30 * 24 * time.Hour

func nodeFacts(m model.Machine, p model.Profile, c model.Cluster) pki.NodeFacts {
	return pki.NodeFacts{Hostname: m.Hostname, IP: net.ParseIP(m.IP), Role: pki.Role(p.Role), ClusterDomain: c.Domain,
		KubernetesServiceIP: net.ParseIP(c.KubernetesServiceIP), APIEndpoints: []string{c.APIServer}}
}

// certSpecs changes whenever the set of certificates a role gets changes
// (certs/2: workers lost flannel's etcd client, masters gained
// front-proxy-client, coredns, addons and kube-proxy), so stored sets of an
// older shape are issued anew.
const certSpecs = "certs/2"

func factsKey(f pki.NodeFacts, ca pki.Pair) string {
	fp, _ := ca.Fingerprint()
	return strings.Join([]string{certSpecs, f.Hostname, f.IP.String(), string(f.Role), f.ClusterDomain, f.KubernetesServiceIP.String(), strings.Join(f.APIEndpoints, ","), fp}, "|")
}

// For returns the machine's certificates, issuing them the first time
// (and after re-provisioning, or when its facts change) in one
// transaction; every later render only reads.
//
// force issues a new set even when the stored one is current (`bootsrv
// certs renew`).
func (s *Issuer) For(m model.Machine, p model.Profile, c model.Cluster, force bool) (map[string]pki.Pair, PKI, string, error) {
	var cp PKI
	var nc nodeCerts
	var id string
	facts := nodeFacts(m, p, c)
	now := s.now()
	fresh := func(tx state.Tx) (bool, error) {
		if err := loadPKI(tx, &cp); err != nil {
			return false, err
		}
		v := tx.CertsRaw(m.MAC)
		if v == nil {
			return false, nil
		}
		id = certsIDOf(v)
		if err := json.Unmarshal(v, &nc); err != nil {
			return false, fmt.Errorf("decode certificates of %s: %w", m.MAC, err)
		}
		return !force && nc.Generation == m.Generation && nc.Facts == factsKey(facts, cp.CA) && now.Add(renewBefore).Before(nc.NotAfter), nil
	}
	var ok bool
	err := s.st.View(func(tx state.Tx) (err error) { ok, err = fresh(tx); return })
	if err != nil || ok {
		return nc.Certs, cp, id, err
	}
	err = s.st.Update(func(tx state.Tx) error {
		if ok, err := fresh(tx); err != nil || ok {
			return err // another render issued them meanwhile
		}
		// The render started from a snapshot; issue only for the machine as
		// it still is (not removed, not re-provisioned, same name and
		// address), or a late render would leave keys for the wrong install.
		cur, found, err := tx.Machine(m.MAC)
		if err != nil {
			return err
		}
		if !found {
			return fault.NotFoundf("machine %s was removed while its certificates were being issued", m.MAC)
		}
		if cur.Generation != m.Generation || cur.Hostname != m.Hostname || cur.IP != m.IP || cur.Profile != m.Profile {
			return fault.Conflictf("machine %s changed while its certificates were being issued: ask again", m.MAC)
		}
		if len(cp.FrontProxyCA.CertPEM) == 0 {
			fp, err := newFrontProxyCA(c.Name, pki.KeyAlgorithm(cp.KeyAlg), now)
			if err != nil {
				return err
			}
			cp.FrontProxyCA = fp
			if err := tx.PutPKI(cp); err != nil {
				return err
			}
		}
		certs, err := pki.IssueNode(cp.CAs(), facts, cp.Options(), now)
		if err != nil {
			return fmt.Errorf("issue certificates for %s: %w", m.MAC, err)
		}
		nc = nodeCerts{Generation: m.Generation, Facts: factsKey(facts, cp.CA), Certs: certs.Pairs()}
		for _, cert := range certs {
			na, err := cert.NotAfter()
			if err != nil {
				return err
			}
			if nc.NotAfter.IsZero() || na.Before(nc.NotAfter) {
				nc.NotAfter = na
			}
		}
		b, err := json.Marshal(nc)
		if err != nil {
			return fmt.Errorf("encode certificates of %s: %w", m.MAC, err)
		}
		id = certsIDOf(b)
		return tx.PutCerts(m.MAC, b)
	})
	return nc.Certs, cp, id, err
}

// certsIDOf names a stored certificate set by its bytes: a re-issue,
// whatever its cause, changes it. Hashing is far cheaper than decoding
// the set on every render.
func certsIDOf(stored []byte) string {
	if stored == nil {
		return ""
	}
	h := sha256.Sum256(stored)
	return string(h[:])
}

// ID names a machine's stored certificate set (see certsIDOf).
func ID(tx state.Tx, mac string) string {
	return certsIDOf(tx.CertsRaw(mac))
}

// CertInfo is one issued certificate, for `bootsrv certs list`.
type CertInfo struct {
	MAC      string    `json:"mac,omitempty" yaml:"mac,omitempty"`
	Hostname string    `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	Name     string    `json:"name" yaml:"name"`
	Subject  string    `json:"subject" yaml:"subject"`
	NotAfter time.Time `json:"not_after" yaml:"not_after"`
	SHA256   string    `json:"sha256" yaml:"sha256"`
}

func certInfo(name string, p pki.Pair) (CertInfo, error) {
	info, err := p.Info()
	if err != nil {
		return CertInfo{}, fmt.Errorf("certificate %s: %w", name, err)
	}
	fp, _ := p.Fingerprint()
	return CertInfo{Name: name, Subject: info.Subject, NotAfter: info.NotAfter, SHA256: fp}, nil
}

// CAs describes the cluster's authorities (certificates only).
func (s *Issuer) CAs(_ context.Context) ([]CertInfo, error) {
	var out []CertInfo
	err := s.st.View(func(tx state.Tx) error {
		var cp PKI
		if err := loadPKI(tx, &cp); err != nil {
			return err
		}
		for _, c := range []struct {
			name string
			p    pki.Pair
		}{{"kubernetes-ca", cp.CA}, {"etcd-ca", cp.EtcdCA}, {"front-proxy-ca", cp.FrontProxyCA}} {
			if len(c.p.CertPEM) == 0 {
				// A state file from before the front-proxy CA: it is made
				// on the first render of a master.
				continue
			}
			ci, err := certInfo(c.name, pki.Pair{CertPEM: c.p.CertPEM})
			if err != nil {
				return err
			}
			out = append(out, ci)
		}
		return nil
	})
	return out, err
}

// Certs lists every issued machine certificate with its expiry.
func (s *Issuer) Certs(_ context.Context) ([]CertInfo, error) {
	var out []CertInfo
	err := s.st.View(func(tx state.Tx) error {
		return tx.AllCerts(func(mac string, v []byte) error {
			var nc nodeCerts
			if err := json.Unmarshal(v, &nc); err != nil {
				return err
			}
			m, _, _ := tx.Machine(mac)
			names := make([]string, 0, len(nc.Certs))
			for n := range nc.Certs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				ci, err := certInfo(n, pki.Pair{CertPEM: nc.Certs[n].CertPEM})
				if err != nil {
					return err
				}
				ci.MAC, ci.Hostname = mac, m.Hostname
				out = append(out, ci)
			}
			return nil
		})
	})
	return out, err
}

// AdminKubeconfig issues a client certificate in group system:masters for
// the operator and returns a kubeconfig that uses it against the cluster's
// API endpoint.
func (s *Issuer) AdminKubeconfig(_ context.Context, user string) (string, error) {
	if user == "" {
		user = "admin"
	}
	var cp PKI
	var c model.Cluster
	err := s.st.View(func(tx state.Tx) error {
		var ok bool
		var err error
		if c, ok, err = tx.Cluster(); err != nil {
			return err
		} else if !ok {
			return errNoPKI
		}
		return loadPKI(tx, &cp)
	})
	if err != nil {
		return "", err
	}
	cert, err := pki.IssueSpec(cp.CAs(), pki.AdminSpec(user), cp.Options(), s.now())
	if err != nil {
		return "", fault.Invalidf("issue admin certificate: %v", err)
	}
	server := "https://" + net.JoinHostPort(c.APIServer, "6443")
	kc, err := pki.Kubeconfig(c.Name, server, cp.CA.CertPEM, user, cert.Pair)
	return string(kc), err
}

// Issuer issues and lists certificates over the state.
type Issuer struct {
	st  *state.DB
	now func() time.Time
}

// NewIssuer is the issuer over st; now is its clock.
func NewIssuer(st *state.DB, now func() time.Time) *Issuer { return &Issuer{st: st, now: now} }

var errNoPKI = &fault.Error{Kind: fault.KindNotFound, Msg: "no cluster yet: create it with `bootsrv cluster init --name NAME --api-server IP`"}
