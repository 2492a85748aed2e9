package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/bootsrv/bootsrv/assets"
)

func assetsCommand() *command {
	var ipxeDir string
	return &command{
		name:    "assets",
		summary: "Show the first-stage iPXE binaries bootsrv serves",
		subs: []*command{{
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
