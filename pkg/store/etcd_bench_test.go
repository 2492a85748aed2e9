package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/store/etcdtest"
)

// BenchmarkEtcdConcurrentUpdates: distinct keys from 64 writers at once,
// as DHCP binds are (Batch); each call returns once committed to a quorum and
// seen in this server's copy.
func BenchmarkEtcdConcurrentUpdates(b *testing.B) {
	c := etcdtest.Start(b)
	e := openEtcdB(b, c)
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N/64 + 1
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				k := []byte(fmt.Sprintf("%d/%d", w, i))
				if err := e.Batch(func(tx Tx) error {
					_ = tx.Get("leases", k)
					return tx.Put("leases", k, []byte("v"))
				}); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "commits/s")
}

func openEtcdB(b *testing.B, c *etcdtest.Cluster) *Etcd {
	e, err := OpenEtcd(EtcdConfig{Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		Prefix: c.Prefix, SecretKeyFile: filepath.Join(b.TempDir(), "k")}, etcdSchema)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}
