package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layer ranks every package of bootsrv (docs/architecture.md draws the
// same map): a package may import only packages of a lower rank, so there
// is no circle and no lower package reaching up. A new package must be
// given its rank here.
var layer = map[string]int{
	// Libraries that know nothing of bootsrv's model.
	"assets": 0, "pkg/fault": 0, "pkg/k8snames": 0, "pkg/kubeconfig": 0, "pkg/render": 0, "pkg/release": 0,
	"pkg/release/releasetest": 0, "pkg/store": 0, "pkg/token": 0, "pkg/metrics": 0, "pkg/lograte": 0, "pkg/assetfs": 0, "pkg/noderun": 0,
	"pkg/fault/httpcode": 1, "pkg/fault/faulttest": 1, "pkg/pki": 1, "pkg/nodeconfig": 1, "pkg/tftp": 1,
	// The model, and the state that owns its storage.
	"pkg/model": 2,
	"pkg/state": 3,
	// The core's parts, bottom up, and their wiring.
	"pkg/peers": 1, "pkg/store/etcdtest": 1, "pkg/lease": 4, "pkg/journey": 4, "pkg/nodecerts": 4,
	"pkg/inventory": 5,
	"pkg/assemble":  6,
	"pkg/bootchain": 7,
	"pkg/core":      8,
	// The doors: each owns the interface it needs of the core.
	"pkg/dhcp": 9, "pkg/httpd": 9, "pkg/admin": 9,
	"cmd/bootsrv": 10,
	// Benchmarks and examples stand outside, on top.
	"cmd/bootstorm": 11, "bench/httpload": 11, "bench/tftp": 11, "examples/cluster": 11, "examples/qemu-lab": 11,
}

const module = "github.com/bootsrv/bootsrv/"

func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		rank, ok := layer[pkg]
		if !ok {
			t.Errorf("package %s has no rank in layers_test.go: give it one (and a line in docs/architecture.md)", pkg)
			continue
		}
		for _, imp := range f[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if r, ok := layer[dep]; ok && r >= rank {
				t.Errorf("%s (rank %d) imports %s (rank %d): a package may only import lower ones", pkg, rank, dep, r)
			}
		}
	}
}

// buckets are the state file's bucket names: only pkg/state (which owns
// the schema) and pkg/store's own tests may spell them.
var buckets = []string{"machines", "idx_ip", "idx_hostname", "idx_profile", "events", "leases", "idx_lease_mac",
	"certs", "rendered", "releases", "meta"}

// No store call names a bucket outside pkg/state: a string literal that is
// a bucket name, passed to a function, is one (field tags, log keys and
// YAML keys are not calls).
func TestBucketsOnlyInState(t *testing.T) {
	root := filepath.Join("..", "..")
	isBucket := map[string]bool{}
	for _, b := range buckets {
		isBucket[b] = true
	}
	err := filepath.Walk(filepath.Join(root, "pkg"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(p, ".go") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, filepath.Join("pkg", "state")) || strings.HasPrefix(rel, filepath.Join("pkg", "store")) {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(src, []byte(".Get(")) && !bytes.Contains(src, []byte(".Put(")) && !bytes.Contains(src, []byte(".Scan(")) &&
			!bytes.Contains(src, []byte(".Delete(")) && !bytes.Contains(src, []byte(".Count(")) {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "Get", "Put", "Scan", "Delete", "Count", "CompareAndSwap":
			default:
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, _ := strconv.Unquote(lit.Value); isBucket[s] {
					t.Errorf("%s: %s(%s, ...) names a bucket outside pkg/state: use a typed method of state.Tx", rel, sel.Sel.Name, lit.Value)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
