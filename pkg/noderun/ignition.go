package noderun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// IgnitionVersion is the Ignition release Install runs: the one bootsrv's
// module requires and the QEMU lab boots.
const IgnitionVersion = "v2.24.0"

// DefaultCacheDir holds what tests build once per machine (Ignition here,
// the release files under releases/). BOOTSRV_TEST_CACHE overrides it.
const DefaultCacheDir = "/var/cache/bootsrv-test"

// ErrMissing marks an error caused by something this machine lacks (a
// command, a header, root): tests skip on it instead of failing.
var ErrMissing = errors.New("missing on this machine")

// CacheDir is BOOTSRV_TEST_CACHE, or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv("BOOTSRV_TEST_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

var ignitionBuild sync.Mutex

// IgnitionBinary returns the path of the real Ignition binary
// (CacheDir()/ignition-VERSION/ignition), building it first with
// examples/qemu-lab/build-os.sh --ignition-only when it is not there (a
// minute or two, and the Go module proxy). The script is found by walking
// up from the working directory, which is inside the repository in tests.
func IgnitionBinary(ctx context.Context) (string, error) {
	ignitionBuild.Lock()
	defer ignitionBuild.Unlock()

	bin := filepath.Join(CacheDir(), "ignition-"+IgnitionVersion, "ignition")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}

	var missing []string
	for _, c := range []string{"bash", "go", "gcc"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if _, err := os.Stat("/usr/include/blkid/blkid.h"); err != nil {
		missing = append(missing, "libblkid-dev")
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("build Ignition %s: needs %s: %w", IgnitionVersion, strings.Join(missing, ", "), ErrMissing)
	}
	script, err := findUp(filepath.Join("examples", "qemu-lab", "build-os.sh"))
	if err != nil {
		return "", fmt.Errorf("build Ignition %s: %w", IgnitionVersion, err)
	}

	cmd := exec.CommandContext(ctx, "bash", script, "--ignition-only")
	cmd.Env = append(os.Environ(), "LAB_CACHE="+CacheDir(), "IGNITION_VERSION="+IgnitionVersion)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build Ignition %s with %s: %w: %s", IgnitionVersion, script, err, tail(stderr.String(), 20))
	}
	got := strings.TrimSpace(stdout.String())
	if got != bin {
		return "", fmt.Errorf("build Ignition %s: %s printed %q, want %q", IgnitionVersion, script, got, bin)
	}
	return bin, nil
}

// findUp looks for rel in the working directory and its parents.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", rel, err)
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find %s: not in the working directory or any parent", rel)
		}
		dir = parent
	}
}

// Install writes configJSON's files, units and users under root with the
// real Ignition binary, as the node's initramfs would: "-stage fetch" then
// "-stage files", platform "file" (whose provider reads the config from
// $IGNITION_CONFIG_FILE), config cache and state in a temporary directory,
// so Ignition itself downloads the remote files and checks their hashes.
// log is both stages' output; on failure err quotes Ignition's last
// CRITICAL line.
//
// It needs root: as another user Ignition leaves the node's files owned by
// that user instead of root, and cannot chroot into root to resolve a
// file's owner or run `useradd --root` for passwd.users.
func Install(ctx context.Context, ignitionBin string, configJSON []byte, root string) (log string, err error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("ignition install: needs root (for root-owned files, owners resolved and users created in a chroot): %w", ErrMissing)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}
	if leaks := hostConfigSources(cmdline, fileExists); len(leaks) > 0 {
		return "", fmt.Errorf("ignition install: this host would give Ignition a config of its own (%s), so the result would not be the rendered config's", strings.Join(leaks, "; "))
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}
	if hasUsers(configJSON) {
		if err := searchableByAll(root); err != nil {
			return "", fmt.Errorf("ignition install: %w", err)
		}
	}
	seeded, err := seedPasswd(root, configJSON)
	if err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}

	tmp, err := os.MkdirTemp("", "noderun-ignition-")
	if err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}
	defer os.RemoveAll(tmp)
	cfgPath := filepath.Join(tmp, "config.ign")
	if err := os.WriteFile(cfgPath, configJSON, 0o600); err != nil {
		return "", fmt.Errorf("ignition install: %w", err)
	}

	var out bytes.Buffer
	if len(seeded) > 0 {
		fmt.Fprintf(&out, "noderun: seeded %s under %s for useradd --root\n", strings.Join(seeded, ", "), root)
	}
	for _, stage := range []string{"fetch", "files"} {
		args := ignitionArgs(stage, root, tmp)
		fmt.Fprintf(&out, "noderun: IGNITION_CONFIG_FILE=%s %s %s\n", cfgPath, ignitionBin, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, ignitionBin, args...)
		// Only what Ignition needs: PATH for useradd and friends, the
		// config file. No proxies or locale from the test's environment.
		cmd.Env = []string{"PATH=" + defaultPath, "IGNITION_CONFIG_FILE=" + cfgPath}
		cmd.Dir = tmp
		cmd.Stdout, cmd.Stderr = &out, &out
		// Its own process group, killed whole when ctx ends (useradd too).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		start := out.Len()
		if err := cmd.Run(); err != nil {
			crit := criticalLine(out.String()[start:])
			return out.String(), fmt.Errorf("ignition %s stage: %w: %s", stage, err, crit)
		}
	}
	return out.String(), nil
}

