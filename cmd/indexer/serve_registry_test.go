package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// TestServePrivateRegistry runs `indexer serve` against a registry that
// requires credentials and serves TLS with a certificate of a CA the
// system does not trust, as a company registry does: the workers get the
// password from a Docker credential helper (credHelpers, a program of the
// test's own on PATH) and trust the CA of --registry-ca-file, and a push
// gets its v2 SOCI index. Restarted with a helper that answers a wrong
// password, the server says which registry refused which user.
func TestServePrivateRegistry(t *testing.T) {
	bin := filepath.Join(testproc.Build(t, "./cmd/indexer"), "indexer")
	ctx := context.Background()
	const (
		user, password = "robot", "s3cret-of-the-test"
		secret         = "webhook-secret-of-the-test"
	)
	serveAddr := testproc.FreeAddr(t)
	reg, err := embeddedregistry.Start(ctx, embeddedregistry.Options{
		Htpasswd: map[string]string{user: password},
		Notifications: []embeddedregistry.Notification{{
			URL:              "http://" + serveAddr + webhook.PathDistribution,
			Headers:          http.Header{"Authorization": {"Bearer " + secret}},
			IgnoreMediaTypes: []string{"application/octet-stream"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	srv := httptest.NewUnstartedServer(reg.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerConfig := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte(`{"credHelpers":{"`+host+`":"e2e"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	helpers := filepath.Join(dir, "bin")
	if err := os.Mkdir(helpers, 0o755); err != nil {
		t.Fatal(err)
	}
	writeHelper := func(secret string) {
		t.Helper()
		script := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
printf '{"ServerURL":"%%s","Username":"%s","Secret":"%s"}\n' "$server"
`, user, secret)
		if err := os.WriteFile(filepath.Join(helpers, "docker-credential-e2e"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeHelper(password)
	env := append(testproc.BaseEnv(t), "PATH="+helpers+string(os.PathListSeparator)+os.Getenv("PATH"),
		"INDEXER_DOCKER_CONFIG="+dockerConfig, "INDEXER_REGISTRY_CA_FILE="+caFile)
	args := []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", serveAddr,
		"--webhook-secret", secret, "--min-layer-size", "0", "--span-size", "1048576", "--allowed-registry", host}

	client, err := registryclient.New(registryclient.Options{CAFile: caFile, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := client.Repository(host + "/private/app")
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, seed uint64) {
		t.Helper()
		layer, err := demoimage.RandomLayer(seed, 3<<20, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := demoimage.Push(ctx, repo, tag, []demoimage.Layer{layer}); err != nil {
			t.Fatal(err)
		}
	}

	serve := testproc.Start(t, "serve", bin, args, env)
	if err := serve.WaitHTTP("http://"+serveAddr+"/readyz", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	push("v1", 1)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := repo.Resolve(ctx, "v1-soci"); err == nil {
			break
		}
		if time.Now().After(deadline) || serve.Exited() {
			t.Fatalf("no v1-soci index of %s/private/app:v1 after 90s; serve's output:\n%s", host, serve.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := serve.Stop(30 * time.Second); err != nil {
		t.Fatalf("serve stop: %v", err)
	}

	writeHelper("a-wrong-password")
	serve = testproc.Start(t, "serve again", bin, args, env)
	if err := serve.WaitHTTP("http://"+serveAddr+"/readyz", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	push("v2", 2)
	// As the text log quotes it.
	want := fmt.Sprintf(`registry %s refused user \"%s\"`, host, user)
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(serve.Output(), want) {
		if time.Now().After(deadline) || serve.Exited() {
			t.Fatalf("serve never said %s; its output:\n%s", want, serve.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
