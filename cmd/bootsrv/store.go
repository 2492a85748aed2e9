package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootsrv/bootsrv/pkg/peers"
	"github.com/bootsrv/bootsrv/pkg/state"
	"github.com/bootsrv/bootsrv/pkg/store"
)

// storeFlags are where every command finds the state: the bbolt file in
// the data dir (the default), or an etcd cluster that several servers
// share.
type storeFlags struct {
	spec, ca, cert, key, secretKey string
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.spec, "store", "", "where the state lives: bolt (the file in --data-dir, default) or etcd://HOST:2379,HOST:2379[/PREFIX] (env BOOTSRV_STORE)")
	fs.StringVar(&s.ca, "etcd-ca", "", "CA file that signed the etcd members' certificates (env BOOTSRV_ETCD_CA)")
	fs.StringVar(&s.cert, "etcd-cert", "", "bootsrv's etcd client certificate; its CN is bootsrv's etcd user (env BOOTSRV_ETCD_CERT)")
	fs.StringVar(&s.key, "etcd-key", "", "key of --etcd-cert (env BOOTSRV_ETCD_KEY)")
	fs.StringVar(&s.secretKey, "store-key", "", "file with the key that encrypts secrets in etcd, the same on every server (env BOOTSRV_STORE_KEY, default DATA-DIR/store.key; created if absent)")
}

func (s *storeFlags) fromEnv(env func(string) string) {
	for _, f := range []struct {
		v    *string
		name string
	}{{&s.spec, "BOOTSRV_STORE"}, {&s.ca, "BOOTSRV_ETCD_CA"}, {&s.cert, "BOOTSRV_ETCD_CERT"}, {&s.key, "BOOTSRV_ETCD_KEY"}, {&s.secretKey, "BOOTSRV_STORE_KEY"}} {
		if *f.v == "" {
			*f.v = env(f.name)
		}
	}
}

// parseStore turns a --store value into the state's options.
func parseStore(spec string, sf storeFlags, dataDir string, lockWait time.Duration, log *slog.Logger) (state.Options, error) {
	o := state.Options{DataDir: dataDir, LockWait: lockWait}
	switch {
	case spec == "" || spec == "bolt" || spec == "bbolt":
		return o, nil
	case strings.HasPrefix(spec, "etcd://"):
		rest := strings.TrimPrefix(spec, "etcd://")
		prefix := store.DefaultPrefix
		if i := strings.Index(rest, "/"); i >= 0 {
			prefix = rest[i:]
			rest = rest[:i]
		}
		var eps []string
		for _, ep := range strings.Split(rest, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				eps = append(eps, ep)
			}
		}
		if len(eps) == 0 {
			return o, errors.New("--store etcd://: name at least one member, as etcd://HOST:2379,HOST:2379")
		}
		key := sf.secretKey
		if key == "" {
			key = filepath.Join(dataDir, "store.key")
		}
		o.Etcd = &store.EtcdConfig{Endpoints: eps, CAFile: sf.ca, CertFile: sf.cert, KeyFile: sf.key,
			Prefix: prefix, SecretKeyFile: key, Log: log}
		return o, nil
	}
	return o, fmt.Errorf("--store %q: use bolt, or etcd://HOST:2379,HOST:2379", spec)
}

// openState opens the state the command's flags name.
func openState(o *opts, lockWait time.Duration, log *slog.Logger) (*state.DB, error) {
	so, err := parseStore(o.store.spec, o.store, o.dataDir, lockWait, log)
	if err != nil {
		return nil, err
	}
	return state.OpenWith(so)
}

