package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Role is what a node is in the cluster; it picks its set of certificates.
// The values match model.RoleMaster and model.RoleWorker.
type Role string

const (
	RoleMaster Role = "master"
	RoleWorker Role = "worker"
)

// CA names, as used in Spec.CA.
const (
	CAKubernetes = "ca"      // the cluster CA: apiserver, kubelets, clients
	CAEtcd       = "etcd-ca" // the etcd CA: etcd members and their clients
	// CAFrontProxy signs only the apiserver's client cert towards aggregated
	// APIs: they trust the X-Remote-User headers of whoever holds a cert
	// from it, so it must not be the cluster CA.
	CAFrontProxy = "front-proxy-ca"
)

// Certificate names: stable identifiers the caller stores certs under and
// derives file names from. They are the keys pkg/nodeconfig's Input.Certs
// expects, so Certs.Pairs() can be handed over as it is.
const (
	CertAPIServer         = "apiserver"
	CertAPIServerKubelet  = "apiserver-kubelet-client"
	CertAPIServerEtcd     = "etcd-client" // the apiserver's client cert to etcd
	CertControllerManager = "controller-manager"
	CertScheduler         = "scheduler"
	CertEtcdServer        = "etcd-server"
	CertEtcdPeer          = "etcd-peer"
	CertKubelet           = "kubelet"
	CertKubeProxy         = "kube-proxy"
	CertFrontProxyClient  = "front-proxy-client" // the apiserver's, to aggregated APIs
	CertCoreDNS           = "coredns"
	CertAddons            = "addons" // the master's addon applier (kubectl apply)
	CertAdmin             = "admin"
)

// Kubernetes names the certs carry.
const (
	DefaultClusterDomain = "cluster.local"
	// MastersGroup is the group the apiserver authorizes for everything,
	// before and without RBAC.
	MastersGroup = "system:masters"
	// NodesGroup and NodeUserPrefix+<node name> are what the Node
	// authorizer and NodeRestriction admission require of a kubelet.
	NodesGroup     = "system:nodes"
	NodeUserPrefix = "system:node:"

	apiserverCommonName       = "kube-apiserver"                 // kubeadm's APIServerCertCommonName
	apiserverKubeletClientCN  = "kube-apiserver-kubelet-client"  // kubeadm's APIServerKubeletClientCertCommonName
	apiserverEtcdClientCN     = "kube-apiserver-etcd-client"     // kubeadm's APIServerEtcdClientCertCommonName
	controllerManagerUserName = "system:kube-controller-manager" // bound by the built-in ClusterRoleBinding of that name
	schedulerUserName         = "system:kube-scheduler"          // idem
	kubeProxyUserName         = "system:kube-proxy"              // bound by system:node-proxier
	// FrontProxyClientCN is what the apiserver's --requestheader-allowed-names names.
	FrontProxyClientCN = "front-proxy-client"
	// CoreDNSUserName is bound to the ClusterRole system:coredns by the
	// master's addons.
	CoreDNSUserName = "system:coredns"
	addonsUserName  = "system:bootsrv-addons"
)

// SSLDir is where a node keeps its TLS files, as in the seed guides
// (/etc/kubernetes/ssl/ca.pem, apiserver.pem, apiserver-key.pem).
const SSLDir = "/etc/kubernetes/ssl"

// Paths of the cluster-wide files on a node.
const (
	CACertPath            = SSLDir + "/ca.pem"
	EtcdCACertPath        = SSLDir + "/etcd-ca.pem"
	ServiceAccountKeyPath = SSLDir + "/sa.key" // master only, 0600
	ServiceAccountPubPath = SSLDir + "/sa.pub" // master only
)

// CertPath is where the certificate called name goes on a node.
func CertPath(name string) string { return SSLDir + "/" + name + ".pem" }

// KeyPath is where its private key goes; write it 0600.
func KeyPath(name string) string { return SSLDir + "/" + name + "-key.pem" }

