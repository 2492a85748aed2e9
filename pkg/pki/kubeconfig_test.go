package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// kubeconfig mirrors the fields of client-go's clientcmd v1.Config that
// Kubeconfig writes; yaml.v3 reading them back is the check that the
// hand-written YAML is what kubectl would read.
type kubeconfig struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Clusters   []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CAData string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			CertData string `yaml:"client-certificate-data"`
			KeyData  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
	Preferences    map[string]any `yaml:"preferences"`
}

func TestKubeconfig(t *testing.T) {
	needOpenSSL(t)
	cas := testCAs(t, pki.ECDSAP256)
	admin, err := pki.IssueSpec(cas, pki.AdminSpec(""), pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := pki.IssueNode(cas, workerFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, _ := worker.Get(pki.CertKubelet)
	tests := []struct {
		name, cluster, server, user string
		client                      pki.Pair
		purpose                     string
	}{
		{"admin", "lab", "https://10.0.0.11:6443", "admin", admin.Pair, "sslclient"},
		// Names with colons and a YAML-looking cluster name must survive.
		{"kubelet", "yes: no", "https://[2001:db8::1]:6443", "system:node:w1.lab.example", kubelet.Pair, "sslclient"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := pki.Kubeconfig(tc.cluster, tc.server, cas.Cluster.CertPEM, tc.user, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			var kc kubeconfig
			if err := yaml.Unmarshal(out, &kc); err != nil {
				t.Fatalf("yaml: %v\n%s", err, out)
			}
			if kc.APIVersion != "v1" || kc.Kind != "Config" || len(kc.Clusters) != 1 || len(kc.Users) != 1 || len(kc.Contexts) != 1 {
				t.Fatalf("shape wrong:\n%s", out)
			}
			cl, us, cx := kc.Clusters[0], kc.Users[0], kc.Contexts[0]
			if cl.Name != tc.cluster || cl.Cluster.Server != tc.server || us.Name != tc.user ||
				cx.Context.Cluster != tc.cluster || cx.Context.User != tc.user || kc.CurrentContext != cx.Name {
				t.Errorf("names wrong: %+v\n%s", kc, out)
			}
			decode := func(s string) []byte {
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					t.Fatalf("base64: %v", err)
				}
				return b
			}
			caPEM, certPEM, keyPEM := decode(cl.Cluster.CAData), decode(us.User.CertData), decode(us.User.KeyData)
			if ok, o := opensslVerify(t, caPEM, certPEM, "-purpose", tc.purpose); !ok {
				t.Errorf("openssl verify of the embedded cert against the embedded CA:\n%s", o)
			}
			if !opensslKeyMatches(t, certPEM, keyPEM) {
				t.Error("openssl: embedded key does not match embedded cert")
			}
		})
	}
}

// TestKubeconfigKubectl hands the kubeconfig to the real kubectl and lets it
// talk to a loopback TLS server that serves the master's apiserver cert and
// demands a client cert from the cluster CA, as kube-apiserver does. kubectl
// must accept the server (CA and the 127.0.0.1 SAN) and the server must see
// the identity of the embedded client cert.
func TestKubeconfigKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl binary not found in PATH")
	}
	cas := testCAs(t, pki.ECDSAP256)
	master, err := pki.IssueNode(cas, masterFacts, pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	apiserver, _ := master.Get(pki.CertAPIServer)
	serving, err := tls.X509KeyPair(apiserver.CertPEM, apiserver.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(cas.Cluster.CertPEM) {
		t.Fatal("cannot load CA")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.TLS.PeerCertificates[0]
		fmt.Fprintf(w, "ok user=%s groups=%s", c.Subject.CommonName, strings.Join(c.Subject.Organization, ","))
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serving},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
	// Handshake errors go to a buffer, so the refusal case can check why.
	var logs lockedBuffer
	srv.Config.ErrorLog = log.New(&logs, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	admin, err := pki.IssueSpec(cas, pki.AdminSpec("ops"), pki.Options{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	scheduler, _ := master.Get(pki.CertScheduler)
	etcdClient, _ := master.Get(pki.CertAPIServerEtcd)
	tests := []struct {
		name    string
		client  pki.Pair
		want    string // in kubectl's output
		wantErr bool
	}{
		{"admin", admin.Pair, "ok user=ops groups=system:masters", false},
		{"scheduler", scheduler.Pair, "ok user=system:kube-scheduler groups=", false},
		// A cert from the etcd CA is refused by the Kubernetes side.
		{"etcd client refused", etcdClient.Pair, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			kc := filepath.Join(dir, "kubeconfig")
			b, err := pki.Kubeconfig("lab", srv.URL, cas.Cluster.CertPEM, tc.name, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kc, b, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "--request-timeout=10s", "get", "--raw", "/healthz")
			// kubectl keeps a cache under $HOME/.kube; keep it in the test dir.
			cmd.Env = append(os.Environ(), "HOME="+dir, "KUBECACHEDIR="+filepath.Join(dir, "cache"))
			out, err := cmd.CombinedOutput()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("kubectl succeeded, want failure:\n%s", out)
				}
				if !strings.Contains(logs.String(), "certificate signed by unknown authority") {
					t.Fatalf("server log does not say why:\n%s\nkubectl:\n%s", logs.String(), out)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("kubectl: %v\n%s\nwant %q", err, out, tc.want)
			}
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