func storeCommand() *command {
	return &command{name: "store", summary: "Move the state between a bbolt file and etcd", subs: []*command{{
		name: "copy", summary: "Copy the whole state into an empty store, then verify it record by record",
		long: "The source is --store (the bbolt file in --data-dir by default); --to names the target:\n" +
			"etcd://HOST:2379,... (reached with --etcd-ca, --etcd-cert, --etcd-key and --store-key) or bolt:DIR.\n" +
			"Stop the servers of both first.",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.copyTo, "to", "", "target store: etcd://HOST:2379,... or bolt:DIR")
			outputFlag(fs, o)
		},
		run: func(ctx context.Context, c *cli, o *opts, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			if o.copyTo == "" {
				return usagef("--to is required: etcd://HOST:2379,... or bolt:DIR")
			}
			from, err := openState(o, 500*time.Millisecond, nil)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer from.Close()
			toSpec, toDir := o.copyTo, o.dataDir
			if dir, ok := strings.CutPrefix(toSpec, "bolt:"); ok {
				if dir == "" {
					return usagef("--to bolt:DIR: name the data dir to write")
				}
				toSpec, toDir = "bolt", dir
			}
			so, err := parseStore(toSpec, o.store, toDir, 500*time.Millisecond, nil)
			if err != nil {
				return err
			}
			to, err := state.OpenWith(so)
			if err != nil {
				return fmt.Errorf("target: %w", err)
			}
			defer to.Close()
			fmt.Fprintf(c.stderr, "copying %s to %s\n", from.Path(), to.Path())
			counts, err := state.Copy(from, to, 100, func(b string, n int) {
				if n%1000 == 0 {
					fmt.Fprintf(c.stderr, "  %s: %d\n", b, n)
				}
			})
			if err != nil {
				return err
			}
			if err := state.Verify(from, to); err != nil {
				return fmt.Errorf("copied, but the target differs: %w", err)
			}
			total := 0
			for _, n := range counts {
				total += n
			}
			return emit(c.stdout, o.output, map[string]any{"from": from.Path(), "to": to.Path(), "records": total, "buckets": counts, "verified": true},
				func(tw *tabwriter.Writer) {
					row(tw, "BUCKET", "RECORDS")
					for _, b := range sortedKeys(counts) {
						row(tw, b, fmt.Sprint(counts[b]))
					}
					row(tw, "total", fmt.Sprint(total))
					fmt.Fprintf(tw, "verified: every record of %s is in %s\n", from.Path(), to.Path())
				})
		},
	}}}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func serverCommand() *command {
	return &command{name: "server", summary: "The bootsrv servers sharing this store", subs: []*command{{
		name: "list", summary: "Show the servers, their roles and the store's health",
		flags: outputFlag,
		run: func(ctx context.Context, c *cli, o *opts, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			st, err := openState(o, 500*time.Millisecond, nil)
			if errors.Is(err, state.ErrLocked) {
				return fmt.Errorf("%w: with a bbolt file there is one server, the one holding it", err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			sh, ok := st.Shared().(*store.Etcd)
			if !ok {
				return emit(c.stdout, o.output, map[string]any{"store": st.Path(), "servers": []peers.Info{}},
					func(tw *tabwriter.Writer) {
						fmt.Fprintf(tw, "store %s: a bbolt file, for one server (share the state with --store etcd://...)\n", st.Path())
					})
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			servers, serr := peers.List(ctx, sh.Client(), sh.Prefix())
			members, merr := peers.Health(ctx, sh.Client())
			out := map[string]any{"store": st.Path(), "revision": sh.Revision(), "servers": servers, "etcd": members}
			if err := emit(c.stdout, o.output, out, func(tw *tabwriter.Writer) {
				row(tw, "SERVER", "ROLE", "URL", "VERSION", "STARTED")
				for _, s := range servers {
					row(tw, s.ID, s.Role, s.URL, s.Version, s.Started.Format(time.RFC3339))
				}
				fmt.Fprintln(tw)
				row(tw, "ETCD MEMBER", "ENDPOINT", "HEALTHY", "LEADER")
				for _, m := range members {
					h := fmt.Sprint(m.Healthy)
					if m.Error != "" {
						h = "no: " + m.Error
					}
					row(tw, m.Name, m.Endpoint, h, fmt.Sprint(m.Leader))
				}
			}); err != nil {
				return err
			}
			return errors.Join(serr, merr)
		},
	}}}
}
