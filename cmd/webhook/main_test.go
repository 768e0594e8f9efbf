package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

const machineNATS = "nats://127.0.0.1:4222"

func binaries(t *testing.T) (hook, indexer string) {
	t.Helper()
	dir := testproc.Build(t, "./cmd/indexer", "./cmd/webhook")
	return filepath.Join(dir, "webhook"), filepath.Join(dir, "indexer")
}

// The webhook's --help names serve's settings with their INDEXER_* variables.
func TestHelpNamesServesSettings(t *testing.T) {
	hook, _ := binaries(t)
	out, code := testproc.Run(t, hook, testproc.BaseEnv(t), "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
	for _, want := range []string{"--nats-url", "INDEXER_NATS_URL", "--webhook-secret", "INDEXER_WEBHOOK_SECRET",
		"--stream ", "--config", "--harbor-token", "--include-repository", "--tls-cert", "--log-level"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %s", want)
		}
	}
	for _, old := range []string{"env WEBHOOK_", "--queue-", "--token "} {
		if strings.Contains(out, old) {
			t.Errorf("--help still has %s", old)
		}
	}
}

// Every setting the webhook shares with `indexer serve` has the same flag,
// variable and help line in both binaries' --help.
func TestHelpMatchesServes(t *testing.T) {
	hook, indexer := binaries(t)
	env := testproc.BaseEnv(t)
	hookHelp, code := testproc.Run(t, hook, env, "--help")
	if code != 0 {
		t.Fatalf("webhook --help: exit %d", code)
	}
	serveHelp, code := testproc.Run(t, indexer, env, "serve", "--help")
	if code != 0 {
		t.Fatalf("indexer serve --help: exit %d", code)
	}
	line := func(help, flag string) string {
		for _, l := range strings.Split(help, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "--"+flag+" ") {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		return ""
	}
	for _, flag := range config.WebhookFlags {
		h := line(hookHelp, flag)
		if h == "" {
			t.Errorf("webhook --help lacks --%s", flag)
			continue
		}
		if slices.Contains(config.WebhookOnly, flag) {
			if line(serveHelp, flag) != "" {
				t.Errorf("indexer serve --help has cmd/webhook's own --%s", flag)
			}
			continue
		}
		if s := line(serveHelp, flag); s != h {
			t.Errorf("--%s:\n webhook: %s\n serve:   %s", flag, h, s)
		}
	}
}

// A former WEBHOOK_* variable stops the webhook with the name to use
// instead, before it connects anywhere.
func TestOldVariablesRefused(t *testing.T) {
	hook, _ := binaries(t)
	env := append(testproc.BaseEnv(t), "WEBHOOK_TOKEN=x", "WEBHOOK_NATS_URL=nats://elsewhere:4222", "INDEXER_WEBHOOK_SECRET=s")
	out, code := testproc.Run(t, hook, env, "--listen", testproc.FreeAddr(t))
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"WEBHOOK_TOKEN is now INDEXER_WEBHOOK_SECRET", "WEBHOOK_NATS_URL is now INDEXER_NATS_URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestOneSettingsFile runs cmd/webhook and `indexer serve --webhook` on
// one settings file: both take its listener-independent settings the same
// way (stream, tokens, filters, allow-list), which shows in what they
// answer and in JetStream's deduplication across them.
func TestOneSettingsFile(t *testing.T) {
	hook, indexer := binaries(t)
	dsn, _ := testpg.NewDatabase(t, "webhook_cfg")
	stream := fmt.Sprintf("CFG_%d", time.Now().UnixNano())
	subject := strings.ToLower(stream)
	js := connect(t)
	t.Cleanup(func() {
		ctx := context.Background()
		_ = js.DeleteStream(ctx, stream)
		_ = js.DeleteStream(ctx, stream+"_DLQ")
	})
	file := filepath.Join(t.TempDir(), "soci-indexer.yaml")
	settings := fmt.Sprintf(`
nats_url: %s
database_url: %s
stream: %s
subject: %s
webhook_secret: shared-secret
harbor_token: harbor-secret
exclude_tags: ["*-rc"]
allowed_registries: ["127.0.0.1:36463", harbor.example]
publish_timeout: 5s
# serve's own
workers: 1
retry_backoff: 1m
# cmd/webhook's own
shutdown_timeout: 2s
`, machineNATS, dsn, stream, subject)
	if err := os.WriteFile(file, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(testproc.BaseEnv(t), "INDEXER_CONFIG="+file)
	hookAddr, serveAddr := testproc.FreeAddr(t), testproc.FreeAddr(t)
	h := testproc.Start(t, "webhook", hook, []string{"--listen", hookAddr}, env)
	s := testproc.Start(t, "serve", indexer, []string{"serve", "--webhook", "--listen", serveAddr}, env)
	if err := h.WaitHTTP("http://"+hookAddr+webhook.PathReadyz, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitHTTP("http://"+serveAddr+"/readyz", 60*time.Second); err != nil {
		t.Fatal(err)
	}

	push := readTestdata(t, "distribution-push.json")
	rc := bytes.ReplaceAll(push, []byte(`"tag":"v1"`), []byte(`"tag":"v1-rc"`))
	harbor := readTestdata(t, "harbor-default.json")
	const distType = webhook.MediaTypeDistributionEventsV2
	// The same event through both: one job, the second a duplicate, so
	// both published to the file's stream.
	for _, c := range []struct {
		name, addr, path, ctype, token string
		body                           []byte
		code                           int
		want                           webhook.Result
	}{
		{"webhook: push", hookAddr, webhook.PathDistribution, distType, "shared-secret", push, 202, webhook.Result{Queued: 1}},
		{"serve: same push", serveAddr, webhook.PathDistribution, distType, "shared-secret", push, 202, webhook.Result{Duplicates: 1}},
		{"webhook: excluded tag", hookAddr, webhook.PathDistribution, distType, "shared-secret", rc, 202, webhook.Result{Dropped: 1}},
		{"serve: excluded tag", serveAddr, webhook.PathDistribution, distType, "shared-secret", rc, 202, webhook.Result{Dropped: 1}},
		{"webhook: harbor with the shared secret", hookAddr, webhook.PathHarbor, "application/json", "shared-secret", harbor, 401, webhook.Result{}},
		{"serve: harbor with the shared secret", serveAddr, webhook.PathHarbor, "application/json", "shared-secret", harbor, 401, webhook.Result{}},
		{"serve: harbor", serveAddr, webhook.PathHarbor, "application/json", "harbor-secret", harbor, 202, webhook.Result{Queued: 1}},
		{"webhook: same harbor", hookAddr, webhook.PathHarbor, "application/json", "harbor-secret", harbor, 202, webhook.Result{Duplicates: 1}},
	} {
		code, res := post(t, "http://"+c.addr+c.path, c.ctype, c.token, c.body)
		if code != c.code || (code == 202 && res != c.want) {
			t.Errorf("%s: %d %+v, want %d %+v", c.name, code, res, c.code, c.want)
		}
	}
	info, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatalf("the file's stream %s: %v", stream, err)
	}
	if cfg := info.CachedInfo().Config; len(cfg.Subjects) == 0 || !strings.HasPrefix(cfg.Subjects[0], subject) {
		t.Errorf("stream subjects %v, want the file's %s", cfg.Subjects, subject)
	}
	if err := h.Stop(10 * time.Second); err != nil {
		t.Errorf("webhook stop: %v", err)
	}
}

func connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(machineNATS)
	if err != nil {
		t.Fatalf("NATS at %s: %v", machineNATS, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "webhook", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url, ctype, token string, body []byte) (int, webhook.Result) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res webhook.Result
	if resp.StatusCode == http.StatusAccepted {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode, res
}
