// Package httpd is bootsrv's HTTP server: the boot chain (/boot.ipxe,
// /ipxe, /assets, /ignition, /report), health and metrics. Handlers only
// move bytes; every decision is the core service's.
package httpd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/bootsrv/bootsrv/pkg/assetfs"
	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/fault/httpcode"
	"github.com/bootsrv/bootsrv/pkg/lograte"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/render"
)

// Config is the HTTP server's settings.
type Config struct {
	Addr string // listen address, default ":8080"
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (default 10s): a slow or stuck client cannot hold a
	// connection open.
	ReadHeaderTimeout time.Duration
	AssetsDir         string // served under /assets/, jailed; may be empty
	// FirstStage holds the iPXE binaries, served under /assets/ipxe/ for
	// UEFI HTTP Boot before the assets dir is looked at.
	FirstStage fs.FS
}

// Server is the HTTP side of bootsrv.
type Server struct {
	cfg    Config
	svc    BootChain
	log    *slog.Logger
	files  *assetfs.FS
	reg    *metrics.Registry
	reqs   *metrics.CounterVec
	render *metrics.Histogram
	srv    *http.Server
	ln     net.Listener
	// etags caches the content hash of first-stage files by name, size and
	// modification time (embedded files have none, so the hash tells them
	// apart).
	etags sync.Map
	// warns limits the WARN lines a client can cause (refused requests),
	// per client address.
	warns *lograte.Limiter
	// refusals answers 429 to an address refused too often (refusals.go).
	refusals *refusals
}

// BootChain is what the HTTP door needs of the core: the boot script, the
// Ignition config, certificates and reports of one machine, and a record
// of what it fetched. *bootchain.Chain (and so the core) implements it; handlers are tested
// against fakes.
type BootChain interface {
	IPXE(ctx context.Context, req bootchain.BootRequest, record bool) (string, error)
	Ignition(ctx context.Context, req bootchain.BootRequest) ([]byte, error)
	NodeCertificates(ctx context.Context, req bootchain.BootRequest, have string) ([]byte, error)
	Report(ctx context.Context, req bootchain.BootRequest, state, detail string) (model.Machine, error)
	AssetFetched(ip netip.Addr, path string, status int)
}

var _ BootChain = (*bootchain.Chain)(nil)

// maxQuery bounds query strings: a MAC and a token need about 100 bytes.
const maxQuery = 2048

// New prepares the server; Listen and Serve start it.
func New(cfg Config, svc BootChain, reg *metrics.Registry, log *slog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	s := &Server{cfg: cfg, svc: svc, log: log, reg: reg, warns: newWarnLimiter(), refusals: newRefusals()}
	files, err := assetfs.Open(cfg.FirstStage, cfg.AssetsDir)
	if err != nil {
		return nil, fmt.Errorf("http: %w (fix --assets-dir)", err)
	}
	s.files = files
	s.reqs = reg.Counter("bootsrv_http_requests_total", "HTTP requests by route and status code.", "route", "code")
	s.render = reg.Histogram("bootsrv_render_seconds", "Time to render a boot script or Ignition config.",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1})
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		// Large initrds extend their own deadline (see serveAsset).
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Listen binds the address, so that start-up fails early when it is taken.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w (choose another with --http-addr)", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (useful with port 0 in tests).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until ctx is done, then lets requests in flight finish.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		// A slow download outlived the grace period: cut it off. Its
		// event is still written (the recorder writes synchronously once
		// it is closed), and stopping is not an error.
		s.log.Warn("http: requests still running after 10 s; closing their connections", "err", err)
		s.srv.Close()
	}
	s.files.Close()
	return nil
}

// Handler is the route table.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.Handle("/boot.ipxe", s.route("boot.ipxe", s.bootIPXE)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/ipxe", s.route("ipxe", s.limited(s.ipxe))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/ignition", s.route("ignition", s.limited(s.ignition))).Methods(http.MethodGet)
	r.Handle("/report", s.route("report", s.limited(s.report))).Methods(http.MethodGet, http.MethodPost)
	r.Handle("/certs", s.route("certs", s.limited(s.certs))).Methods(http.MethodGet)
	r.PathPrefix("/assets/").Handler(s.route("assets", s.asset)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/healthz", s.route("healthz", func(w http.ResponseWriter, _ *http.Request) int {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
		return http.StatusOK
	})).Methods(http.MethodGet, http.MethodHead)
	metricsHandler := s.reg.Handler()
	r.Handle("/metrics", s.route("metrics", func(w http.ResponseWriter, req *http.Request) int {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		metricsHandler.ServeHTTP(rec, req)
		return rec.code
	})).Methods(http.MethodGet)
	r.NotFoundHandler = s.route("other", func(w http.ResponseWriter, _ *http.Request) int {
		http.Error(w, "not found", http.StatusNotFound)
		return http.StatusNotFound
	})
	r.MethodNotAllowedHandler = s.route("other", func(w http.ResponseWriter, _ *http.Request) int {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	})
	return r
}

