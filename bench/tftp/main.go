// Command tftp-bench measures TFTP fetch throughput: many concurrent Go
// clients (pin/tftp/v3's client, one goroutine each) fetch one file and check
// its sha256. It also runs bootsrv's TFTP server on its own, so that the
// server under test and the load generator are separate processes, as they
// are for tftpd-hpa. bench/tftp.sh drives it.
//
//	tftp-bench serve -addr 127.0.0.1:0 -ipxe-dir /usr/lib/ipxe
//	tftp-bench load -addr 127.0.0.1:PORT -file ipxe.efi -sha256 HEX -label NAME
//	tftp-bench freeport
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bootsrv/bootsrv/assets"
	"github.com/bootsrv/bootsrv/pkg/tftp"
	pintftp "github.com/pin/tftp/v3"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tftp-bench serve|load|freeport [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "freeport":
		err = freeport()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftp-bench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	ipxeDir := fs.String("ipxe-dir", assets.DefaultIPXEDir, "iPXE binaries when not embedded")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the server here")
	verbose := fs.Bool("v", false, "log every transfer (default: warnings only)")
	fs.Parse(args)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	set, err := assets.Load(*ipxeDir, log)
	if err != nil {
		return err
	}
	// Every benchmark client comes from 127.0.0.1: lift the per-address cap.
	srv, err := tftp.New(tftp.Config{Addr: *addr, MaxPerClient: 1 << 16}, set.FS(), log)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("LISTEN", srv.Addr().String())
	return srv.Serve(ctx)
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "server host:port")
	file := fs.String("file", "ipxe.efi", "file to fetch")
	want := fs.String("sha256", "", "expected sha256 of the file (required)")
	clients := fs.Int("clients", 50, "concurrent clients")
	fetches := fs.Int("fetches", 20, "fetches per client")
	blksize := fs.Int("blksize", 1468, "blksize to ask")
	label := fs.String("label", "server", "name in the result line")
	fs.Parse(args)
	if *addr == "" || *want == "" {
		return fmt.Errorf("load needs -addr and -sha256")
	}
	var bytesTotal, failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			c, err := pintftp.NewClient(*addr)
			if err != nil {
				fail(err)
				return
			}
			c.SetBlockSize(*blksize)
			c.RequestTSize(true)
			c.SetTimeout(2 * time.Second)
			var buf bytes.Buffer
			for range *fetches {
				buf.Reset()
				wt, err := c.Receive(*file, "octet")
				if err != nil {
					fail(err)
					continue
				}
				if _, err := wt.WriteTo(&buf); err != nil {
					fail(err)
					continue
				}
				sum := sha256.Sum256(buf.Bytes())
				if hex.EncodeToString(sum[:]) != *want {
					fail(fmt.Errorf("sha256 mismatch (%d bytes)", buf.Len()))
					continue
				}
				bytesTotal.Add(int64(buf.Len()))
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

func freeport() error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println(c.LocalAddr().(*net.UDPAddr).Port)
	return nil
}
