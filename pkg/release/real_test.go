package release

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realReleases is where examples/releases/build.sh leaves the releases it
// builds from the projects' Go modules, laid out and checksummed as their
// projects publish them.
const realReleases = "/var/cache/bootsrv-test/releases"

func TestRealReleases(t *testing.T) {
	if _, err := os.Stat(realReleases); err != nil {
		t.Skipf("no real release tree at %s (%v): build it with examples/releases/build.sh (needs the Go module proxy, about 15 minutes)", realReleases, err)
	}
	if testing.Short() {
		t.Skip("-short: importing the real release tree reads hundreds of megabytes")
	}
	assets := t.TempDir()
	start := time.Now()

	// The whole tree in one import, as an operator would. make test builds
	// it whole (make releases) before any test runs.
	srcs := []string{realReleases}
	var staged []Asset
	for _, src := range srcs {
		st, err := Stage(src, assets)
		if err != nil {
			t.Fatalf("Stage %s: %v", src, err)
		}
		if err := st.Commit(); err != nil {
			t.Fatalf("Commit %s: %v", src, err)
		}
		staged = append(staged, st.Assets...)
		t.Logf("%s: %d assets, skipped %q", src, len(st.Assets), st.Skipped)
	}
	t.Logf("imported %d binaries in %v", len(staged), time.Since(start).Round(time.Millisecond))

	find := func(component, name string) *Asset {
		for i, a := range staged {
			if a.Component == component && a.Name == name && a.Arch == "amd64" {
				return &staged[i]
			}
		}
		return nil
	}
	// upstream is the digest its project published for a per-binary release.
	upstream := func(a *Asset) string {
		by := strings.Split(a.VerifiedBy, ", ")[0]
		data, err := os.ReadFile(filepath.Join(realReleases, filepath.FromSlash(by)))
		if err != nil {
			t.Fatal(err)
		}
		sums, err := ParseChecksums(filepath.Base(by), data)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range sums {
			if filepath.Base(k) == filepath.Base(a.From) && len(v) == sha256Hex {
				return v
			}
		}
		t.Fatalf("%s does not name %s with a sha256", by, a.From)
		return ""
	}
	want := []struct {
		component, name string
		perBinary       bool // published as the binary itself, with its checksum
	}{
		{Etcd, "etcd", false}, {Etcd, "etcdctl", false},
		{Kubernetes, "kube-apiserver", true}, {Kubernetes, "kubelet", true},
		{CNIPlugins, "bridge", false}, {CNIPlugins, "host-local", false},
		{FlannelCNI, "flannel", false},
		{Flannel, "flanneld", true},
		{CoreDNS, "coredns", false},
	}
	for _, w := range want {
		a := find(w.component, w.name)
		if a == nil {
			t.Errorf("no amd64 %s/%s imported from the real tree", w.component, w.name)
			continue
		}
		laid := laidSHA256(t, filepath.Join(assets, filepath.FromSlash(a.Path)))
		if laid != a.SHA256 {
			t.Errorf("%s: laid out with sha256 %s, Stage recorded %s", a.Path, laid, a.SHA256)
		}
		if w.perBinary {
			if up := upstream(a); up != laid {
				t.Errorf("%s: sha256 %s, its project published %s", a.Path, laid, up)
			}
		}
		if fi, err := os.Stat(filepath.Join(assets, filepath.FromSlash(a.Path))); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v; want 0755", a.Path, err, fi.Mode())
		}
		t.Logf("%s (%d MB) from %s, verified by %s", a.Path, a.Size>>20, a.From, a.VerifiedBy)
	}
}

func laidSHA256(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
