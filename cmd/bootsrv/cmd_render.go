package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/admin"
)

func renderCommand() *command {
	return &command{
		name:    "render",
		args:    "ipxe|ignition MAC",
		summary: "Print exactly what a machine would get from /ipxe or /ignition",
		long: `Nothing is recorded and no token is spent. URLs in the output point at
--base-url; with a server running, at the server's own address by default.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.baseURL, "base-url", "", "http://HOST:PORT machines reach bootsrv at")
		},
		run: withAPI(exactly(2, "give what to render (ipxe or ignition) and a MAC"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
			out, err := api.Render(ctx, args[0], args[1], o.baseURL)
			if err != nil {
				return err
			}
			fmt.Fprint(c.stdout, out)
			if !strings.HasSuffix(out, "\n") {
				fmt.Fprintln(c.stdout)
			}
			return nil
		}),
	}
}
