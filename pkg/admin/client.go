package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodecerts"
	"github.com/bootsrv/bootsrv/pkg/release"
)

// ErrNoServer means no bootsrv server listens on the socket.
var ErrNoServer = errors.New("no bootsrv server is running")

// Client reaches a running server's admin API over its Unix socket.
type Client struct {
	hc   *http.Client
	path string
	base string // https://HOST:PORT on TCP; "" on the socket
}

// Dial returns a client for the socket at path, or ErrNoServer when nothing
// listens there.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		// ENOTDIR: a path component is a regular file, so no socket can
		// be there either; the store then says what is wrong with the dir.
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
			return nil, ErrNoServer
		}
		return nil, fmt.Errorf("connect to admin socket %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{hc: &http.Client{Transport: tr}, path: path}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	base := c.base
	if base == "" {
		base = "http://bootsrv"
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == "" {
			return fmt.Errorf("admin API %s %s: HTTP %d", method, path, resp.StatusCode)
		}
		if eb.Kind != "" {
			return &fault.Error{Kind: eb.Kind, Field: eb.Field, Also: eb.Also, Msg: eb.Error}
		}
		return errors.New(eb.Error)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode admin API reply to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) ClusterInit(ctx context.Context, cl model.Cluster) (model.Cluster, error) {
	var out model.Cluster
	err := c.do(ctx, http.MethodPost, "/v1/cluster", cl, &out)
	return out, err
}

func (c *Client) Cluster(ctx context.Context) (model.Cluster, error) {
	var out model.Cluster
	err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, &out)
	return out, err
}

func (c *Client) AddProfiles(ctx context.Context, ps []model.Profile, replace bool) ([]model.Profile, error) {
	var out []model.Profile
	q := ""
	if replace {
		q = "?replace=1"
	}
	err := c.do(ctx, http.MethodPost, "/v1/profiles"+q, ps, &out)
	return out, err
}

func (c *Client) Profiles(ctx context.Context) ([]model.Profile, error) {
	var out []model.Profile
	err := c.do(ctx, http.MethodGet, "/v1/profiles", nil, &out)
	return out, err
}

func (c *Client) Profile(ctx context.Context, name string) (model.Profile, error) {
	var out model.Profile
	err := c.do(ctx, http.MethodGet, "/v1/profiles/"+url.PathEscape(name), nil, &out)
	return out, err
}

func (c *Client) RemoveProfile(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/profiles/"+url.PathEscape(name), nil, nil)
}

func (c *Client) AddMachines(ctx context.Context, ms []model.Machine) ([]model.Machine, error) {
	var out []model.Machine
	err := c.do(ctx, http.MethodPost, "/v1/machines", ms, &out)
	return out, err
}

func (c *Client) Machines(ctx context.Context) ([]model.Machine, error) {
	var out []model.Machine
	err := c.do(ctx, http.MethodGet, "/v1/machines", nil, &out)
	return out, err
}

func (c *Client) Machine(ctx context.Context, mac string) (model.Machine, error) {
	var out model.Machine
	err := c.do(ctx, http.MethodGet, "/v1/machines/"+url.PathEscape(mac), nil, &out)
	return out, err
}

func (c *Client) MachineEvents(ctx context.Context, mac string) ([]model.Event, error) {
	var out []model.Event
	err := c.do(ctx, http.MethodGet, "/v1/machines/"+url.PathEscape(mac)+"/events", nil, &out)
	return out, err
}

func (c *Client) RemoveMachine(ctx context.Context, mac string) error {
	return c.do(ctx, http.MethodDelete, "/v1/machines/"+url.PathEscape(mac), nil, nil)
}

func (c *Client) Reprovision(ctx context.Context, mac string) (model.Machine, error) {
	var out model.Machine
	err := c.do(ctx, http.MethodPost, "/v1/machines/"+url.PathEscape(mac)+"/reprovision", nil, &out)
	return out, err
}

func (c *Client) Render(ctx context.Context, kind, mac, baseURL string) (string, error) {
	var out renderReply
	q := ""
	if baseURL != "" {
		q = "?base_url=" + url.QueryEscape(baseURL)
	}
	err := c.do(ctx, http.MethodGet, "/v1/render/"+url.PathEscape(kind)+"/"+url.PathEscape(mac)+q, nil, &out)
	return out.Output, err
}

func (c *Client) CAs(ctx context.Context) ([]nodecerts.CertInfo, error) {
	var out []nodecerts.CertInfo
	err := c.do(ctx, http.MethodGet, "/v1/ca", nil, &out)
	return out, err
}

func (c *Client) Certs(ctx context.Context) ([]nodecerts.CertInfo, error) {
	var out []nodecerts.CertInfo
	err := c.do(ctx, http.MethodGet, "/v1/certs", nil, &out)
	return out, err
}

func (c *Client) AdminKubeconfig(ctx context.Context, user string) (string, error) {
	var out renderReply
	err := c.do(ctx, http.MethodPost, "/v1/kubeconfig/admin?user="+url.QueryEscape(user), nil, &out)
	return out.Output, err
}

// ImportReleases asks the server to import src, a path on the server's own
// machine (the socket is local), into its assets dir or assetsDir.
func (c *Client) ImportReleases(ctx context.Context, src, assetsDir string) (inventory.ImportResult, error) {
	var out inventory.ImportResult
	err := c.do(ctx, http.MethodPost, "/v1/releases", importRequest{Src: src, AssetsDir: assetsDir}, &out)
	return out, err
}

func (c *Client) Releases(ctx context.Context) ([]release.Asset, error) {
	var out []release.Asset
	err := c.do(ctx, http.MethodGet, "/v1/releases", nil, &out)
	return out, err
}

func (c *Client) RenewCerts(ctx context.Context, macs []string) ([]nodecerts.CertInfo, error) {
	var out []nodecerts.CertInfo
	err := c.do(ctx, http.MethodPost, "/v1/certs/renew", renewRequest{MACs: macs}, &out)
	return out, err
}