// route wraps a handler that returns its status, counting it by route.
func (s *Server) route(name string, h func(http.ResponseWriter, *http.Request) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.RawQuery) > maxQuery {
			http.Error(w, "query string too long", http.StatusRequestURITooLong)
			s.reqs.Inc(name, "414")
			return
		}
		code := h(w, r)
		s.reqs.Inc(name, strconv.Itoa(code))
	})
}

// limited answers 429 to an address that was refused too often lately,
// before h does any work, and counts h's refusals (4xx) against it.
func (s *Server) limited(h func(http.ResponseWriter, *http.Request) int) func(http.ResponseWriter, *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		ip := remoteIP(r)
		if blocked, wait := s.refusals.blocked(ip); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
			http.Error(w, "too many refused requests from this address; retry later", http.StatusTooManyRequests)
			return http.StatusTooManyRequests
		}
		code := h(w, r)
		if code >= 400 && code < 500 {
			s.refusals.refused(ip)
		}
		return code
	}
}

// baseURL is the server as the client addressed it, so scripts point back
// at the address that worked for the machine.
func baseURL(r *http.Request) string {
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return "http://" + host
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) bootIPXE(w http.ResponseWriter, r *http.Request) int {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, render.ChainScript(baseURL(r)))
	return http.StatusOK
}

func statusOf(err error) int { return httpcode.Of(err) }

func (s *Server) ipxe(w http.ResponseWriter, r *http.Request) int {
	w.Header().Set("Content-Type", "text/plain")
	mac := r.URL.Query().Get("mac")
	if mac == "" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, render.MessageScript("the request names no machine: chain /boot.ipxe, which adds ?mac=${mac:hexhyp}"))
		return http.StatusBadRequest
	}
	if r.Method == http.MethodHead {
		// A probe (curl -I, a health check) gets a script's headers; making
		// the script would record a boot and mint a token no one fetches.
		return http.StatusOK
	}
	start := time.Now()
	script, err := s.svc.IPXE(r.Context(), bootchain.BootRequest{MAC: mac, BaseURL: baseURL(r), RemoteIP: remoteIP(r)}, true)
	if err == nil {
		s.render.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			s.log.Error("boot script failed", "mac", mac, "err", err)
		} else {
			s.log.Info("no boot script", "mac", mac, "code", code, "reason", err)
		}
		w.WriteHeader(code)
		io.WriteString(w, render.MessageScript(fmt.Sprintf("no boot script for %s:", mac), err.Error()))
		return code
	}
	io.WriteString(w, script)
	return http.StatusOK
}

