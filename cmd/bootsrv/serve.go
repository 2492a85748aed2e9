package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/profiles"
	"github.com/bootsrv/bootsrv/pkg/store"
)

type serveOpts struct {
	listen   string
	logLevel string
}

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "Run the server: admin API (and DHCP, TFTP, HTTP as they are enabled)",
		long: `Holds the state file and serves the admin API on a Unix socket in the data
dir (0600), through which every other bootsrv command then works. Stops
cleanly on SIGTERM or SIGINT.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.serve.listen, "listen", "", "IP address this server is reached at on the provisioning network")
			fs.StringVar(&o.serve.logLevel, "log-level", "info", "debug, info, warn or error")
		},
		run: runServe,
	}
}

func runServe(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.serve.logLevel)); err != nil {
		return usagef("--log-level %q: use debug, info, warn or error", o.serve.logLevel)
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	st, err := store.Open(o.dataDir, 2*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := profiles.NewService(st)

	sock := filepath.Join(o.dataDir, admin.SocketName)
	l, err := admin.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	log.Info("bootsrv serving", "version", versionString(), "data_dir", o.dataDir, "state", st.Path(), "admin_socket", sock)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Serve(gctx, l, svc, log) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("bootsrv stopped")
	return nil
}
