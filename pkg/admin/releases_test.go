package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

// TestClientReleases: GET and POST /v1/releases round-trip through the
// client: an import over the socket lays the binaries out where asked and
// lists them, the list reads back the same, and a refused import keeps
// its kind and its message (naming the bad file) and changes nothing.
func TestClientReleases(t *testing.T) {
	c, _ := serve(t)
	ctx := context.Background()
	as, err := c.Releases(ctx)
	if err != nil || as == nil || len(as) != 0 {
		t.Fatalf("Releases before any import = %#v, %v; want an empty list", as, err)
	}
	src := releasetest.Write(t, t.TempDir(), releasetest.Default)
	// The test server has no assets dir of its own.
	if _, err := c.ImportReleases(ctx, src, ""); fault.KindOf(err) != fault.KindInvalid || !strings.Contains(err.Error(), "assets dir") {
		t.Errorf("import with no assets dir anywhere = %v (kind %q), want invalid naming the assets dir", err, fault.KindOf(err))
	}
	assets := t.TempDir()
	res, err := c.ImportReleases(ctx, src, assets)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, a := range res.Assets {
		names[a.Name] = true
		if a.SHA512 == "" || a.Size == 0 || a.Path != a.Component+"/"+a.Version+"/"+a.Arch+"/"+a.Name {
			t.Errorf("imported asset %+v", a)
		}
		if _, err := os.Stat(filepath.Join(assets, filepath.FromSlash(a.Path))); err != nil {
			t.Errorf("%s is not laid out in the assets dir asked for: %v", a.Path, err)
		}
	}
	for _, n := range []string{"kubelet", "kube-apiserver", "etcd", "coredns", "flanneld", "flannel", "bridge"} {
		if !names[n] {
			t.Errorf("%s is not among the imported %+v", n, res.Assets)
		}
	}
	list, err := c.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list, res.Assets) {
		t.Errorf("Releases after the import:\n%+v\nwant what the import returned:\n%+v", list, res.Assets)
	}

	// A tampered kubelet: the whole import is refused, naming it.
	bad := releasetest.Write(t, t.TempDir(), releasetest.Default)
	kubelet := filepath.Join(bad, "kubernetes", releasetest.Default.Kubernetes, "bin", "linux", releasetest.Default.Arch, "kubelet")
	b, err := os.ReadFile(kubelet)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 0xff
	if err := os.WriteFile(kubelet, b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = c.ImportReleases(ctx, bad, assets)
	if fault.KindOf(err) != fault.KindInvalid || !strings.Contains(err.Error(), "bin/linux/amd64/kubelet") {
		t.Errorf("tampered import = %v (kind %q), want invalid naming the kubelet", err, fault.KindOf(err))
	}
	if again, err := c.Releases(ctx); err != nil || !reflect.DeepEqual(again, list) {
		t.Errorf("a refused import changed the catalog: %+v, %v", again, err)
	}
	// A path that is not there is the caller's error too.
	if _, err := c.ImportReleases(ctx, filepath.Join(t.TempDir(), "nope"), assets); fault.KindOf(err) != fault.KindInvalid {
		t.Errorf("import of a missing dir = %v (kind %q)", err, fault.KindOf(err))
	}
}

// TestImportRequestBody: the import body is decoded strictly, like every
// other: a misspelt field is refused, not ignored.
func TestImportRequestBody(t *testing.T) {
	_, sock := serve(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, body := range []string{`{"src":"/tmp/r","assetsdir":"/srv/assets"}`, `not json`} {
		resp, err := hc.Post("http://bootsrv/v1/releases", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"kind":"invalid"`) || !strings.Contains(string(b), "request body is not the expected JSON") {
			t.Errorf("body %s: HTTP %d %s", body, resp.StatusCode, b)
		}
	}
	req, err := http.NewRequest(http.MethodPut, "http://bootsrv/v1/releases", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT /v1/releases: HTTP %d, want 405", resp.StatusCode)
	}
}

// TestClientRenewCerts: POST /v1/certs/renew keeps the service's answers:
// an unknown machine is not found, and a body with a misspelt field is
// refused rather than taken as "renew every machine".
func TestClientRenewCerts(t *testing.T) {
	c, _ := serve(t)
	ctx := context.Background()
	if _, err := c.RenewCerts(ctx, []string{"52:54:00:99:99:99"}); fault.KindOf(err) != fault.KindNotFound {
		t.Errorf("renew an unknown machine = %v (kind %q), want not found", err, fault.KindOf(err))
	}
	cs, err := c.RenewCerts(ctx, nil)
	if err != nil || cs == nil || len(cs) != 0 {
		t.Errorf("renew with no machines = %#v, %v; want an empty list", cs, err)
	}
	var out []nodecerts.CertInfo
	err = c.do(ctx, http.MethodPost, "/v1/certs/renew", map[string]any{"mac": []string{"52:54:00:00:00:01"}}, &out)
	if fault.KindOf(err) != fault.KindInvalid {
		t.Errorf("renew with a misspelt field = %v, want invalid", err)
	}
}
