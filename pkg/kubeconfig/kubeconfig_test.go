package kubeconfig

import (
	"encoding/base64"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Both shapes read back strictly as what was written, names with colons
// included, and -data fields are base64 as kubectl reads them.
func TestRoundTrip(t *testing.T) {
	for _, c := range []Config{
		New("yes: no", Cluster{Server: "https://[2001:db8::1]:6443", CertificateAuthorityData: []byte("CA PEM")},
			"system:node:w1", User{ClientCertificateData: []byte("CERT"), ClientKeyData: []byte("KEY")}, "system:node:w1@yes: no"),
		New("lab", Cluster{Server: "https://10.0.0.10:6443", CertificateAuthority: "/etc/kubernetes/ssl/ca.pem"},
			"system:kube-proxy", User{ClientCertificate: "/etc/kubernetes/ssl/kube-proxy.pem", ClientKey: "/etc/kubernetes/ssl/kube-proxy-key.pem"}, "default"),
	} {
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := yaml.UnmarshalStrict(b, &back); err != nil {
			t.Fatalf("read back: %v\n%s", err, b)
		}
		if back.CurrentContext != c.CurrentContext || back.Clusters[0].Name != c.Clusters[0].Name || back.Users[0].Name != c.Users[0].Name ||
			string(back.Users[0].User.ClientKeyData) != string(c.Users[0].User.ClientKeyData) ||
			back.Clusters[0].Cluster.Server != c.Clusters[0].Cluster.Server || back.Clusters[0].Cluster.CertificateAuthority != c.Clusters[0].Cluster.CertificateAuthority {
			t.Errorf("round trip changed it:\n%s", b)
		}
		if d := c.Clusters[0].Cluster.CertificateAuthorityData; d != nil && !strings.Contains(string(b), base64.StdEncoding.EncodeToString(d)) {
			t.Errorf("CA data not base64 in:\n%s", b)
		}
	}
}
