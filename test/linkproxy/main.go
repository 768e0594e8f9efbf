// Command linkproxy is a TCP proxy that limits each connection's download
// (target to client) to a fixed rate: the slow registry link of
// scripts/bench-link, in a process of its own, so that the program measured
// sees a real socket that delivers bytes at that rate. Uploads are not
// limited.
//
//	linkproxy -target 127.0.0.1:5000 -rate 200 [-listen 127.0.0.1:0] [-addr-file F]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/time/rate"
)

// chunk is what one limiter wait admits: small enough that the rate is
// smooth over a few milliseconds, big enough to cost little CPU.
const chunk = 64 << 10

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "host:port to forward to")
	mib := flag.Float64("rate", 100, "download rate per connection, MiB/s")
	addrFile := flag.String("addr-file", "", "write the listening address to this file once listening")
	flag.Parse()
	if *target == "" || *mib <= 0 {
		fmt.Fprintln(os.Stderr, "linkproxy: -target and a positive -rate are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *target, *mib*(1<<20), *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "linkproxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, target string, bytesPerSecond float64, addrFile string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			return err
		}
	}
	slog.Info("linkproxy", "listen", ln.Addr().String(), "target", target, "MiB/s", bytesPerSecond/(1<<20))
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go proxy(ctx, c, target, bytesPerSecond)
	}
}

func proxy(ctx context.Context, client net.Conn, target string, bytesPerSecond float64) {
	defer client.Close()
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		slog.Warn("linkproxy: dial", "target", target, "err", err)
		return
	}
	defer server.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(server, client)
		closeWrite(server)
	})
	limiter := rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)
	if err := copyLimited(ctx, client, server, limiter); err != nil && !errors.Is(err, net.ErrClosed) {
		slog.Debug("linkproxy: copy", "err", err)
	}
	closeWrite(client)
	wg.Wait()
}

// copyLimited copies src to dst, waiting on the limiter for every chunk.
func copyLimited(ctx context.Context, dst io.Writer, src io.Reader, l *rate.Limiter) error {
	buf := make([]byte, chunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := l.WaitN(ctx, n); werr != nil {
				return werr
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
