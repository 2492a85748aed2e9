package pki

import (
	"net"
	"testing"
	"time"
)

// The benchmarks show where the cost of a node's certificates is: key
// generation (RSA especially) dominates signing, which is why bootsrv issues
// once per machine and stores the result rather than issuing per render.

func benchCA(b *testing.B, alg KeyAlgorithm) (Pair, authority) {
	b.Helper()
	ca, err := NewCA("bench", alg, 0, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	a, err := parseAuthority(ca)
	if err != nil {
		b.Fatal(err)
	}
	return ca, a
}

var benchReq = Request{
	CommonName:    "system:node:n1",
	Organizations: []string{NodesGroup},
	DNSNames:      []string{"n1"},
	IPs:           []net.IP{net.ParseIP("10.0.0.21")},
	Usage:         ServerAuth | ClientAuth,
}

func benchIssue(b *testing.B, alg KeyAlgorithm) {
	ca, _ := benchCA(b, ECDSAP256)
	req := benchReq
	req.KeyAlgorithm = alg
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Issue(ca, req, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueECDSA: one leaf with a new P-256 key (CA parse included).
func BenchmarkIssueECDSA(b *testing.B) { benchIssue(b, ECDSAP256) }

// BenchmarkIssueRSA2048: one leaf with a new RSA 2048 key.
func BenchmarkIssueRSA2048(b *testing.B) { benchIssue(b, RSA2048) }

// BenchmarkSignOnly: signing a leaf for an existing key, no key generation:
// the part that is not worth caching.
func BenchmarkSignOnly(b *testing.B) {
	_, a := benchCA(b, ECDSAP256)
	key, err := generateKey(ECDSAP256)
	if err != nil {
		b.Fatal(err)
	}
	req, err := benchReq.validate()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.sign(req, key.Public(), now); err != nil {
			b.Fatal(err)
		}
	}
}

func benchNodeFacts() NodeFacts {
	return NodeFacts{
		Hostname:            "m1",
		IP:                  net.ParseIP("10.0.0.11"),
		Role:                RoleMaster,
		KubernetesServiceIP: net.ParseIP("10.3.0.1"),
	}
}

func benchMasterSet(b *testing.B, alg KeyAlgorithm) {
	ca1, _ := benchCA(b, ECDSAP256)
	ca2, _ := benchCA(b, ECDSAP256)
	ca3, _ := benchCA(b, ECDSAP256)
	cas := CAs{Cluster: ca1, Etcd: ca2, FrontProxy: ca3}
	facts := benchNodeFacts()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := IssueNode(cas, facts, Options{KeyAlgorithm: alg}, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMasterSetECDSA: the twelve certs of a master, ECDSA keys.
func BenchmarkMasterSetECDSA(b *testing.B) { benchMasterSet(b, ECDSAP256) }

// BenchmarkMasterSetRSA2048: the same with RSA keys.
func BenchmarkMasterSetRSA2048(b *testing.B) { benchMasterSet(b, RSA2048) }

// BenchmarkParseStored: what a render does with stored certs at most
// (parse a pair and check the key matches), for comparison with issuing.
func BenchmarkParseStored(b *testing.B) {
	ca, _ := benchCA(b, ECDSAP256)
	p, err := Issue(ca, benchReq, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Parse(); err != nil {
			b.Fatal(err)
		}
	}
}
