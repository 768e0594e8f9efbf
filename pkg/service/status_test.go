package service

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/status"
)

// TestStatusAPI: the all-in-one server generates status.token (not the
// webhook's) and serves /status/api/v1/ behind it.
func TestStatusAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)

	raw, err := os.ReadFile(datadir.Dir(cfg.DataDir).StatusTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" || token != s.StatusToken() || token == s.WebhookSecret() {
		t.Fatalf("status token %q, server %q, webhook %q", token, s.StatusToken(), s.WebhookSecret())
	}

	img := pushImage(t, s.RegistryAddr(), "demo/app", "v1", testLayerSize, testLayerSize)
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/app", Digest: img.Digest.String(), Tag: "v1"}
	waitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded, db.JobFailed, db.JobSkipped)

	get := func(path, tok string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := get("/status/api/v1/repositories", s.WebhookSecret()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("webhook token on status: %s", resp.Status)
	}
	resp := get("/status/api/v1/images?ref="+s.RegistryAddr()+"/demo/app:v1", token)
	var got status.Image
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("images: %s %v", resp.Status, err)
	}
	if !got.LazyLoadable || got.Digest != img.Digest.String() || got.ZtocsBuilt+got.ZtocsReused == 0 {
		t.Errorf("image status %+v", got)
	}
}
