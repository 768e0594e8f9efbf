package registryclient

import (
	"context"
	"net"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

// A loopback registry that speaks plain HTTP is reached without PlainHTTP,
// by its IP and as localhost, as Docker does; TestCustomCA shows that a
// loopback registry speaking TLS is still talked to over HTTPS.
func TestLoopbackPlainHTTP(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	_, port, _ := net.SplitHostPort(reg.Addr())
	c, err := New(Options{NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, host := range []string{reg.Addr(), net.JoinHostPort("localhost", port)} {
		repo, err := c.RepositoryOf(ctx, host, "loop/app")
		if err != nil {
			t.Fatal(err)
		}
		if !repo.PlainHTTP {
			t.Errorf("%s: not plain HTTP", host)
		}
		layer, err := demoimage.RandomLayer(uint64(i), 64<<10, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := demoimage.Push(ctx, repo, "v1", []demoimage.Layer{layer}); err != nil {
			t.Errorf("push to %s: %v", host, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.3.2.1": true, "localhost:5000": true, "LOCALHOST": true, "[::1]:5000": true,
		"registry.example:5000": false, "10.0.0.1:5000": false, "localhost.example.com": false, "[::2]:5000": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// A registry that does not answer yet is asked again later rather than
// taken for HTTPS for good.
func TestLoopbackProbeRetriesUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newLoopbackProbe()
	if p.plainHTTP(context.Background(), addr) {
		t.Error("nothing listens: plain HTTP")
	}
	if _, known := p.known[addr]; known {
		t.Error("an unreachable host's answer was kept")
	}
}
