package registry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
