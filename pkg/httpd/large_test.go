package httpd_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestAssetLargeStreams: a 200 MB initrd (sparse, so the test costs no
// disk) is streamed, not read into memory: the bytes the whole process
// allocates while serving it stay far below its size. A memory bound, not
// a timing.
func TestAssetLargeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the 200 MB transfer")
	}
	e := newEnv(t, envOpts{})
	const size = 200 << 20
	f, err := os.Create(filepath.Join(e.assets, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// A marker at the end, to see the last bytes arrive.
	if _, err := f.WriteAt([]byte("END!"), size-4); err != nil {
		t.Fatal(err)
	}
	f.Close()

	for _, c := range []struct {
		name  string
		rng   string
		bytes int64
		code  int
	}{
		{"whole", "", size, http.StatusOK},
		{"tail range", "bytes=1048576-", size - 1<<20, http.StatusPartialContent},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/assets/big.img", nil)
			if c.rng != "" {
				req.Header.Set("Range", c.rng)
			}
			res, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != c.code {
				t.Fatalf("code %d, want %d", res.StatusCode, c.code)
			}
			buf := make([]byte, 64<<10)
			var n int64
			var last [4]byte
			for {
				k, err := res.Body.Read(buf)
				if k >= 4 {
					copy(last[:], buf[k-4:k])
				}
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			if n != c.bytes || string(last[:]) != "END!" {
				t.Fatalf("got %d bytes ending %q, want %d ending END!", n, last, c.bytes)
			}
			// Client and server together: generous slack, far below 200 MB.
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("streaming %d MB allocated %d KB", c.bytes>>20, alloc>>10)
			if alloc > 32<<20 {
				t.Errorf("serving %d MB allocated %d MB: the file is read into memory", size>>20, alloc>>20)
			}
		})
	}
}