func (s *Server) ignition(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	mac := q.Get("mac")
	if mac == "" {
		http.Error(w, "missing mac", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	start := time.Now()
	cfg, err := s.svc.Ignition(r.Context(), bootchain.BootRequest{MAC: mac, Token: q.Get("token"), BaseURL: baseURL(r), RemoteIP: remoteIP(r), Stage: q.Get("stage")})
	if err == nil {
		s.render.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return s.refuse(w, r, "ignition", "render this machine's Ignition config", mac, err)
	}
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(cfg)
	return http.StatusOK
}

// refuse answers a request for what (a machine's secrets) that failed: a
// 5xx keeps the cause for the log (it may name the operator's
// configuration), a 4xx tells the machine why.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, what, doing, mac string, err error) int {
	code := statusOf(err)
	if code >= 500 {
		s.log.Error(what+" not served", "mac", mac, "err", err)
		http.Error(w, "bootsrv could not "+doing+"; the server log names the cause", code)
		return code
	}
	s.warn(r, what+" refused", "mac", mac, "from", r.RemoteAddr, "code", code, "reason", err)
	http.Error(w, err.Error(), code)
	return code
}

// newWarnLimiter: per client address 5 lines, then one every 10 s; across
// all of them 50, then one a second.
func newWarnLimiter() *lograte.Limiter { return lograte.New(10*time.Second, 5, 4096) }

// warn logs a line a client's request caused, unless that client (by
// address) has caused too many lately; the next line written says how
// many were left out.
func (s *Server) warn(r *http.Request, msg string, args ...any) {
	ok, dropped := s.warns.Allow(msg + " " + remoteIP(r).String())
	if !ok {
		return
	}
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	s.log.Warn(msg, args...)
}

// certs serves a running node its current certificates (a tar of the
// files at their paths), for its renewal timer; 204 when ?have= names the
// kubelet certificate it already holds.
func (s *Server) certs(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	mac := q.Get("mac")
	if mac == "" {
		http.Error(w, "missing mac", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	b, err := s.svc.NodeCertificates(r.Context(), bootchain.BootRequest{MAC: mac, Token: q.Get("token"), BaseURL: baseURL(r), RemoteIP: remoteIP(r)}, q.Get("have"))
	if err != nil {
		return s.refuse(w, r, "certificates", "issue this machine's certificates", mac, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	if b == nil {
		// The node holds the current set already.
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Write(b)
	return http.StatusOK
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	mac, state := q.Get("mac"), q.Get("state")
	if mac == "" || state == "" {
		http.Error(w, "missing mac or state", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	var detail string
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return http.StatusBadRequest
		}
		detail = string(b)
	}
	if d := q.Get("detail"); d != "" && detail == "" {
		detail = d
	}
	m, err := s.svc.Report(r.Context(), bootchain.BootRequest{MAC: mac, Token: q.Get("token"), RemoteIP: remoteIP(r)}, state, detail)
	if err != nil {
		code := statusOf(err)
		s.warn(r, "report refused", "mac", mac, "state", state, "from", r.RemoteAddr, "code", code, "reason", err)
		http.Error(w, err.Error(), code)
		return code
	}
	s.log.Info("machine reported", "mac", m.MAC, "hostname", m.Hostname, "state", state, "now", m.State)
	fmt.Fprintf(w, "ok %s %s\n", m.MAC, m.State)
	return http.StatusOK
}

// asset serves a file from the first-stage set (under /assets/ipxe/) or
// the assets dir, jailed by os.Root, with Range and ETag, streamed.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) int {
	rel := strings.TrimPrefix(r.URL.Path, "/assets/")
	clean := path.Clean("/" + rel)[1:]
	if rel == "" || clean != rel || strings.ContainsAny(rel, "\\\x00") {
		http.Error(w, "bad asset path", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	code := s.serveAsset(w, r, rel)
	s.svc.AssetFetched(remoteIP(r), r.URL.Path, code)
	return code
}

// serveAsset serves rel from the asset file system: /assets/ipxe/NAME is
// the first-stage binary NAME when there is one (UEFI HTTP Boot), anything
// else a file of the assets dir (dot-names never: a release import stages
// under one until it is verified and committed).
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request, rel string) int {
	if name, ok := strings.CutPrefix(rel, "ipxe/"); ok {
		f, err := s.files.FirstStage(name)
		if err == nil {
			defer f.Close()
			etag, err := s.firstStageETag(name, f.Info, f.Content)
			if err != nil {
				s.log.Error("first-stage file unreadable", "name", name, "err", err)
				http.Error(w, "first-stage file unreadable", http.StatusInternalServerError)
				return http.StatusInternalServerError
			}
			return serveContent(w, r, f.Info, f.Content, etag)
		}
	}
	if !s.files.HasAssetsDir() {
		http.Error(w, "not found (no --assets-dir)", http.StatusNotFound)
		return http.StatusNotFound
	}
	f, err := s.files.Asset(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, assetfs.ErrNotRegular):
		http.Error(w, "not found", http.StatusNotFound)
		return http.StatusNotFound
	case err != nil:
		// os.Root refuses paths that escape it (symlinks out, ..).
		s.warn(r, "asset refused", "path", rel, "from", r.RemoteAddr, "err", err)
		http.Error(w, "forbidden", http.StatusForbidden)
		return http.StatusForbidden
	}
	defer f.Close()
	// A 1 GiB initrd over a slow link outlasts the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour))
	return serveContent(w, r, f.Info, f.Content, fmt.Sprintf(`"%x-%x"`, f.Info.Size(), f.Info.ModTime().UnixNano()))
}

// firstStageKey identifies one version of a first-stage file.
type firstStageKey struct {
	name    string
	size    int64
	modTime int64
}

// firstStageETag is a strong ETag from the contents of a first-stage file,
// hashed once per name (and size and modification time): embedded files
// have a zero modification time, so size and time alone would give two
// builds of the same size one ETag. rs is left at its start.
func (s *Server) firstStageETag(name string, st fs.FileInfo, rs io.ReadSeeker) (string, error) {
	key := firstStageKey{name, st.Size(), st.ModTime().UnixNano()}
	if v, ok := s.etags.Load(key); ok {
		return v.(string), nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, rs); err != nil {
		return "", err
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	etag := fmt.Sprintf(`"sha256-%x"`, h.Sum(nil))
	s.etags.Store(key, etag)
	return etag, nil
}

// serveContent leaves Range, If-None-Match and HEAD to net/http and
// reports the status it chose.
func serveContent(w http.ResponseWriter, r *http.Request, st fs.FileInfo, rs io.ReadSeeker, etag string) int {
	w.Header().Set("ETag", etag)
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	http.ServeContent(rec, r, st.Name(), st.ModTime(), rs)
	return rec.code
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps sendfile for large files.
func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(s.ResponseWriter, r)
}
