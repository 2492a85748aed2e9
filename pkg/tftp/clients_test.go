package tftp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/assets"
)

// ipxeSet loads the iPXE binaries as bootsrv serve does (embedded, else
// /usr/lib/ipxe) and skips when they are not all there.
func ipxeSet(t *testing.T) *assets.Set {
	t.Helper()
	set, err := assets.Load(assets.DefaultIPXEDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.List()) != len(set.Manifest().Files) {
		t.Skipf("iPXE binaries missing: neither embedded (make assets) nor in %s (apt-get install ipxe)", assets.DefaultIPXEDir)
	}
	return set
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian: tftp-hpa provides tftp, atftp provides atftp, curl provides curl)", name)
	}
	return p
}

// runTool runs a client with a deadline; exec.CommandContext kills it (by its
// own PID) if it hangs.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// client is how one real TFTP client fetches, puts, and reports refusal.
type client struct {
	tool string
	// get fetches name into out at blksize (0: the client's default, no option).
	get func(t *testing.T, host, port, name, out string, blksize int) (string, error)
	put func(t *testing.T, host, port, local, name string) (string, error)
	// blksizes the client can ask.
	blksizes []int
}

var realClients = []client{
	{
		// tftp-hpa 5.2's client sends no options: RFC 1350 only, 512-byte blocks.
		tool: "tftp",
		get: func(t *testing.T, host, port, name, out string, _ int) (string, error) {
			return runTool(t, "tftp", "-m", "binary", host, port, "-c", "get", name, out)
		},
		put: func(t *testing.T, host, port, local, name string) (string, error) {
			return runTool(t, "tftp", "-m", "binary", host, port, "-c", "put", local, name)
		},
		blksizes: []int{0},
	},
	{
		tool: "atftp",
		get: func(t *testing.T, host, port, name, out string, blksize int) (string, error) {
			args := []string{"-g", "-r", name, "-l", out}
			if blksize > 0 {
				args = append(args, "--option", fmt.Sprintf("blksize %d", blksize), "--option", "tsize 0")
			}
			return runTool(t, "atftp", append(args, host, port)...)
		},
		put: func(t *testing.T, host, port, local, name string) (string, error) {
			return runTool(t, "atftp", "-p", "-r", name, "-l", local, host, port)
		},
		blksizes: []int{0, 512, 1468},
	},
	{
		tool: "curl",
		get: func(t *testing.T, host, port, name, out string, blksize int) (string, error) {
			args := []string{"-sS", "--path-as-is", "-o", out}
			if blksize > 0 {
				args = append(args, "--tftp-blksize", fmt.Sprint(blksize))
			}
			return runTool(t, "curl", append(args, "tftp://"+net.JoinHostPort(host, port)+"/"+name)...)
		},
		put: func(t *testing.T, host, port, local, name string) (string, error) {
			return runTool(t, "curl", "-sS", "-T", local, "tftp://"+net.JoinHostPort(host, port)+"/"+name)
		},
		blksizes: []int{512, 1468},
	},
}

// Acceptance of issue 4: real clients fetch each embedded binary
// byte-identical at blksize 512 and 1468.
func TestRealClientsFetchIPXE(t *testing.T) {
	set := ipxeSet(t)
	h := start(t, Config{}, set.FS())
	host, port, _ := net.SplitHostPort(h.addr)
	for _, c := range realClients {
		t.Run(c.tool, func(t *testing.T) {
			needTool(t, c.tool)
			for _, info := range set.List() {
				for _, bs := range c.blksizes {
					out := filepath.Join(t.TempDir(), info.Name)
					msg, err := c.get(t, host, port, info.Name, out, bs)
					if err != nil {
						t.Fatalf("%s get %s blksize %d: %v\n%s", c.tool, info.Name, bs, err, msg)
					}
					if got := fileSHA(t, out); got != info.SHA256 {
						t.Fatalf("%s get %s blksize %d: sha256 %s, want %s", c.tool, info.Name, bs, got, info.SHA256)
					}
					e := h.next(t)
					if e.err != nil || e.bytes != info.Size {
						t.Fatalf("OnTransfer = %+v", e)
					}
					t.Logf("%s blksize %d: %s %d bytes sha256 ok", c.tool, bs, info.Name, info.Size)
				}
			}
		})
	}
}

// Acceptance of issue 4: the traversal and write cases are refused to real
// clients, nothing is written, nothing outside is read.
func TestRealClientsRefused(t *testing.T) {
	set := ipxeSet(t)
	h := start(t, Config{AssetsDir: t.TempDir()}, set.FS())
	host, port, _ := net.SplitHostPort(h.addr)
	local := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(local, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range realClients {
		t.Run(c.tool, func(t *testing.T) {
			needTool(t, c.tool)
			for _, name := range []string{"../../etc/passwd", "/etc/passwd"} {
				out := filepath.Join(t.TempDir(), "out")
				msg, _ := c.get(t, host, port, name, out, 0)
				if b, _ := os.ReadFile(out); len(b) > 0 {
					t.Fatalf("%s got %d bytes for %q", c.tool, len(b), name)
				}
				expectRefused(t, h, c.tool, msg)
			}
			msg, _ := c.put(t, host, port, local, "uploaded")
			expectRefused(t, h, c.tool, msg)
		})
	}
}

func expectRefused(t *testing.T, h *harness, tool, msg string) {
	t.Helper()
	e := h.next(t)
	var rerr *Error
	if !errors.As(e.err, &rerr) || rerr.Code != CodeAccessViolation {
		t.Fatalf("%s: OnTransfer = %+v, want access violation", tool, e)
	}
	// Each client says so in its own way; check that it noticed.
	if !strings.Contains(msg, rerr.Msg) && !strings.Contains(msg, "(69)") {
		t.Fatalf("%s did not report the refusal: %q", tool, msg)
	}
}

func ipxeSetB(b *testing.B) *assets.Set {
	set, err := assets.Load(assets.DefaultIPXEDir, nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(set.List()) != len(set.Manifest().Files) {
		b.Skipf("iPXE binaries missing: neither embedded (make assets) nor in %s (apt-get install ipxe)", assets.DefaultIPXEDir)
	}
	return set
}
