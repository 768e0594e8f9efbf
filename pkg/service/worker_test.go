package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// newTestWorker returns a worker on plain-HTTP registries with small spans
// and no minimum layer size.
func newTestWorker(t *testing.T, store Store, spanSize int64, v index.IndexVersion) *Worker {
	t.Helper()
	build, identity := testsupport.WorkerBuild(spanSize)
	return NewWorker(testsupport.PlainRepos(t), store,
		WithBuildOptions(build...),
		WithOptionsIdentity(identity),
		WithIndexVersion(v),
		WithLogger(testsupport.Logger(t)),
	)
}

// TestTwoWorkersOneImage: workers racing on one image make one index, and
// workers with different options racing on one image lose no referrer.
func TestTwoWorkersOneImage(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushImage(t, reg.Addr(), "race/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	job := testsupport.PushJob(reg.Addr(), "race/app", "v1", img)

	run := func(workers ...*Worker) []error {
		errs := make([]error, len(workers))
		var wg sync.WaitGroup
		for i, w := range workers {
			wg.Go(func() { errs[i] = w.Process(context.Background(), job, false) })
		}
		wg.Wait()
		return errs
	}

	// Same options: the second waits for the first, then finds the image
	// indexed.
	m := NewMetrics()
	a, b := newTestWorker(t, store, 128<<10, index.V1), newTestWorker(t, store, 128<<10, index.V1)
	a.metrics, b.metrics = m, m
	for _, err := range run(a, b) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if refs := testsupport.V1Indexes(t, reg.Addr(), "race/app", img); len(refs) != 1 {
		t.Fatalf("same options: %d v1 indexes, want 1", len(refs))
	}
	succeeded := testutil.ToFloat64(m.jobs.WithLabelValues("push", string(OutcomeSucceeded)))
	skipped := testutil.ToFloat64(m.jobs.WithLabelValues("push", string(OutcomeSkipped)))
	if succeeded != 1 || skipped != 1 {
		t.Errorf("same options: %v succeeded and %v skipped, want one each", succeeded, skipped)
	}

	// Two more option sets at once: two more indexes, all three listed.
	for _, err := range run(newTestWorker(t, store, 64<<10, index.V1), newTestWorker(t, store, 256<<10, index.V1)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if refs := testsupport.V1Indexes(t, reg.Addr(), "race/app", img); len(refs) != 3 {
		t.Fatalf("three option sets: %d v1 indexes in the referrers list, want 3 (a referrer was lost)", len(refs))
	}
	key := db.JobKey{Registry: reg.Addr(), Repository: "race/app", Digest: img.Digest.String(), Tag: "v1"}
	if j, err := store.Get(context.Background(), key); err != nil || j.Status != db.JobSucceeded {
		t.Fatalf("job: %+v, %v", j, err)
	}
}

// TestOwnArtifactsAreSkipped: the artifacts a build pushes come back as
// events; they must not be indexed, nor recorded as jobs.
func TestOwnArtifactsAreSkipped(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushImage(t, reg.Addr(), "own/app", "v1", testsupport.LayerSize)
	w := newTestWorker(t, store, 128<<10, index.Both)
	if err := w.Process(context.Background(), testsupport.PushJob(reg.Addr(), "own/app", "v1", img), false); err != nil {
		t.Fatal(err)
	}
	repo, err := testsupport.PlainRepos(t)(context.Background(), reg.Addr(), "own/app")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	if err := repo.Tags(context.Background(), "", func(page []string) error { tags = append(tags, page...); return nil }); err != nil {
		t.Fatal(err)
	}
	own := map[string]bool{}
	for _, tag := range tags {
		desc, err := repo.Resolve(context.Background(), tag)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != img.Digest {
			own[desc.Digest.String()] = true
		}
	}
	soci := testsupport.V1Indexes(t, reg.Addr(), "own/app", img)
	for _, d := range soci {
		own[d.Digest.String()] = true
	}
	if len(own) < 3 { // v2 image index (tag), referrers index (tag), v1 index
		t.Fatalf("expected our artifacts in the repository, found %v (tags %v)", own, tags)
	}
	for d := range own {
		job := queue.Job{Source: "test", Registry: reg.Addr(), Repository: "own/app", Digest: d, Action: queue.ActionPush}
		if err := w.Process(context.Background(), job, false); err != nil {
			t.Errorf("own artifact %s: %v", d, err)
		}
		recs, err := store.List(context.Background(), db.JobFilter{Registry: reg.Addr(), Repository: "own/app", Digest: d})
		if err != nil || len(recs) != 0 {
			t.Errorf("own artifact %s got a job record: %+v (err %v)", d, recs, err)
		}
	}
	if refs := testsupport.V1Indexes(t, reg.Addr(), "own/app", img); len(refs) != 1 {
		t.Errorf("%d v1 indexes after replaying our own events, want 1", len(refs))
	}
}

// TestCorruptLayerFailsForGood: a layer that is not what its media type
// says fails the job permanently with the reason kept.
func TestCorruptLayerFailsForGood(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushCorruptImage(t, reg.Addr(), "bad/app", "v1")
	w := newTestWorker(t, store, 128<<10, index.V2)
	err := w.Process(context.Background(), testsupport.PushJob(reg.Addr(), "bad/app", "v1", img), false)
	if !errors.Is(err, queue.ErrPermanent) {
		t.Fatalf("Process = %v, want a permanent error", err)
	}
	job, err := store.Get(context.Background(), db.JobKey{Registry: reg.Addr(), Repository: "bad/app", Digest: img.Digest.String(), Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != db.JobFailed || !strings.Contains(job.LastError, "gzip") {
		t.Errorf("job %s with error %q, want failed with a gzip error", job.Status, job.LastError)
	}
}

// TestManifestGoneFails: a job for a manifest that no longer exists fails
// without retries.
func TestManifestGoneFails(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	w := newTestWorker(t, testsupport.NewSQLite(t), 128<<10, index.V2)
	job := queue.Job{Registry: reg.Addr(), Repository: "gone/app", Action: queue.ActionPush,
		Digest: digest.FromString("nothing").String(), Tag: "v1"}
	err := w.Process(context.Background(), job, false)
	if !errors.Is(err, queue.ErrPermanent) || !errors.Is(err, ErrManifestGone) {
		t.Fatalf("Process = %v, want permanent ErrManifestGone", err)
	}
}

// TestSmallLayersAreSkipped: an image without a layer worth a zTOC is
// skipped, not failed.
func TestSmallLayersAreSkipped(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushImage(t, reg.Addr(), "small/app", "v1", 64<<10)
	w := NewWorker(testsupport.PlainRepos(t), store, WithBuildOptions(index.WithMinLayerSize(10<<20)))
	if err := w.Process(context.Background(), testsupport.PushJob(reg.Addr(), "small/app", "v1", img), false); err != nil {
		t.Fatal(err)
	}
	job, err := store.Get(context.Background(), db.JobKey{Registry: reg.Addr(), Repository: "small/app", Digest: img.Digest.String(), Tag: "v1"})
	if err != nil || job.Status != db.JobSkipped || job.SkipReason == "" {
		t.Fatalf("job %+v, %v: want skipped with a reason", job, err)
	}
}

// TestDeleteRemovesArtifacts: deleting an image removes its v1 index (and
// the referrers tag), its v2 image index and tag, and the zTOCs only it
// used; zTOCs another image uses stay.
func TestDeleteRemovesArtifacts(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	ctx := context.Background()
	w := newTestWorker(t, store, 128<<10, index.Both)
	// Two images sharing their first layer.
	seeds := []uint64{uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano()) + 1, uint64(time.Now().UnixNano()) + 2}
	gone := testsupport.PushImageSeeds(t, reg.Addr(), "gc/app", "v1", seeds[:2], []int64{testsupport.LayerSize, testsupport.LayerSize})
	kept := testsupport.PushImageSeeds(t, reg.Addr(), "gc/app", "v2", []uint64{seeds[0], seeds[2]}, []int64{testsupport.LayerSize, testsupport.LayerSize})
	for tag, img := range map[string]ocispec.Descriptor{"v1": gone, "v2": kept} {
		if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), "gc/app", tag, img), false); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), "gc/app")
	if err != nil {
		t.Fatal(err)
	}
	v1 := testsupport.V1Indexes(t, reg.Addr(), "gc/app", gone)
	if len(v1) != 1 {
		t.Fatalf("%d v1 indexes before the delete", len(v1))
	}
	if _, err := testsupport.V2Index(ctx, repo, "v1-soci"); err != nil {
		t.Fatalf("no v2 index before the delete: %v", err)
	}
	ztocs := testsupport.ZTOCs(t, repo, v1[0])

	// The registry deletes the image, and sends the event.
	if err := repo.Manifests().Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	del := queue.Job{Source: "test", Registry: reg.Addr(), Repository: "gc/app", Digest: gone.Digest.String(), Action: queue.ActionDelete}
	if err := w.Process(ctx, del, false); err != nil {
		t.Fatal(err)
	}

	if exists, _ := repo.Exists(ctx, v1[0]); exists {
		t.Error("v1 index still in the registry")
	}
	if _, err := repo.Resolve(ctx, "sha256-"+gone.Digest.Encoded()); err == nil {
		t.Error("referrers tag still in the registry")
	}
	if _, err := testsupport.V2Index(ctx, repo, "v1-soci"); err == nil {
		t.Error("v2 tag v1-soci still in the registry")
	}
	if _, err := testsupport.V2Index(ctx, repo, "v2-soci"); err != nil {
		t.Errorf("the other image's v2 index went too: %v", err)
	}
	shared, only := ztocs[0], ztocs[1]
	if ok, err := repo.Blobs().Exists(ctx, shared); err != nil || !ok {
		t.Errorf("zTOC shared with the other image was deleted (%v)", err)
	}
	if ok, _ := repo.Blobs().Exists(ctx, only); ok {
		t.Error("zTOC only the deleted image used is still there")
	}
	if _, err := store.GetArtifactEntry(ctx, v1[0].Digest.String()); err == nil {
		t.Error("v1 index still recorded")
	}
	if _, err := store.Get(ctx, db.JobKey{Registry: reg.Addr(), Repository: "gc/app", Digest: gone.Digest.String(), Tag: "v1"}); !errors.Is(err, db.ErrJobNotFound) {
		t.Errorf("job of the deleted image: %v, want not found", err)
	}
}
