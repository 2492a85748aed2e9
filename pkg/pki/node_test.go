package pki_test

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

var (
	masterFacts = pki.NodeFacts{
		Hostname:            "m1",
		IP:                  net.ParseIP("10.0.0.11"),
		Role:                pki.RoleMaster,
		KubernetesServiceIP: net.ParseIP("10.3.0.1"),
		APIEndpoints:        []string{"https://api.lab.example:6443", "10.0.0.100", "10.0.0.11:6443"},
	}
	workerFacts = pki.NodeFacts{
		Hostname: "w1.lab.example",
		IP:       net.ParseIP("10.0.0.21"),
		Role:     pki.RoleWorker,
	}
)

// expectation is what the issue (and kubeadm, where the issue is silent)
// asks of one cert.
type expectation struct {
	ca    string
	cn    string
	org   []string
	dns   []string // exactly these DNS SANs (in any order)
	ips   []string // exactly these IP SANs
	usage []x509.ExtKeyUsage
}

var (
	serverUse = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientUse = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	bothUse   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

func masterExpectations() map[string]expectation {
	return map[string]expectation{
		"apiserver": {ca: pki.CAKubernetes, cn: "kube-apiserver",
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "m1", "api.lab.example"},
			ips: []string{"10.3.0.1", "10.0.0.11", "127.0.0.1", "10.0.0.100"}, usage: serverUse},
		"apiserver-kubelet-client": {ca: pki.CAKubernetes, cn: "kube-apiserver-kubelet-client", org: []string{"system:masters"}, usage: clientUse},
		"etcd-client":              {ca: pki.CAEtcd, cn: "kube-apiserver-etcd-client", usage: clientUse},
		"controller-manager":       {ca: pki.CAKubernetes, cn: "system:kube-controller-manager", usage: clientUse},
		"scheduler":                {ca: pki.CAKubernetes, cn: "system:kube-scheduler", usage: clientUse},
		"etcd-server": {ca: pki.CAEtcd, cn: "m1", dns: []string{"m1", "localhost"},
			ips: []string{"10.0.0.11", "127.0.0.1", "::1"}, usage: bothUse},
		"etcd-peer": {ca: pki.CAEtcd, cn: "m1", dns: []string{"m1"}, ips: []string{"10.0.0.11"}, usage: bothUse},
		"kubelet": {ca: pki.CAKubernetes, cn: "system:node:m1", org: []string{"system:nodes"},
			dns: []string{"m1"}, ips: []string{"10.0.0.11"}, usage: bothUse},
		// kube-proxy runs on masters too.
		"kube-proxy": {ca: pki.CAKubernetes, cn: "system:kube-proxy", usage: clientUse},
		// The aggregation layer: the name the apiserver's
		// --requestheader-allowed-names lists, from the front-proxy CA.
		"front-proxy-client": {ca: pki.CAFrontProxy, cn: "front-proxy-client", usage: clientUse},
		// CoreDNS, bound to ClusterRole system:coredns by the addons.
		"coredns": {ca: pki.CAKubernetes, cn: "system:coredns", usage: clientUse},
		// The addon applier must grant what it binds: system:masters.
		"addons": {ca: pki.CAKubernetes, cn: "system:bootsrv-addons", org: []string{"system:masters"}, usage: clientUse},
	}
}

func workerExpectations() map[string]expectation {
	return map[string]expectation{
		"kubelet": {ca: pki.CAKubernetes, cn: "system:node:w1.lab.example", org: []string{"system:nodes"},
			dns: []string{"w1.lab.example"}, ips: []string{"10.0.0.21"}, usage: bothUse},
		"kube-proxy": {ca: pki.CAKubernetes, cn: "system:kube-proxy", usage: clientUse},
	}
}

