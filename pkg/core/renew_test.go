package core_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/fault"
)

// certsRequest is the node's own renewal request, as its timer sends it:
// the URL from /etc/bootsrv/certs.env, from the machine's address.
func certsRequest(t *testing.T, n *k8sNode) bootchain.BootRequest {
	t.Helper()
	env := string(n.file(t, "/etc/bootsrv/certs.env").data)
	raw := strings.Trim(strings.TrimSpace(strings.TrimPrefix(env, "BOOTSRV_CERTS_URL=")), `"`)
	u, err := url.Parse(raw)
	if err != nil || u.Path != "/certs" {
		t.Fatalf("certs.env: %q", env)
	}
	return bootchain.BootRequest{MAC: u.Query().Get("mac"), Token: u.Query().Get("token"), BaseURL: k8sBaseURL,
		RemoteIP: netip.MustParseAddr(n.ip)}
}

func untarCerts(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("not a tar: %v", err)
		}
		c, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, "-key.pem") && h.Mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", h.Name, h.Mode)
		}
		out["/"+h.Name] = c
	}
}

func TestNodeCertificatesRenewal(t *testing.T) {
	s := k8sLab(t)
	ctx := context.Background()
	w := k8sRender(t, s, k8sWorker1)
	req := certsRequest(t, w)

	got, err := s.NodeCertificates(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	files := untarCerts(t, got)
	// The worker's TLS files, exactly as its Ignition wrote them, and
	// nothing of a master's.
	for p, b := range files {
		if !bytes.Equal(b, w.file(t, p).data) {
			t.Errorf("%s differs from the node's Ignition", p)
		}
		if strings.Contains(p, "etcd") || strings.Contains(p, "apiserver") || strings.Contains(p, "sa.key") {
			t.Errorf("a worker is served %s", p)
		}
	}
	for _, p := range []string{"/etc/kubernetes/ssl/kubelet.pem", "/etc/kubernetes/ssl/kubelet-key.pem", "/etc/kubernetes/ssl/kube-proxy.pem", "/etc/kubernetes/ssl/ca.pem"} {
		if files[p] == nil {
			t.Errorf("%s is not served", p)
		}
	}

	// A node that holds the current kubelet certificate is sent nothing.
	sum := sha256.Sum256(files["/etc/kubernetes/ssl/kubelet.pem"])
	if b, err := s.NodeCertificates(ctx, req, hex.EncodeToString(sum[:])); err != nil || b != nil {
		t.Errorf("with the current certificate's hash: %d bytes, %v; want nothing", len(b), err)
	}

	// Refused: another address, another machine's MAC, a bad token, the
	// Ignition token.
	bad := []struct {
		name string
		edit func(r *bootchain.BootRequest)
	}{
		{"from another address", func(r *bootchain.BootRequest) { r.RemoteIP = netip.MustParseAddr("10.99.0.12") }},
		{"for another machine", func(r *bootchain.BootRequest) { r.MAC = k8sMaster1 }},
		{"with a broken token", func(r *bootchain.BootRequest) { r.Token = flipMiddle(r.Token) }},
		{"without a token", func(r *bootchain.BootRequest) { r.Token = "" }},
	}
	for _, b := range bad {
		r := req
		b.edit(&r)
		if _, err := s.NodeCertificates(ctx, r, ""); fault.KindOf(err) != fault.KindDenied {
			t.Errorf("%s: %v, want denied", b.name, err)
		}
	}

	// `certs renew`: a new set, served to the running node.
	renewed, err := s.RenewCerts(ctx, []string{k8sWorker1})
	if err != nil {
		t.Fatal(err)
	}
	if len(renewed) != 2 {
		t.Errorf("renewed %d certificates for a worker, want its kubelet's and kube-proxy's: %v", len(renewed), renewed)
	}
	again, err := s.NodeCertificates(ctx, req, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatalf("the node's renewal token no longer works after a renewal: %v", err)
	}
	after := untarCerts(t, again)
	if bytes.Equal(after["/etc/kubernetes/ssl/kubelet.pem"], files["/etc/kubernetes/ssl/kubelet.pem"]) {
		t.Errorf("after `certs renew` the kubelet certificate is the same")
	}
	if !bytes.Equal(after["/etc/kubernetes/ssl/ca.pem"], files["/etc/kubernetes/ssl/ca.pem"]) {
		t.Errorf("renewal changed the CA")
	}
	ev, err := s.MachineEvents(ctx, k8sWorker1)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ev {
		found = found || e.Type == "certs"
	}
	if !found {
		t.Errorf("no certs event in the history: %v", ev)
	}

	// Re-provisioning kills the renewal token with the install.
	if _, err := s.Reprovision(ctx, k8sWorker1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeCertificates(ctx, req, ""); fault.KindOf(err) != fault.KindDenied {
		t.Errorf("after reprovision the old install's renewal token: %v, want denied", err)
	}
	// A custom profile's machine, or an unknown one, has nothing to renew.
	if _, err := s.RenewCerts(ctx, []string{"52:54:00:99:99:99"}); fault.KindOf(err) != fault.KindNotFound {
		t.Errorf("renew an unknown machine: %v, want not found", err)
	}
}

// flipMiddle changes a character in the middle of a token, whatever it
// is: the last one of unpadded base64 may carry only bits a decoder drops.
func flipMiddle(tok string) string {
	i := len(tok) / 2
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
