package core_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/release"
	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// TestImportIntoServedDir: a server imports into the assets dir it serves;
// asked for another one it refuses (the catalog would name binaries every
// node then gets a 404 for) and imports nothing.
func TestImportIntoServedDir(t *testing.T) {
	st, err := state.Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := core.NewService(st, nil)
	served, other := t.TempDir(), t.TempDir()
	cfg := bootchain.DefaultBootConfig
	cfg.AssetsDir = served
	s.Configure(cfg)
	ctx := context.Background()
	src := releasetest.Write(t, t.TempDir(), releasetest.Default)

	if _, err := s.ImportReleases(ctx, src, other); fault.KindOf(err) != fault.KindInvalid || !strings.Contains(err.Error(), "this server serves "+served) {
		t.Fatalf("import into another dir = %v, want invalid naming the served dir", err)
	}
	if as, _ := s.Releases(ctx); len(as) != 0 {
		t.Errorf("a refused import left %d assets in the catalog", len(as))
	}
	if es, _ := os.ReadDir(other); len(es) != 0 {
		t.Errorf("a refused import wrote into %s: %v", other, es)
	}
	res, err := s.ImportReleases(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Assets) == 0 {
		t.Fatal("the import into the served dir imported nothing")
	}
	for _, a := range res.Assets {
		if _, err := os.Stat(filepath.Join(served, filepath.FromSlash(a.Path))); err != nil {
			t.Errorf("%s is not in the served dir: %v", a.Path, err)
		}
	}
	if _, err := s.ImportReleases(ctx, src, served+"/"); err != nil {
		t.Errorf("import naming the served dir itself: %v", err)
	}
}

// TestComponentNames: nodeconfig names the releases a node needs with its
// own constants (it imports nothing that does I/O); the catalog is keyed
// by release's. They must be the same words.
func TestComponentNames(t *testing.T) {
	for _, c := range [][2]string{
		{nodeconfig.ComponentKubernetes, release.Kubernetes}, {nodeconfig.ComponentEtcd, release.Etcd},
		{nodeconfig.ComponentCNI, release.CNIPlugins}, {nodeconfig.ComponentFlannel, release.Flannel},
		{nodeconfig.ComponentFlannelCNI, release.FlannelCNI}, {nodeconfig.ComponentCoreDNS, release.CoreDNS},
	} {
		if c[0] != c[1] {
			t.Errorf("nodeconfig calls a component %q, the release catalog %q", c[0], c[1])
		}
	}
}
