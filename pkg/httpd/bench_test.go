package httpd_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/httpd"
	"github.com/bootsrv/bootsrv/pkg/metrics"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// discardWriter is a ResponseWriter that allocates nothing, so allocs/op
// are the handler's own.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func (d *discardWriter) reset() {
	clear(d.h)
	d.code, d.n = http.StatusOK, 0
}

// benchFleet is a server over n stored machines with the recorder
// running, as under `bootsrv serve`.
func benchFleet(b *testing.B, n int, role string) (http.Handler, *core.Service, []string) {
	b.Helper()
	ctx := context.Background()
	st, err := state.Open(b.TempDir(), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	svc := core.NewService(st, nil)
	// Every request comes from one client address: bind no token to the
	// machine's (what is measured is the render, not the address check).
	svc.Configure(bootchain.BootConfig{AnyAddress: true})
	if _, err := svc.ClusterInit(ctx, model.Cluster{Name: "bench", APIServer: "10.100.1.1", Network: model.Network{Subnet: "10.100.0.0/16"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.AddProfiles(ctx, []model.Profile{{Name: "p", Role: role, OS: model.OSFlatcar,
		Kernel: "/assets/f/vmlinuz", Initrds: []string{"/assets/f/initrd"}, Ignition: motdSnippet},
		{Name: "m", Role: model.RoleMaster, OS: model.OSFlatcar, Kernel: "/assets/f/vmlinuz"}}, false); err != nil {
		b.Fatal(err)
	}
	ms := make([]model.Machine, n)
	macs := make([]string, n)
	for i := range ms {
		macs[i] = fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
		ms[i] = model.Machine{MAC: macs[i], Hostname: fmt.Sprintf("node%d", i), IP: fmt.Sprintf("10.100.%d.%d", 1+i/250, 1+i%250), Profile: "p"}
	}
	if role != model.RoleCustom {
		ms[0].Profile = "m" // at 10.100.1.1, the API server: Kubernetes nodes need a master
	}
	if _, err := svc.AddMachines(ctx, ms); err != nil {
		b.Fatal(err)
	}
	if role != model.RoleCustom {
		// Kubernetes nodes fetch their binaries from the release catalog.
		if _, err := svc.ImportReleases(ctx, releasetest.Write(b, b.TempDir(), releasetest.Default), b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc.StartRecorder(log)
	b.Cleanup(svc.Close)
	srv, err := httpd.New(httpd.Config{Addr: "127.0.0.1:0"}, svc, metrics.NewRegistry(), log)
	if err != nil {
		b.Fatal(err)
	}
	return srv.Handler(), svc, macs
}

var benchTokenRe = regexp.MustCompile(`token=([A-Za-z0-9_-]+)`)

// benchRequests prepares requests for random machines among n stored.
// A worker's first render issues its certificates; the aim is for
// machines whose certificates exist, so at most warm machines are asked
// for, each rendered once ahead.
func benchRequests(b *testing.B, n int, ignition bool, role string, warm int) (http.Handler, []*http.Request) {
	h, svc, macs := benchFleet(b, n, role)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(macs), func(i, j int) { macs[i], macs[j] = macs[j], macs[i] })
	if warm > 0 && warm < len(macs) {
		macs = macs[:warm]
	}
	reqs := make([]*http.Request, len(macs))
	for i, mac := range macs {
		if ignition && role != model.RoleCustom {
			if _, err := svc.Render(context.Background(), bootchain.RenderIgnition, mac, "http://10.100.0.1:8080"); err != nil {
				b.Fatal(err)
			}
		}
		target := "/ipxe?mac=" + mac
		if ignition {
			script, err := svc.Render(context.Background(), bootchain.RenderIPXE, mac, "http://10.100.0.1:8080")
			if err != nil {
				b.Fatal(err)
			}
			target = "/ignition?mac=" + mac + "&token=" + benchTokenRe.FindStringSubmatch(script)[1]
		}
		reqs[i] = httptest.NewRequest(http.MethodGet, "http://10.100.0.1:8080"+target, nil)
		reqs[i].RemoteAddr = "10.100.0.2:4000"
	}
	return h, reqs
}

func benchServe(b *testing.B, h http.Handler, reqs []*http.Request) {
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.code != http.StatusOK {
			b.Fatalf("%s: %d", reqs[i%len(reqs)].URL, w.code)
		}
		i++
	}
}

// BenchmarkIPXE: one /ipxe request (render, token, queued event) at 10 and
// 10,000 stored machines; the cost must not grow with the fleet.
func BenchmarkIPXE(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			h, reqs := benchRequests(b, n, false, model.RoleCustom, 0)
			benchServe(b, h, reqs)
		})
	}
}

// BenchmarkIgnition: one /ignition request (token check, render, validate
// with Ignition's parser, queued event) at 10 and 10,000 machines, for a
// custom profile (bootsrv's files and a snippet) and a Kubernetes worker
// whose certificates are issued (500 random machines of the 10,000 warmed).
func BenchmarkIgnition(b *testing.B) {
	for _, role := range []string{model.RoleCustom, model.RoleWorker} {
		for _, n := range []int{10, 10000} {
			b.Run(fmt.Sprintf("role=%s/machines=%d", role, n), func(b *testing.B) {
				h, reqs := benchRequests(b, n, true, role, 500)
				benchServe(b, h, reqs)
			})
		}
	}
}

// BenchmarkIPXEParallel: the same as 16 concurrent clients would load it.
func BenchmarkIPXEParallel(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			h, reqs := benchRequests(b, n, false, model.RoleCustom, 0)
			b.ReportAllocs()
			b.SetParallelism(8) // 8 x GOMAXPROCS(2) = 16 goroutines
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					i := next.Add(1)
					w.reset()
					h.ServeHTTP(w, reqs[i%int64(len(reqs))])
					if w.code != http.StatusOK {
						b.Errorf("%d", w.code)
						return
					}
				}
			})
		})
	}
}
