package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
)

// TestAllInOnePushIsIndexed: a push to the embedded registry becomes a
// pushed and recorded v2 index within seconds (registry → webhook → NATS →
// worker → registry + SQLite), with nothing outside the process.
func TestAllInOnePushIsIndexed(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)

	start := time.Now()
	img := testsupport.PushImage(t, s.RegistryAddr(), "demo/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/app", Digest: img.Digest.String(), Tag: "v1"}
	job := testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded, db.JobFailed, db.JobSkipped)
	if job.Status != db.JobSucceeded {
		t.Fatalf("job %s: %s %s", job.Status, job.LastError, job.SkipReason)
	}
	t.Logf("push to indexed: %s", time.Since(start))

	repo, err := testsupport.PlainRepos(t)(context.Background(), s.RegistryAddr(), "demo/app")
	if err != nil {
		t.Fatal(err)
	}
	socis, err := testsupport.V2Index(context.Background(), repo, "v1-soci")
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

// scrape returns the server's /metrics text.
func scrape(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestHealthAndMetrics(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	img := testsupport.PushImage(t, s.RegistryAddr(), "metrics/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	testsupport.WaitJob(t, s.Store(), db.JobKey{Registry: s.RegistryAddr(), Repository: "metrics/app", Digest: img.Digest.String(), Tag: "v1"},
		20*time.Second, db.JobSucceeded)
	testsupport.WaitFor(t, 5*time.Second, "metrics", func() (bool, error) {
		text := scrape(t, s)
		for _, want := range []string{
			`soci_indexer_jobs_total{action="push",outcome="succeeded"} 1`,
			`soci_indexer_ztocs_total{source="built"} 2`,
			`soci_indexer_stage_seconds_count{stage="queue_wait"}`,
			`soci_indexer_stage_seconds_count{stage="download_build"} 1`,
			`soci_indexer_stage_seconds_count{stage="push"} 1`,
			`soci_indexer_layer_bytes_streamed_total`,
			`soci_indexer_jobs_in_flight 0`,
			`go_goroutines`,
		} {
			if !strings.Contains(text, want) {
				return false, fmt.Errorf("no %q in /metrics", want)
			}
		}
		return true, nil
	})
}

// distributionEnvelope is what distribution sends for a manifest push.
func distributionEnvelope(id, registry, repository, tag string, desc ocispec.Descriptor) []byte {
	ev := map[string]any{
		"id": id, "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "action": "push",
		"target": map[string]any{
			"mediaType": desc.MediaType, "digest": desc.Digest, "size": desc.Size, "length": desc.Size,
			"repository": repository, "tag": tag,
			"url": "http://" + registry + "/v2/" + repository + "/manifests/" + desc.Digest.String(),
		},
		"request": map[string]any{"host": registry, "method": "PUT"},
	}
	b, _ := json.Marshal(map[string]any{"events": []any{ev}})
	return b
}

func postEvent(t *testing.T, s *Server, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/hooks/distribution", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
	req.Header.Set("Authorization", "Bearer "+s.WebhookSecret())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook answered %s", resp.Status)
	}
}

// TestDuplicateNotificationsGiveOneIndex: the registry's event and two
// replays of it (new event ids) make one job run and one index.
func TestDuplicateNotificationsGiveOneIndex(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	img := testsupport.PushImage(t, s.RegistryAddr(), "dup/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	for i := range 2 {
		postEvent(t, s, distributionEnvelope(fmt.Sprintf("replay-%d", i), s.RegistryAddr(), "dup/app", "v1", img))
	}
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "dup/app", Digest: img.Digest.String(), Tag: "v1"}
	testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded)
	// The registry's event and the two replays all reached the webhook,
	// which took two of them for duplicates of the queued job: the queue
	// never held a second job that could still run.
	testsupport.WaitFor(t, 10*time.Second, "two duplicates counted", func() (bool, error) {
		text := scrape(t, s)
		if strings.Contains(text, `soci_indexer_webhook_events_total{outcome="duplicate",source="distribution"} 2`) {
			return true, nil
		}
		return false, fmt.Errorf("webhook counts:\n%s", grepLines(text, "webhook_events_total"))
	})
	attempts, err := s.Store().Attempts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 1 {
		t.Errorf("%d attempts, want 1", len(attempts))
	}
	repo, err := testsupport.PlainRepos(t)(context.Background(), s.RegistryAddr(), "dup/app")
	if err != nil {
		t.Fatal(err)
	}
	socis, err := testsupport.V2Index(context.Background(), repo, "v1-soci")
	if err != nil || len(socis) != 1 {
		t.Fatalf("v2 index: %d soci indexes, %v; want 1", len(socis), err)
	}
}

