// Command tftp-bench is bench-tftp's load: CLIENTS machines, each on its
// own address (127.0.1.1 up, every 127/8 address being local) as a rack's
// are, fetch one file FETCHES times in turn with bootsrv's PXE-ROM-like
// client (pkg/tftp Fetch: blksize and tsize, lockstep, 1 s retransmit) and
// check its sha256. The same load runs against every server. bench/tftp.sh
// drives it.
//
//	tftp-bench load -addr 127.0.0.1:69 -file ipxe.efi -sha256 HEX -label NAME
//	tftp-bench wait -addr 127.0.0.1:69 -file ipxe.efi
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bootsrv/bootsrv/pkg/tftp"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tftp-bench load|wait [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "wait":
		err = wait(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftp-bench:", err)
		os.Exit(1)
	}
}

// clientAddr is client i's own address: 127.0.1.1 up, 250 a /24.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(1 + i%250)})
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "server host:port")
	file := fs.String("file", "ipxe.efi", "file to fetch")
	want := fs.String("sha256", "", "expected sha256 of the file (required)")
	clients := fs.Int("clients", 50, "concurrent clients, each on its own address")
	fetches := fs.Int("fetches", 20, "fetches per client")
	blksize := fs.Int("blksize", 1468, "blksize to ask")
	label := fs.String("label", "server", "name in the result line")
	fs.Parse(args)
	server, err := netip.ParseAddrPort(*addr)
	if err != nil || *want == "" {
		return fmt.Errorf("load needs -addr HOST:PORT and -sha256")
	}
	if *clients < 1 || *clients > 250*250 {
		return fmt.Errorf("-clients %d: give 1 to 62500", *clients)
	}
	var bytesTotal, failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range *clients {
		local := clientAddr(i)
		wg.Go(func() {
			for range *fetches {
				h := sha256.New()
				n, err := tftp.Fetch(context.Background(), local, server, *file, *blksize, h)
				if err != nil {
					fail(fmt.Errorf("from %s: %w", local, err))
					continue
				}
				if hex.EncodeToString(h.Sum(nil)) != *want {
					fail(fmt.Errorf("from %s: sha256 mismatch (%d bytes)", local, n))
					continue
				}
				bytesTotal.Add(n)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	total := *clients * *fetches
	ok := total - int(failures.Load())
	fmt.Printf("RESULT %s fetches=%d ok=%d failed=%d seconds=%.2f fetches_per_s=%.1f MiB_per_s=%.1f\n",
		*label, total, ok, failures.Load(), elapsed, float64(ok)/elapsed, float64(bytesTotal.Load())/elapsed/(1<<20))
	if failures.Load() > 0 {
		return fmt.Errorf("%s: %d of %d fetches failed, first: %v", *label, failures.Load(), total, firstErr.Load())
	}
	return nil
}

// wait fetches the file until a fetch succeeds (30 s at most): the server
// is up.
func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	addr := fs.String("addr", "", "server host:port")
	file := fs.String("file", "ipxe.efi", "file to fetch")
	fs.Parse(args)
	server, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return fmt.Errorf("wait needs -addr HOST:PORT")
	}
	end := time.Now().Add(30 * time.Second)
	for {
		_, err := tftp.Fetch(context.Background(), clientAddr(0), server, *file, 1468, io.Discard)
		if err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s did not serve %s within 30 s: %v", *addr, *file, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
