package releasetest_test

import (
	"testing"

	"github.com/bootsrv/bootsrv/pkg/release"
	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

func TestWriteImports(t *testing.T) {
	src := releasetest.Write(t, t.TempDir(), releasetest.Default)
	st, err := release.Stage(src, t.TempDir())
	if err != nil {
		t.Fatalf("the stand-in releases do not import: %v", err)
	}
	defer st.Abort()
	names := map[string]bool{}
	for _, a := range st.Assets {
		names[a.Name] = true
	}
	for _, n := range []string{"kubelet", "kube-apiserver", "kubectl", "etcd", "etcdctl", "bridge", "host-local", "loopback", "portmap", "flanneld", "flannel", "coredns"} {
		if !names[n] {
			t.Errorf("%s is not among the imported: %v", n, st.Assets)
		}
	}
	if len(st.Skipped) > 0 {
		t.Errorf("skipped: %v", st.Skipped)
	}
}
