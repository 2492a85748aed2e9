package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/bootsrv/bootsrv/assets"
	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/release"
)

func assetsCommand() *command {
	var ipxeDir string
	return &command{
		name:    "assets",
		summary: "Import verified release binaries; show what bootsrv serves",
		subs: []*command{importCommand(), releasesListCommand(), {
			name:    "ls",
			summary: "List the iPXE binaries, embedded or from --ipxe-dir, with sizes and sha256",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&ipxeDir, "ipxe-dir", assets.DefaultIPXEDir, "where a build without embedded binaries finds them")
				outputFlag(fs, o)
			},
			run: func(_ context.Context, c *cli, o *opts, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				set, err := assets.Load(ipxeDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					return err
				}
				list := set.List()
				return emit(c.stdout, o.output, list, func(tw *tabwriter.Writer) {
					row(tw, "NAME", "SIZE", "SHA256", "SOURCE")
					for _, i := range list {
						row(tw, i.Name, fmt.Sprint(i.Size), i.SHA256, i.Source)
					}
				})
			},
		}},
	}
}

func importCommand() *command {
	var assetsDir string
	return &command{
		name:    "import",
		args:    "DIR|TAR",
		summary: "Verify and import the Kubernetes, etcd, CNI, flannel and CoreDNS release files in DIR (or a tar of it)",
		long: `Every file is checked against the checksum its project publishes beside it
(kubelet.sha256, SHA256SUMS, ...); one bad, truncated or unverifiable file,
or a binary of the wrong architecture, refuses the whole import and nothing
is changed. The binaries are laid out under the assets dir as
COMPONENT/VERSION/ARCH/NAME and served under /assets/, from where each
node's Ignition fetches them with their hash.

Files to download on the connected side (versions as the cluster names them;
see README "Kubernetes in an airgapped datacenter"):
  Kubernetes:  VERSION/bin/linux/ARCH/{kubelet,kube-proxy,kube-apiserver,
               kube-controller-manager,kube-scheduler,kubectl} and each .sha256
  etcd:        etcd-VERSION-linux-ARCH.tar.gz and SHA256SUMS
  CNI plugins: cni-plugins-linux-ARCH-VERSION.tgz and its .sha256
  flannel:     VERSION/flanneld-ARCH and a SHA256SUMS naming it
  flannel CNI: cni-plugin-flannel-linux-ARCH-VERSION.tgz and its .sha256
  CoreDNS:     coredns_VERSION_linux_ARCH.tgz and its .sha256`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&assetsDir, "assets-dir", "", "where to lay the binaries out (default: the running server's, else DATA-DIR/assets)")
			outputFlag(fs, o)
		},
		run: withAPI(exactly(1, "give the directory (or tar) of release files to import"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
			src, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			dir := assetsDir
			if dir != "" {
				if dir, err = filepath.Abs(dir); err != nil {
					return err
				}
			} else if _, ok := api.(*admin.Client); !ok {
				dir = filepath.Join(o.dataDir, "assets")
			}
			fmt.Fprintf(c.stderr, "importing %s (verifying every file; large releases take a while)\n", src)
			res, err := api.ImportReleases(ctx, src, dir)
			if err != nil {
				return err
			}
			return emit(c.stdout, o.output, res, func(tw *tabwriter.Writer) {
				printReleases(tw, res.Assets)
				for _, s := range res.Skipped {
					if !strings.HasPrefix(filepath.Base(s), ".") { // hidden files are nobody's release
						fmt.Fprintf(c.stderr, "skipped %s: not a release file bootsrv knows\n", s)
					}
				}
			})
		}),
	}
}

func releasesListCommand() *command {
	return &command{
		name:    "list",
		summary: "List the imported release binaries with their versions, sizes and hashes",
		flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
		run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
			as, err := api.Releases(ctx)
			if err != nil {
				return err
			}
			if as == nil {
				as = []release.Asset{} // an empty list, not null, on both paths
			}
			return emit(c.stdout, o.output, as, func(tw *tabwriter.Writer) { printReleases(tw, as) })
		}),
	}
}

func printReleases(tw *tabwriter.Writer, as []release.Asset) {
	row(tw, "COMPONENT", "VERSION", "ARCH", "NAME", "SIZE", "SHA256", "URL PATH")
	for _, a := range as {
		row(tw, a.Component, a.Version, a.Arch, a.Name, fmt.Sprint(a.Size), a.SHA256[:min(16, len(a.SHA256))]+"…", "/assets/"+a.Path)
	}
}
