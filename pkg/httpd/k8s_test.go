package httpd_test

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4/types"

	"github.com/bootsrv/bootsrv/pkg/model"
)

const (
	macMaster = "52:54:00:00:00:10" // 127.0.0.10, the cluster's API server
	macWorker = "52:54:00:00:00:11"
)

// addKubernetes adds a master (at the cluster's API address) and a worker
// on the lab OS.
func (e *testEnv) addKubernetes() {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.svc.AddProfiles(ctx, []model.Profile{
		{Name: "master", Role: model.RoleMaster, OS: model.OSLab, Kernel: "/assets/lab/vmlinuz"},
		{Name: "worker", Role: model.RoleWorker, OS: model.OSLab, Kernel: "/assets/lab/vmlinuz"},
	}, false); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.AddMachines(ctx, []model.Machine{
		{MAC: macMaster, Hostname: "master1", IP: "127.0.0.10", Profile: "master"},
		{MAC: macWorker, Hostname: "worker1", IP: "127.0.0.11", Profile: "worker"},
	}); err != nil {
		e.t.Fatal(err)
	}
}

// TestKubernetesBinariesOverHTTP: a master's and a worker's served configs
// fetch every binary from this server's /assets/, and what /assets/
// serves there is the file whose SHA-512 the config checks.
func TestKubernetesBinariesOverHTTP(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.addKubernetes()
	for _, c := range []struct {
		mac  string
		want []string // binaries the role must fetch
		not  []string
	}{
		{macMaster, []string{"/opt/bin/kubelet", "/opt/bin/kube-apiserver", "/opt/bin/etcd", "/opt/bin/coredns", "/opt/cni/bin/flannel"}, nil},
		{macWorker, []string{"/opt/bin/kubelet", "/opt/bin/kube-proxy", "/opt/bin/flanneld", "/opt/cni/bin/bridge"}, []string{"/opt/bin/kube-apiserver", "/opt/bin/etcd"}},
	} {
		t.Run(c.mac, func(t *testing.T) {
			cfg := e.fetchIgnition(c.mac)
			fetched := map[string]types.File{}
			for _, f := range cfg.Storage.Files {
				if f.Contents.Source != nil && strings.HasPrefix(*f.Contents.Source, "http") {
					fetched[f.Path] = f
				}
			}
			for _, p := range c.want {
				if _, ok := fetched[p]; !ok {
					t.Errorf("the config does not fetch %s", p)
				}
			}
			for _, p := range c.not {
				if _, ok := fetched[p]; ok {
					t.Errorf("a worker fetches %s", p)
				}
			}
			for p, f := range fetched {
				src := *f.Contents.Source
				rel, ok := strings.CutPrefix(src, e.ts.URL+"/assets/")
				if !ok {
					t.Errorf("%s is fetched from %s, not from this server's /assets/", p, src)
					continue
				}
				if f.Contents.Verification.Hash == nil {
					t.Errorf("%s has no verification.hash", p)
					continue
				}
				r := e.get("/assets/" + rel)
				if r.code != http.StatusOK {
					t.Errorf("GET %s: %d %s", src, r.code, r.body)
					continue
				}
				sum := sha512.Sum512([]byte(r.body))
				if want := "sha512-" + hex.EncodeToString(sum[:]); *f.Contents.Verification.Hash != want {
					t.Errorf("%s: the config checks %s, /assets/ serves %s", p, *f.Contents.Verification.Hash, want)
				}
				disk, err := os.ReadFile(filepath.Join(e.assets, filepath.FromSlash(rel)))
				if err != nil || string(disk) != r.body {
					t.Errorf("%s: /assets/%s is not the file in the assets dir (%v)", p, rel, err)
				}
			}
		})
	}
}

// TestKubernetesNoReleases: with nothing imported, a worker's /ignition is
// a 404 naming the files to import, and the failure is in its history.
func TestKubernetesNoReleases(t *testing.T) {
	e := newEnv(t, envOpts{noReleases: true})
	e.addKubernetes()
	tok := e.ignitionToken(macWorker)
	r := e.get("/ignition?mac=" + macWorker + "&token=" + tok)
	if r.code != http.StatusNotFound {
		t.Fatalf("/ignition of a worker with no releases: %d %s", r.code, r.body)
	}
	for _, w := range []string{"kubelet", "kube-proxy", "bootsrv assets import"} {
		if !strings.Contains(r.body, w) {
			t.Errorf("the refusal does not name %q: %s", w, r.body)
		}
	}
	if strings.Contains(r.body, `"ignition"`) {
		t.Errorf("the refusal carries a config: %s", r.body)
	}
	if e.countEvents(macWorker, "error") != 1 {
		t.Errorf("want one error event: %+v", e.events(macWorker))
	}
	if got := e.machine(macWorker).State; got == model.StateIgnition {
		t.Error("the state moved to ignition though nothing was served")
	}
}

// TestAssetsHideImportStaging: what an import stages under a dot-name in
// the assets dir (before it is verified and committed) is never served.
func TestAssetsHideImportStaging(t *testing.T) {
	e := newEnv(t, envOpts{})
	dir := filepath.Join(e.assets, ".release-import-123", "new", "kubernetes", "v1.37.2", "amd64")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubelet"), []byte("unverified"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A dot-name deeper down, too.
	if err := os.WriteFile(filepath.Join(e.assets, "kubernetes", ".hidden"), []byte("unverified"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/assets/.release-import-123/new/kubernetes/v1.37.2/amd64/kubelet", "/assets/kubernetes/.hidden"} {
		if r := e.get(p); r.code != http.StatusNotFound || strings.Contains(r.body, "unverified") {
			t.Errorf("GET %s: %d %s, want 404", p, r.code, r.body)
		}
	}
	// The imported ones are served.
	if r := e.get("/assets/kubernetes/v1.37.2/amd64/kubelet"); r.code != http.StatusOK {
		t.Errorf("imported kubelet: %d", r.code)
	}
}