// TestCorruptLayerIsNotRetried: the job fails once, with the reason kept,
// and goes to the dead letters instead of being retried.
func TestCorruptLayerIsNotRetried(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	img := testsupport.PushCorruptImage(t, s.RegistryAddr(), "bad/app", "v1")
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "bad/app", Digest: img.Digest.String(), Tag: "v1"}
	job := testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobFailed)
	if !strings.Contains(job.LastError, "gzip") {
		t.Errorf("error %q does not say what is wrong", job.LastError)
	}
	// The dead letter is written as the job is terminated: from then on
	// JetStream delivers it no more, so the attempts are final.
	var dead []queue.DeadLetter
	testsupport.WaitFor(t, 10*time.Second, "the dead letter", func() (bool, error) {
		var err error
		dead, err = s.Queue().DeadLetters(context.Background(), 10)
		return len(dead) > 0, err
	})
	attempts, err := s.Store().Attempts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 1 {
		t.Errorf("%d attempts, want 1 (a permanent failure must not be retried)", len(attempts))
	}
	if len(dead) != 1 || dead[0].Job.Digest != img.Digest.String() || !strings.Contains(dead[0].LastError, "gzip") {
		t.Errorf("dead letters: %+v", dead)
	}
}

// TestDeleteEventRemovesArtifacts: deleting an image from the registry
// removes its v1 and v2 SOCI artifacts through the delete event.
func TestDeleteEventRemovesArtifacts(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	cfg.IndexVersion = "both"
	s := startServer(t, cfg)
	ctx := context.Background()
	img := testsupport.PushImage(t, s.RegistryAddr(), "del/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	key := db.JobKey{Registry: s.RegistryAddr(), Repository: "del/app", Digest: img.Digest.String(), Tag: "v1"}
	testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded)
	repo, err := testsupport.PlainRepos(t)(ctx, s.RegistryAddr(), "del/app")
	if err != nil {
		t.Fatal(err)
	}
	v1 := testsupport.V1Indexes(t, s.RegistryAddr(), "del/app", img)
	if len(v1) != 1 {
		t.Fatalf("%d v1 indexes", len(v1))
	}
	if err := repo.Manifests().Delete(ctx, img); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 20*time.Second, "the artifacts to go", func() (bool, error) {
		if _, err := testsupport.V2Index(ctx, repo, "v1-soci"); err == nil {
			return false, errors.New("v1-soci still there")
		}
		if ok, _ := repo.Exists(ctx, v1[0]); ok {
			return false, errors.New("v1 index still there")
		}
		if _, err := s.Store().GetArtifactEntry(ctx, v1[0].Digest.String()); err == nil {
			return false, errors.New("v1 index still recorded")
		}
		return true, nil
	})
}

