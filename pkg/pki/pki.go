// Package pki makes the X.509 material of a bootsrv cluster: the cluster and
// etcd CAs, the service-account key pair, every node's certificates and the
// kubeconfigs that carry them. Its one job is to turn plain facts into PEM
// bytes; it does no I/O and keeps no state, so the caller decides where the
// results are stored (bbolt) and where they land (Ignition files).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// ErrInvalid marks errors caused by bad input (an unknown algorithm, an
// empty common name, a malformed SAN...), as opposed to internal failures.
// Callers map it to their "invalid" error kind with errors.Is.
var ErrInvalid = errors.New("invalid")

// invalidError reads as its message alone (no "invalid:" noise in what
// the operator sees) but matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, a ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, a...)}
}

const (
	// DefaultValidity is how long a leaf certificate lives unless asked
	// otherwise (the issue: "default one year").
	DefaultValidity = 365 * 24 * time.Hour
	// DefaultCAValidity is how long a CA lives unless asked otherwise; ten
	// years like kubeadm, so that leaves can be re-issued for many years
	// without touching every node's trust bundle.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// Backdate is how far NotBefore is set in the past, so that a node whose
	// clock runs a little behind the server still accepts a fresh cert.
	// Five minutes is kubeadm's CertificateBackdate.
	Backdate = 5 * time.Minute
)

// KeyAlgorithm names the kind of private key generated for a CA or a leaf.
// It implements flag.Value, so `flag.Var(&alg, "key-algorithm", ...)` works.
type KeyAlgorithm string

const (
	// ECDSAP256 is the default: small keys, fast to generate and sign, and
	// accepted by every Kubernetes component and etcd.
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	// RSA2048 is for tools or HSMs that still cannot do ECDSA.
	RSA2048 KeyAlgorithm = "rsa2048"
)

// KeyAlgorithms lists the accepted values, default first.
var KeyAlgorithms = []KeyAlgorithm{ECDSAP256, RSA2048}

// ParseKeyAlgorithm reads a --key-algorithm value. The empty string means
// the default (ECDSAP256); case and surrounding space are ignored.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return ECDSAP256, nil
	}
	for _, a := range KeyAlgorithms {
		if KeyAlgorithm(v) == a {
			return a, nil
		}
	}
	return "", invalidf("unknown key algorithm %q (want one of %s)", s, joinAlgs())
}

func joinAlgs() string {
	names := make([]string, len(KeyAlgorithms))
	for i, a := range KeyAlgorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// String returns the flag form of a.
func (a KeyAlgorithm) String() string {
	if a == "" {
		return string(ECDSAP256)
	}
	return string(a)
}

// Set implements flag.Value.
func (a *KeyAlgorithm) Set(s string) error {
	v, err := ParseKeyAlgorithm(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// orDefault resolves the zero value and rejects unknown values that did not
// come through ParseKeyAlgorithm.
func (a KeyAlgorithm) orDefault() (KeyAlgorithm, error) {
	return ParseKeyAlgorithm(string(a))
}

// generateKey makes a fresh private key. This is the expensive step (RSA
// takes tens of milliseconds), which is why callers issue once and store.
func generateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case ECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
		}
		return k, nil
	case RSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate RSA 2048 key: %w", err)
		}
		return k, nil
	}
	return nil, invalidf("unknown key algorithm %q (want one of %s)", alg, joinAlgs())
}

// Pair is a certificate and its private key, both PEM. It is the unit the
// caller stores and writes to disk.
type Pair struct {
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
}

// Certificate parses the certificate alone (no key needed), for listing
// expiry or showing the CA.
func (p Pair) Certificate() (*x509.Certificate, error) {
	return parseCertPEM(p.CertPEM)
}

// Parse returns the certificate and its private key, and checks that they
// belong together: a mismatched pair in the store would otherwise only show
// up as a TLS handshake failure on a node.
func (p Pair) Parse() (*x509.Certificate, crypto.Signer, error) {
	cert, err := parseCertPEM(p.CertPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ParsePrivateKeyPEM(p.KeyPEM)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("certificate %q and private key do not match", cert.Subject.CommonName)
	}
	return cert, key, nil
}

