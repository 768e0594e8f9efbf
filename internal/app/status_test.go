package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/status"
)

// TestStatusAPI: the all-in-one server generates status.token (not the
// webhook's) and serves /status/api/v1/ behind it.
func TestStatusAPI(t *testing.T) {
	cfg := testsupport.Config(t)
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

	img := testsupport.PushImage(t, s.RegistryAddr(), "demo/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/app", Digest: img.Digest.String(), Tag: "v1"}
	testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded, db.JobFailed, db.JobSkipped)

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

	// Retry: refused without the form's csrf value, then the job runs again.
	form := url.Values{"registry": {key.Registry}, "repository": {key.Repository}, "digest": {key.Digest}, "tag": {key.Tag}}
	post := func(f url.Values) *http.Response {
		req, err := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/status/retry", strings.NewReader(f.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("retry without csrf: %s", resp.Status)
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("soci-indexer status retry"))
	form.Set("csrf", hex.EncodeToString(m.Sum(nil)))
	before, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp := post(form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("retry: %s %s", resp.Status, resp.Header.Get("X-Error"))
	}
	// The redirect comes after the publish was acknowledged: the work
	// stream holds one more message than before.
	after, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.LastSeq != before.LastSeq+1 {
		t.Errorf("work stream last seq %d, want %d", after.LastSeq, before.LastSeq+1)
	}
}
