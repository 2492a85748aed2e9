// Command bootsrv is the PXE/iPXE boot and config server and its CLI. This
// package only parses flags and wires packages together; the logic lives in
// pkg/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes, documented in `bootsrv help`.
const (
	exitOK       = 0
	exitFailure  = 1 // the command could not do its work (I/O, internal)
	exitUsage    = 2 // bad flags or bad input: fix the command line or file
	exitNotFound = 3 // the named cluster, profile or machine does not exist
	exitConflict = 4 // clashes with what is stored (duplicate, in use)
)

const defaultDataDir = "/var/lib/bootsrv"

// usageError is a command-line mistake: exit 2 with the command's usage hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// command is one node of the CLI tree.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	long    string
	flags   func(fs *flag.FlagSet, o *opts)
	run     func(ctx context.Context, c *cli, o *opts, args []string) error
	subs    []*command
}

// opts holds every flag value; each command registers the ones it takes.
type opts struct {
	dataDir string
	// the admin API on TCP (serve --admin-addr), instead of the socket
	adminURL, adminCert, adminKey, adminCA string
	store                                  storeFlags
	copyTo                                 string
	output                                 string
	file                                   string
	replace                                bool

	// cluster
	cl      model.Cluster
	dns     stringList
	sshKeys stringList

	// profile
	pr      model.Profile
	initrds stringList
	kargs   stringList
	ignFile string

	// machine
	m      model.Machine
	labels stringList

	serve   serveOpts
	baseURL string
	user    string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// cli carries the streams so tests can run commands in-process too.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
}

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, env: os.Getenv}
	os.Exit(c.main(context.Background(), os.Args[1:]))
}

func (c *cli) main(ctx context.Context, args []string) int {
	root := rootCommand()
	// Flags given before the command (`bootsrv --data-dir D machine list`)
	// are moved after it, where every command parses them.
	var early []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && !isHelpFlag(args[0]) && args[0] != "--" {
		n := 1
		if !strings.Contains(args[0], "=") && len(args) > 1 {
			n = 2
		}
		early, args = append(early, args[:n]...), args[n:]
	}
	cmd, rest := root, args
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		next := cmd.sub(rest[0])
		if next == nil {
			break
		}
		cmd, rest = next, rest[1:]
	}
	if cmd.run == nil {
		// A group (or the root) without a runnable leaf: show its help.
		if len(rest) > 0 && !isHelpFlag(rest[0]) {
			fmt.Fprintf(c.stderr, "bootsrv: unknown command %q\n\n", strings.Join(append(cmdPath(root, cmd), rest[0]), " "))
			c.printHelp(c.stderr, root, cmd)
			return exitUsage
		}
		if len(rest) == 0 && cmd != root {
			c.printHelp(c.stderr, root, cmd)
			return exitUsage
		}
		c.printHelp(c.stdout, root, cmd)
		return exitOK
	}
	var o opts
	fs := newFlagSet(cmd, &o)
	pos, err := parseInterspersed(fs, append(early, rest...))
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(c.stdout, root, cmd)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "bootsrv %s: %v\nRun 'bootsrv %s --help' for usage.\n", strings.Join(cmdPath(root, cmd), " "), err, strings.Join(cmdPath(root, cmd), " "))
		return exitUsage
	}
	if o.dataDir == "" {
		o.dataDir = c.env("BOOTSRV_DATA_DIR")
	}
	if o.dataDir == "" {
		o.dataDir = defaultDataDir
	}
	o.store.fromEnv(c.env)
	for _, e := range []struct {
		v   *string
		env string
	}{{&o.adminURL, "BOOTSRV_ADMIN_URL"}, {&o.adminCert, "BOOTSRV_ADMIN_CERT"}, {&o.adminKey, "BOOTSRV_ADMIN_KEY"}, {&o.adminCA, "BOOTSRV_ADMIN_CA"}} {
		if *e.v == "" {
			*e.v = c.env(e.env)
		}
	}
	if o.output != "" && o.output != "table" && o.output != "json" && o.output != "yaml" {
		fmt.Fprintf(c.stderr, "bootsrv: -o %q: use table, json or yaml\n", o.output)
		return exitUsage
	}
	if err := cmd.run(ctx, c, &o, pos); err != nil {
		name := strings.Join(cmdPath(root, cmd), " ")
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(c.stderr, "bootsrv %s: %v\nRun 'bootsrv %s --help' for usage.\n", name, err, name)
			return exitUsage
		}
		fmt.Fprintf(c.stderr, "bootsrv %s: %v\n", name, err)
		return exitCode(err)
	}
	return exitOK
}

