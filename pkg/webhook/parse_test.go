package webhook

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyEvent(t)(Parse…(…)) is the one event a parser returned.
func onlyEvent(t *testing.T) func([]Event, error) Event {
	return func(events []Event, err error) Event {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 {
			t.Fatalf("%d events, want 1", len(events))
		}
		return events[0]
	}
}

func TestParseDistribution(t *testing.T) {
	ev := onlyEvent(t)(ParseDistribution(readTestdata(t, "distribution-push.json")))
	want := queue.Job{
		Source: SourceDistribution, EventID: "01a21a23-5d4c-7b5e-9a3c-2f6c0d1e4a11",
		Registry: "127.0.0.1:36463", Repository: "demo/app",
		Digest: "sha256:71aa8f1e8ed2ca2b2ea3ab2fd7b8f0f0c5b1b3a2d8c8f1d2e3a4b5c6d7e8f901",
		Tag:    "v1", MediaType: "application/vnd.oci.image.manifest.v1+json", Action: queue.ActionPush,
		OccurredAt: time.Date(2026, 11, 26, 23, 14, 30, 655e6, time.UTC),
	}
	if ev.Job != want {
		t.Fatalf("job\n got %+v\nwant %+v", ev.Job, want)
	}
	if ev.Blob || len(ev.References) != 2 {
		t.Fatalf("blob=%v references=%d, want a manifest with 2 references", ev.Blob, len(ev.References))
	}
}

