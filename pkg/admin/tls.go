package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// The admin API on TCP (serve --admin-addr) takes only clients with a
// certificate from the admin CA, a CA of its own in the data dir, apart
// from the cluster's: an admin certificate is no Kubernetes identity, and
// no node certificate opens the admin API.
const (
	CAFile    = "admin-ca.pem"
	CAKeyFile = "admin-ca-key.pem"
	// AdminOrg is the organization every admin client certificate carries.
	AdminOrg = "bootsrv-admin"
)

// ErrNoAdminCA means no admin CA exists yet in the data dir.
var ErrNoAdminCA = errors.New("no admin CA in the data dir: make one and a client certificate with 'bootsrv ca issue-admin NAME'")

// LoadCA reads the admin CA of dataDir.
func LoadCA(dataDir string) (pki.Pair, error) {
	cert, err := os.ReadFile(filepath.Join(dataDir, CAFile))
	if errors.Is(err, os.ErrNotExist) {
		return pki.Pair{}, ErrNoAdminCA
	}
	if err != nil {
		return pki.Pair{}, err
	}
	key, err := os.ReadFile(filepath.Join(dataDir, CAKeyFile))
	if err != nil {
		return pki.Pair{}, fmt.Errorf("admin CA key: %w", err)
	}
	p := pki.Pair{CertPEM: cert, KeyPEM: key}
	if _, _, err := p.Parse(); err != nil {
		return pki.Pair{}, fmt.Errorf("admin CA in %s: %w", dataDir, err)
	}
	return p, nil
}

// LoadOrCreateCA reads the admin CA of dataDir, making it first (key 0600)
// when there is none; created says which.
func LoadOrCreateCA(dataDir string, now time.Time) (ca pki.Pair, created bool, err error) {
	ca, err = LoadCA(dataDir)
	if !errors.Is(err, ErrNoAdminCA) {
		return ca, false, err
	}
	if ca, err = pki.NewCA("bootsrv admin CA", pki.ECDSAP256, 0, now); err != nil {
		return pki.Pair{}, false, err
	}
	// The key first and exclusive: two issue-admin at once must not
	// leave a certificate of one CA beside the key of another.
	kf, err := os.OpenFile(filepath.Join(dataDir, CAKeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return pki.Pair{}, false, fmt.Errorf("admin CA key: %w", err)
	}
	if _, err := kf.Write(ca.KeyPEM); err != nil {
		kf.Close()
		return pki.Pair{}, false, fmt.Errorf("admin CA key: %w", err)
	}
	if err := kf.Close(); err != nil {
		return pki.Pair{}, false, fmt.Errorf("admin CA key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, CAFile), ca.CertPEM, 0o644); err != nil {
		return pki.Pair{}, false, fmt.Errorf("admin CA: %w", err)
	}
	return ca, true, nil
}

// IssueClient makes an admin client certificate for name.
func IssueClient(ca pki.Pair, name string, validity time.Duration, now time.Time) (pki.Pair, error) {
	return pki.Issue(ca, pki.Request{CommonName: name, Organizations: []string{AdminOrg}, Usage: pki.ClientAuth, Validity: validity}, now)
}

// ServerTLS is the admin listener's TLS: a server certificate from the
// admin CA for hosts (IPs or names), TLS 1.3 only, and a client
// certificate from the admin CA required.
func ServerTLS(ca pki.Pair, hosts []string, now time.Time) (*tls.Config, error) {
	req := pki.Request{CommonName: "bootsrv admin API", Usage: pki.ServerAuth}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	srv, err := pki.Issue(ca, req, now)
	if err != nil {
		return nil, fmt.Errorf("admin server certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		return nil, errors.New("admin CA: no certificate")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			// Verified by the CA already; an admin certificate also says so.
			for _, ch := range chains {
				for _, o := range ch[0].Subject.Organization {
					if o == AdminOrg {
						return nil
					}
				}
			}
			return fmt.Errorf("client certificate is not a bootsrv admin certificate (organization %s)", AdminOrg)
		},
	}, nil
}

// DialTLS returns a client for the admin API at url (https://HOST:PORT),
// authenticating with certFile/keyFile and trusting caFile.
func DialTLS(url, certFile, keyFile, caFile string) (*Client, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("admin URL %q: want https://HOST:PORT (the admin API on TCP is TLS only)", url)
	}
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("admin URL given without --admin-cert, --admin-key and --admin-ca (from 'bootsrv ca issue-admin')")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("admin client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("admin CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("admin CA %s: no PEM certificate", caFile)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}},
		DialContext:     (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	c := &Client{hc: &http.Client{Transport: tr}, path: url, base: strings.TrimSuffix(url, "/")}
	// Reach it now, so a wrong address or certificate fails here, plainly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/cluster", nil)
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", url, err)
	}
	res.Body.Close()
	return c, nil
}