func exitCode(err error) int {
	switch fault.KindOf(err) {
	case fault.KindInvalid:
		return exitUsage
	case fault.KindNotFound:
		return exitNotFound
	case fault.KindConflict:
		return exitConflict
	case fault.KindDenied:
		return exitFailure
	}
	return exitFailure
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// parseInterspersed parses flags that may stand before, between or after
// positional arguments (`machine add MAC --profile p`), as users type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (cmd *command) sub(name string) *command {
	for _, s := range cmd.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func cmdPath(root, target *command) []string {
	var walk func(c *command, path []string) []string
	walk = func(c *command, path []string) []string {
		if c == target {
			return path
		}
		for _, s := range c.subs {
			if p := walk(s, append(path, s.name)); p != nil {
				return p
			}
		}
		return nil
	}
	return walk(root, nil)
}

func newFlagSet(cmd *command, o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.dataDir, "data-dir", "", "state directory (env BOOTSRV_DATA_DIR, default "+defaultDataDir+")")
	fs.StringVar(&o.adminURL, "admin-url", "", "a remote server's admin API, https://HOST:PORT (its --admin-addr; env BOOTSRV_ADMIN_URL), with the three below")
	fs.StringVar(&o.adminCert, "admin-cert", "", "admin client certificate from 'bootsrv ca issue-admin' (env BOOTSRV_ADMIN_CERT)")
	fs.StringVar(&o.adminKey, "admin-key", "", "its key (env BOOTSRV_ADMIN_KEY)")
	fs.StringVar(&o.adminCA, "admin-ca", "", "the admin CA certificate (env BOOTSRV_ADMIN_CA)")
	o.store.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	return fs
}

func (c *cli) printHelp(w io.Writer, root, cmd *command) {
	path := strings.Join(append([]string{"bootsrv"}, cmdPath(root, cmd)...), " ")
	if cmd.summary != "" {
		fmt.Fprintf(w, "%s\n", cmd.summary)
	}
	if cmd.run != nil {
		fmt.Fprintf(w, "\nUsage:\n  %s %s [flags]\n", path, strings.TrimSpace(cmd.args))
	}
	if cmd.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.long))
	}
	if len(cmd.subs) > 0 {
		fmt.Fprintf(w, "\nCommands:\n")
		for _, s := range cmd.subs {
			fmt.Fprintf(w, "  %-12s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", path)
	}
	if cmd.run != nil {
		fs := newFlagSet(cmd, &opts{})
		fmt.Fprintf(w, "\nFlags:\n")
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		sort.Strings(names)
		for _, n := range names {
			f := fs.Lookup(n)
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0s" && f.DefValue != "0" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			fmt.Fprintf(w, "  %s%-*s %s%s\n", dash, 22-len(dash), n, f.Usage, def)
		}
	}
	if cmd == root {
		fmt.Fprint(w, `
Every command takes --data-dir DIR (env BOOTSRV_DATA_DIR, default `+defaultDataDir+`).
While 'bootsrv serve' runs, commands go through its admin socket in the data
dir; otherwise they open the state file themselves.

Exit codes: 0 ok, 1 failure, 2 bad usage or input, 3 not found, 4 conflict.
`)
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return "dev-" + rev[:min(12, len(rev))] + dirty
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// openAPI returns the running server's admin API, or, when no server runs,
// the service over the state file opened here.
func openAPI(o *opts) (admin.API, func(), error) {
	if o.adminURL != "" {
		cl, err := admin.DialTLS(o.adminURL, o.adminCert, o.adminKey, o.adminCA)
		if err != nil {
			return nil, nil, err
		}
		return cl, func() {}, nil
	}
	sock := filepath.Join(o.dataDir, admin.SocketName)
	cl, err := admin.Dial(sock)
	if err == nil {
		return cl, func() {}, nil
	}
	if !errors.Is(err, admin.ErrNoServer) {
		return nil, nil, err
	}
	st, err := openState(o, 500*time.Millisecond, nil)
	if err != nil {
		if errors.Is(err, state.ErrLocked) {
			return nil, nil, fmt.Errorf("%w; its admin socket %s does not answer: wait for it to finish starting, or stop it", err, sock)
		}
		return nil, nil, err
	}
	return core.NewService(st, nil), func() { st.Close() }, nil
}

func rootCommand() *command {
	return &command{
		summary: "bootsrv: PXE/iPXE boot and config server for bare-metal Kubernetes nodes.",
		subs: []*command{
			serveCommand(),
			clusterCommand(),
			profileCommand(),
			machineCommand(),
			renderCommand(),
			assetsCommand(),
			caCommand(),
			certsCommand(),
			kubeconfigCommand(),
			serverCommand(),
			storeCommand(),
			{name: "version", summary: "Print bootsrv's version", run: func(_ context.Context, c *cli, o *opts, args []string) error {
				fmt.Fprintln(c.stdout, "bootsrv", versionString())
				return nil
			}},
			{name: "help", args: "[COMMAND...]", summary: "Show help for bootsrv or a command", run: func(_ context.Context, c *cli, o *opts, args []string) error {
				root := rootCommand()
				cmd := root
				for _, a := range args {
					if cmd = cmd.sub(a); cmd == nil {
						return usagef("no command %q", strings.Join(args, " "))
					}
				}
				c.printHelp(c.stdout, root, cmd)
				return nil
			}},
		},
	}
}

// argCheck checks a command's positional arguments.
type argCheck func(args []string) error

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

func exactly(n int, msg string) argCheck {
	return func(args []string) error {
		if len(args) != n {
			return usagef("%s", msg)
		}
		return nil
	}
}

// withAPI checks a command's arguments, then runs it against the API: the
// running server's, or the state file's when no server runs.
func withAPI(check argCheck, fn func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error) func(context.Context, *cli, *opts, []string) error {
	return func(ctx context.Context, c *cli, o *opts, args []string) error {
		if err := check(args); err != nil {
			return err
		}
		api, done, err := openAPI(o)
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, c, o, api, args)
	}
}
