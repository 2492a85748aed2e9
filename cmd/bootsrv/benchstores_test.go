package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

// TestBenchHTTPStores runs bench/http.sh (bootsrv serve under load) on a
// bbolt file and on a three-member etcd, one after the other in one run,
// and prints both; the figures' ratio is what it measures.
func TestBenchHTTPStores(t *testing.T) {
	if os.Getenv("BOOTSRV_BENCH_HTTP_STORES") == "" {
		t.Skip("benchmark: set BOOTSRV_BENCH_HTTP_STORES=1 (make bench-http-stores) to compare /ipxe and /ignition on bbolt and on etcd")
	}
	ec := etcdtest.Start(t)
	dir := t.TempDir()
	bin := chainBuild(t, dir)
	root, _ := filepath.Abs("../..")
	run := func(label string, env ...string) {
		cmd := exec.Command("bash", "bench/http.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), append([]string{"BIN=" + bin, "ROLES=custom", "SIZES=" + envOr("SIZES", "10 1000")}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: bench/http.sh: %v\n%s", label, err, out)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			t.Logf("%s: %s", label, l)
		}
	}
	run("bbolt")
	run("etcd", "BENCH_STORE="+ec.Spec(true),
		"BOOTSRV_ETCD_CA="+ec.CAFile, "BOOTSRV_ETCD_CERT="+ec.CertFile, "BOOTSRV_ETCD_KEY="+ec.KeyFile)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
