package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/lograte"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// Config is how `bootsrv serve` runs the DHCP server.
type Config struct {
	Settings Settings
	// Interfaces to answer on. None: DHCP stays off.
	Interfaces []string
	// Pool is --dhcp-range, used when Settings.Subnets is empty and the
	// subnet comes from the cluster.
	Pool lease.Pool
	// Port and ProxyPort default to 67 and 4011 (4011 only in proxy mode).
	Port, ProxyPort int
	Logger          *slog.Logger
	// Metrics, when set, gets the server's counters and the lease table's
	// gauges.
	Metrics *metrics.Registry
}

// Server is the socket loop around Decide.
type Server struct {
	cfg    Config
	inv    Inventory
	leases *lease.Table
	log    *slog.Logger
	now    func() time.Time

	wg sync.WaitGroup // exchanges in flight

	requests *metrics.CounterVec // by message type and decision code
	failures *metrics.CounterVec // lease changes refused or not durable, by action

	// warns limits WARN lines that every packet could cause (a full disk
	// fails each lease write), by cause.
	warns *lograte.Limiter
}

// Enabled says whether cfg answers DHCP at all (a mode other than off,
// and an interface): only then does the server need a lease table.
func (cfg Config) Enabled() bool {
	return cfg.Settings.Mode != ModeOff && len(cfg.Interfaces) > 0
}

// New prepares a server over the inventory and the lease table (nil when
// DHCP is off). In full mode with no subnet given, the subnet, router and
// DNS servers come from the cluster's network, and the pool from cfg.Pool.
func New(ctx context.Context, cfg Config, inv Inventory, leases *lease.Table) (*Server, error) {
	cfg.Settings = cfg.Settings.WithDefaults()
	if cfg.Port == 0 {
		cfg.Port = ServerPort
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = ProxyBootPort
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, inv: inv, leases: leases, log: cfg.Logger.With("server", "dhcp"), now: func() time.Time { return time.Now().UTC() },
		warns: lograte.New(10*time.Second, 5, 1024)}
	if !s.enabled() {
		return s, nil
	}
	if leases == nil {
		return nil, fmt.Errorf("dhcp: answering on %s needs the lease table", strings.Join(cfg.Interfaces, ", "))
	}
	if cfg.Settings.Mode == ModeFull && len(cfg.Settings.Subnets) == 0 {
		c, err := inv.Cluster(ctx)
		if err != nil {
			return nil, fmt.Errorf("dhcp full mode needs the cluster's network: %w", err)
		}
		sub, err := SubnetFromCluster(c, cfg.Pool)
		if err != nil {
			return nil, err
		}
		s.cfg.Settings.Subnets = []Subnet{sub}
	}
	if err := s.cfg.Settings.Check(); err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	if reg := cfg.Metrics; reg != nil {
		s.requests = reg.Counter("bootsrv_dhcp_requests_total", "DHCP requests by message type and decision (offer, ack, nak, ignored, pool-exhausted, ...).", "type", "decision")
		s.failures = reg.Counter("bootsrv_dhcp_lease_failures_total", "Decisions not answered because the lease could not be changed (held by another client, or not durable).", "action")
		reg.GaugeFunc("bootsrv_dhcp_leases", "Leases in the table by state (bound, offered, declined; expired ones not yet reused count too).", "state", func() map[string]float64 {
			out := map[string]float64{model.LeaseBound: 0, model.LeaseOffered: 0, model.LeaseDeclined: 0}
			for st, n := range leases.Stats().ByState {
				out[st] = float64(n)
			}
			return out
		})
		reg.GaugeFunc("bootsrv_dhcp_pool_addresses", "Addresses in each subnet's dynamic pool (--dhcp-range).", "subnet", func() map[string]float64 {
			out := map[string]float64{}
			for _, sub := range s.cfg.Settings.Subnets {
				out[sub.Prefix.String()] = float64(sub.Pool.Size())
			}
			return out
		})
	}
	return s, nil
}

