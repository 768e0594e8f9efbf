package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"oras.land/oras-go/v2/errdef"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// recordingPublisher is a Publisher that keeps what it was given and
// answers duplicates by Job.Key, as JetStream's dedup window does.
type recordingPublisher struct {
	mu   sync.Mutex
	seen map[string]bool
	jobs []queue.Job
}

func (p *recordingPublisher) Publish(_ context.Context, job queue.Job) (queue.PublishAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[job.Key()] {
		return queue.PublishAck{Duplicate: true}, nil
	}
	p.seen[job.Key()] = true
	p.jobs = append(p.jobs, job)
	return queue.PublishAck{Sequence: uint64(len(p.jobs))}, nil
}

func tagKey(registry, repository string, img ocispec.Descriptor, tag string) db.JobKey {
	return db.JobKey{Registry: registry, Repository: repository, Digest: img.Digest.String(), Tag: tag}
}

// TestTagsOfOneImage: one digest pushed under a, then b, then c gets
// a-soci, b-soci and c-soci from one zTOC build; deleting tag b removes
// b-soci only; a backfill right after finds every tag indexed and enqueues
// nothing.
func TestTagsOfOneImage(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	m := NewMetrics()
	w := newTestWorker(t, store, 128<<10, index.V2)
	w.metrics = m
	ctx := context.Background()
	const repository = "tags/app"
	img := testsupport.PushImage(t, reg.Addr(), repository, "a", testsupport.LayerSize, testsupport.LayerSize)
	repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), repository)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"a", "b", "c"} {
		if err := repo.Tag(ctx, img, tag); err != nil {
			t.Fatal(err)
		}
		if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), repository, tag, img), false); err != nil {
			t.Fatalf("push under %s: %v", tag, err)
		}
	}
	if built := testutil.ToFloat64(m.ztocs.WithLabelValues("built")); built != 2 {
		t.Errorf("%v zTOCs built for one image of 2 layers under 3 tags, want 2", built)
	}
	if reused := testutil.ToFloat64(m.ztocs.WithLabelValues("reused")); reused != 0 {
		t.Errorf("%v zTOCs reused: the later tags read the layers again", reused)
	}
	var sociImage string
	for _, tag := range []string{"a", "b", "c"} {
		job, err := store.Get(ctx, tagKey(reg.Addr(), repository, img, tag))
		if err != nil || job.Status != db.JobSucceeded || job.IndexDigest == "" {
			t.Fatalf("job of tag %s: %+v, %v", tag, job, err)
		}
		if tag != "a" && job.BytesRead != 0 {
			t.Errorf("tag %s read %d layer bytes, want 0 (a tag operation)", tag, job.BytesRead)
		}
		desc, err := repo.Resolve(ctx, tag+"-soci")
		if err != nil {
			t.Fatalf("%s-soci: %v", tag, err)
		}
		if sociImage == "" {
			sociImage = desc.Digest.String()
		}
		if desc.Digest.String() != sociImage || job.IndexDigest != sociImage {
			t.Errorf("%s-soci is %s (recorded %s), want the one SOCI-enabled index %s", tag, desc.Digest, job.IndexDigest, sociImage)
		}
	}

	// Tag b is deleted (by tag: the digest stays).
	if status, err := deleteTagReference(ctx, repo, "b"); err != nil || status != 202 {
		t.Fatalf("delete tag b: %d, %v", status, err)
	}
	del := queue.Job{Source: "test", Registry: reg.Addr(), Repository: repository, Tag: "b", Action: queue.ActionDelete}
	if err := w.Process(ctx, del, false); err != nil {
		t.Fatalf("tag delete: %v", err)
	}
	if _, err := repo.Resolve(ctx, "b-soci"); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("b-soci after deleting b: %v, want not found", err)
	}
	for _, tag := range []string{"a", "c"} {
		if _, err := repo.Resolve(ctx, tag+"-soci"); err != nil {
			t.Errorf("%s-soci went with b: %v", tag, err)
		}
		if _, err := store.Get(ctx, tagKey(reg.Addr(), repository, img, tag)); err != nil {
			t.Errorf("job of %s went with b: %v", tag, err)
		}
	}
	if _, err := store.Get(ctx, tagKey(reg.Addr(), repository, img, "b")); !errors.Is(err, db.ErrJobNotFound) {
		t.Errorf("job of the deleted tag: %v, want not found", err)
	}
	if _, err := repo.Resolve(ctx, img.Digest.String()); err != nil {
		t.Errorf("the image itself went with its tag: %v", err)
	}

	pub := &recordingPublisher{}
	stats, err := NewBackfiller(testsupport.PlainRepos(t), store, pub, WithIndexedBy(w)).Run(ctx, reg.Addr()+"/"+repository)
	if err != nil {
		t.Fatal(err)
	}
	// a, c and their -soci tags: two indexed, two ours.
	if stats.Enqueued != 0 || stats.Duplicates != 0 || stats.Indexed != 2 || stats.Ours != 2 || len(pub.jobs) != 0 {
		t.Errorf("backfill after one pass: %+v (%d published), want a and c indexed, their v2 tags ours, nothing enqueued",
			stats, len(pub.jobs))
	}
}