// NodeFacts are the facts about one machine that its certificates depend
// on, as plain values so this package needs nothing from the core.
type NodeFacts struct {
	// Hostname is the node name: the kubelet's --hostname-override and the
	// CN of its cert. Lower case (see checkNodeName).
	Hostname string
	IP       net.IP // the node's address on the cluster network (--node-ip)
	Role     Role
	// ClusterDomain "" means DefaultClusterDomain. Master only.
	ClusterDomain string
	// KubernetesServiceIP is the first IP of the service range (10.3.0.1
	// in the seed guides). Master only, required there.
	KubernetesServiceIP net.IP
	// APIEndpoints are the names clients use for the API: host names, IPs,
	// host:port or URLs (the host is taken). Master only; the master's own
	// IP and hostname need not be repeated.
	APIEndpoints []string
}

// Spec is one certificate a node needs: what to ask the CA for and where
// the files go.
type Spec struct {
	Name     string // a Cert* constant
	CA       string // CAKubernetes or CAEtcd
	CertPath string
	KeyPath  string
	Request  Request // KeyAlgorithm and Validity come from Options
}

func newSpec(name, ca string, req Request) Spec {
	return Spec{Name: name, CA: ca, CertPath: CertPath(name), KeyPath: KeyPath(name), Request: req}
}

// checkNodeName insists on a lower-case RFC 1123 name: the kubelet lower-cases
// its node name, and the Node authorizer matches CN system:node:<name>
// exactly, so "Node1" would give a cert that authorizes nothing.
func checkNodeName(h string) error {
	if h == "" {
		return invalidf("hostname is empty")
	}
	if h != strings.ToLower(h) {
		return invalidf("hostname %q must be lower case (the kubelet lower-cases its node name and the Node authorizer compares it with the cert's CN)", h)
	}
	if err := checkDNSName(h); err != nil {
		return invalidf("hostname %q: %v", h, err)
	}
	if strings.Contains(h, "_") || strings.HasSuffix(h, ".") {
		return invalidf("hostname %q is not a valid Kubernetes node name (RFC 1123: a-z, 0-9, '-', '.')", h)
	}
	return nil
}

// endpointHost takes the host part out of what an operator may write for
// the API endpoint: "10.0.0.10", "api.example", "10.0.0.10:6443" or
// "https://api.example:6443".
func endpointHost(e string) (string, error) {
	e = strings.TrimSpace(e)
	if e == "" {
		return "", invalidf("API endpoint is empty")
	}
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return "", invalidf("API endpoint %q: %v", e, err)
		}
		if u.Hostname() == "" {
			return "", invalidf("API endpoint %q has no host", e)
		}
		return u.Hostname(), nil
	}
	if h, _, err := net.SplitHostPort(e); err == nil {
		return h, nil
	}
	return strings.Trim(e, "[]"), nil
}