// SubnetFromCluster is the provisioning subnet as the cluster describes it,
// with pool as its dynamic range.
func SubnetFromCluster(c model.Cluster, pool lease.Pool) (Subnet, error) {
	var sub Subnet
	var err error
	if sub.Prefix, err = netip.ParsePrefix(c.Network.Subnet); err != nil {
		return sub, fmt.Errorf("cluster subnet %q: %w", c.Network.Subnet, err)
	}
	if c.Network.Gateway != "" {
		if sub.Router, err = netip.ParseAddr(c.Network.Gateway); err != nil {
			return sub, fmt.Errorf("cluster gateway %q: %w", c.Network.Gateway, err)
		}
	}
	for _, d := range c.Network.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return sub, fmt.Errorf("cluster DNS %q: %w", d, err)
		}
		sub.DNS = append(sub.DNS, a)
	}
	sub.Pool = pool
	return sub, sub.Check()
}

func (s *Server) enabled() bool { return s.cfg.Enabled() }

// Settings are the settings in effect.
func (s *Server) Settings() Settings { return s.cfg.Settings }

type listener struct {
	iface  string
	server netip.Addr
	port   int
	conn   *net.UDPConn
}

// Serve answers DHCP until ctx is done, then waits for exchanges in flight
// and their event writes. With DHCP off it logs how to turn it on and
// returns nil at once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.enabled() {
		if s.cfg.Settings.Mode == ModeOff {
			s.log.Info("DHCP is off (--dhcp-mode off): point your DHCP server's boot file at bootsrv")
		} else {
			s.log.Info("DHCP is off: no --interface named; give --interface IFACE to answer DHCP on it")
		}
		return nil
	}
	var ls []*listener
	closeAll := func() {
		for _, l := range ls {
			l.conn.Close()
		}
	}
	ports := []int{s.cfg.Port}
	if s.cfg.Settings.Mode == ModeProxy {
		ports = append(ports, s.cfg.ProxyPort)
	}
	for _, name := range s.cfg.Interfaces {
		addr, err := s.interfaceAddr(name)
		if err == nil && s.cfg.Settings.Mode == ModeFull {
			err = s.cfg.Settings.CheckServerAddr(name, addr)
		}
		if err != nil {
			closeAll()
			return err
		}
		if _, ok := s.cfg.Settings.SubnetFor(addr); !ok && s.cfg.Settings.Mode == ModeFull {
			s.log.Warn("DHCP interface is outside every subnet: only relayed requests will be answered there",
				"iface", name, "addr", addr)
		}
		for _, port := range ports {
			c, err := listenUDP(name, port)
			if err != nil {
				closeAll()
				return err
			}
			ls = append(ls, &listener{iface: name, server: addr, port: port, conn: c})
			s.log.Info("DHCP listening", "iface", name, "addr", addr, "port", port, "mode", s.cfg.Settings.Mode, "unknown", s.cfg.Settings.Unknown)
		}
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- s.loop(ctx, l) }()
	}
	var err error
	remaining := len(ls)
	select {
	case <-ctx.Done():
	case err = <-errc:
		remaining--
	}
	closeAll()
	for ; remaining > 0; remaining-- {
		if e := <-errc; err == nil {
			err = e
		}
	}
	s.wg.Wait()
	return err
}

// interfaceAddr is the interface's IPv4 address, preferring one inside a
// configured subnet: it is the server identifier clients see.
func (s *Server) interfaceAddr(name string) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp --interface %s: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp --interface %s: %w", name, err)
	}
	var first netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() {
			continue
		}
		if !first.IsValid() {
			first = p.Addr()
		}
		if _, ok := s.cfg.Settings.SubnetFor(p.Addr()); ok {
			return p.Addr(), nil
		}
	}
	if !first.IsValid() {
		return first, fmt.Errorf("dhcp --interface %s has no IPv4 address: give it one on the provisioning network", name)
	}
	return first, nil
}

