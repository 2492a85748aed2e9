package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/gorilla/mux"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/fault/httpcode"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// maxBody bounds a request: a rack of 100,000 machines is about 20 MB.
const maxBody = 64 << 20

// Handler returns the admin API's routes over api.
func Handler(api API, log *slog.Logger) http.Handler {
	// The client path-escapes the names it puts in the path; matching the
	// encoded path keeps a name with a slash (or an empty one) in its own
	// segment, so the service, not the router, answers for it.
	r := mux.NewRouter().UseEncodedPath()
	h := &handler{api: api, log: log}
	r.NotFoundHandler = http.HandlerFunc(h.notFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(h.methodNotAllowed)
	r.HandleFunc("/v1/cluster", h.getCluster).Methods(http.MethodGet)
	r.HandleFunc("/v1/cluster", h.initCluster).Methods(http.MethodPost)
	r.HandleFunc("/v1/profiles", h.listProfiles).Methods(http.MethodGet)
	r.HandleFunc("/v1/profiles", h.addProfiles).Methods(http.MethodPost)
	r.HandleFunc("/v1/profiles/{name:[^/]*}", h.getProfile).Methods(http.MethodGet)
	r.HandleFunc("/v1/profiles/{name:[^/]*}", h.rmProfile).Methods(http.MethodDelete)
	r.HandleFunc("/v1/machines", h.listMachines).Methods(http.MethodGet)
	r.HandleFunc("/v1/machines", h.addMachines).Methods(http.MethodPost)
	r.HandleFunc("/v1/machines/{mac:[^/]*}", h.getMachine).Methods(http.MethodGet)
	r.HandleFunc("/v1/machines/{mac:[^/]*}", h.rmMachine).Methods(http.MethodDelete)
	r.HandleFunc("/v1/machines/{mac:[^/]*}/events", h.machineEvents).Methods(http.MethodGet)
	r.HandleFunc("/v1/machines/{mac:[^/]*}/reprovision", h.reprovision).Methods(http.MethodPost)
	r.HandleFunc("/v1/render/{kind:[^/]*}/{mac:[^/]*}", h.render).Methods(http.MethodGet)
	r.HandleFunc("/v1/ca", h.cas).Methods(http.MethodGet)
	r.HandleFunc("/v1/certs", h.certs).Methods(http.MethodGet)
	r.HandleFunc("/v1/kubeconfig/admin", h.kubeconfig).Methods(http.MethodPost)
	r.HandleFunc("/v1/releases", h.releases).Methods(http.MethodGet)
	r.HandleFunc("/v1/certs/renew", h.renewCerts).Methods(http.MethodPost)
	r.HandleFunc("/v1/releases", h.importReleases).Methods(http.MethodPost)
	return r
}

type handler struct {
	api API
	log *slog.Logger
}

// notFound answers a path no route matches, in the API's error format.
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.reply(w, r, nil, &fault.Error{Kind: fault.KindNotFound, Msg: fmt.Sprintf("admin API has no %s", r.URL.EscapedPath())})
}

// methodNotAllowed answers a known path asked with the wrong method.
func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_ = json.NewEncoder(w).Encode(errorBody{
		Error: fmt.Sprintf("admin API does not take %s on %s", r.Method, r.URL.EscapedPath()),
		Kind:  fault.KindInvalid,
	})
}

// vars returns the route's path variables, unescaped: the router matches
// the encoded path. A variable that does not unescape fails the request.
func vars(r *http.Request) (map[string]string, error) {
	v := mux.Vars(r)
	out := make(map[string]string, len(v))
	for k, e := range v {
		u, err := url.PathUnescape(e)
		if err != nil {
			return nil, &fault.Error{Kind: fault.KindInvalid, Msg: fmt.Sprintf("%s %q in the request path: %v", k, e, err)}
		}
		out[k] = u
	}
	return out, nil
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			h.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(errorBody{Error: err.Error(), Kind: fault.KindOf(err), Field: fault.FieldOf(err), Also: fault.AlsoOf(err)})
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

func statusOf(err error) int { return httpcode.Of(err) }

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &fault.Error{Kind: fault.KindInvalid, Msg: "request body is not the expected JSON: " + err.Error()}
	}
	return nil
}

func (h *handler) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := h.api.Cluster(r.Context())
	h.reply(w, r, c, err)
}

func (h *handler) initCluster(w http.ResponseWriter, r *http.Request) {
	var c model.Cluster
	if err := decode(r, &c); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	c, err := h.api.ClusterInit(r.Context(), c)
	h.reply(w, r, c, err)
}