// caFor is the CA that must have signed a cert of CA name, and the other
// two, which must not verify it.
func caFor(t *testing.T, cas pki.CAs, name string) (right pki.Pair, wrong map[string]pki.Pair) {
	t.Helper()
	all := map[string]pki.Pair{pki.CAKubernetes: cas.Cluster, pki.CAEtcd: cas.Etcd, pki.CAFrontProxy: cas.FrontProxy}
	right, ok := all[name]
	if !ok {
		t.Fatalf("unknown CA %q", name)
	}
	delete(all, name)
	return right, all
}

func purposesOf(usage []x509.ExtKeyUsage) []string {
	var p []string
	for _, u := range usage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			p = append(p, "sslserver")
		case x509.ExtKeyUsageClientAuth:
			p = append(p, "sslclient")
		}
	}
	return p
}

func TestIssueNode(t *testing.T) {
	needOpenSSL(t)
	tests := []struct {
		name  string
		facts pki.NodeFacts
		alg   pki.KeyAlgorithm
		want  map[string]expectation
	}{
		{"master ecdsa", masterFacts, pki.ECDSAP256, masterExpectations()},
		{"worker ecdsa", workerFacts, pki.ECDSAP256, workerExpectations()},
		{"master rsa", masterFacts, pki.RSA2048, masterExpectations()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cas := testCAs(t, tc.alg)
			certs, err := pki.IssueNode(cas, tc.facts, pki.Options{KeyAlgorithm: tc.alg}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range certs {
				names = append(names, c.Name)
			}
			var wantNames []string
			for n := range tc.want {
				wantNames = append(wantNames, n)
			}
			slices.Sort(wantNames)
			if got := slices.Sorted(slices.Values(names)); !slices.Equal(got, wantNames) {
				t.Fatalf("certs %v, want %v", got, wantNames)
			}
			for _, c := range certs {
				t.Run(c.Name, func(t *testing.T) {
					checkCert(t, cas, c, tc.want[c.Name], tc.alg)
				})
			}
		})
	}
}