// listenUDP binds port on one interface only. Unlike server4's socket it
// sets neither SO_REUSEADDR nor SO_REUSEPORT, so a second bootsrv (or any
// DHCP server) on the same interface and port fails here instead of
// silently sharing the port.
func listenUDP(iface string, port int) (*net.UDPConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("dhcp socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "dhcp")
	defer f.Close() // FilePacketConn dups the descriptor
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return nil, fmt.Errorf("dhcp socket: SO_BROADCAST: %w", err)
	}
	// A boot storm arrives in bursts; the default receive buffer (about
	// 200 KB, a hundred-odd packets) overflows long before the server is
	// busy. SO_RCVBUFFORCE (root) goes past net.core.rmem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.BindToDevice(fd, iface); err != nil {
		return nil, fmt.Errorf("dhcp socket: bind to %s: %w", iface, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("dhcp: UDP port %d on %s is already served by another process (another bootsrv, dnsmasq or dhcpd?): stop it, or run bootsrv with --dhcp-mode off", port, iface)
		}
		return nil, fmt.Errorf("dhcp: bind UDP port %d on %s: %w", port, iface, err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("dhcp socket: %w", err)
	}
	return pc.(*net.UDPConn), nil
}

const rcvBuf = 8 << 20

// maxInFlight bounds the exchanges handled at once; beyond it the read loop
// waits, and the kernel's socket buffer absorbs the burst.
const maxInFlight = 8192

func (s *Server) loop(ctx context.Context, l *listener) error {
	sem := make(chan struct{}, maxInFlight)
	buf := make([]byte, maxPacket+1)
	for {
		n, peer, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp read on %s: %w", l.iface, err)
		}
		if n > maxPacket {
			s.log.Debug("dhcp drop: oversized packet", "iface", l.iface, "peer", peer, "bytes", n)
			continue
		}
		pkt := make([]byte, n)
		copy(pkt, buf[:n])
		sem <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer func() { <-sem; s.wg.Done() }()
			s.handle(ctx, l, pkt, peer)
		}()
	}
}

// handle is one exchange: parse, look up, decide, apply, answer, log, record.
func (s *Server) handle(ctx context.Context, l *listener, pkt []byte, peer netip.AddrPort) {
	req, c, err := Parse(pkt)
	if err != nil {
		s.count("invalid", "unparsable")
		s.log.Debug("dhcp drop", "iface", l.iface, "peer", peer, "err", err)
		return
	}
	var m *model.Machine
	if rec, err := s.inv.Lookup(ctx, c.MAC); err == nil {
		m = &rec
	} else if fault.KindOf(err) != fault.KindNotFound {
		s.log.Error("dhcp: look up machine", "mac", c.MAC, "err", err)
		return
	}
	in := Input{Client: c, Machine: m, Settings: &s.cfg.Settings, Leases: s.leases,
		Server: l.server, Port: l.port, Peer: peer, Now: s.now()}
	if pool, ok := NeedsPool(in); ok {
		in.Candidate, _ = s.leases.Candidate(c.MAC, pool)
	}
	d := Decide(req, in)
	s.count(c.Type.String(), d.Code)
	if d.Action != ActNone {
		if err := Apply(s.leases, c.MAC, d); err != nil {
			if s.failures != nil {
				s.failures.Inc(d.Action.String())
			}
			// Never answer for a lease that is not held (or not durable).
			// A shared store's outage is logged once, by the store.
			attrs := []any{"mac", c.MAC, "action", d.Action, "ip", d.IP, "err", err}
			switch {
			case errors.Is(err, state.ErrUnavailable):
				s.log.Debug("dhcp: lease not changed, no answer", attrs...)
			case errors.Is(err, state.ErrWriteFailed):
				// Every client fails alike until the disk has room: a few
				// lines, then one every 10 s with the count left out.
				if ok, dropped := s.warns.Allow("write"); ok {
					if dropped > 0 {
						attrs = append(attrs, "suppressed", dropped)
					}
					s.log.Warn("dhcp: lease not written (disk full?), no answer", attrs...)
				}
			default:
				s.log.Warn("dhcp: lease not changed, no answer", attrs...)
			}
			return
		}
	}
	out := "-"
	if d.Reply != nil {
		out = d.Reply.MessageType().String()
		if _, err := l.conn.WriteToUDPAddrPort(d.Reply.ToBytes(), d.To); err != nil {
			s.log.Warn("dhcp: send", "mac", c.MAC, "to", d.To, "err", err)
			return
		}
	}
	level := slog.LevelInfo
	if d.Reply == nil && d.Action == ActNone && m == nil {
		level = slog.LevelDebug // unknown and ignored: a flood must not flood the log
	}
	s.log.Log(ctx, level, "dhcp", "mac", c.MAC, "arch", c.ArchName(), "in", c.Type.String(), "out", out,
		"ip", ipOrEmpty(d.IP), "file", d.File, "relay", ipOrEmpty(c.GIAddr), "iface", l.iface, "decision", d.Reason)
	// A client without a record is recorded only when discovery is on (it
	// may be answered without: it holds a lease from before).
	discover := d.Discover && s.cfg.Settings.Unknown == UnknownDiscover
	if d.Event != "" && (m != nil || discover) {
		s.record(c, d, out, discover)
	}
}

