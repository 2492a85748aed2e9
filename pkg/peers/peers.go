// Package peers is how bootsrv servers sharing one etcd store know of
// each other: each registers itself under a session lease (gone within
// seconds of its death), and one at a time is elected to run the timed
// jobs (the silent-failure sweep), through etcd's own election.
package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Info is one server as it registered.
type Info struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Role is "leader" (runs the timed jobs) or "member"; filled in by List.
	Role string `json:"role"`
}

// SessionTTL is how long a dead server stays registered and elected.
const SessionTTL = 5

// Peers is this server's membership.
type Peers struct {
	cli    *clientv3.Client
	prefix string
	info   Info
	log    *slog.Logger
	leader atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

// Join registers info and campaigns for the timed jobs until ctx ends or
// Close; a lost session (etcd unreachable longer than SessionTTL) drops
// leadership and starts over.
func Join(ctx context.Context, cli *clientv3.Client, prefix string, info Info, log *slog.Logger) *Peers {
	ctx, cancel := context.WithCancel(ctx)
	p := &Peers{cli: cli, prefix: prefix, info: info, log: log, cancel: cancel, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// Leader says whether this server runs the timed jobs now.
func (p *Peers) Leader() bool { return p.leader.Load() }

// Close resigns and unregisters.
func (p *Peers) Close() {
	p.cancel()
	<-p.done
}

func (p *Peers) run(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		if err := p.session(ctx); err != nil && ctx.Err() == nil {
			p.log.Debug("peers: session ended", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (p *Peers) session(ctx context.Context) error {
	s, err := concurrency.NewSession(p.cli, concurrency.WithTTL(SessionTTL), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	b, _ := json.Marshal(p.info)
	if _, err := p.cli.Put(ctx, p.prefix+"servers/"+p.info.ID, string(b), clientv3.WithLease(s.Lease())); err != nil {
		return err
	}
	e := concurrency.NewElection(s, p.prefix+"election/jobs")
	if err := e.Campaign(ctx, p.info.ID); err != nil {
		return err
	}
	p.leader.Store(true)
	p.log.Info("elected to run the timed jobs (silent-failure sweep)", "server", p.info.ID)
	select {
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = e.Resign(rctx)
		cancel()
	case <-s.Done():
		p.log.Warn("lost the etcd session: no longer running the timed jobs", "server", p.info.ID)
	}
	p.leader.Store(false)
	return nil
}

// List returns the registered servers, the leader marked.
func List(ctx context.Context, cli *clientv3.Client, prefix string) ([]Info, error) {
	resp, err := cli.Get(ctx, prefix+"servers/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	leader := ""
	if l, err := cli.Get(ctx, prefix+"election/jobs/", clientv3.WithFirstCreate()...); err == nil && len(l.Kvs) > 0 {
		leader = string(l.Kvs[0].Value)
	}
	var out []Info
	for _, kv := range resp.Kvs {
		var in Info
		if json.Unmarshal(kv.Value, &in) != nil {
			continue
		}
		in.Role = "member"
		if in.ID == leader {
			in.Role = "leader"
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Member is one etcd member's health as seen from here.
type Member struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Leader   bool   `json:"leader"`
	Error    string `json:"error,omitempty"`
}

// Health asks every member in the cluster's list for its status.
func Health(ctx context.Context, cli *clientv3.Client) ([]Member, error) {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var out []Member
	for _, m := range ml.Members {
		ep := strings.Join(m.ClientURLs, ",")
		mem := Member{Name: m.Name, Endpoint: ep}
		if len(m.ClientURLs) > 0 {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cli.Status(sctx, m.ClientURLs[0])
			cancel()
			if err != nil {
				mem.Error = err.Error()
			} else {
				mem.Healthy = len(st.Errors) == 0 && st.Leader != 0
				mem.Leader = st.Leader == st.Header.MemberId
			}
		}
		out = append(out, mem)
	}
	return out, nil
}
