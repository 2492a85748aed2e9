package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
)

func caCommand() *command {
	return &command{
		name:    "ca",
		summary: "Show the cluster's certificate authorities",
		subs: []*command{{
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
