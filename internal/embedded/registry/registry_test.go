package registry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPushSendsNotification(t *testing.T) {
	events := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		events <- r.Header.Get("Authorization") + " " + string(b)
	}))
	defer hook.Close()

	ctx := context.Background()
	reg, err := Start(ctx, Options{Notifications: []Notification{{
		URL:     hook.URL,
		Headers: http.Header{"Authorization": {"Bearer s3cret"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	// Upload an empty-config manifest: blob via monolithic POST, then PUT the manifest.
	blob := []byte("{}")
	const blobDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	resp, err := http.Post(reg.URL()+"/v2/demo/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("blob upload start: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if !strings.HasPrefix(loc, "http") {
		loc = reg.URL() + loc
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+blobDigest, strings.NewReader(string(blob)))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("blob upload: %s", resp.Status)
	}
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + blobDigest + `","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + blobDigest + `","size":2}]}`
	req, _ = http.NewRequest(http.MethodPut, reg.URL()+"/v2/demo/app/manifests/v1", strings.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest put: %s", resp.Status)
	}

	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if !strings.HasPrefix(ev, "Bearer s3cret ") {
				t.Fatalf("event without the configured header: %q", ev)
			}
			var env struct {
				Events []struct {
					Action string
					Target struct {
						MediaType  string
						Repository string
						Tag        string
					}
				}
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "Bearer s3cret ")), &env); err != nil {
				t.Fatal(err)
			}
			for _, e := range env.Events {
				if e.Action == "push" && e.Target.MediaType == "application/vnd.oci.image.manifest.v1+json" {
					if e.Target.Repository != "demo/app" || e.Target.Tag != "v1" {
						t.Fatalf("unexpected target %+v", e.Target)
					}
					return
				}
			}
		case <-deadline:
			t.Fatal("no manifest push notification within 10s")
		}
	}
}

// TestHtpasswdRequiresBasicAuth: with Htpasswd the registry challenges
// anonymous and wrong credentials with 401 and lets the users in; Close
// removes the htpasswd file.
func TestHtpasswdRequiresBasicAuth(t *testing.T) {
	reg, err := Start(context.Background(), Options{Htpasswd: map[string]string{"alice": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	for _, tc := range []struct {
		name, user, password string
		want                 int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "alice", "guess", http.StatusUnauthorized},
		{"unknown user", "bob", "s3cret", http.StatusUnauthorized},
		{"user", "alice", "s3cret", http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, reg.URL()+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if challenge := resp.Header.Get("WWW-Authenticate"); tc.want == http.StatusUnauthorized &&
			!strings.HasPrefix(challenge, `Basic realm="`+htpasswdRealm+`"`) {
			t.Errorf("%s: challenge %q, want basic auth", tc.name, challenge)
		}
	}

	dir := reg.authDir
	if _, err := os.Stat(filepath.Join(dir, "htpasswd")); err != nil {
		t.Fatalf("htpasswd file: %v", err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("htpasswd directory left after Close: %v", err)
	}
}

func TestHtpasswdRejectsBadUserName(t *testing.T) {
	if reg, err := Start(context.Background(), Options{Htpasswd: map[string]string{"a:b": "pw"}}); err == nil {
		reg.Close()
		t.Fatal("user name with ':' accepted")
	}
}
