package registryclient

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// TestCustomCA talks HTTPS to a registry whose certificate is signed by a
// CA the system does not trust: with the CA file the push and the build
// succeed; without it the client refuses the certificate.
func TestCustomCA(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	srv := httptest.NewUnstartedServer(reg.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, block, 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := New(Options{CAFile: caFile, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(host + "/tls/app")
	if err != nil {
		t.Fatal(err)
	}
	layer, err := demoimage.RandomLayer(11, 128<<10, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := demoimage.Push(ctx, repo, "v1", []demoimage.Layer{layer}); err != nil {
		t.Fatalf("push over TLS with the CA file: %v", err)
	}
	builder, err := index.NewIndexBuilder(repo, index.WithMinLayerSize(0), index.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.Build(ctx, "v1"); err != nil {
		t.Fatalf("index over TLS with the CA file: %v", err)
	}

	untrusting, err := New(Options{NoDockerConfig: true, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	repo, err = untrusting.Repository(host + "/tls/app")
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo.Resolve(ctx, "v1")
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("resolve without the CA file: error %v, want x509.UnknownAuthorityError", err)
	}
}