// TestBackfillCountsDuplicatesApart: what the queue already holds is a
// duplicate, not an enqueued job, and an image with no record is never
// counted as indexed.
func TestBackfillCountsDuplicatesApart(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushImage(t, reg.Addr(), "dups/app", "v1", testsupport.LayerSize)
	ctx := context.Background()
	pub := &recordingPublisher{}
	b := NewBackfiller(testsupport.PlainRepos(t), store, pub)
	first, err := b.Run(ctx, reg.Addr()+"/dups/app")
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Run(ctx, reg.Addr()+"/dups/app")
	if err != nil {
		t.Fatal(err)
	}
	if first.Enqueued != 1 || first.Indexed != 0 || second.Enqueued != 0 || second.Duplicates != 1 || second.Indexed != 0 {
		t.Errorf("runs = %+v then %+v, want 1 enqueued then 1 duplicate, never indexed", first, second)
	}
	if len(pub.jobs) != 1 || pub.jobs[0].Digest != img.Digest.String() || pub.jobs[0].Tag != "v1" {
		t.Errorf("published %+v", pub.jobs)
	}
}

// TestTruncatedGzipFailsOnFirstDelivery: a truncated gzip layer (every
// byte there, digest verified) fails for good on its first delivery, with
// its reason, although its error wraps io.ErrUnexpectedEOF.
func TestTruncatedGzipFailsOnFirstDelivery(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushTruncatedGzipImage(t, reg.Addr(), "trunc/app", "v1")
	w := newTestWorker(t, store, 128<<10, index.V2)
	err := w.Process(context.Background(), testsupport.PushJob(reg.Addr(), "trunc/app", "v1", img), false)
	if !errors.Is(err, queue.ErrPermanent) || !errors.Is(err, index.ErrCorruptLayer) {
		t.Fatalf("first delivery: %v, want a permanent corrupt-layer error", err)
	}
	job, err := store.Get(context.Background(), tagKey(reg.Addr(), "trunc/app", img, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != db.JobFailed || job.Attempts != 1 || !strings.Contains(job.LastError, "corrupt layer") {
		t.Errorf("job %+v, want failed after one attempt with the reason", job)
	}
}

// TestRegistryAllowList: a worker refuses a job for a host outside its
// allow-list, and records why; an allowed host is indexed.
func TestRegistryAllowList(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	img := testsupport.PushImage(t, reg.Addr(), "allow/app", "v1", testsupport.LayerSize)
	w := NewWorker(testsupport.PlainRepos(t), store, WithBuildOptions(index.WithSpanSize(128<<10), index.WithMinLayerSize(0)),
		WithAllowedRegistries("registry.example:5000", strings.ToUpper(reg.Addr())), WithLogger(testsupport.Logger(t)))
	ctx := context.Background()
	if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), "allow/app", "v1", img), false); err != nil {
		t.Fatalf("allowed host: %v", err)
	}
	evil := testsupport.PushJob("evil.example:5000", "allow/app", "v1", img)
	err := w.Process(ctx, evil, false)
	if !errors.Is(err, queue.ErrPermanent) || !errors.Is(err, ErrRegistryNotAllowed) {
		t.Fatalf("host outside the allow-list: %v, want a permanent ErrRegistryNotAllowed", err)
	}
	job, err := store.Get(ctx, tagKey("evil.example:5000", "allow/app", img, "v1"))
	if err != nil || job.Status != db.JobFailed || !strings.Contains(job.LastError, "allow-list") {
		t.Errorf("refused job record: %+v, %v", job, err)
	}
}

// TestAbandonedAttemptClosedOnRedelivery: an attempt left running by a
// worker that died (the process exited between Start and the outcome) is
// closed as abandoned when the job is delivered again and succeeds.
func TestAbandonedAttemptClosedOnRedelivery(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	dsn, _ := testpg.NewDatabase(t, "svc")
	img := testsupport.PushImage(t, reg.Addr(), "dead/app", "v1", testsupport.LayerSize)
	key := tagKey(reg.Addr(), "dead/app", img, "v1")
	ctx := context.Background()
	// The dead worker: its own store (its own connections), closed with an
	// attempt running, as a SIGKILL leaves it.
	dead, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Start(ctx, key, "dead-worker"); err != nil {
		t.Fatal(err)
	}
	dead.Close()

	store := testsupport.OpenStore(t, dsn)
	w := newTestWorker(t, store, 128<<10, index.V2)
	if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), "dead/app", "v1", img), false); err != nil {
		t.Fatal(err)
	}
	attempts, err := store.Attempts(ctx, key)
	if err != nil || len(attempts) != 2 {
		t.Fatalf("attempts = %+v, %v", attempts, err)
	}
	if a := attempts[0]; a.Status != db.JobAbandoned || a.Worker != "dead-worker" || a.FinishedAt.IsZero() {
		t.Errorf("the dead worker's attempt = %+v, want abandoned", a)
	}
	if a := attempts[1]; a.Status != db.JobSucceeded {
		t.Errorf("the redelivery's attempt = %+v, want succeeded", a)
	}
}
