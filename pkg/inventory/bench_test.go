package inventory

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// benchStores caches one populated store per size across the runs of a
// benchmark (b.Run calls its function again for each b.N).
var (
	benchMu     sync.Mutex
	benchStores = map[int]*Inventory{}
	benchDirs   []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range benchStores {
		s.st.Close()
	}
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// storeWith returns a service over a store holding n machines, written with
// one AddMachines (one transaction), built once per n.
func storeWith(b *testing.B, n int) *Inventory {
	benchMu.Lock()
	defer benchMu.Unlock()
	if s, ok := benchStores[n]; ok {
		return s
	}
	dir, err := os.MkdirTemp("", "bootsrv-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs = append(benchDirs, dir)
	st, err := state.Open(dir, 0)
	if err != nil {
		b.Fatal(err)
	}
	s := newInventory(st)
	ctx := context.Background()
	if _, err := s.ClusterInit(ctx, model.Cluster{Name: "big", APIServer: "10.0.0.1", Network: model.Network{Subnet: "10.0.0.0/8"},
		PodNetwork: "172.16.0.0/16", ServiceRange: "172.17.0.0/24", DNSServiceIP: "172.17.0.10"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.AddProfiles(ctx, []model.Profile{{Name: "worker", Role: model.RoleWorker}}, false); err != nil {
		b.Fatal(err)
	}
	if _, err := s.AddMachines(ctx, rack(n)); err != nil {
		b.Fatal(err)
	}
	benchStores[n] = s
	return s
}

// BenchmarkMachineShow is `bootsrv machine show MAC` without the printing:
// the machine by MAC (in another spelling) and its events. Lookups are by
// key, so the figure must be the same at 10 and 100,000 machines.
func BenchmarkMachineShow(b *testing.B) {
	for _, n := range []int{10, 100000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			s := storeWith(b, n)
			ms := rack(n)
			macs := make([]string, n)
			for i, m := range ms {
				macs[i] = m.MAC
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mac := macs[(i*7919)%n]
				m, err := s.Machine(ctx, mac)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.MachineEvents(ctx, m.MAC); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkImport10000 is `bootsrv machine import` of a 10,000-machine
// rack: one AddMachines call, one transaction, into an empty store.
func BenchmarkImport10000(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		st, err := state.Open(dir, 0)
		if err != nil {
			b.Fatal(err)
		}
		s := newInventory(st)
		if _, err := s.ClusterInit(ctx, model.Cluster{Name: "big", APIServer: "10.0.0.1", Network: model.Network{Subnet: "10.0.0.0/8"},
			PodNetwork: "172.16.0.0/16", ServiceRange: "172.17.0.0/24", DNSServiceIP: "172.17.0.10"}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.AddProfiles(ctx, []model.Profile{{Name: "worker", Role: model.RoleWorker}}, false); err != nil {
			b.Fatal(err)
		}
		ms := rack(10000)
		b.StartTimer()
		if _, err := s.AddMachines(ctx, ms); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
}
