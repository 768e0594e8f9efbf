package service

import (
	"context"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// TestAllInOnePushIsIndexed: a push to the embedded registry becomes a
// pushed and recorded v2 index within seconds (registry → webhook → NATS →
// worker → registry + SQLite), with nothing outside the process.
func TestAllInOnePushIsIndexed(t *testing.T) {
	cfg := testConfig(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)

	start := time.Now()
	img := pushImage(t, s.RegistryAddr(), "demo/app", "v1", testLayerSize, testLayerSize)
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/app", Digest: img.Digest.String()}
	job := waitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded, db.JobFailed, db.JobSkipped)
	if job.Status != db.JobSucceeded {
		t.Fatalf("job %s: %s %s", job.Status, job.LastError, job.SkipReason)
	}
	t.Logf("push to indexed: %s", time.Since(start))

	repo, err := plainRepos(t)(context.Background(), s.RegistryAddr(), "demo/app")
	if err != nil {
		t.Fatal(err)
	}
	socis, err := v2Index(context.Background(), repo, "v1-soci")
	if err != nil {
		t.Fatalf("v2 index: %v", err)
	}
	if len(socis) != 1 {
		t.Fatalf("got %d soci indexes in v1-soci, want 1", len(socis))
	}
	entry, err := s.Store().GetArtifactEntry(context.Background(), socis[0].Digest.String())
	if err != nil {
		t.Fatalf("index not recorded: %v", err)
	}
	if entry.ArtifactType != "application/vnd.amazon.soci.index.v2+json" {
		t.Errorf("recorded artifact type %q", entry.ArtifactType)
	}
}
