// Command labpod is the QEMU lab's one container program, and the tool that
// makes the images it runs in, so that the demo cluster pulls nothing from
// the internet:
//
//	labpod push REGISTRY      build the lab's images from this very binary and
//	                          push them to REGISTRY (a plain-HTTP registry such
//	                          as Debian's docker-registry), each under the path
//	                          of its upstream, as bootsrv's registry_mirror
//	                          layout wants: REGISTRY/registry.k8s.io/pause:3.10
//	                          (the sandbox image) and
//	                          REGISTRY/registry.k8s.io/bootsrv-lab/labpod:1
//	labpod pause              the sandbox container: wait for SIGTERM or SIGINT
//	labpod serve [ADDR]       answer HTTP on ADDR (default :8080) with
//	                          "labpod HOSTNAME\n"
//	labpod check CHECK...     run each check, print one line per check, write
//	                          the lines to /dev/termination-log (the pod's
//	                          status shows them without reaching the kubelet),
//	                          and exit 1 if any failed. A check is
//	                          http://HOST:PORT/ (GET answers 200, retried for
//	                          up to 60 s) or dns:NAME (resolves, same retries)
//
// The images are one layer holding this static binary as /labpod, built with
// go-containerregistry.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The images the lab pushes, by their upstream name; the pod specs and the
// cluster's sandbox_image name them so.
const (
	PauseImage  = "registry.k8s.io/pause:3.10"
	LabpodImage = "registry.k8s.io/bootsrv-lab/labpod:1"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "push":
		if len(os.Args) != 3 {
			usage()
		}
		err = push(os.Args[2])
	case "pause":
		pause()
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		err = serve(addr)
	case "check":
		os.Exit(check(os.Args[2:]))
	case "help", "-h", "--help":
		fmt.Print(helpText)
		return
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labpod:", err)
		os.Exit(1)
	}
}

const helpText = `usage: labpod push REGISTRY | pause | serve [ADDR] | check CHECK...
  push REGISTRY  build the lab images from this binary and push them to REGISTRY (plain HTTP)
  pause          the sandbox container: wait for SIGTERM
  serve [ADDR]   HTTP on ADDR (default :8080)
  check CHECK... http://HOST:PORT/ or dns:NAME; exit 1 if any fails
`

func usage() {
	fmt.Fprint(os.Stderr, helpText)
	os.Exit(2)
}

func pause() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
	os.Exit(0)
}

func serve(addr string) error {
	host, _ := os.Hostname()
	fmt.Printf("labpod %s: serving on %s\n", host, addr)
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "labpod %s\n", host)
	}))
}

// check runs every check and returns the exit status.
func check(checks []string) int {
	if len(checks) == 0 {
		fmt.Fprintln(os.Stderr, "labpod check: name at least one check (http://HOST:PORT/ or dns:NAME)")
		return 2
	}
	host, _ := os.Hostname()
	var lines []string
	failed := false
	for _, c := range checks {
		res, err := retry(60*time.Second, func() (string, error) { return checkOne(c) })
		line := fmt.Sprintf("ok %s: %s", c, res)
		if err != nil {
			line = fmt.Sprintf("FAIL %s: %v", c, err)
			failed = true
		}
		fmt.Println(line)
		lines = append(lines, line)
	}
	summary := fmt.Sprintf("from %s:\n%s\n", host, strings.Join(lines, "\n"))
	if err := os.WriteFile("/dev/termination-log", []byte(summary), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "labpod: termination log:", err)
	}
	if failed {
		return 1
	}
	return 0
}

func checkOne(c string) (string, error) {
	if n, ok := strings.CutPrefix(c, "dns:"); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, n)
		if err != nil {
			return "", err
		}
		return "resolves to " + strings.Join(addrs, ","), nil
	}
	if !strings.HasPrefix(c, "http://") {
		return "", fmt.Errorf("unknown check %q: use http://HOST:PORT/ or dns:NAME", c)
	}
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(c)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

func retry(d time.Duration, f func() (string, error)) (string, error) {
	deadline := time.Now().Add(d)
	for {
		s, err := f()
		if err == nil || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(2 * time.Second)
	}
}

// push builds both images around this binary and pushes them.
func push(registry string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read own binary: %w", err)
	}
	layer, err := binaryLayer(bin)
	if err != nil {
		return err
	}
	for _, im := range []struct {
		ref        string
		entrypoint []string
		cmd        []string
	}{
		{PauseImage, []string{"/labpod", "pause"}, nil},
		{LabpodImage, []string{"/labpod"}, []string{"serve"}},
	} {
		img, err := image(layer, im.entrypoint, im.cmd)
		if err != nil {
			return fmt.Errorf("%s: %w", im.ref, err)
		}
		dst := registry + "/" + im.ref
		ref, err := name.ParseReference(dst, name.Insecure)
		if err != nil {
			return fmt.Errorf("%s: %w", dst, err)
		}
		if err := remote.Write(ref, img); err != nil {
			return fmt.Errorf("push %s: %w", dst, err)
		}
		d, _ := img.Digest()
		fmt.Printf("pushed %s (%s)\n", dst, d)
	}
	return nil
}

func binaryLayer(bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "labpod", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

func image(layer v1.Layer, entrypoint, cmd []string) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	cf.Config.Entrypoint, cf.Config.Cmd = entrypoint, cmd
	return mutate.ConfigFile(img, cf)
}