// ignitionArgs is the command line for one stage, state kept in dir.
func ignitionArgs(stage, root, dir string) []string {
	return []string{
		"-platform", "file",
		"-stage", stage,
		"-root", root,
		"-config-cache", filepath.Join(dir, "ignition.json"),
		"-state-file", filepath.Join(dir, "state"),
		"-neednet", filepath.Join(dir, "neednet"),
		"-log-to-stdout",
	}
}

// hostConfigSources lists what on this host Ignition would read besides our
// config: its fetch stage takes ignition.config.url from the kernel command
// line and /usr/lib/ignition/user.ign before the platform's config, and
// merges /usr/lib/ignition/base.d and base.platform.d/file (Ignition
// v2.24.0 internal/exec/engine.go, internal/providers/cmdline). Those paths
// are the host's, not under -root.
func hostConfigSources(cmdline []byte, exists func(string) bool) []string {
	var out []string
	for _, arg := range strings.Fields(string(cmdline)) {
		if strings.HasPrefix(arg, "ignition.config.url=") {
			out = append(out, "/proc/cmdline has "+arg)
		}
	}
	for _, p := range []string{
		"/usr/lib/ignition/user.ign",
		"/usr/lib/ignition/base.d",
		"/usr/lib/ignition/base.platform.d/file",
	} {
		if exists(p) {
			out = append(out, p+" exists")
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Minimal account files for a root that has none. Ignition's files stage
// runs the host's `useradd --root ROOT` for passwd.users, which locks and
// edits ROOT/etc/{passwd,group,shadow,gshadow} and fails with "cannot lock
// /etc/passwd" when they are missing; and it resolves a file's user.name
// in ROOT/etc/passwd. A node's OS image has them; an empty test root does
// not.
var passwdSeed = []struct {
	path string
	mode os.FileMode
	data string
}{
	{"/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"},
	{"/etc/group", 0o644, "root:x:0:\n"},
	{"/etc/shadow", 0o600, "root:*:1::::::\n"},
	{"/etc/gshadow", 0o600, "root:*::\n"},
}

// seedPasswd writes the passwdSeed files that neither root nor the config
// has (a config that writes /etc/passwd itself must not collide with ours).
func seedPasswd(root string, configJSON []byte) ([]string, error) {
	var cfg struct {
		Storage struct {
			Files []struct {
				Path string `json:"path"`
			} `json:"files"`
		} `json:"storage"`
	}
	// An unparsable config is Ignition's to report, with its own words.
	_ = json.Unmarshal(configJSON, &cfg)
	written := map[string]bool{}
	for _, f := range cfg.Storage.Files {
		written[filepath.Clean(f.Path)] = true
	}
	var seeded []string
	for _, s := range passwdSeed {
		p := filepath.Join(root, s.path)
		if written[s.path] {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("seed %s: %w", s.path, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("seed %s: %w", s.path, err)
		}
		if err := os.WriteFile(p, []byte(s.data), s.mode); err != nil {
			return nil, fmt.Errorf("seed %s: %w", s.path, err)
		}
		seeded = append(seeded, s.path)
	}
	return seeded, nil
}

// hasUsers reports whether the config creates users.
func hasUsers(configJSON []byte) bool {
	var cfg struct {
		Passwd struct {
			Users []json.RawMessage `json:"users"`
		} `json:"passwd"`
	}
	_ = json.Unmarshal(configJSON, &cfg)
	return len(cfg.Passwd.Users) > 0
}

// searchableByAll checks that every directory from / down to root lets
// anyone through: Ignition writes a user's ssh keys as that user
// (internal/as_user), which fails with "permission denied" below a 0700
// directory such as a test's t.TempDir().
func searchableByAll(root string) error {
	for d := root; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is mode %v: Ignition writes users' ssh keys as the user, who cannot reach %s through it (chmod o+x, or a root elsewhere)", d, fi.Mode().Perm(), root)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// criticalLine picks Ignition's last CRITICAL log line, which carries the
// whole chain of causes ("Ignition failed: failed to create files: ...:
// hash verification failed (calculated X but expected Y)"), or the last
// lines when it printed none.
func criticalLine(log string) string {
	crit := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "CRITICAL") {
			crit = strings.TrimSpace(l)
		}
	}
	if crit == "" {
		return tail(log, 5)
	}
	return crit
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