// TestBackfillIndexesMissedImages: an image pushed while no notification
// reached the service is found and indexed by the backfill; a second run
// finds nothing to do.
func TestBackfillIndexesMissedImages(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.PlainHTTP = true
	s := startServer(t, cfg)
	reg := testsupport.StartRegistry(t, "", "") // notifications go nowhere
	img := testsupport.PushImage(t, reg.Addr(), "missed/app", "v1", testsupport.LayerSize, testsupport.LayerSize)

	// The repository is named: the embedded registry's catalog is empty
	// (internal/embedded/registry leaves catalog.maxentries at 0).
	target := reg.Addr() + "/missed/app"
	stats, err := s.Backfiller().Run(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 1 || stats.Repositories != 1 {
		t.Fatalf("backfill: %+v, want one repository and one image enqueued", stats)
	}
	key := db.JobKey{Registry: reg.Addr(), Repository: "missed/app", Digest: img.Digest.String(), Tag: "v1"}
	testsupport.WaitJob(t, s.Store(), key, 20*time.Second, db.JobSucceeded)

	stats, err = s.Backfiller().Run(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 0 || stats.Indexed != 1 || stats.Ours != 1 { // the image; its v2 index is ours
		t.Errorf("second backfill: %+v, want nothing enqueued, the image indexed, its v2 tag ours", stats)
	}
}

// TestScheduledBackfill: serve --backfill-interval indexes what no event
// announced, on its own.
func TestScheduledBackfill(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	img := testsupport.PushImage(t, reg.Addr(), "sched/app", "v1", testsupport.LayerSize)
	cfg := testsupport.Config(t)
	cfg.PlainHTTP = true
	cfg.BackfillInterval = 200 * time.Millisecond
	cfg.BackfillTargets = []string{reg.Addr() + "/sched/app"}
	s := startServer(t, cfg)
	testsupport.WaitJob(t, s.Store(), db.JobKey{Registry: reg.Addr(), Repository: "sched/app", Digest: img.Digest.String(), Tag: "v1"},
		20*time.Second, db.JobSucceeded)
}

// pushMultiPlatform pushes two platform images by digest and an image
// index naming them under tag, as a multi-platform push does.
func pushMultiPlatform(t *testing.T, registry, repository, tag string) ocispec.Descriptor {
	t.Helper()
	idx, _ := pushMultiPlatformSeeds(t, registry, repository, tag, testsupport.NewSeeds(2))
	return idx
}

// pushMultiPlatformSeeds is pushMultiPlatform with the one layer of the
// amd64 and arm64 images drawn from seeds[0] and seeds[1]. It returns the
// image index and the platform manifests.
func pushMultiPlatformSeeds(t *testing.T, registry, repository, tag string, seeds []uint64) (ocispec.Descriptor, []ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	var manifests []ocispec.Descriptor
	for i, arch := range []string{"amd64", "arm64"} {
		d := testsupport.PushImageSeeds(t, registry, repository, "", seeds[i:i+1], []int64{testsupport.LayerSize})
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		manifests = append(manifests, d)
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := testsupport.PlainRepos(t)(ctx, registry, repository)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.TagBytes(ctx, repo, ocispec.MediaTypeImageIndex, body, tag)
	if err != nil {
		t.Fatal(err)
	}
	return desc, manifests
}

// TestMultiPlatformImage: the untagged platform manifests' events are
// skipped, and the image index's event gives one SOCI index per platform.
func TestMultiPlatformImage(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	img := pushMultiPlatform(t, s.RegistryAddr(), "multi/app", "v1")
	testsupport.WaitJob(t, s.Store(), db.JobKey{Registry: s.RegistryAddr(), Repository: "multi/app", Digest: img.Digest.String(), Tag: "v1"},
		20*time.Second, db.JobSucceeded)
	repo, err := testsupport.PlainRepos(t)(context.Background(), s.RegistryAddr(), "multi/app")
	if err != nil {
		t.Fatal(err)
	}
	socis, err := testsupport.V2Index(context.Background(), repo, "v1-soci")
	if err != nil {
		t.Fatal(err)
	}
	platforms := map[string]bool{}
	for _, d := range socis {
		if d.Platform != nil {
			platforms[d.Platform.Architecture] = true
		}
	}
	if len(socis) != 2 || !platforms["amd64"] || !platforms["arm64"] {
		t.Errorf("soci indexes %+v, want one for each of amd64 and arm64", socis)
	}
}

// TestBackfillSince: images created before the window are left alone.
func TestBackfillSince(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	testsupport.PushImage(t, reg.Addr(), "old/app", "v1", testsupport.LayerSize) // demo images are created 2024-01-01
	store := testsupport.NewSQLite(t)
	cfg := testsupport.Config(t)
	cfg.NATSURL = testsupport.NewEmbeddedNATS(t).ClientURL()
	q, _ := testsupport.NewQueue(t, cfg)
	target := reg.Addr() + "/old/app"

	stats, err := service.NewBackfiller(testsupport.PlainRepos(t), store, q, service.WithSince(24*time.Hour)).Run(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 0 || stats.Older != 1 {
		t.Errorf("--since 24h: %+v, want the old image left alone", stats)
	}
	stats, err = service.NewBackfiller(testsupport.PlainRepos(t), store, q).Run(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 1 {
		t.Errorf("no --since: %+v, want the image enqueued", stats)
	}
	qs, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if qs.Messages != 1 {
		t.Errorf("%d jobs in the queue, want 1", qs.Messages)
	}
}

// TestOpenBackfillerFindsAllInOneServer: `indexer backfill` without URLs
// reaches the running all-in-one server through its data directory.
func TestOpenBackfillerFindsAllInOneServer(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.PlainHTTP = true
	s := startServer(t, cfg)
	reg := testsupport.StartRegistry(t, "", "")
	img := testsupport.PushImage(t, reg.Addr(), "cli/app", "v1", testsupport.LayerSize)

	b, closeAll, err := OpenBackfiller(context.Background(), cfg, testsupport.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	stats, err := b.Run(context.Background(), reg.Addr()+"/cli/app")
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 1 {
		t.Fatalf("backfill: %+v", stats)
	}
	testsupport.WaitJob(t, s.Store(), db.JobKey{Registry: reg.Addr(), Repository: "cli/app", Digest: img.Digest.String(), Tag: "v1"},
		20*time.Second, db.JobSucceeded)
}

// TestBackfillRetryFailed: an image whose job failed for good is left
// alone, unless the backfill is asked to retry failures.
func TestBackfillRetryFailed(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	img := testsupport.PushImage(t, reg.Addr(), "failed/app", "v1", testsupport.LayerSize)
	store := testsupport.NewSQLite(t)
	cfg := testsupport.Config(t)
	cfg.NATSURL = testsupport.NewEmbeddedNATS(t).ClientURL()
	q, _ := testsupport.NewQueue(t, cfg)
	target := reg.Addr() + "/failed/app"

	ctx := context.Background()
	key := db.JobKey{Registry: reg.Addr(), Repository: "failed/app", Digest: img.Digest.String(), Tag: "v1"}
	if _, err := store.Start(ctx, key, "worker-1"); err != nil {
		t.Fatal(err)
	}
	if err := store.Fail(ctx, key, errors.New("401 unauthorized"), true); err != nil {
		t.Fatal(err)
	}
	stats, err := service.NewBackfiller(testsupport.PlainRepos(t), store, q).Run(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 0 || stats.Failed != 1 || stats.Indexed != 0 {
		t.Errorf("without retry: %+v, want the failed image left alone, counted as failed (not indexed)", stats)
	}
	stats, err = service.NewBackfiller(testsupport.PlainRepos(t), store, q, service.WithRetryFailed(true)).Run(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Enqueued != 1 {
		t.Errorf("with retry: %+v, want the failed image enqueued", stats)
	}
	qs, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if qs.Messages != 1 {
		t.Errorf("%d jobs in the queue, want 1", qs.Messages)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAllInOneRefusesOtherRegistries: the all-in-one server's allow-list is
// its embedded registry. An authenticated event naming another host is
// dropped at the webhook (counted under reason "registry") and never
// becomes a job; an event for the embedded registry right after is indexed.
func TestAllInOneRefusesOtherRegistries(t *testing.T) {
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)
	img := testsupport.PushImage(t, s.RegistryAddr(), "allow/app", "v1", testsupport.LayerSize, testsupport.LayerSize)

	postEvent(t, s, distributionEnvelope("evil", "evil.example:5000", "allow/app", "v1", img))
	text := scrape(t, s)
	if !strings.Contains(text, `soci_indexer_webhook_events_dropped_total{reason="registry",source="distribution"} 1`) {
		t.Fatalf("the event for another host was not dropped for its registry:\n%s", grepLines(text, "webhook_events"))
	}

	postEvent(t, s, distributionEnvelope("good", s.RegistryAddr(), "allow/app", "v1", img))
	testsupport.WaitJob(t, s.Store(), db.JobKey{Registry: s.RegistryAddr(), Repository: "allow/app", Digest: img.Digest.String(), Tag: "v1"},
		20*time.Second, db.JobSucceeded)
	evil := db.JobKey{Registry: "evil.example:5000", Repository: "allow/app", Digest: img.Digest.String(), Tag: "v1"}
	if job, err := s.Store().Get(context.Background(), evil); !errors.Is(err, db.ErrJobNotFound) {
		t.Errorf("job for the host outside the allow-list: %+v, %v; want none", job, err)
	}
	// The job is recorded as succeeded before its message is acked and
	// removed from the work stream: wait for the removal.
	testsupport.WaitFor(t, 10*time.Second, "an empty queue after the run", func() (bool, error) {
		stats, err := s.Queue().Stats(context.Background())
		if err != nil {
			return false, err
		}
		return stats.Messages == 0 && stats.DeadLetters == 0, fmt.Errorf("queue %+v", stats)
	})
}
