package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"time"
)

// Usage says what a leaf certificate is for; it becomes its extended key
// usages. Combine with |.
type Usage uint8

const (
	// ServerAuth: the holder serves TLS (apiserver, etcd, kubelet).
	ServerAuth Usage = 1 << iota
	// ClientAuth: the holder authenticates to a TLS server (every
	// component talking to the apiserver or etcd).
	ClientAuth
)

func (u Usage) String() string {
	var parts []string
	if u&ServerAuth != 0 {
		parts = append(parts, "server")
	}
	if u&ClientAuth != 0 {
		parts = append(parts, "client")
	}
	if u&^(ServerAuth|ClientAuth) != 0 {
		parts = append(parts, fmt.Sprintf("unknown(%#x)", uint8(u&^(ServerAuth|ClientAuth))))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

func (u Usage) extKeyUsages() []x509.ExtKeyUsage {
	var eku []x509.ExtKeyUsage
	if u&ServerAuth != 0 {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if u&ClientAuth != 0 {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	return eku
}

// Request describes one leaf certificate to issue.
type Request struct {
	CommonName    string
	Organizations []string // Kubernetes reads these as the user's groups
	DNSNames      []string
	IPs           []net.IP
	Usage         Usage
	// Validity 0 means DefaultValidity. The result never outlives its CA:
	// NotAfter is cut to the CA's NotAfter.
	Validity time.Duration
	// KeyAlgorithm "" means ECDSAP256.
	KeyAlgorithm KeyAlgorithm
}

// validate checks r and returns a copy with defaults filled in and SANs
// de-duplicated (a master's IP is often also the API endpoint).
func (r Request) validate() (Request, error) {
	if strings.TrimSpace(r.CommonName) == "" {
		return r, invalidf("common name is empty")
	}
	if r.Usage == 0 {
		return r, invalidf("no usage: want ServerAuth, ClientAuth or both")
	}
	if r.Usage&^(ServerAuth|ClientAuth) != 0 {
		return r, invalidf("unknown usage bits %#x", uint8(r.Usage))
	}
	for i, o := range r.Organizations {
		if strings.TrimSpace(o) == "" {
			return r, invalidf("organization %d is empty", i)
		}
	}
	alg, err := r.KeyAlgorithm.orDefault()
	if err != nil {
		return r, err
	}
	r.KeyAlgorithm = alg
	if r.Validity < 0 {
		return r, invalidf("validity %v is negative", r.Validity)
	}
	if r.Validity == 0 {
		r.Validity = DefaultValidity
	}

	var dns []string
	seenDNS := map[string]bool{}
	for i, d := range r.DNSNames {
		if err := checkDNSName(d); err != nil {
			return r, invalidf("DNS name %d %q: %v", i, d, err)
		}
		k := strings.ToLower(d)
		if !seenDNS[k] {
			seenDNS[k] = true
			dns = append(dns, d)
		}
	}
	r.DNSNames = dns

	var ips []net.IP
	seenIP := map[string]bool{}
	for i, ip := range r.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return r, invalidf("IP SAN %d is empty or malformed (%d bytes)", i, len(ip))
		}
		if ip.IsUnspecified() {
			return r, invalidf("IP SAN %d is %s, which no client connects to", i, ip)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if k := ip.String(); !seenIP[k] {
			seenIP[k] = true
			ips = append(ips, ip)
		}
	}
	r.IPs = ips
	return r, nil
}

// checkDNSName accepts host names as TLS clients match them: dot-separated
// labels of letters, digits and hyphens. A wildcard or a space would be
// silently useless in a SAN, so refuse them here where the cause is known.
func checkDNSName(d string) error {
	if d == "" {
		return fmt.Errorf("empty")
	}
	if len(d) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	if net.ParseIP(d) != nil {
		return fmt.Errorf("is an IP address: put it in IPs")
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" {
			return fmt.Errorf("has an empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range label {
			ok := c == '-' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
			if !ok {
				return fmt.Errorf("label %q has character %q", label, c)
			}
		}
	}
	return nil
}

// authority is a parsed CA, so that a node's set of certs parses the CA once.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func parseAuthority(ca Pair) (authority, error) {
	cert, key, err := ca.Parse()
	if err != nil {
		return authority{}, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return authority{}, invalidf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return authority{}, invalidf("certificate %q may not sign certificates (no keyCertSign usage)", cert.Subject.CommonName)
	}
	return authority{cert: cert, key: key}, nil
}

// Issue makes a new key and a certificate for it signed by ca. Each call
// generates a fresh key: callers issue once per machine and store the Pair.
func Issue(ca Pair, req Request, now time.Time) (Pair, error) {
	a, err := parseAuthority(ca)
	if err != nil {
		return Pair{}, fmt.Errorf("issue %q: CA: %w", req.CommonName, err)
	}
	p, err := a.issue(req, now)
	if err != nil {
		return Pair{}, fmt.Errorf("issue %q: %w", req.CommonName, err)
	}
	return p, nil
}

func (a authority) issue(req Request, now time.Time) (Pair, error) {
	req, err := req.validate()
	if err != nil {
		return Pair{}, err
	}
	key, err := generateKey(req.KeyAlgorithm)
	if err != nil {
		return Pair{}, err
	}
	der, err := a.sign(req, key.Public(), now)
	if err != nil {
		return Pair{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// sign signs a validated request for pub. It is split from issue so that
// the benchmarks can tell signing from key generation.
func (a authority) sign(req Request, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	// X.509 times have whole seconds; truncating here makes NotBefore and
	// NotAfter exactly now-Backdate and now+validity.
	now = now.UTC().Truncate(time.Second)
	if now.After(a.cert.NotAfter) {
		return nil, invalidf("CA %q expired at %s", a.cert.Subject.CommonName, a.cert.NotAfter.Format(time.RFC3339))
	}
	if now.Before(a.cert.NotBefore) {
		return nil, invalidf("CA %q is not valid before %s (check the clock)", a.cert.Subject.CommonName, a.cert.NotBefore.Format(time.RFC3339))
	}
	notAfter := now.Add(req.Validity)
	if notAfter.After(a.cert.NotAfter) {
		// A leaf that outlives its CA fails verification from the CA's
		// expiry on anyway; saying so in NotAfter keeps `certs list` honest.
		notAfter = a.cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		// RSA keys may do TLS 1.2 RSA key exchange, which encrypts the
		// premaster secret with the cert's key; ECDSA keys never do.
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   req.CommonName,
			Organization: req.Organizations,
		},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           req.Usage.extKeyUsages(),
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          skid,
		// Go copies the CA's SubjectKeyId here too; set it so it does not
		// depend on that.
		AuthorityKeyId: a.cert.SubjectKeyId,
		DNSNames:       req.DNSNames,
		IPAddresses:    req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return der, nil
}
