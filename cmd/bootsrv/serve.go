package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bootsrv/bootsrv/assets"
	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/dhcp"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/journey"
	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/peers"
	"github.com/bootsrv/bootsrv/pkg/store"
	"github.com/bootsrv/bootsrv/pkg/tftp"
)

type serveOpts struct {
	listen         string
	tokenBind      string
	interfaces     stringList
	dhcpMode       string
	dhcpRange      string
	unknown        string
	dhcpLeaseTime  time.Duration
	bootFiles      stringList
	ipxeDir        string
	tftpAddr       string
	tftpMaxBlksize int
	logLevel       string
	httpAddr       string
	assetsDir      string
	tokenTTL       time.Duration
	reportTimeout  time.Duration
	discoverMax    int
	discoverTTL    time.Duration
	cpuprofile     string
	adminAddr      string
}

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "Run the server: DHCP, TFTP, the HTTP boot chain and the admin API",
		long: `Holds the state file and serves the admin API on a Unix socket in the data
dir (0600), through which every other bootsrv command then works, and the
HTTP boot chain (/boot.ipxe, /ipxe, /assets/, /ignition, /report, /metrics).
Stops cleanly on SIGTERM or SIGINT, committing every queued event.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.serve.listen, "listen", "", "IP address machines reach this server at (default: the --http-addr host, else 127.0.0.1)")
			fs.StringVar(&o.serve.logLevel, "log-level", "info", "debug, info, warn or error")
			fs.Var(&o.serve.interfaces, "interface", "network interface to answer DHCP on (repeatable); none: DHCP stays off")
			fs.StringVar(&o.serve.dhcpMode, "dhcp-mode", "full", "full (bootsrv hands out addresses), proxy (another server does; bootsrv adds boot info) or off")
			fs.StringVar(&o.serve.dhcpRange, "dhcp-range", "", "START-END pool for machines without a reservation (e.g. discovered ones)")
			fs.StringVar(&o.serve.unknown, "unknown", "ignore", "unknown MACs: ignore, or discover (answer PXE clients and record them)")
			fs.DurationVar(&o.serve.dhcpLeaseTime, "dhcp-lease-time", time.Hour, "DHCP lease time")
			fs.Var(&o.serve.bootFiles, "dhcp-boot-file", "ARCH=FILE: first-stage file for an option 93 arch code (repeatable; ARCH= declines it)")
			fs.StringVar(&o.serve.httpAddr, "http-addr", ":8080", "HTTP listen address")
			fs.StringVar(&o.serve.assetsDir, "assets-dir", "", "directory served under /assets/ and over TFTP (default DATA-DIR/assets)")
			fs.StringVar(&o.serve.ipxeDir, "ipxe-dir", assets.DefaultIPXEDir, "where to find iPXE binaries a build without embedded ones serves")
			fs.StringVar(&o.serve.tftpAddr, "tftp-addr", ":69", "TFTP listen address (\"\" turns TFTP off)")
			fs.IntVar(&o.serve.tftpMaxBlksize, "tftp-max-blksize", 1468, "largest TFTP block size granted (512 for buggy ROMs)")
			fs.DurationVar(&o.serve.tokenTTL, "token-ttl", bootchain.DefaultBootConfig.TokenTTL, "how long a boot script's Ignition token is valid")
			fs.StringVar(&o.serve.tokenBind, "token-bind", "address", "address: a machine's boot script and tokens are only served to its own address (leased, else reserved); any: to any address (when another DHCP server hands out other addresses)")
			fs.DurationVar(&o.serve.reportTimeout, "report-timeout", time.Hour, "mark a machine failed when it has not reported this long after fetching Ignition")
			fs.IntVar(&o.serve.discoverMax, "discover-max", journey.DefaultMaxDiscovered, "with --unknown discover: most discovered machines (no profile) kept; beyond it unknown MACs are not recorded")
			fs.StringVar(&o.serve.adminAddr, "admin-addr", "", "also serve the admin API on this TCP HOST:PORT, TLS 1.3 with client certificates from 'bootsrv ca issue-admin' only (default: the Unix socket alone)")
			fs.StringVar(&o.serve.cpuprofile, "cpuprofile", "", "write a CPU profile (go tool pprof) here until the server stops, for finding what limits it")
			fs.DurationVar(&o.serve.discoverTTL, "discover-ttl", 24*time.Hour, "remove a discovered machine (no profile) not seen for this long")
		},
		run: runServe,
	}
}

func runServe(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	so := o.serve
	var level slog.Level
	if err := level.UnmarshalText([]byte(so.logLevel)); err != nil {
		return usagef("--log-level %q: use debug, info, warn or error", so.logLevel)
	}
	if so.tokenBind != "address" && so.tokenBind != "any" {
		return usagef("--token-bind %q: use address or any", so.tokenBind)
	}
	if so.tokenTTL <= 0 || so.reportTimeout <= 0 || so.discoverTTL <= 0 {
		return usagef("--token-ttl, --report-timeout and --discover-ttl must be positive durations such as 30m")
	}
	if so.discoverMax <= 0 {
		return usagef("--discover-max %d: give a positive number of machines", so.discoverMax)
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	baseURL, err := advertisedURL(so.listen, so.httpAddr)
	if err != nil {
		return err
	}
	if so.assetsDir == "" {
		so.assetsDir = filepath.Join(o.dataDir, "assets")
		if err := os.MkdirAll(so.assetsDir, 0o755); err != nil {
			return fmt.Errorf("create assets dir: %w", err)
		}
	}

	if so.cpuprofile != "" {
		f, err := os.Create(so.cpuprofile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	st, err := openState(o, 2*time.Second, log)
	if err != nil {
		return err
	}
	defer st.Close()
	dcfg, err := dhcpConfig(so, log)
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	dcfg.Metrics = reg
	// The lease table sits below both DHCP and the boot chain: built first,
	// handed to each. With DHCP off there is none, and tokens are checked
	// against reservations.
	var leases *lease.Table
	if dcfg.Enabled() {
		if leases, err = lease.Open(st, func() time.Time { return time.Now().UTC() }); err != nil {
			return err
		}
	}
	svc := core.NewService(st, leases)
	svc.Configure(bootchain.BootConfig{TokenTTL: so.tokenTTL, BaseURL: baseURL, Version: versionString(),
		AnyAddress: so.tokenBind == "any", AssetsDir: so.assetsDir})
	ds, err := dhcp.New(ctx, dcfg, svc, leases)
	if err != nil {
		return err
	}
	svc.SetMaxDiscovered(so.discoverMax)
	svc.StartRecorder(log)
	// Runs after the servers stopped: queued events reach the file before
	// it closes.
	defer svc.Close()

	reg.GaugeFunc("bootsrv_machines", "Machines by provisioning state.", "state", svc.StateCounts)
	tftpFetches := reg.Counter("bootsrv_tftp_transfers_total", "TFTP transfers by result.", "result")

	sock := filepath.Join(o.dataDir, admin.SocketName)
	l, err := admin.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	var adminTCP net.Listener
	if so.adminAddr != "" {
		if adminTCP, err = adminListener(o.dataDir, so.adminAddr, so.listen); err != nil {
			return err
		}
		defer adminTCP.Close()
	}

	firstStage, err := assets.Load(so.ipxeDir, log)
	if err != nil {
		return err
	}
	var ts *tftp.Server
	if so.tftpAddr != "" {
		ts, err = tftp.New(tftp.Config{Addr: so.tftpAddr, AssetsDir: so.assetsDir, MaxBlksize: so.tftpMaxBlksize,
			OnTransfer: func(ip netip.Addr, file string, n int64, terr error) {
				if errors.Is(terr, tftp.ErrSizeProbe) {
					return // UEFI asks the size first and aborts: normal
				}
				tftpFetches.Inc(tftpResult(terr))
				if errors.Is(terr, tftp.ErrBusy) {
					return // counted (error0) and logged at a limited rate; a storm would flood the histories
				}
				svc.FirstStageFetched(ip, file, n, terr)
			}}, firstStage.FS(), log)
		if err != nil {
			return fmt.Errorf("tftp: %w (choose another with --tftp-addr, or --tftp-addr \"\" to turn TFTP off)", err)
		}
	} else {
		log.Info("TFTP is off (--tftp-addr \"\"): firmware PXE clients cannot load iPXE from bootsrv")
	}

	hs, err := httpd.New(httpd.Config{Addr: so.httpAddr, AssetsDir: so.assetsDir, FirstStage: firstStage.FS()}, svc, reg, log)
	if err != nil {
		return err
	}
	if err := hs.Listen(); err != nil {
		return err
	}

	log.Info("bootsrv serving", "version", versionString(), "data_dir", o.dataDir, "state", st.Path(),
		"admin_socket", sock, "http", hs.Addr().String(), "url", baseURL, "assets_dir", so.assetsDir, "tftp", so.tftpAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Serve(gctx, l, svc, log) })
	if adminTCP != nil {
		log.Info("admin API on TCP, mutual TLS", "addr", adminTCP.Addr().String())
		g.Go(func() error { return admin.Serve(gctx, adminTCP, svc, log) })
	}
	g.Go(func() error { return hs.Serve(gctx) })
	g.Go(func() error { return ds.Serve(gctx) })
	if ts != nil {
		g.Go(func() error { return ts.Serve(gctx) })
	}
	// With a shared store, one server at a time (elected) runs the timed
	// jobs; the others stand by.
	leader := func() bool { return true }
	if sh, ok := st.Shared().(*store.Etcd); ok {
		p := peers.Join(gctx, sh.Client(), sh.Prefix(), peers.Info{ID: hs.Addr().String() + "@" + hostname(),
			URL: baseURL, Version: versionString(), Started: time.Now().UTC()}, log)
		defer p.Close()
		leader = p.Leader
		g.Go(func() error { return flushDeferred(gctx, leases, log) })
	}
	g.Go(func() error { return sweepSilent(gctx, svc, so.reportTimeout, leader, log) })
	g.Go(func() error { return expireDiscovered(gctx, svc, so.discoverTTL, leader, log) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("bootsrv stopped")
	return nil
}

// dhcpConfig is the DHCP server's configuration from the flags; with no
// --interface it is off and says so when it starts.
func dhcpConfig(so serveOpts, log *slog.Logger) (dhcp.Config, error) {
	mode, err := dhcp.ParseMode(so.dhcpMode)
	if err != nil {
		return dhcp.Config{}, usagef("%v", err)
	}
	unknown, err := dhcp.ParseUnknown(so.unknown)
	if err != nil {
		return dhcp.Config{}, usagef("%v", err)
	}
	files, err := dhcp.ParseBootFiles(so.bootFiles)
	if err != nil {
		return dhcp.Config{}, usagef("%v", err)
	}
	var pool lease.Pool
	if so.dhcpRange != "" {
		if pool, err = dhcp.ParseRange(so.dhcpRange); err != nil {
			return dhcp.Config{}, usagef("%v", err)
		}
	}
	_, port, _ := net.SplitHostPort(so.httpAddr)
	httpPort, _ := strconv.Atoi(port)
	return dhcp.Config{
		Settings: dhcp.Settings{Mode: mode, Unknown: unknown, LeaseTime: so.dhcpLeaseTime,
			HTTPPort: httpPort, HTTPHost: so.listen, BootFiles: files},
		Interfaces: so.interfaces,
		Pool:       pool,
		Logger:     log,
	}, nil
}

func tftpResult(err error) string {
	var te *tftp.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, tftp.ErrTimeout):
		return "timeout"
	case errors.As(err, &te):
		return fmt.Sprintf("error%d", te.Code)
	}
	return "failed"
}

// sweepSilent marks machines that never reported after Ignition as failed.
func sweepSilent(ctx context.Context, svc *core.Service, timeout time.Duration, leader func() bool, log *slog.Logger) error {
	every := min(timeout/4, 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if !leader() {
				continue
			}
			n, err := svc.FailSilent(timeout)
			if err != nil {
				log.Error("report-timeout sweep failed", "err", err)
			} else if n > 0 {
				log.Warn("machines never reported after fetching Ignition: marked failed", "count", n, "timeout", timeout)
			}
		}
	}
}

// expireDiscovered removes, every few minutes, discovered machines not seen
// for ttl; the first pass runs at start.
func expireDiscovered(ctx context.Context, svc *core.Service, ttl time.Duration, leader func() bool, log *slog.Logger) error {
	every := min(ttl/4, 5*time.Minute)
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(every):
			}
		}
		if !leader() {
			continue
		}
		if n, err := svc.ExpireDiscovered(ctx, ttl); err != nil {
			log.Error("discovered-machine expiry failed", "err", err)
		} else if n > 0 {
			log.Info("discovered machines not seen for --discover-ttl removed", "count", n, "ttl", ttl)
		}
	}
}

// flushDeferred writes, once a shared store is back, the reservations
// DHCP answered while it was not.
func flushDeferred(ctx context.Context, leases *lease.Table, log *slog.Logger) error {
	if leases == nil {
		return nil
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := leases.FlushDeferred(); err != nil {
				log.Warn("writing leases answered during the store outage failed; retrying", "waiting", leases.Deferred(), "err", err)
			} else if n > 0 {
				log.Info("leases answered during the store outage written", "count", n)
			}
		}
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// advertisedURL is the HTTP base URL put in scripts that are not rendered
// in answer to a request (previews, DHCP boot-file URLs).
func advertisedURL(listen, httpAddr string) (string, error) {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", usagef("--http-addr %q: use HOST:PORT or :PORT", httpAddr)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", usagef("--http-addr %q: the port is not a number", httpAddr)
	}
	if listen != "" {
		a, err := netip.ParseAddr(listen)
		if err != nil || !a.Is4() {
			return "", usagef("--listen %q is not an IPv4 address", listen)
		}
		host = listen
	}
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// The core is every door's back end: each door's own interface says what
// it needs of it.
var (
	_ admin.API       = (*core.Service)(nil)
	_ httpd.BootChain = (*core.Service)(nil)
	_ dhcp.Inventory  = (*core.Service)(nil)
)

// adminListener is the admin API's TCP listener: TLS 1.3, a server
// certificate from the admin CA for the address's host (and --listen's),
// and only clients with an admin certificate.
func adminListener(dataDir, addr, listen string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("--admin-addr %q: want HOST:PORT, such as 10.0.0.1:8443", addr)
	}
	ca, err := admin.LoadCA(dataDir)
	if err != nil {
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	hosts := []string{host, "127.0.0.1", "localhost"}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		hosts = append(hosts, h)
	} else if listen != "" {
		hosts = append(hosts, listen)
	}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	cfg, err := admin.ServerTLS(ca, hosts, time.Now())
	if err != nil {
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	l, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	return l, nil
}