func checkCert(t *testing.T, cas pki.CAs, c pki.Cert, want expectation, alg pki.KeyAlgorithm) {
	if c.CA != want.ca {
		t.Errorf("CA %q, want %q", c.CA, want.ca)
	}
	if c.CertPath != "/etc/kubernetes/ssl/"+c.Name+".pem" || c.KeyPath != "/etc/kubernetes/ssl/"+c.Name+"-key.pem" {
		t.Errorf("paths %s %s", c.CertPath, c.KeyPath)
	}
	cert, _, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	// Go's view.
	if cert.Subject.CommonName != want.cn || !slices.Equal(cert.Subject.Organization, want.org) {
		t.Errorf("subject CN=%q O=%q, want CN=%q O=%q", cert.Subject.CommonName, cert.Subject.Organization, want.cn, want.org)
	}
	if !slices.Equal(slices.Sorted(slices.Values(cert.DNSNames)), slices.Sorted(slices.Values(want.dns))) {
		t.Errorf("DNS SANs %q, want %q", cert.DNSNames, want.dns)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(slices.Sorted(slices.Values(ips)), slices.Sorted(slices.Values(want.ips))) {
		t.Errorf("IP SANs %q, want %q", ips, want.ips)
	}
	if !slices.Equal(cert.ExtKeyUsage, want.usage) {
		t.Errorf("EKU %v, want %v", cert.ExtKeyUsage, want.usage)
	}
	wantKU := x509.KeyUsageDigitalSignature
	if alg == pki.RSA2048 {
		wantKU |= x509.KeyUsageKeyEncipherment
	}
	if cert.KeyUsage != wantKU {
		t.Errorf("key usage %b, want %b", cert.KeyUsage, wantKU)
	}
	if err := pki.Verify(cas, c.Spec, c.Pair, testNow); err != nil {
		t.Errorf("Verify: %v", err)
	}

	// openssl's view: chain, purpose, every SAN, and the key.
	right, wrong := caFor(t, cas, c.CA)
	for _, purpose := range purposesOf(want.usage) {
		if ok, out := opensslVerify(t, right.CertPEM, c.CertPEM, "-purpose", purpose); !ok {
			t.Errorf("openssl verify -purpose %s:\n%s", purpose, out)
		}
	}
	for _, name := range want.dns {
		if ok, out := opensslVerify(t, right.CertPEM, c.CertPEM, "-verify_hostname", name); !ok {
			t.Errorf("openssl verify -verify_hostname %s:\n%s", name, out)
		}
	}
	for _, ip := range want.ips {
		if ok, out := opensslVerify(t, right.CertPEM, c.CertPEM, "-verify_ip", ip); !ok {
			t.Errorf("openssl verify -verify_ip %s:\n%s", ip, out)
		}
	}
	// The cluster, etcd and front-proxy CAs are separate: a cert of one
	// must not pass as a cert of another (a front-proxy-client that the
	// cluster CA vouched for would be any client; an aggregated API
	// server would take its X-Remote-User headers).
	for name, other := range wrong {
		if ok, _ := opensslVerify(t, other.CertPEM, c.CertPEM); ok {
			t.Errorf("openssl verify passed against the %s CA", name)
		}
		wrongCAs := cas
		switch c.CA {
		case pki.CAKubernetes:
			wrongCAs.Cluster = other
		case pki.CAEtcd:
			wrongCAs.Etcd = other
		case pki.CAFrontProxy:
			wrongCAs.FrontProxy = other
		}
		if err := pki.Verify(wrongCAs, c.Spec, c.Pair, testNow); err == nil {
			t.Errorf("Verify passed with the %s CA in place of %s", name, c.CA)
		}
	}
	if !opensslKeyMatches(t, c.CertPEM, c.KeyPEM) {
		t.Error("openssl: key does not match cert")
	}
}

// openssl's own text for the two certs the issue spells out, so a reader
// can see the names as any admin would.
func TestNodeCertsOpenSSLText(t *testing.T) {
	needOpenSSL(t)
	cas := testCAs(t, pki.ECDSAP256)
	master, err := pki.IssueNode(cas, masterFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := pki.IssueNode(cas, workerFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	apiserver, _ := master.Get(pki.CertAPIServer)
	frontProxy, _ := master.Get(pki.CertFrontProxyClient)
	addons, _ := master.Get(pki.CertAddons)
	kubelet, _ := worker.Get(pki.CertKubelet)
	tests := []struct {
		name string
		pem  []byte
		want []string
	}{
		{"apiserver", apiserver.CertPEM, []string{
			"Subject: CN = kube-apiserver",
			"Issuer: CN = kubernetes",
			"DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:m1, DNS:api.lab.example",
			"IP Address:10.3.0.1, IP Address:10.0.0.11, IP Address:127.0.0.1, IP Address:10.0.0.100",
			"X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n",
			"Digital Signature",
			"CA:FALSE",
			"X509v3 Authority Key Identifier",
		}},
		{"worker kubelet", kubelet.CertPEM, []string{
			"Subject: O = system:nodes, CN = system:node:w1.lab.example",
			"DNS:w1.lab.example, IP Address:10.0.0.21",
			"TLS Web Server Authentication, TLS Web Client Authentication",
		}},
		{"front-proxy-client", frontProxy.CertPEM, []string{
			"Subject: CN = front-proxy-client",
			"Issuer: CN = front-proxy-ca",
			"X509v3 Extended Key Usage: \n                TLS Web Client Authentication\n",
		}},
		{"addons", addons.CertPEM, []string{
			"Subject: O = system:masters, CN = system:bootsrv-addons",
			"Issuer: CN = kubernetes",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := opensslText(t, tc.pem)
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("openssl text lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestNodeSpecsErrors(t *testing.T) {
	with := func(base pki.NodeFacts, f func(*pki.NodeFacts)) pki.NodeFacts { f(&base); return base }
	tests := []struct {
		name    string
		facts   pki.NodeFacts
		wantErr string
	}{
		{"no hostname", with(workerFacts, func(n *pki.NodeFacts) { n.Hostname = "" }), "hostname is empty"},
		{"upper-case hostname", with(workerFacts, func(n *pki.NodeFacts) { n.Hostname = "Node1" }), `hostname "Node1" must be lower case`},
		{"underscore hostname", with(workerFacts, func(n *pki.NodeFacts) { n.Hostname = "node_1" }), "not a valid Kubernetes node name"},
		{"hostname with space", with(workerFacts, func(n *pki.NodeFacts) { n.Hostname = "node 1" }), `has character ' '`},
		{"no IP", with(workerFacts, func(n *pki.NodeFacts) { n.IP = nil }), "node IP is missing or unusable"},
		{"zero IP", with(workerFacts, func(n *pki.NodeFacts) { n.IP = net.IPv4zero }), "node IP is missing or unusable"},
		{"custom role", with(workerFacts, func(n *pki.NodeFacts) { n.Role = "custom" }), `role "custom" has no certificates (want "master" or "worker")`},
		{"no role", with(workerFacts, func(n *pki.NodeFacts) { n.Role = "" }), `role "" has no certificates`},
		{"master without service IP", with(masterFacts, func(n *pki.NodeFacts) { n.KubernetesServiceIP = nil }), "Kubernetes service IP is missing"},
		{"bad domain", with(masterFacts, func(n *pki.NodeFacts) { n.ClusterDomain = "bad domain" }), `cluster domain "bad domain"`},
		{"empty endpoint", with(masterFacts, func(n *pki.NodeFacts) { n.APIEndpoints = []string{" "} }), "API endpoint is empty"},
		{"endpoint URL without host", with(masterFacts, func(n *pki.NodeFacts) { n.APIEndpoints = []string{"https://:6443"} }), "has no host"},
		{"endpoint with bad name", with(masterFacts, func(n *pki.NodeFacts) { n.APIEndpoints = []string{"api/x"} }), `has character '/'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Through IssueNode, so the bad name in an endpoint is caught
			// where the request is validated.
			_, err := pki.IssueNode(testCAs(t, pki.ECDSAP256), tc.facts, pki.Options{}, testNow)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNodeSpecsDefaults(t *testing.T) {
	f := masterFacts
	f.ClusterDomain = "k8s.lab."
	specs, err := pki.NodeSpecs(f)
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Name != pki.CertAPIServer || !slices.Contains(specs[0].Request.DNSNames, "kubernetes.default.svc.k8s.lab") {
		t.Errorf("apiserver DNS SANs %q lack kubernetes.default.svc.k8s.lab", specs[0].Request.DNSNames)
	}
	// The order is fixed, so rendered configs do not churn.
	again, _ := pki.NodeSpecs(f)
	for i := range specs {
		if specs[i].Name != again[i].Name {
			t.Fatalf("order changed: %s vs %s", specs[i].Name, again[i].Name)
		}
	}
	admin := pki.AdminSpec("")
	if admin.Request.CommonName != "admin" || !slices.Equal(admin.Request.Organizations, []string{"system:masters"}) || admin.CA != pki.CAKubernetes {
		t.Errorf("AdminSpec = %+v", admin)
	}
}

// Verify is how the caller knows a stored cert no longer fits the machine.
func TestVerifyStale(t *testing.T) {
	cas := testCAs(t, pki.ECDSAP256)
	otherCAs := testCAs(t, pki.RSA2048)
	certs, err := pki.IssueNode(cas, workerFacts, pki.Options{Validity: 24 * time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, _ := certs.Get(pki.CertKubelet)
	specFor := func(f func(*pki.NodeFacts)) pki.Spec {
		facts := workerFacts
		f(&facts)
		specs, err := pki.NodeSpecs(facts)
		if err != nil {
			t.Fatal(err)
		}
		return specs[0]
	}
	serverOnly := kubelet.Spec
	serverOnly.Request.Usage = pki.ServerAuth
	tests := []struct {
		name    string
		cas     pki.CAs
		spec    pki.Spec
		pair    pki.Pair
		now     time.Time
		wantErr string // "" means still good
	}{
		{"fresh", cas, kubelet.Spec, kubelet.Pair, testNow, ""},
		{"new IP", cas, specFor(func(n *pki.NodeFacts) { n.IP = net.ParseIP("10.0.0.99") }), kubelet.Pair, testNow, "IP SANs are [10.0.0.21], want [10.0.0.99]"},
		{"renamed", cas, specFor(func(n *pki.NodeFacts) { n.Hostname = "w2" }), kubelet.Pair, testNow, `CN is "system:node:w1.lab.example", want "system:node:w2"`},
		{"expired", cas, kubelet.Spec, kubelet.Pair, testNow.Add(25 * time.Hour), "expired"},
		{"other CA", otherCAs, kubelet.Spec, kubelet.Pair, testNow, "certificate signed by unknown authority"},
		{"key swapped", cas, kubelet.Spec, pki.Pair{CertPEM: kubelet.CertPEM, KeyPEM: certs[1].KeyPEM}, testNow, "do not match"},
		{"wrong usage", cas, serverOnly, kubelet.Pair, testNow, "extended key usages are [serverAuth clientAuth], want server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pki.Verify(tc.cas, tc.spec, tc.pair, tc.now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCertsPairs(t *testing.T) {
	certs, err := pki.IssueNode(testCAs(t, pki.ECDSAP256), workerFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	m := certs.Pairs()
	if len(m) != len(certs) {
		t.Fatalf("%d pairs for %d certs", len(m), len(certs))
	}
	for _, c := range certs {
		if string(m[c.Name].CertPEM) != string(c.CertPEM) {
			t.Errorf("%s: pair differs", c.Name)
		}
	}
	if _, ok := certs.Get("nope"); ok {
		t.Error("Get(nope) found something")
	}
}

// A worker holds what its kubelet and kube-proxy need and nothing else:
// nothing from the etcd CA (etcd would take it), nothing from the
// front-proxy CA, no system:masters. A master holds the control plane's
// certs on top of those two.
func TestNodeSpecsPerRole(t *testing.T) {
	names := func(specs []pki.Spec) []string {
		var out []string
		for _, s := range specs {
			out = append(out, s.Name)
		}
		return slices.Sorted(slices.Values(out))
	}
	worker, err := pki.NodeSpecs(workerFacts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(worker), []string{pki.CertKubeProxy, pki.CertKubelet}; !slices.Equal(got, want) {
		t.Errorf("worker certs %v, want exactly %v", got, want)
	}
	for _, s := range worker {
		if s.CA != pki.CAKubernetes {
			t.Errorf("worker cert %s is from CA %q, want only %q", s.Name, s.CA, pki.CAKubernetes)
		}
		if slices.Contains(s.Request.Organizations, pki.MastersGroup) {
			t.Errorf("worker cert %s is in %s", s.Name, pki.MastersGroup)
		}
		if strings.HasPrefix(s.Name, "etcd") {
			t.Errorf("worker has etcd cert %s", s.Name)
		}
	}

	master, err := pki.NodeSpecs(masterFacts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{pki.CertAddons, pki.CertAPIServer, pki.CertAPIServerKubelet, pki.CertControllerManager, pki.CertCoreDNS,
		pki.CertAPIServerEtcd, pki.CertEtcdPeer, pki.CertEtcdServer, pki.CertFrontProxyClient, pki.CertKubeProxy,
		pki.CertKubelet, pki.CertScheduler}
	slices.Sort(want)
	if got := names(master); !slices.Equal(got, want) {
		t.Errorf("master certs %v, want %v", got, want)
	}
	byCA := map[string][]string{}
	for _, s := range master {
		byCA[s.CA] = append(byCA[s.CA], s.Name)
	}
	if got := byCA[pki.CAFrontProxy]; !slices.Equal(got, []string{pki.CertFrontProxyClient}) {
		t.Errorf("front-proxy CA signs %v, want only %s", got, pki.CertFrontProxyClient)
	}
	if got := slices.Sorted(slices.Values(byCA[pki.CAEtcd])); !slices.Equal(got, []string{pki.CertAPIServerEtcd, pki.CertEtcdPeer, pki.CertEtcdServer}) {
		t.Errorf("etcd CA signs %v", got)
	}
}

// The front-proxy-client cert chains to the front-proxy CA only: an
// aggregated API server trusts request headers from a client of that CA
// named front-proxy-client, so the cluster CA must not vouch for it. This
// is Go's view; TestIssueNode adds openssl's.
func TestFrontProxyClient(t *testing.T) {
	cas := testCAs(t, pki.ECDSAP256)
	certs, err := pki.IssueNode(cas, masterFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	fp, ok := certs.Get(pki.CertFrontProxyClient)
	if !ok {
		t.Fatal("master has no front-proxy-client cert")
	}
	cert, _, err := fp.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != pki.FrontProxyClientCN || len(cert.Subject.Organization) != 0 {
		t.Errorf("subject %s, want CN=%s and no O", cert.Subject, pki.FrontProxyClientCN)
	}
	pool := func(p pki.Pair) *x509.CertPool {
		c, err := p.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		cp := x509.NewCertPool()
		cp.AddCert(c)
		return cp
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(cas.FrontProxy), CurrentTime: testNow, KeyUsages: client}); err != nil {
		t.Errorf("front-proxy-client does not verify against the front-proxy CA: %v", err)
	}
	for name, ca := range map[string]pki.Pair{"cluster": cas.Cluster, "etcd": cas.Etcd} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), CurrentTime: testNow, KeyUsages: client})
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("front-proxy-client against the %s CA: err = %v, want unknown authority", name, err)
		}
	}
	// And no other master cert comes from the front-proxy CA.
	for _, c := range certs {
		if c.Name == pki.CertFrontProxyClient {
			continue
		}
		other, _, err := c.Parse()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Verify(x509.VerifyOptions{Roots: pool(cas.FrontProxy), CurrentTime: testNow,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Errorf("%s verifies against the front-proxy CA", c.Name)
		}
	}
}

// A cluster whose CAs predate the front-proxy CA can still issue worker
// certs, but not a master's: the master would have no aggregation layer.
func TestNoFrontProxyCA(t *testing.T) {
	cas := testCAs(t, pki.ECDSAP256)
	cas.FrontProxy = pki.Pair{}
	if _, err := pki.IssueNode(cas, workerFacts, pki.Options{}, testNow); err != nil {
		t.Errorf("worker without a front-proxy CA: %v", err)
	}
	_, err := pki.IssueNode(cas, masterFacts, pki.Options{}, testNow)
	if err == nil || !errors.Is(err, pki.ErrInvalid) || !strings.Contains(err.Error(), "no front-proxy CA") ||
		!strings.Contains(err.Error(), pki.CertFrontProxyClient) {
		t.Errorf("master without a front-proxy CA: err = %v, want ErrInvalid naming %s and the missing CA", err, pki.CertFrontProxyClient)
	}
	specs, _ := pki.NodeSpecs(masterFacts)
	for _, s := range specs {
		if s.Name == pki.CertFrontProxyClient {
			if err := pki.Verify(cas, s, pki.Pair{}, testNow); err == nil || !strings.Contains(err.Error(), "no front-proxy CA") {
				t.Errorf("Verify without a front-proxy CA: err = %v", err)
			}
		}
	}
}