// record writes the exchange on the machine's record without holding up
// the reply: the journal queues it. An OFFER is held for the REQUEST of
// the same client, so that a boot costs one event (see journey.HoldFor).
func (s *Server) record(c Client, d Decision, out string, discover bool) {
	fields := map[string]string{"request": c.Type.String()}
	set := func(k, v string) {
		if v != "" {
			fields[k] = v
		}
	}
	set("reply", strings.TrimPrefix(out, "-"))
	set("ip", ipOrEmpty(d.IP))
	set("file", d.File)
	set("arch", c.ArchName())
	set("uuid", c.UUID)
	set("vendor_class", c.VendorClass)
	set("relay", ipOrEmpty(c.GIAddr))
	fw := model.Firmware{Arch: c.ArchName(), UUID: c.UUID, VendorClass: c.VendorClass}
	e := model.Event{Time: s.now(), Type: d.Event, Detail: d.Reason, Fields: fields}
	// Not the request's context: the write should land even when shutdown
	// has begun.
	ctx := context.Background()
	var err error
	if d.Event == EventOffer {
		err = s.inv.HoldOffer(ctx, c.MAC, fw, e, discover, model.StateDHCP, EventAckOnly)
	} else {
		err = s.inv.Observe(ctx, c.MAC, fw, e, discover)
	}
	if err != nil {
		s.log.Warn("dhcp: record event", "mac", c.MAC, "event", e.Type, "err", err)
	}
}

// count adds one request to the metrics, when there are any.
func (s *Server) count(typ, decision string) {
	if s.requests != nil {
		s.requests.Inc(typ, decision)
	}
}

func ipOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Apply carries out a decision's lease action for mac on the table. A
// bind returns only once the lease is durable, so an ACK is never sent for
// a lease a crash could lose.
func Apply(t *lease.Table, mac string, d Decision) error {
	switch d.Action {
	case ActNone:
		return nil
	case ActOffer:
		return t.Offer(mac, d.IP, d.Expiry)
	case ActBind:
		return t.Bind(mac, d.IP, d.Expiry, d.Hostname)
	case ActRelease:
		return t.Release(mac, d.IP)
	case ActDecline:
		return t.Decline(mac, d.IP, d.Expiry)
	case ActWithdraw:
		return t.Withdraw(mac, d.IP)
	}
	return fmt.Errorf("unknown lease action %d", d.Action)
}

// Inventory is what the DHCP server needs of the core: the machine a MAC
// names, the cluster's network, and a place to record what happened.
type Inventory interface {
	// Lookup is the machine record of a MAC as committed (not waiting for
	// queued events): it is read on every packet.
	Lookup(ctx context.Context, mac string) (model.Machine, error)
	Cluster(ctx context.Context) (model.Cluster, error)
	Observe(ctx context.Context, mac string, fw model.Firmware, e model.Event, discover bool) error
	// HoldOffer records an OFFER to be merged into the ACK (one of
	// ackTypes) that follows it.
	HoldOffer(ctx context.Context, mac string, fw model.Firmware, e model.Event, discover bool, ackTypes ...string) error
}

var _ LeaseView = (*lease.Table)(nil)
