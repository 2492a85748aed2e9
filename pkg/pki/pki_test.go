package pki_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// CAs are made once per algorithm and shared: key generation is what is
// slow, and the tests are about what gets signed.
var (
	caOnce  sync.Map // pki.KeyAlgorithm -> *caEntry
	testNow = time.Now().UTC()
)

type caEntry struct {
	once sync.Once
	cas  pki.CAs
	err  error
}

func testCAs(t testing.TB, alg pki.KeyAlgorithm) pki.CAs {
	t.Helper()
	v, _ := caOnce.LoadOrStore(alg, &caEntry{})
	e := v.(*caEntry)
	e.once.Do(func() {
		e.cas.Cluster, e.err = pki.NewCA("kubernetes", alg, 0, testNow)
		if e.err == nil {
			e.cas.Etcd, e.err = pki.NewCA("etcd-ca", alg, 0, testNow)
		}
		if e.err == nil {
			e.cas.FrontProxy, e.err = pki.NewCA("front-proxy-ca", alg, 0, testNow)
		}
	})
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.cas
}

func TestParseKeyAlgorithm(t *testing.T) {
	tests := []struct {
		in      string
		want    pki.KeyAlgorithm
		wantErr string
	}{
		{"", pki.ECDSAP256, ""},
		{"ecdsa-p256", pki.ECDSAP256, ""},
		{" RSA2048 ", pki.RSA2048, ""},
		{"rsa4096", "", `unknown key algorithm "rsa4096" (want one of ecdsa-p256, rsa2048)`},
		{"ed25519", "", `unknown key algorithm "ed25519"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := pki.ParseKeyAlgorithm(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pki.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestKeyAlgorithmFlag(t *testing.T) {
	var alg pki.KeyAlgorithm
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	fs.Var(&alg, "key-algorithm", "")
	if err := fs.Parse([]string{"--key-algorithm", "rsa2048"}); err != nil || alg != pki.RSA2048 {
		t.Fatalf("parse rsa2048: %q, %v", alg, err)
	}
	err := fs.Parse([]string{"--key-algorithm", "dsa"})
	if err == nil || !strings.Contains(err.Error(), `unknown key algorithm "dsa"`) {
		t.Fatalf("parse dsa: err = %v", err)
	}
}

func TestNewCA(t *testing.T) {
	needOpenSSL(t)
	for _, alg := range pki.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			ca := testCAs(t, alg).Cluster
			cert, key, err := ca.Parse()
			if err != nil {
				t.Fatal(err)
			}
			if !cert.IsCA || !cert.MaxPathLenZero || cert.MaxPathLen != 0 {
				t.Errorf("IsCA=%v MaxPathLen=%d zero=%v, want CA with path length 0", cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
			}
			if cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("key usage %b lacks certSign|cRLSign", cert.KeyUsage)
			}
			if got := cert.NotAfter.Sub(testNow.Truncate(time.Second)); got != pki.DefaultCAValidity {
				t.Errorf("validity %v, want %v", got, pki.DefaultCAValidity)
			}
			switch alg {
			case pki.ECDSAP256:
				if _, ok := key.(*ecdsa.PrivateKey); !ok {
					t.Errorf("key is %T", key)
				}
			case pki.RSA2048:
				if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
					t.Errorf("key is %T", key)
				}
			}
			// A self-signed CA verifies against itself under openssl's
			// strict checks (which want a SubjectKeyIdentifier on a CA).
			if ok, out := opensslVerify(t, ca.CertPEM, ca.CertPEM); !ok {
				t.Errorf("openssl verify CA against itself:\n%s", out)
			}
			text := opensslText(t, ca.CertPEM)
			for _, want := range []string{"CA:TRUE, pathlen:0", "Certificate Sign, CRL Sign", "Subject: CN = kubernetes", "X509v3 Subject Key Identifier"} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl text lacks %q:\n%s", want, text)
				}
			}
			if !opensslKeyMatches(t, ca.CertPEM, ca.KeyPEM) {
				t.Error("openssl: CA key does not match CA cert")
			}
		})
	}
}

func TestNewCAErrors(t *testing.T) {
	tests := []struct {
		name, cn string
		alg      pki.KeyAlgorithm
		validity time.Duration
		wantErr  string
	}{
		{"empty CN", " ", "", 0, "common name is empty"},
		{"bad alg", "ca", "dsa", 0, `unknown key algorithm "dsa"`},
		{"negative validity", "ca", "", -time.Hour, "validity -1h0m0s is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.NewCA(tc.cn, tc.alg, tc.validity, testNow)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	needOpenSSL(t)
	tests := []struct {
		name    string
		caAlg   pki.KeyAlgorithm
		req     pki.Request
		purpose []string // openssl -purpose values that must pass
		refuse  []string // and those that must fail
		keyEnc  bool     // KeyEncipherment expected
	}{
		{
			name:    "ecdsa server",
			caAlg:   pki.ECDSAP256,
			req:     pki.Request{CommonName: "srv", DNSNames: []string{"srv.example"}, IPs: []net.IP{net.ParseIP("192.0.2.7")}, Usage: pki.ServerAuth},
			purpose: []string{"sslserver"},
			refuse:  []string{"sslclient"},
		},
		{
			name:    "ecdsa client with groups",
			caAlg:   pki.ECDSAP256,
			req:     pki.Request{CommonName: "alice", Organizations: []string{"team-a", "team-b"}, Usage: pki.ClientAuth},
			purpose: []string{"sslclient"},
			refuse:  []string{"sslserver"},
		},
		{
			name:    "rsa leaf both usages under ecdsa CA",
			caAlg:   pki.ECDSAP256,
			req:     pki.Request{CommonName: "both", DNSNames: []string{"both"}, Usage: pki.ServerAuth | pki.ClientAuth, KeyAlgorithm: pki.RSA2048},
			purpose: []string{"sslserver", "sslclient"},
			keyEnc:  true,
		},
		{
			name:    "ecdsa leaf under rsa CA",
			caAlg:   pki.RSA2048,
			req:     pki.Request{CommonName: "mixed", IPs: []net.IP{net.ParseIP("2001:db8::1")}, Usage: pki.ServerAuth},
			purpose: []string{"sslserver"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca := testCAs(t, tc.caAlg).Cluster
			p, err := pki.Issue(ca, tc.req, testNow)
			if err != nil {
				t.Fatal(err)
			}
			cert, _, err := p.Parse()
			if err != nil {
				t.Fatal(err)
			}
			caCert, _ := ca.Certificate()
			if cert.Subject.CommonName != tc.req.CommonName || !slices.Equal(cert.Subject.Organization, tc.req.Organizations) {
				t.Errorf("subject %v, want CN=%s O=%v", cert.Subject, tc.req.CommonName, tc.req.Organizations)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if cert.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x has only %d bits", cert.SerialNumber, cert.SerialNumber.BitLen())
			}
			if len(cert.SubjectKeyId) == 0 || !slices.Equal(cert.AuthorityKeyId, caCert.SubjectKeyId) {
				t.Errorf("SKID %x AKID %x, CA SKID %x", cert.SubjectKeyId, cert.AuthorityKeyId, caCert.SubjectKeyId)
			}
			if got := testNow.Truncate(time.Second).Sub(cert.NotBefore); got != pki.Backdate {
				t.Errorf("NotBefore is %v before now, want %v", got, pki.Backdate)
			}
			if got := cert.NotAfter.Sub(testNow.Truncate(time.Second)); got != pki.DefaultValidity {
				t.Errorf("validity %v, want %v", got, pki.DefaultValidity)
			}
			if got := cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != tc.keyEnc {
				t.Errorf("KeyEncipherment = %v, want %v", got, tc.keyEnc)
			}
			if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
				t.Error("no DigitalSignature")
			}
			for _, purpose := range tc.purpose {
				if ok, out := opensslVerify(t, ca.CertPEM, p.CertPEM, "-purpose", purpose); !ok {
					t.Errorf("openssl verify -purpose %s:\n%s", purpose, out)
				}
			}
			for _, purpose := range tc.refuse {
				if ok, out := opensslVerify(t, ca.CertPEM, p.CertPEM, "-purpose", purpose); ok {
					t.Errorf("openssl verify -purpose %s passed, want refusal:\n%s", purpose, out)
				}
			}
			if !opensslKeyMatches(t, p.CertPEM, p.KeyPEM) {
				t.Error("openssl: key does not match cert")
			}
			// Against the other algorithm's CA (an unrelated CA) it must fail.
			other := testCAs(t, otherAlg(tc.caAlg)).Cluster
			if ok, _ := opensslVerify(t, other.CertPEM, p.CertPEM); ok {
				t.Error("openssl verify passed against an unrelated CA")
			}
		})
	}
}

func otherAlg(a pki.KeyAlgorithm) pki.KeyAlgorithm {
	if a == pki.RSA2048 {
		return pki.ECDSAP256
	}
	return pki.RSA2048
}

func TestIssueBadRequests(t *testing.T) {
	ca := testCAs(t, pki.ECDSAP256).Cluster
	ok := pki.Request{CommonName: "x", Usage: pki.ClientAuth}
	with := func(f func(*pki.Request)) pki.Request { r := ok; f(&r); return r }
	tests := []struct {
		name    string
		req     pki.Request
		wantErr string
	}{
		{"empty CN", with(func(r *pki.Request) { r.CommonName = "" }), "common name is empty"},
		{"no usage", with(func(r *pki.Request) { r.Usage = 0 }), "no usage: want ServerAuth, ClientAuth or both"},
		{"unknown usage", with(func(r *pki.Request) { r.Usage = 8 }), "unknown usage bits 0x8"},
		{"empty org", with(func(r *pki.Request) { r.Organizations = []string{"a", ""} }), "organization 1 is empty"},
		{"empty DNS", with(func(r *pki.Request) { r.DNSNames = []string{"a", ""} }), `DNS name 1 "": empty`},
		{"DNS with space", with(func(r *pki.Request) { r.DNSNames = []string{"a b"} }), `label "a b" has character ' '`},
		{"DNS wildcard", with(func(r *pki.Request) { r.DNSNames = []string{"*.example"} }), `has character '*'`},
		{"DNS is IP", with(func(r *pki.Request) { r.DNSNames = []string{"10.0.0.1"} }), "is an IP address: put it in IPs"},
		{"DNS empty label", with(func(r *pki.Request) { r.DNSNames = []string{"a..b"} }), "empty label"},
		{"nil IP", with(func(r *pki.Request) { r.IPs = []net.IP{nil} }), "IP SAN 0 is empty or malformed"},
		{"unspecified IP", with(func(r *pki.Request) { r.IPs = []net.IP{net.IPv4zero} }), "IP SAN 0 is 0.0.0.0"},
		{"negative validity", with(func(r *pki.Request) { r.Validity = -1 }), "validity -1ns is negative"},
		{"bad alg", with(func(r *pki.Request) { r.KeyAlgorithm = "p384" }), `unknown key algorithm "p384"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.Issue(ca, tc.req, testNow)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIssueBadCA(t *testing.T) {
	cas := testCAs(t, pki.ECDSAP256)
	leaf, err := pki.Issue(cas.Cluster, pki.Request{CommonName: "leaf", Usage: pki.ClientAuth}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	req := pki.Request{CommonName: "x", Usage: pki.ClientAuth}
	tests := []struct {
		name    string
		ca      pki.Pair
		now     time.Time
		wantErr string
	}{
		{"leaf as CA", leaf, testNow, `certificate "leaf" is not a CA`},
		{"mismatched key", pki.Pair{CertPEM: cas.Cluster.CertPEM, KeyPEM: cas.Etcd.KeyPEM}, testNow, "certificate \"kubernetes\" and private key do not match"},
		{"no cert", pki.Pair{KeyPEM: cas.Cluster.KeyPEM}, testNow, "no PEM block found"},
		{"key as cert", pki.Pair{CertPEM: cas.Cluster.KeyPEM, KeyPEM: cas.Cluster.KeyPEM}, testNow, `PEM block is "PRIVATE KEY", want CERTIFICATE`},
		{"expired CA", cas.Cluster, testNow.Add(pki.DefaultCAValidity + time.Hour), `CA "kubernetes" expired at`},
		{"CA not yet valid", cas.Cluster, testNow.Add(-time.Hour), `CA "kubernetes" is not valid before`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.Issue(tc.ca, req, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// A leaf asked to outlive its CA ends with the CA, and openssl agrees that
// it is good just before and dead just after.
func TestIssueClampsToCA(t *testing.T) {
	needOpenSSL(t)
	ca, err := pki.NewCA("short", pki.ECDSAP256, 48*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.Issue(ca, pki.Request{CommonName: "x", Usage: pki.ClientAuth, Validity: 30 * 24 * time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	caAfter, _ := ca.NotAfter()
	leafAfter, err := p.NotAfter()
	if err != nil || !leafAfter.Equal(caAfter) {
		t.Fatalf("leaf NotAfter %v (%v), want CA's %v", leafAfter, err, caAfter)
	}
	before := fmt.Sprint(caAfter.Add(-time.Minute).Unix())
	after := fmt.Sprint(caAfter.Add(time.Minute).Unix())
	if ok, out := opensslVerify(t, ca.CertPEM, p.CertPEM, "-attime", before); !ok {
		t.Errorf("openssl verify a minute before expiry:\n%s", out)
	}
	if ok, _ := opensslVerify(t, ca.CertPEM, p.CertPEM, "-attime", after); ok {
		t.Error("openssl verify passed a minute after expiry")
	}
}

// A CA made by openssl itself, with the traditional key formats openssl and
// kubeadm write (SEC 1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY"), can be
// imported and used to issue.
func TestImportedOpenSSLCA(t *testing.T) {
	needOpenSSL(t)
	tests := []struct {
		name    string
		genkey  []string
		keyType string
	}{
		{"ec sec1", []string{"ecparam", "-name", "prime256v1", "-genkey", "-noout"}, "EC PRIVATE KEY"},
		{"rsa pkcs1", []string{"genrsa", "-traditional", "2048"}, "RSA PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keyPEM := mustOpenSSL(t, tc.genkey...)
			if !strings.Contains(keyPEM, "BEGIN "+tc.keyType) {
				t.Fatalf("openssl wrote:\n%s", keyPEM)
			}
			keyFile := writeFile(t, "ca-key.pem", []byte(keyPEM))
			certPEM := mustOpenSSL(t, "req", "-x509", "-new", "-key", keyFile, "-subj", "/CN=imported", "-days", "30",
				"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
			ca := pki.Pair{CertPEM: []byte(certPEM), KeyPEM: []byte(keyPEM)}
			p, err := pki.Issue(ca, pki.Request{CommonName: "x", DNSNames: []string{"x"}, Usage: pki.ServerAuth}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if ok, out := opensslVerify(t, ca.CertPEM, p.CertPEM, "-purpose", "sslserver", "-verify_hostname", "x"); !ok {
				t.Errorf("openssl verify:\n%s", out)
			}
		})
	}
}

func TestPairHelpers(t *testing.T) {
	needOpenSSL(t)
	ca := testCAs(t, pki.ECDSAP256).Cluster
	fp, err := ca.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	out := mustOpenSSL(t, "x509", "-noout", "-fingerprint", "-sha256", "-in", writeFile(t, "ca.pem", ca.CertPEM))
	if want := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "sha256 Fingerprint=")); fp != want {
		t.Errorf("Fingerprint %s, openssl says %s", fp, want)
	}
	info, err := ca.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != "CN=kubernetes" || !info.IsCA || info.KeyType != "ECDSA P-256" || info.Fingerprint != fp {
		t.Errorf("Info = %+v", info)
	}
	serial := strings.TrimPrefix(strings.TrimSpace(mustOpenSSL(t, "x509", "-noout", "-serial", "-in", writeFile(t, "ca.pem", ca.CertPEM))), "serial=")
	if !strings.EqualFold(strings.TrimLeft(serial, "0"), info.Serial) {
		t.Errorf("Info.Serial %s, openssl says %s", info.Serial, serial)
	}
}

func TestServiceAccountKey(t *testing.T) {
	needOpenSSL(t)
	for _, tc := range []struct {
		alg  pki.KeyAlgorithm
		want string // in `openssl pkey -text`
	}{
		{pki.ECDSAP256, "NIST CURVE: P-256"},
		{pki.RSA2048, "Private-Key: (2048 bit"},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			keyPEM, pubPEM, err := pki.NewServiceAccountKey(tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := writeFile(t, "sa.key", keyPEM)
			if text := mustOpenSSL(t, "pkey", "-noout", "-text", "-in", keyFile); !strings.Contains(text, tc.want) {
				t.Errorf("openssl pkey -text lacks %q:\n%s", tc.want, text)
			}
			derived := mustOpenSSL(t, "pkey", "-pubout", "-in", keyFile)
			given := mustOpenSSL(t, "pkey", "-pubin", "-pubout", "-in", writeFile(t, "sa.pub", pubPEM))
			if derived != given {
				t.Errorf("public key does not match private key:\n%s\n%s", derived, given)
			}
		})
	}
	if _, _, err := pki.NewServiceAccountKey("x"); !errors.Is(err, pki.ErrInvalid) {
		t.Errorf("bad alg: err = %v", err)
	}
}
