package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
)

func caCommand() *command {
	return &command{
		name:    "ca",
		summary: "Show the cluster's certificate authorities; issue admin client certificates",
		subs: []*command{issueAdminCommand(), {
			name:    "show",
			summary: "Show the cluster CA and the etcd CA (their keys never leave the server)",
			flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
			run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
				cs, err := api.CAs(ctx)
				if err != nil {
					return err
				}
				return printCerts(c, o, cs, false)
			}),
		}},
	}
}

func certsCommand() *command {
	return &command{
		name:    "certs",
		summary: "List the certificates issued to machines",
		subs: []*command{{
			name:    "list",
			summary: "List every machine certificate with its expiry",
			flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
			run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
				cs, err := api.Certs(ctx)
				if err != nil {
					return err
				}
				return printCerts(c, o, cs, true)
			}),
		}, {
			name:    "renew",
			args:    "[MAC...]",
			summary: "Issue new certificates now for the machines named (every Kubernetes machine when none is)",
			long: `bootsrv renews certificates itself: a node's set is issued anew 30 days before
its first certificate expires, and each node's bootsrv-renew-certs.timer
fetches its set from bootsrv twice a day, installs it when it changed and
restarts what uses it (no reinstall). This command renews now; the nodes
pick the new set up at their next check, or at once with
"systemctl start bootsrv-renew-certs" on the node. The old certificates
stay valid until they expire (Kubernetes has no revocation list): after a
leaked key, reprovision the machine, which also ends its tokens.`,
			flags: func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
			run: withAPI(func([]string) error { return nil }, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
				cs, err := api.RenewCerts(ctx, args)
				if err != nil {
					return err
				}
				return printCerts(c, o, cs, true)
			}),
		}},
	}
}

func kubeconfigCommand() *command {
	return &command{
		name:    "kubeconfig",
		summary: "Make kubeconfigs for operators",
		subs: []*command{{
			name:    "admin",
			summary: "Print an admin kubeconfig (a new client certificate in group system:masters)",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.user, "user", "admin", "user name in the certificate (CN)")
			},
			run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
				kc, err := api.AdminKubeconfig(ctx, o.user)
				if err != nil {
					return err
				}
				fmt.Fprint(c.stdout, kc)
				return nil
			}),
		}},
	}
}

func printCerts(c *cli, o *opts, cs []nodecerts.CertInfo, machines bool) error {
	if cs == nil {
		cs = []nodecerts.CertInfo{}
	}
	now := time.Now()
	return emit(c.stdout, o.output, cs, func(tw *tabwriter.Writer) {
		if machines {
			row(tw, "MACHINE", "HOSTNAME", "CERT", "SUBJECT", "EXPIRES", "IN")
		} else {
			row(tw, "CA", "SUBJECT", "EXPIRES", "IN", "SHA256")
		}
		for _, ci := range cs {
			in := fmt.Sprintf("%dd", int(ci.NotAfter.Sub(now).Hours()/24))
			if machines {
				row(tw, ci.MAC, ci.Hostname, ci.Name, ci.Subject, ci.NotAfter.Format("2006-01-02"), in)
			} else {
				row(tw, ci.Name, ci.Subject, ci.NotAfter.Format("2006-01-02"), in, ci.SHA256)
			}
		}
	})
}

func issueAdminCommand() *command {
	return &command{
		name:    "issue-admin",
		args:    "NAME",
		summary: "Issue a client certificate for the admin API on TCP (serve --admin-addr)",
		long: `Makes the admin CA in the data dir on first use (admin-ca.pem, its key
0600; apart from the cluster CA), then a client certificate for NAME
(organization bootsrv-admin) into --out: NAME.pem, NAME-key.pem (0600) and
ca.pem. A server started with --admin-addr takes only such certificates
(TLS 1.3, mutual); the CLI reaches it with --admin-url https://HOST:PORT
--admin-cert, --admin-key and --admin-ca. Run it on the server's host.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.file, "out", "", "directory for the certificate, key and CA (default ./NAME-admin)")
		},
		run: func(_ context.Context, c *cli, o *opts, args []string) error {
			if len(args) != 1 || strings.TrimSpace(args[0]) == "" || strings.ContainsAny(args[0], "/\\") {
				return usagef("give one NAME (no slashes), the admin's name in the certificate")
			}
			name := args[0]
			dir := o.file
			if dir == "" {
				dir = name + "-admin"
			}
			if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
				return err
			}
			now := time.Now()
			ca, created, err := admin.LoadOrCreateCA(o.dataDir, now)
			if err != nil {
				return err
			}
			p, err := admin.IssueClient(ca, name, 0, now)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			for _, f := range []struct {
				name string
				b    []byte
				mode os.FileMode
			}{{name + "-key.pem", p.KeyPEM, 0o600}, {name + ".pem", p.CertPEM, 0o644}, {"ca.pem", ca.CertPEM, 0o644}} {
				if err := os.WriteFile(filepath.Join(dir, f.name), f.b, f.mode); err != nil {
					return err
				}
			}
			if created {
				fmt.Fprintf(c.stderr, "made the admin CA %s\n", filepath.Join(o.dataDir, admin.CAFile))
			}
			fmt.Fprintf(c.stdout, "admin certificate for %s in %s\nuse: bootsrv --admin-url https://HOST:PORT --admin-cert %s --admin-key %s --admin-ca %s COMMAND\n",
				name, dir, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), filepath.Join(dir, "ca.pem"))
			return nil
		},
	}
}