func (h *handler) listProfiles(w http.ResponseWriter, r *http.Request) {
	ps, err := h.api.Profiles(r.Context())
	h.reply(w, r, nonNil(ps), err)
}

func (h *handler) addProfiles(w http.ResponseWriter, r *http.Request) {
	var ps []model.Profile
	if err := decode(r, &ps); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	ps, err := h.api.AddProfiles(r.Context(), ps, r.URL.Query().Get("replace") == "1")
	h.reply(w, r, ps, err)
}

func (h *handler) getProfile(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	p, err := h.api.Profile(r.Context(), v["name"])
	h.reply(w, r, p, err)
}

func (h *handler) rmProfile(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	h.reply(w, r, nil, h.api.RemoveProfile(r.Context(), v["name"]))
}

func (h *handler) listMachines(w http.ResponseWriter, r *http.Request) {
	ms, err := h.api.Machines(r.Context())
	h.reply(w, r, nonNil(ms), err)
}

func (h *handler) addMachines(w http.ResponseWriter, r *http.Request) {
	var ms []model.Machine
	if err := decode(r, &ms); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	ms, err := h.api.AddMachines(r.Context(), ms)
	h.reply(w, r, ms, err)
}

func (h *handler) getMachine(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	m, err := h.api.Machine(r.Context(), v["mac"])
	h.reply(w, r, m, err)
}

func (h *handler) rmMachine(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	h.reply(w, r, nil, h.api.RemoveMachine(r.Context(), v["mac"]))
}

func (h *handler) machineEvents(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	es, err := h.api.MachineEvents(r.Context(), v["mac"])
	h.reply(w, r, nonNil(es), err)
}

func (h *handler) reprovision(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	m, err := h.api.Reprovision(r.Context(), v["mac"])
	h.reply(w, r, m, err)
}

func (h *handler) render(w http.ResponseWriter, r *http.Request) {
	v, err := vars(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	out, err := h.api.Render(r.Context(), v["kind"], v["mac"], r.URL.Query().Get("base_url"))
	h.reply(w, r, renderReply{Output: out}, err)
}

func (h *handler) cas(w http.ResponseWriter, r *http.Request) {
	cs, err := h.api.CAs(r.Context())
	h.reply(w, r, nonNil(cs), err)
}

func (h *handler) certs(w http.ResponseWriter, r *http.Request) {
	cs, err := h.api.Certs(r.Context())
	h.reply(w, r, nonNil(cs), err)
}

func (h *handler) kubeconfig(w http.ResponseWriter, r *http.Request) {
	out, err := h.api.AdminKubeconfig(r.Context(), r.URL.Query().Get("user"))
	h.reply(w, r, renderReply{Output: out}, err)
}

type renderReply struct {
	Output string `json:"output"`
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Listen opens the admin socket at path, readable and writable by its
// owner only. A stale socket left by a crashed server is replaced; a live
// one means another server runs, and is an error.
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is served by another bootsrv: stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket %s: %w", path, err)
	}
	// The umask makes the socket 0600 from its first moment, so no other
	// user can connect between bind and chmod.
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod admin socket %s: %w", path, err)
	}
	return l, nil
}

// Serve runs the admin API on l until ctx is done, then shuts down,
// letting requests in flight finish.
func Serve(ctx context.Context, l net.Listener, api API, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           Handler(api, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // a whole rack can be large
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("admin API: requests still running after 10 s; closing their connections", "err", err)
		srv.Close()
	}
	return nil
}

type importRequest struct {
	Src       string `json:"src"`
	AssetsDir string `json:"assets_dir,omitempty"`
}

func (h *handler) importReleases(w http.ResponseWriter, r *http.Request) {
	var req importRequest
	// Strict like every other body: a misspelt assets_dir must not import
	// into the server's own assets dir instead.
	if err := decode(r, &req); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	res, err := h.api.ImportReleases(r.Context(), req.Src, req.AssetsDir)
	h.reply(w, r, res, err)
}

func (h *handler) releases(w http.ResponseWriter, r *http.Request) {
	as, err := h.api.Releases(r.Context())
	h.reply(w, r, nonNil(as), err)
}

type renewRequest struct {
	MACs []string `json:"macs,omitempty"`
}

func (h *handler) renewCerts(w http.ResponseWriter, r *http.Request) {
	var req renewRequest
	if err := decode(r, &req); err != nil {
		h.reply(w, r, nil, err)
		return
	}
	cs, err := h.api.RenewCerts(r.Context(), req.MACs)
	h.reply(w, r, nonNil(cs), err)
}