func TestParseDistributionBlobAndHostFallback(t *testing.T) {
	body := `{"events":[
	 {"id":"a","action":"push","target":{"mediaType":"application/octet-stream","digest":"sha256:01","repository":"r","url":"http://h:1/v2/r/blobs/sha256:01"},"request":{"host":"h:1"}},
	 {"id":"b","action":"delete","target":{"digest":"sha256:02","repository":"r"},"request":{"host":"h:2"}},
	 {"id":"c","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:03","repository":"r"}}]}`
	events, err := ParseDistribution([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	if !events[0].Blob || events[0].Job.Registry != "h:1" {
		t.Errorf("blob push: %+v", events[0])
	}
	if events[1].Blob || events[1].Job.Action != queue.ActionDelete || events[1].Job.Registry != "h:2" {
		t.Errorf("manifest delete (registry from request.host): %+v", events[1])
	}
	if events[2].Job.Action != "" || events[2].SourceAction != "pull" {
		t.Errorf("pull: %+v", events[2])
	}
}

func TestParseDistributionMalformed(t *testing.T) {
	for _, body := range []string{"", "{", "[]", `{"events":"x"}`, "\x00"} {
		if _, err := ParseDistribution([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseDistribution(%q) = %v, want ErrMalformed", body, err)
		}
	}
}

func TestParseHarborDefault(t *testing.T) {
	ev := onlyEvent(t)(ParseHarbor(readTestdata(t, "harbor-default.json")))
	j := ev.Job
	if j.Source != SourceHarbor || j.Registry != "harbor.example" || j.Repository != "library/app" ||
		j.Digest != "sha256:7652000000000000000000000000000000000000000000000000000000000000" ||
		j.Tag != "v1" || j.Action != queue.ActionPush || j.Actor != "admin" ||
		!j.OccurredAt.Equal(time.Unix(1737446601, 0)) {
		t.Fatalf("job %+v", j)
	}
}

func TestParseHarborCloudEvents(t *testing.T) {
	ev := onlyEvent(t)(ParseHarbor(readTestdata(t, "harbor-cloudevents.json")))
	j := ev.Job
	// Pushed without a tag: Harbor puts the digest in "tag".
	if j.Tag != "" || j.Action != queue.ActionPush || j.EventID != "4b3bb2ab-2f4c-4d5b-9d4e-2b1a6b2c7e11" ||
		j.Registry != "harbor.example" || j.Repository != "library/app" || j.Actor != "robot$ci" {
		t.Fatalf("job %+v", j)
	}
	// The same CloudEvent through the generic endpoint.
	h := http.Header{"Content-Type": {MediaTypeCloudEvents}}
	ev2 := onlyEvent(t)(ParseCloudEvent(h, readTestdata(t, "harbor-cloudevents.json")))
	if ev2.Job != j {
		t.Fatalf("via ParseCloudEvent: %+v, want %+v", ev2.Job, j)
	}
}

func TestParseHarborOtherTypes(t *testing.T) {
	body := `{"type":"PULL_ARTIFACT","occur_at":1,"event_data":{"resources":[{"digest":"sha256:01","resource_url":"h/r@sha256:01"}],"repository":{"repo_full_name":"r"}}}`
	ev := onlyEvent(t)(ParseHarbor([]byte(body)))
	if ev.Job.Action != "" || ev.SourceAction != "pull_artifact" {
		t.Fatalf("pull: %+v", ev)
	}
	del := strings.Replace(body, "PULL_ARTIFACT", "DELETE_ARTIFACT", 1)
	if ev := onlyEvent(t)(ParseHarbor([]byte(del))); ev.Job.Action != queue.ActionDelete {
		t.Fatalf("delete: %+v", ev)
	}
	if _, err := ParseHarbor([]byte(`{"occur_at":1}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no type: %v, want ErrMalformed", err)
	}
}

func TestParseZotStructured(t *testing.T) {
	h := http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}
	ev := onlyEvent(t)(ParseCloudEvent(h, readTestdata(t, "zot-structured.json")))
	j := ev.Job
	if j.Source != SourceZot || j.Repository != "tools/zot-app" || j.Tag != "1.2" || j.Action != queue.ActionPush ||
		j.Registry != "" || ev.ConfigMediaType != "application/vnd.oci.image.config.v1+json" {
		t.Fatalf("event %+v", ev)
	}
}

func TestParseZotBinary(t *testing.T) {
	h := http.Header{
		"Content-Type":   {"application/json"},
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {"42"},
		"Ce-Source":      {"zotregistry.dev"},
		"Ce-Type":        {"zotregistry.image.deleted"},
	}
	ev := onlyEvent(t)(ParseCloudEvent(h, readTestdata(t, "zot-binary-data.json")))
	if ev.Job.Action != queue.ActionDelete || ev.Job.EventID != "42" || ev.Job.Tag != "" ||
		ev.Job.Digest != "sha256:cccc000000000000000000000000000000000000000000000000000000000000" {
		t.Fatalf("event %+v", ev)
	}
	h.Set("Ce-Type", "zotregistry.repository.created")
	if ev := onlyEvent(t)(ParseCloudEvent(h, []byte(`{"name":"r"}`))); ev.Job.Action != "" {
		t.Fatalf("repository.created: %+v, want no action", ev)
	}
}

func TestParseECR(t *testing.T) {
	ev := onlyEvent(t)(ParseEventBridge(readTestdata(t, "ecr-eventbridge.json")))
	j := ev.Job
	if j.Source != SourceECR || j.Registry != "123456789012.dkr.ecr.us-west-2.amazonaws.com" || j.Repository != "my-repo" ||
		j.Tag != "latest" || j.Action != queue.ActionPush || j.EventID != "13cde686-328b-6117-af20-0e5566167482" {
		t.Fatalf("job %+v", j)
	}
	// Forwarded as a structured CloudEvent with the detail as data.
	ce := `{"specversion":"1.0","id":"x1","source":"aws.ecr","type":"ECR Image Action","data":` +
		`{"result":"SUCCESS","repository-name":"r","image-digest":"sha256:01","action-type":"DELETE"}}`
	h := http.Header{"Content-Type": {MediaTypeCloudEvents}}
	ev = onlyEvent(t)(ParseCloudEvent(h, []byte(ce)))
	if ev.Job.Action != queue.ActionDelete || ev.Job.EventID != "x1" || ev.Job.Registry != "" {
		t.Fatalf("ECR CloudEvent: %+v", ev.Job)
	}
	failed := strings.Replace(string(readTestdata(t, "ecr-eventbridge.json")), `"SUCCESS"`, `"FAILURE"`, 1)
	if ev := onlyEvent(t)(ParseEventBridge([]byte(failed))); ev.Job.Action != "" {
		t.Fatalf("failed push: %+v, want no action", ev.Job)
	}
	if ev := onlyEvent(t)(ParseEventBridge([]byte(`{"detail-type":"ECR Image Scan","detail":{}}`))); ev.Job.Action != "" {
		t.Fatalf("scan event: %+v, want no action", ev.Job)
	}
}

func TestParseCloudEventBatchAndMalformed(t *testing.T) {
	batch := `[` + string(readTestdata(t, "zot-structured.json")) + `,` + string(readTestdata(t, "harbor-cloudevents.json")) + `]`
	events, err := ParseCloudEvent(http.Header{"Content-Type": {MediaTypeCloudEventsBatch}}, []byte(batch))
	if err != nil || len(events) != 2 || events[0].Job.Source != SourceZot || events[1].Job.Source != SourceHarbor {
		t.Fatalf("batch: %d events, %v", len(events), err)
	}
	h := http.Header{"Content-Type": {MediaTypeCloudEvents}}
	for _, body := range []string{"", "{", `{"id":"x"}`, `{"specversion":"1.0","type":"harbor.artifact.pushed","data_base64":"!!"}`} {
		if _, err := ParseCloudEvent(h, []byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCloudEvent(%q) = %v, want ErrMalformed", body, err)
		}
	}
}