// NotAfter is when the certificate expires, for `bootsrv certs list`.
func (p Pair) NotAfter() (time.Time, error) {
	c, err := p.Certificate()
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

// Fingerprint is the SHA-256 of the certificate's DER in the form openssl
// prints it (`openssl x509 -fingerprint -sha256`): upper-case hex pairs
// joined by colons, so an operator can compare the two by eye.
func (p Pair) Fingerprint() (string, error) {
	c, err := p.Certificate()
	if err != nil {
		return "", err
	}
	return Fingerprint(c), nil
}

// Fingerprint is the SHA-256 fingerprint of c (see Pair.Fingerprint).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// Info is what `bootsrv ca show` and `bootsrv certs list` print.
type Info struct {
	Subject     string
	Issuer      string
	Serial      string // hex
	NotBefore   time.Time
	NotAfter    time.Time
	Fingerprint string
	IsCA        bool
	DNSNames    []string
	IPs         []string
	KeyType     string // "ECDSA P-256", "RSA 2048", ...
}

// Info describes the certificate of p.
func (p Pair) Info() (Info, error) {
	c, err := p.Certificate()
	if err != nil {
		return Info{}, err
	}
	in := Info{
		Subject:     c.Subject.String(),
		Issuer:      c.Issuer.String(),
		Serial:      fmt.Sprintf("%x", c.SerialNumber),
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		Fingerprint: Fingerprint(c),
		IsCA:        c.IsCA,
		DNSNames:    c.DNSNames,
	}
	for _, ip := range c.IPAddresses {
		in.IPs = append(in.IPs, ip.String())
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		in.KeyType = "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		in.KeyType = fmt.Sprintf("RSA %d", k.N.BitLen())
	default:
		in.KeyType = c.PublicKeyAlgorithm.String()
	}
	return in, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("parse certificate: no PEM block found")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("parse certificate: PEM block is %q, want CERTIFICATE", block.Type)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// ParsePrivateKeyPEM reads a private key in any of the PEM forms the tools
// around a cluster write: PKCS#8 ("PRIVATE KEY", what this package writes),
// SEC 1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY"), so that a CA
// imported from kubeadm or openssl can be used too.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("parse private key: no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("parse private key: unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key (%s): %w", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T cannot sign", key)
	}
	switch s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		// ed25519 would parse, but the apiserver's service-account signer
		// and older etcd builds do not take it; refuse it early.
		return nil, fmt.Errorf("parse private key: %T is not supported (want ECDSA or RSA)", key)
	}
	return s, nil
}

// encodeKey writes key as PKCS#8, which kube-apiserver, etcd, flannel and
// openssl all read, whatever the algorithm.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// serialLimit bounds serials to 128 bits: random enough that two issues never
// collide (CA/B forum asks for at least 64 bits), and well under the 20
// octets RFC 5280 allows.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		// RFC 5280 wants a positive serial.
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID follows RFC 7093 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bits. Setting it ourselves (Go only fills
// it in for CAs) gives leaves a SubjectKeyId too, and the CA's one becomes
// every leaf's AuthorityKeyId, so chains build without guessing.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// NewCA makes a self-signed CA: the cluster CA and, separately, the etcd CA
// (a separate CA so that a cert for the Kubernetes API can never be used as
// an etcd client, and the reverse). validity 0 means DefaultCAValidity.
func NewCA(commonName string, alg KeyAlgorithm, validity time.Duration, now time.Time) (Pair, error) {
	if strings.TrimSpace(commonName) == "" {
		return Pair{}, invalidf("new CA: common name is empty")
	}
	alg, err := alg.orDefault()
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	if validity < 0 {
		return Pair{}, invalidf("new CA %q: validity %v is negative", commonName, validity)
	}
	if validity == 0 {
		validity = DefaultCAValidity
	}
	key, err := generateKey(alg)
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	// X.509 times have whole seconds; truncating here makes NotBefore and
	// NotAfter exactly now-Backdate and now+validity.
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Path length 0: this CA signs leaves only, so a leaf key that
		// leaks cannot be turned into a sub-CA that the cluster trusts.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		SubjectKeyId:   skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: sign: %w", commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	return Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// NewServiceAccountKey makes the key pair the apiserver signs and checks
// service-account tokens with (--service-account-signing-key-file and
// --service-account-key-file). It is its own pair, never the apiserver's
// serving key: rotating one must not invalidate the other.
func NewServiceAccountKey(alg KeyAlgorithm) (keyPEM, pubPEM []byte, err error) {
	alg, err = alg.orDefault()
	if err != nil {
		return nil, nil, fmt.Errorf("new service-account key: %w", err)
	}
	key, err := generateKey(alg)
	if err != nil {
		return nil, nil, fmt.Errorf("new service-account key: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("new service-account key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("new service-account key: encode public key: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
