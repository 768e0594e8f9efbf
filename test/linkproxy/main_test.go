package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestProxyLimitsDownloads: bytes pass intact both ways, and a download
// cannot beat the rate (the token bucket admits one chunk of burst, so
// 4 MiB at 16 MiB/s takes at least (4 MiB - 64 KiB) / 16 MiB/s).
func TestProxyLimitsDownloads(t *testing.T) {
	payload := make([]byte, 4<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	// The target echoes what it gets, then sends the payload.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hello := make([]byte, 5)
		if _, err := io.ReadFull(c, hello); err != nil {
			return
		}
		_, _ = c.Write(hello)
		_, _ = c.Write(payload)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	addrFile := filepath.Join(t.TempDir(), "addr")
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", target.Addr().String(), 16<<20, addrFile) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var addr []byte
	for addr == nil {
		select {
		case err := <-done:
			t.Fatalf("proxy stopped: %v", err)
		default:
		}
		addr, _ = os.ReadFile(addrFile)
		if len(addr) == 0 {
			addr = nil
			time.Sleep(5 * time.Millisecond)
		}
	}

	c, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("hello"), payload...)) {
		t.Fatalf("got %d bytes, not the %d sent", len(got), 5+len(payload))
	}
	if floor := time.Duration(float64(len(got)-chunk) / (16 << 20) * float64(time.Second)); elapsed < floor {
		t.Errorf("%d bytes in %s: faster than the limit allows (%s)", len(got), elapsed, floor)
	}
}