// NodeSpecs lists the certificates a node of n.Role needs, in a fixed order
// (so that rendered configs are stable). It does no crypto, so it is also
// what a caller compares stored certs against (see Verify).
//
// Worker: kubelet, kube-proxy, and nothing else: no etcd client cert and
// no identity that can read Secrets (flannel uses the kubelet's, which the
// Node authorizer confines to the node's own objects). Master: those two,
// apiserver, apiserver-kubelet-client, etcd-client (the apiserver's),
// front-proxy-client, controller-manager, scheduler, etcd-server,
// etcd-peer, coredns, addons.
func NodeSpecs(n NodeFacts) ([]Spec, error) {
	if err := checkNodeName(n.Hostname); err != nil {
		return nil, fmt.Errorf("node certs: %w", err)
	}
	if len(n.IP) != net.IPv4len && len(n.IP) != net.IPv6len || n.IP.IsUnspecified() {
		return nil, fmt.Errorf("node certs for %s: %w", n.Hostname, invalidf("node IP is missing or unusable (%v)", n.IP))
	}
	host, ip := n.Hostname, n.IP

	// The kubelet's cert is both: a client to the apiserver (under the Node
	// authorizer, which needs exactly this CN and O) and the server the
	// apiserver reaches for logs, exec and metrics.
	kubelet := newSpec(CertKubelet, CAKubernetes, Request{
		CommonName:    NodeUserPrefix + host,
		Organizations: []string{NodesGroup},
		DNSNames:      []string{host},
		IPs:           []net.IP{ip},
		Usage:         ServerAuth | ClientAuth,
	})
	// kube-proxy, on every node (masters reach Service IPs too: webhooks,
	// aggregated APIs): the built-in ClusterRoleBinding system:node-proxier
	// binds the user system:kube-proxy.
	proxy := newSpec(CertKubeProxy, CAKubernetes, Request{
		CommonName: kubeProxyUserName,
		Usage:      ClientAuth,
	})

	switch n.Role {
	case RoleWorker:
		return []Spec{kubelet, proxy}, nil
	case RoleMaster:
	default:
		return nil, fmt.Errorf("node certs for %s: %w", host, invalidf("role %q has no certificates (want %q or %q)", n.Role, RoleMaster, RoleWorker))
	}

	domain := strings.TrimSuffix(n.ClusterDomain, ".")
	if domain == "" {
		domain = DefaultClusterDomain
	}
	if err := checkDNSName(domain); err != nil {
		return nil, fmt.Errorf("node certs for %s: %w", host, invalidf("cluster domain %q: %v", domain, err))
	}
	svc := n.KubernetesServiceIP
	if len(svc) != net.IPv4len && len(svc) != net.IPv6len || svc.IsUnspecified() {
		return nil, fmt.Errorf("node certs for %s: %w", host, invalidf("Kubernetes service IP is missing or unusable (%v); it is the first IP of the service range", svc))
	}

	apiDNS := []string{
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc." + domain,
		host,
	}
	// 127.0.0.1 lets the master's own controller-manager and scheduler use
	// https://127.0.0.1:6443, which keeps working whatever the node IP.
	apiIPs := []net.IP{svc, ip, net.IPv4(127, 0, 0, 1)}
	for _, e := range n.APIEndpoints {
		h, err := endpointHost(e)
		if err != nil {
			return nil, fmt.Errorf("node certs for %s: %w", host, err)
		}
		if eip := net.ParseIP(h); eip != nil {
			apiIPs = append(apiIPs, eip)
		} else {
			apiDNS = append(apiDNS, h)
		}
	}

	return []Spec{
		newSpec(CertAPIServer, CAKubernetes, Request{
			CommonName: apiserverCommonName,
			DNSNames:   apiDNS,
			IPs:        apiIPs,
			Usage:      ServerAuth,
		}),
		// The apiserver's identity towards kubelets. With the kubelet in
		// Webhook authorization mode, this user must be allowed
		// nodes/proxy, nodes/log etc.; system:masters allows it with no
		// RBAC object to keep in step. kubeadm used system:masters until
		// v1.29 and now uses its own group kubeadm:cluster-admins
		// (kubernetes/kubernetes#121837) with a ClusterRoleBinding it
		// creates; bootsrv's addons bind only what CoreDNS and flannel need.
		newSpec(CertAPIServerKubelet, CAKubernetes, Request{
			CommonName:    apiserverKubeletClientCN,
			Organizations: []string{MastersGroup},
			Usage:         ClientAuth,
		}),
		// No O: etcd ignores it, and kubeadm dropped system:masters here
		// (kubernetes/kubernetes#120521).
		newSpec(CertAPIServerEtcd, CAEtcd, Request{
			CommonName: apiserverEtcdClientCN,
			Usage:      ClientAuth,
		}),
		// Users with built-in ClusterRoleBindings (system:kube-controller-
		// manager, system:kube-scheduler): the CN is the whole identity.
		newSpec(CertControllerManager, CAKubernetes, Request{
			CommonName: controllerManagerUserName,
			Usage:      ClientAuth,
		}),
		newSpec(CertScheduler, CAKubernetes, Request{
			CommonName: schedulerUserName,
			Usage:      ClientAuth,
		}),
		// etcd server and peer certs carry ClientAuth too: etcd uses the
		// server cert as a client for its own gRPC gateway and peers dial
		// each other with the peer cert (kubeadm does the same; see
		// etcd-io/etcd#9785). localhost is for etcdctl on the master.
		newSpec(CertEtcdServer, CAEtcd, Request{
			CommonName: host,
			DNSNames:   []string{host, "localhost"},
			IPs:        []net.IP{ip, net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			Usage:      ServerAuth | ClientAuth,
		}),
		newSpec(CertEtcdPeer, CAEtcd, Request{
			CommonName: host,
			DNSNames:   []string{host},
			IPs:        []net.IP{ip},
			Usage:      ServerAuth | ClientAuth,
		}),
		// The apiserver's identity towards aggregated API servers, which
		// check it against --requestheader-client-ca-file and -allowed-names.
		newSpec(CertFrontProxyClient, CAFrontProxy, Request{
			CommonName: FrontProxyClientCN,
			Usage:      ClientAuth,
		}),
		// CoreDNS runs on the masters and watches Services and
		// EndpointSlices under the ClusterRole system:coredns.
		newSpec(CertCoreDNS, CAKubernetes, Request{
			CommonName: CoreDNSUserName,
			Usage:      ClientAuth,
		}),
		// The addon applier creates RBAC objects, so it must be allowed to
		// grant what it binds: system:masters. A master already holds etcd's
		// keys, which are worth as much.
		newSpec(CertAddons, CAKubernetes, Request{
			CommonName:    addonsUserName,
			Organizations: []string{MastersGroup},
			Usage:         ClientAuth,
		}),
		kubelet,
		proxy,
	}, nil
}

// AdminSpec is the operator's client cert for `bootsrv kubeconfig admin`:
// user (default "admin") in group system:masters, which the apiserver
// grants everything without any RBAC object.
func AdminSpec(user string) Spec {
	if user == "" {
		user = CertAdmin
	}
	s := newSpec(CertAdmin, CAKubernetes, Request{
		CommonName:    user,
		Organizations: []string{MastersGroup},
		Usage:         ClientAuth,
	})
	// The admin cert lives on the operator's machine, not a node.
	s.CertPath, s.KeyPath = "", ""
	return s
}

// CAs are the two authorities of a cluster.
type CAs struct {
	Cluster    Pair // signs everything Kubernetes
	Etcd       Pair // signs etcd members and etcd clients
	FrontProxy Pair // signs the apiserver's front-proxy client cert only
}

func (c CAs) pick(name string) (Pair, error) {
	switch name {
	case CAKubernetes:
		return c.Cluster, nil
	case CAEtcd:
		return c.Etcd, nil
	case CAFrontProxy:
		if len(c.FrontProxy.CertPEM) == 0 {
			return Pair{}, invalidf("the cluster has no front-proxy CA")
		}
		return c.FrontProxy, nil
	}
	return Pair{}, invalidf("unknown CA %q (want %q, %q or %q)", name, CAKubernetes, CAEtcd, CAFrontProxy)
}

// Options apply to every cert of a set.
type Options struct {
	KeyAlgorithm KeyAlgorithm  // "" means ECDSAP256
	Validity     time.Duration // 0 means DefaultValidity
}

func (o Options) apply(r Request) Request {
	if r.KeyAlgorithm == "" {
		r.KeyAlgorithm = o.KeyAlgorithm
	}
	if r.Validity == 0 {
		r.Validity = o.Validity
	}
	return r
}

// Cert is an issued Spec.
type Cert struct {
	Spec
	Pair
}

// Certs is a node's set, in NodeSpecs order.
type Certs []Cert

// Get finds the cert called name.
func (cs Certs) Get(name string) (Cert, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return Cert{}, false
}

// Pairs returns the set keyed by name, the form to store.
func (cs Certs) Pairs() map[string]Pair {
	m := make(map[string]Pair, len(cs))
	for _, c := range cs {
		m[c.Name] = c.Pair
	}
	return m
}

// IssueNode issues every certificate of NodeSpecs(n), each with its own new
// key. This is the costly step (one key generation per cert); the caller
// stores the result and re-uses it on every render.
func IssueNode(cas CAs, n NodeFacts, opt Options, now time.Time) (Certs, error) {
	specs, err := NodeSpecs(n)
	if err != nil {
		return nil, err
	}
	return IssueSpecs(cas, specs, opt, now)
}

// IssueSpecs issues the given specs (for instance one that Verify found
// stale), parsing each CA once.
func IssueSpecs(cas CAs, specs []Spec, opt Options, now time.Time) (Certs, error) {
	auth := map[string]authority{}
	out := make(Certs, 0, len(specs))
	for _, s := range specs {
		a, ok := auth[s.CA]
		if !ok {
			p, err := cas.pick(s.CA)
			if err != nil {
				return nil, fmt.Errorf("issue %s: %w", s.Name, err)
			}
			if a, err = parseAuthority(p); err != nil {
				return nil, fmt.Errorf("issue %s: CA %q: %w", s.Name, s.CA, err)
			}
			auth[s.CA] = a
		}
		p, err := a.issue(opt.apply(s.Request), now)
		if err != nil {
			return nil, fmt.Errorf("issue %s (CN %q): %w", s.Name, s.Request.CommonName, err)
		}
		out = append(out, Cert{Spec: s, Pair: p})
	}
	return out, nil
}

// IssueSpec issues one spec (the admin cert, say).
func IssueSpec(cas CAs, s Spec, opt Options, now time.Time) (Cert, error) {
	cs, err := IssueSpecs(cas, []Spec{s}, opt, now)
	if err != nil {
		return Cert{}, err
	}
	return cs[0], nil
}

// Verify tells whether a stored pair still fits spec s: signed by its CA,
// valid at now, key matching, and subject, SANs and usages as s asks. A
// non-nil error is the reason to re-issue (the machine's IP or hostname
// changed, the CA was replaced, the cert expired).
func Verify(cas CAs, s Spec, p Pair, now time.Time) error {
	caPair, err := cas.pick(s.CA)
	if err != nil {
		return err
	}
	caCert, err := caPair.Certificate()
	if err != nil {
		return fmt.Errorf("verify %s: CA: %w", s.Name, err)
	}
	cert, _, err := p.Parse()
	if err != nil {
		return fmt.Errorf("verify %s: %w", s.Name, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		// Any here: Go accepts a chain if one of the listed usages fits,
		// and the exact set is compared below.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("verify %s: %w", s.Name, err)
	}
	want, err := s.Request.validate()
	if err != nil {
		return fmt.Errorf("verify %s: spec: %w", s.Name, err)
	}
	if cert.Subject.CommonName != want.CommonName {
		return fmt.Errorf("verify %s: CN is %q, want %q", s.Name, cert.Subject.CommonName, want.CommonName)
	}
	if !slices.Equal(cert.Subject.Organization, want.Organizations) {
		return fmt.Errorf("verify %s: O is %q, want %q", s.Name, cert.Subject.Organization, want.Organizations)
	}
	if !sameStrings(cert.DNSNames, want.DNSNames) {
		return fmt.Errorf("verify %s: DNS SANs are %q, want %q", s.Name, cert.DNSNames, want.DNSNames)
	}
	if !sameIPs(cert.IPAddresses, want.IPs) {
		return fmt.Errorf("verify %s: IP SANs are %v, want %v", s.Name, cert.IPAddresses, want.IPs)
	}
	if !slices.Equal(cert.ExtKeyUsage, want.Usage.extKeyUsages()) {
		return fmt.Errorf("verify %s: extended key usages are %v, want %s", s.Name, cert.ExtKeyUsage, want.Usage)
	}
	return nil
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameIPs(a, b []net.IP) bool {
	norm := func(ips []net.IP) [][]byte {
		out := make([][]byte, len(ips))
		for i, ip := range ips {
			out[i] = ip.To16()
		}
		slices.SortFunc(out, bytes.Compare)
		return out
	}
	return slices.EqualFunc(norm(a), norm(b), bytes.Equal)
}
