package registryclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

func TestParseImageReference(t *testing.T) {
	d := digest.FromString("x")
	tests := []struct {
		in                  string
		repo, tag, resolved string
	}{
		{"localhost:5000/app:v1", "localhost:5000/app", "v1", "v1"},
		{"localhost:5000/team/app@" + d.String(), "localhost:5000/team/app", "", d.String()},
		{"registry.example/app:1.0@" + d.String(), "registry.example/app", "1.0", "1.0@" + d.String()},
	}
	for _, tt := range tests {
		ref, err := ParseImageReference(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if ref.RepositoryName() != tt.repo || ref.Tag != tt.tag || ref.Reference() != tt.resolved || ref.String() != tt.in {
			t.Errorf("%s: %+v (%s, %s)", tt.in, ref, ref.RepositoryName(), ref.Reference())
		}
	}
	for _, bad := range []string{"localhost:5000/app", "app@sha256:12", "localhost:5000/app:bad tag", ""} {
		if _, err := ParseImageReference(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCredentialsFromOptionsAndDockerConfig(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	encoded := base64.StdEncoding.EncodeToString([]byte("alice:secret"))
	if err := os.WriteFile(config, []byte(`{"auths":{"registry.example:5000":{"auth":"`+encoded+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		opts Options
		want auth.Credential
	}{
		{"docker config", Options{DockerConfig: config}, auth.Credential{Username: "alice", Password: "secret"}},
		{"basic beats config", Options{DockerConfig: config, Username: "bob", Password: "pw"}, auth.Credential{Username: "bob", Password: "pw"}},
		{"token", Options{DockerConfig: config, Token: "tkn"}, auth.Credential{AccessToken: "tkn"}},
		{"anonymous", Options{DockerConfig: config, NoDockerConfig: true}, auth.EmptyCredential},
	}
	for _, tt := range tests {
		fn, err := credentialFunc(tt.opts)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := auth.EmptyCredential
		if fn != nil {
			if got, err = fn(ctx, "registry.example:5000"); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestCAFile(t *testing.T) {
	if _, err := New(Options{CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Error("missing CA file accepted")
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	if _, err := New(Options{CAFile: notPEM}); err == nil {
		t.Error("CA file without certificates accepted")
	}
}

// flaky fails the first n requests with 503 before passing requests on.
type flaky struct {
	failures atomic.Int32
	seen     atomic.Int32
}

func (f *flaky) RoundTrip(req *http.Request) (*http.Response, error) {
	f.seen.Add(1)
	if f.failures.Add(-1) >= 0 {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestRetriesTransientFailures(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	transport := &flaky{}
	transport.failures.Store(2)
	c, err := New(Options{PlainHTTP: true, NoDockerConfig: true, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(reg.Addr() + "/retry/app")
	if err != nil {
		t.Fatal(err)
	}
	if !repo.SkipReferrersGC {
		t.Error("SkipReferrersGC not set")
	}
	blob := []byte("hello")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	if err := repo.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		t.Fatalf("push through two 503s: %v", err)
	}
	if ok, err := repo.Exists(ctx, desc); err != nil || !ok {
		t.Fatalf("exists: %v %v", ok, err)
	}
	if transport.seen.Load() < 4 {
		t.Fatalf("only %d requests: the 503s were not retried", transport.seen.Load())
	}

	// Without retries, the first 503 is the answer.
	transport.failures.Store(1)
	c, _ = New(Options{PlainHTTP: true, NoDockerConfig: true, Transport: transport, MaxRetries: -1})
	repo, _ = c.Repository(reg.Addr() + "/retry/app")
	if _, err := repo.Exists(ctx, desc); err == nil {
		t.Fatal("503 without retries succeeded")
	}
}
