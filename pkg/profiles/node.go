package profiles

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
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/pki"
	"github.com/bootsrv/bootsrv/pkg/render"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// clusterPKI is the cluster's authorities, kept in the state file only: the
// CA keys never leave the server.
type clusterPKI struct {
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

// newClusterPKI makes the cluster CA, the separate etcd CA and the
// service-account key pair.
func newClusterPKI(c model.Cluster, now time.Time) (clusterPKI, error) {
	alg, err := pki.ParseKeyAlgorithm(c.KeyAlgorithm)
	if err != nil {
		return clusterPKI{}, fault.Invalidf("--key-algorithm: %v", err)
	}
	ca, err := pki.NewCA("kubernetes-ca "+c.Name, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return clusterPKI{}, fmt.Errorf("create cluster CA: %w", err)
	}
	etcd, err := pki.NewCA("etcd-ca "+c.Name, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return clusterPKI{}, fmt.Errorf("create etcd CA: %w", err)
	}
	fp, err := newFrontProxyCA(c.Name, alg, now)
	if err != nil {
		return clusterPKI{}, err
	}
	key, pub, err := pki.NewServiceAccountKey(alg)
	if err != nil {
		return clusterPKI{}, fmt.Errorf("create service-account key: %w", err)
	}
	return clusterPKI{CA: ca, EtcdCA: etcd, FrontProxyCA: fp, SAKey: key, SAPub: pub, KeyAlg: string(alg), Validity: c.CertValidityDays}, nil
}

func newFrontProxyCA(cluster string, alg pki.KeyAlgorithm, now time.Time) (pki.Pair, error) {
	fp, err := pki.NewCA("front-proxy-ca "+cluster, alg, 10*365*24*time.Hour, now)
	if err != nil {
		return pki.Pair{}, fmt.Errorf("create front-proxy CA: %w", err)
	}
	return fp, nil
}

func getPKI(tx state.Tx, p *clusterPKI) error {
	v := tx.PKIRaw()
	if v == nil {
		return errNoCluster
	}
	return json.Unmarshal(v, p)
}

func (p clusterPKI) cas() pki.CAs {
	return pki.CAs{Cluster: p.CA, Etcd: p.EtcdCA, FrontProxy: p.FrontProxyCA}
}

func (p clusterPKI) options() pki.Options {
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

// certsFor returns the machine's certificates, issuing them the first time
// (and after re-provisioning, or when its facts change) in one
// transaction; every later render only reads.
//
// force issues a new set even when the stored one is current (`bootsrv
// certs renew`).
func (s *Service) certsFor(m model.Machine, p model.Profile, c model.Cluster, force bool) (map[string]pki.Pair, clusterPKI, string, error) {
	var cp clusterPKI
	var nc nodeCerts
	var id string
	facts := nodeFacts(m, p, c)
	now := s.now()
	fresh := func(tx state.Tx) (bool, error) {
		if err := getPKI(tx, &cp); err != nil {
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
		var cur model.Machine
		if err := getMachine(tx, m.MAC, &cur); err != nil {
			return err
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
		certs, err := pki.IssueNode(cp.cas(), facts, cp.options(), now)
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

// certsID names a machine's stored certificate set (see certsIDOf).
func certsID(tx state.Tx, mac string) string {
	return certsIDOf(tx.CertsRaw(mac))
}

// masters lists every master machine (hostname and IP) through the
// profile index: the cost is the number of masters, not of machines.
func (s *Service) masters(tx state.Tx) ([]nodeconfig.Member, error) {
	var roles []string
	if err := tx.ProfilesRaw(func(name string, v []byte) error {
		p, err := s.decoded.profile(name, v)
		if err != nil {
			return err
		}
		if p.Role == model.RoleMaster {
			roles = append(roles, p.Name)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []nodeconfig.Member
	for _, name := range roles {
		err := tx.MachinesOfProfile(name, func(mac string) error {
			var m model.Machine
			if err := getMachine(tx, mac, &m); err != nil {
				return err
			}
			out = append(out, nodeconfig.Member{Hostname: m.Hostname, IP: m.IP})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out, nil
}

// nodeContent is what a machine's role adds to its Ignition: for master
// and worker, everything that makes it a Kubernetes node.
func (s *Service) nodeContent(in0 ignitionInputs, baseURL string) (render.Config, string, error) {
	if !model.IsKubernetes(in0.p) {
		return render.Config{}, "", nil
	}
	in, id, err := s.nodeInput(in0, baseURL)
	if err != nil {
		return render.Config{}, "", err
	}
	if in.RenewURL, err = s.renewURL(in0.m, baseURL, in.CA); err != nil {
		return render.Config{}, "", err
	}
	node, err := nodeconfig.Render(in)
	if err != nil {
		return render.Config{}, "", err
	}
	var out render.Config
	for _, f := range node.Files {
		out.Files = append(out.Files, render.File(f))
	}
	for _, u := range node.Units {
		ru := render.Unit{Name: u.Name, Enabled: u.Enabled, Contents: u.Contents}
		for _, d := range u.Dropins {
			ru.Dropins = append(ru.Dropins, render.Dropin(d))
		}
		out.Units = append(out.Units, ru)
	}
	return out, id, nil
}

// nodeInput gathers what nodeconfig renders a Kubernetes node from,
// issuing the machine's certificates when it has none (or they are due),
// and names the certificate set it used.
func (s *Service) nodeInput(in0 ignitionInputs, baseURL string) (nodeconfig.Input, string, error) {
	m, p, c, ms := in0.m, in0.p, in0.c, in0.masters
	certs, cp, id, err := s.certsFor(m, p, c, false)
	if err != nil {
		return nodeconfig.Input{}, "", err
	}
	in := nodeconfig.Input{
		Cluster: nodeconfig.Cluster{Name: c.Name, APIServer: c.APIServer, PodNetwork: c.PodNetwork, ServiceRange: c.ServiceRange,
			DNSServiceIP: c.DNSServiceIP, Domain: c.Domain, KubernetesVersion: c.KubernetesVersion,
			RegistryMirror: c.RegistryMirror, RegistryCA: []byte(c.RegistryCA), SandboxImage: c.SandboxImage, UpstreamDNS: c.Network.DNS},
		Machine:        nodeconfig.Machine{Hostname: m.Hostname, IP: m.IP, Iface: m.Iface, Role: p.Role, Labels: m.Labels},
		Host:           model.HostFor(p.OS),
		Masters:        ms,
		CA:             cp.CA.CertPEM,
		EtcdCA:         cp.EtcdCA.CertPEM,
		FrontProxyCA:   cp.FrontProxyCA.CertPEM,
		Certs:          make(map[string]nodeconfig.CertKey, len(certs)),
		ServiceAccount: nodeconfig.KeyPair{Public: cp.SAPub, Private: cp.SAKey},
		Binaries:       make(map[string]nodeconfig.Binary, len(in0.bins)),
	}
	for name, pair := range certs {
		in.Certs[name] = nodeconfig.CertKey{Cert: pair.CertPEM, Key: pair.KeyPEM}
	}
	for name, b := range in0.bins {
		b.URL = baseURL + b.URL
		in.Binaries[name] = b
	}
	return in, id, nil
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
func (s *Service) CAs(_ context.Context) ([]CertInfo, error) {
	var out []CertInfo
	err := s.st.View(func(tx state.Tx) error {
		var cp clusterPKI
		if err := getPKI(tx, &cp); err != nil {
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
func (s *Service) Certs(_ context.Context) ([]CertInfo, error) {
	var out []CertInfo
	err := s.st.View(func(tx state.Tx) error {
		return tx.AllCerts(func(mac string, v []byte) error {
			var nc nodeCerts
			if err := json.Unmarshal(v, &nc); err != nil {
				return err
			}
			var m model.Machine
			_ = getMachine(tx, mac, &m)
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
func (s *Service) AdminKubeconfig(_ context.Context, user string) (string, error) {
	if user == "" {
		user = "admin"
	}
	var cp clusterPKI
	var c model.Cluster
	err := s.st.View(func(tx state.Tx) error {
		if err := getCluster(tx, &c); err != nil {
			return err
		}
		return getPKI(tx, &cp)
	})
	if err != nil {
		return "", err
	}
	cert, err := pki.IssueSpec(cp.cas(), pki.AdminSpec(user), cp.options(), s.now())
	if err != nil {
		return "", fault.Invalidf("issue admin certificate: %v", err)
	}
	server := "https://" + net.JoinHostPort(c.APIServer, "6443")
	return string(pki.Kubeconfig(c.Name, server, cp.CA.CertPEM, user, cert.Pair)), nil
}
