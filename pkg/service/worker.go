// Package service is the registry-side SOCI indexing service as a library:
// the workers that turn queued jobs into pushed SOCI indexes (Worker), the
// handling of delete events, the backfill walker that enqueues what events
// missed, and their metrics. Everything is built from plain options
// (RepositoryFunc, Store, WorkerOption, BackfillOption); the process that
// runs them (`indexer serve`: settings, embedded NATS and registry, HTTP
// endpoints) is internal/app.
//
// A push goes: registry notification → pkg/webhook → queue.Publish →
// JetStream → queue.Consume (internal/app's Server.Run) → Worker.Handle →
// Worker.Process → processPush (this file) → index.IndexBuilder.BuildImage
// → SOCI index in the registry, artifacts and job outcome in the database →
// ack. Deletes go to processDelete (gc.go).
package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Store is what workers need from the database: pkg/db's Store.
type Store = db.Store

// Worker handles index jobs. One Worker serves any number of concurrent
// jobs; Handle is a queue.Handler.
type Worker struct {
	repos       RepositoryFunc
	store       Store
	buildOpts   []index.BuildOption
	versions    index.IndexVersion
	optionsHash string
	name        string
	jobTimeout  time.Duration
	lockWait    time.Duration
	metrics     *Metrics
	log         *slog.Logger
	allowed     []string // lowercased hosts; empty: all
	allow       func(string) bool
}

// WorkerOption configures a Worker.
type WorkerOption func(*Worker)

// WithBuildOptions adds index build options (span size, minimum layer size,
// platforms, layer concurrency...). The worker itself adds the artifacts
// database, the locker, the logger and the progress callback.
func WithBuildOptions(opts ...index.BuildOption) WorkerOption {
	return func(w *Worker) { w.buildOpts = append(w.buildOpts, opts...) }
}

// WithIndexVersion chooses the SOCI index versions to build (default V2,
// what soci-snapshotter reads by default).
func WithIndexVersion(v index.IndexVersion) WorkerOption {
	return func(w *Worker) { w.versions = v }
}

// WithOptionsIdentity sets the text that identifies the build options, so
// that an image indexed with other options is indexed again. Settings that
// change the built artifacts (span size, minimum layer size, platforms, tag
// template) belong in it; the index version is added by the worker.
func WithOptionsIdentity(s string) WorkerOption {
	return func(w *Worker) { w.optionsHash = s }
}

// WithWorkerName names this worker process in job records (default
// hostname:pid).
func WithWorkerName(name string) WorkerOption {
	return func(w *Worker) { w.name = name }
}

// WithJobTimeout bounds one job (default 30m).
func WithJobTimeout(d time.Duration) WorkerOption {
	return func(w *Worker) { w.jobTimeout = d }
}

// WithLockWait bounds the wait for another worker busy with the same
// image (default 10m); past it the job is retried later.
func WithLockWait(d time.Duration) WorkerOption {
	return func(w *Worker) { w.lockWait = d }
}

// WithAllowedRegistries names the registry hosts (host[:port], as jobs
// name them) the worker may reach; a job for any other host fails at once
// with ErrRegistryNotAllowed. None means every host.
func WithAllowedRegistries(hosts ...string) WorkerOption {
	return func(w *Worker) {
		for _, h := range hosts {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
				w.allowed = append(w.allowed, h)
			}
		}
	}
}

// WithRegistryAllowed decides which registry hosts the worker may reach,
// instead of WithAllowedRegistries.
func WithRegistryAllowed(allow func(host string) bool) WorkerOption {
	return func(w *Worker) { w.allow = allow }
}

func (w *Worker) registryAllowed(host string) bool {
	if w.allow != nil {
		return w.allow(host)
	}
	return len(w.allowed) == 0 || slices.Contains(w.allowed, strings.ToLower(host))
}

// WithMetrics records the worker's metrics in m.
func WithMetrics(m *Metrics) WorkerOption {
	return func(w *Worker) { w.metrics = m }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) WorkerOption {
	return func(w *Worker) { w.log = l }
}

// NewWorker returns a worker that reaches registries through repos and
// records in store.
func NewWorker(repos RepositoryFunc, store Store, opts ...WorkerOption) *Worker {
	host, _ := os.Hostname()
	w := &Worker{
		repos:      repos,
		store:      store,
		versions:   index.V2,
		name:       fmt.Sprintf("%s:%d", host, os.Getpid()),
		jobTimeout: 30 * time.Minute,
		lockWait:   10 * time.Minute,
		log:        slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(w)
	}
	sum := sha256.Sum256([]byte(w.optionsHash + "|versions=" + w.versions.String() + "|builder=" + index.DefaultBuilderVersion))
	w.optionsHash = hex.EncodeToString(sum[:12])
	return w
}

// Handle is the queue.Handler of the workers: it signals progress to
// JetStream while the job runs and maps the result onto ack (nil), term
// (queue.Permanent) and nak with backoff (other errors).
func (w *Worker) Handle(ctx context.Context, d *queue.Delivery) error {
	if d.NumDelivered == 1 {
		if t := firstTime(d.Job.ReceivedAt, d.Job.OccurredAt); !t.IsZero() {
			w.metrics.observeStage(StageQueueWait, time.Since(t))
		}
	}
	stop := d.KeepAlive(ctx)
	defer stop()
	return w.Process(ctx, d.Job, d.Final())
}

func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// Process handles one job and records its outcome. It returns nil when
// the job is done (indexed, removed or skipped), an error wrapping
// queue.ErrPermanent when retrying cannot help, and any other error for a
// transient failure. final says that no retry will follow, so a transient
// failure is recorded as a permanent one.
func (w *Worker) Process(ctx context.Context, job queue.Job, final bool) error {
	ctx, cancel := context.WithTimeout(ctx, w.jobTimeout)
	defer cancel()
	log := w.log.With("registry", job.Registry, "repository", job.Repository, "digest", job.Digest,
		"action", string(job.Action))
	if job.Tag != "" {
		log = log.With("tag", job.Tag)
	}
	w.metrics.addInFlight(1)
	defer w.metrics.addInFlight(-1)
	start := time.Now()
	var (
		outcome Outcome
		err     error
	)
	switch job.Action {
	case queue.ActionDelete:
		outcome, err = w.processDelete(ctx, log, job)
	default:
		outcome, err = w.processPush(ctx, log, job, final)
	}
	w.metrics.countJob(string(job.Action), outcome)
	w.metrics.observeStage(StageTotal, time.Since(start))
	switch outcome {
	case OutcomeRetried:
		log.Warn("job failed, will retry", "error", err)
		if db.IsTransient(err) {
			w.waitForStore(ctx, log)
		}
		return err
	case OutcomeFailed:
		log.Error("job failed", "error", err)
		return queue.Permanent(err)
	}
	return nil
}

// waitForStore waits, for a while, until the database answers again, so
// that a retry does not spend a delivery on an outage; pinging also drops
// the pool's dead connections.
func (w *Worker) waitForStore(ctx context.Context, log *slog.Logger) {
	delay := 100 * time.Millisecond
	for range 8 {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.store.Ping(pingCtx)
		cancel()
		if err == nil {
			return
		}
		log.Debug("database unavailable", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// processPush indexes the image a push event names, under the event's tag.
//
// A job is (image digest, tag). Under the image's lock (one worker per
// digest at a time, whatever the tag), the job is done when this tag was
// indexed with the same options; when another tag of the image was, the
// new tag's v2 index is a tag operation on the SOCI-enabled image index
// that exists (no layer read, no zTOC built); otherwise the image is built.
func (w *Worker) processPush(ctx context.Context, log *slog.Logger, job queue.Job, final bool) (Outcome, error) {
	if index.IsReferrersTag(job.Tag) {
		log.Info("job skipped: our own artifact", "reason", "referrers tag")
		return OutcomeSkipped, nil
	}
	key := db.JobKey{Registry: job.Registry, Repository: job.Repository, Digest: job.Digest, Tag: job.Tag}
	rec := jobRecorder{store: w.store, key: key, log: log, worker: w.name}
	if !w.registryAllowed(job.Registry) {
		return rec.refuse(ctx, fmt.Errorf("%w: %s", ErrRegistryNotAllowed, job.Registry), final)
	}
	repo, err := w.repos(ctx, job.Registry, job.Repository)
	if err != nil {
		return rec.refuse(ctx, err, final)
	}
	// Distribution cannot delete, by default: never let a stale referrers
	// index fail a push.
	repo.SkipReferrersGC = true

	// By digest, never by tag: the tag may not exist yet when the event
	// arrives.
	desc, body, err := fetchManifest(ctx, repo, job.Digest)
	if err != nil {
		// Nothing is recorded for a transient failure before Start; a
		// permanent one (manifest gone) leaves its record.
		if isTransient(err) && !final {
			return OutcomeRetried, err
		}
		return rec.refuse(ctx, err, true)
	}
	kind, err := classify(ctx, repo, desc.MediaType, body, job.Tag)
	if err != nil {
		if isTransient(err) && !final {
			return OutcomeRetried, err
		}
		return rec.refuse(ctx, err, true)
	}
	if kind.Ours() {
		log.Info("job skipped: our own artifact", "reason", kind.Reason)
		return OutcomeSkipped, nil
	}

	// One worker per image at a time, on one lock session: the referrers
	// locks the build takes go on the same connection, so the job lock can
	// never keep a job from its next lock (db.LockSession).
	lockCtx, cancelLock := context.WithTimeout(ctx, w.lockWait)
	defer cancelLock()
	locks, err := w.store.LockSession(lockCtx)
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("wait for a lock session: %w", err), final)
	}
	defer locks.Close()
	unlock, err := locks.Lock(lockCtx, index.ImageLockKey(job.Repository, desc.Digest))
	cancelLock()
	if err != nil {
		// A worker that hangs holding the image (not one that died: its
		// lock goes with its session) must not hold this job forever.
		return w.transientOrFailed(fmt.Errorf("wait for another worker on this image: %w", err), final)
	}
	defer unlock()
	// Before Start, which marks the job running: a job already indexed
	// keeps its record as it is.
	indexed, err := w.store.IsIndexed(ctx, key, w.optionsHash)
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("check index state: %w", err), final)
	}
	if indexed {
		log.Info("job skipped: already indexed with the same options")
		return OutcomeSkipped, nil
	}
	if _, err := w.store.UpsertQueued(ctx, key, job.Source); err != nil {
		return w.transientOrFailed(fmt.Errorf("record job: %w", err), final)
	}
	if _, err := w.store.Start(ctx, key, w.name); err != nil {
		return w.transientOrFailed(fmt.Errorf("record job start: %w", err), final)
	}
	if !kind.Indexable() {
		return rec.skip(ctx, kind.Reason)
	}
	if kind.Class == index.ClassImage && job.Tag == "" && w.versions == index.V2 {
		// A v2 index needs a tag. Untagged manifests are the platform
		// children of an image index, which is indexed through its own event.
		return rec.skip(ctx, "untagged manifest: a v2 index needs a tag (multi-platform images are indexed through their image index)")
	}
	if outcome, err, done := w.addTag(ctx, log, rec, repo, job, desc, final); done {
		return outcome, err
	}

	results, stats, err := w.build(ctx, log, repo, locks, index.Image{Descriptor: desc, Tag: job.Tag})
	w.metrics.addBytes(stats.bytesRead)
	if errors.Is(err, index.ErrEmptyIndex) {
		return rec.skip(ctx, "no layer gets a zTOC (all smaller than the minimum layer size, or zstd)")
	}
	if err != nil {
		return rec.fail(ctx, fmt.Errorf("build soci index: %w", err), final)
	}
	w.metrics.observeStage(StageBuild, stats.layersDone.Sub(stats.start))
	w.metrics.observeStage(StagePush, stats.end.Sub(stats.layersDone))

	uses, builtCount, reused := layerUses(results)
	w.metrics.countZtocs(builtCount, reused)
	if err := w.store.RecordLayerUses(ctx, key, uses); err != nil {
		return rec.fail(ctx, fmt.Errorf("record layers: %w", err), final)
	}
	result := db.JobResult{BytesRead: stats.bytesRead, OptionsHash: w.optionsHash}
	for _, r := range results {
		if r.Version == index.V2 {
			result.IndexDigest = r.ImageDesc.Digest.String()
		}
	}
	if err := w.store.Succeed(ctx, key, result); err != nil {
		return w.transientOrFailed(fmt.Errorf("record job success: %w", err), final)
	}
	for _, r := range results {
		log.Info("soci index pushed", "index", r.Desc.Digest, "version", r.Version.String(),
			"platform", index.FormatPlatform(r.Platform), "v2_tag", r.Tag, "ztocs", len(r.Index.Blobs))
	}
	log.Info("job succeeded", "indexes", len(results), "ztocs_built", builtCount, "ztocs_reused", reused,
		"bytes_read", stats.bytesRead, "seconds", stats.end.Sub(stats.start).Seconds())
	return OutcomeSucceeded, nil
}

// addTag finishes the job of a new tag of an image another tag of which
// was indexed with the same options: the v1 indexes belong to the image
// whatever its tag, and the v2 SOCI-enabled image index is tagged under the
// new tag's v2 tag. done is false when there is no such sibling, or its v2
// index is gone from the registry: then the image is built.
func (w *Worker) addTag(ctx context.Context, log *slog.Logger, rec jobRecorder, repo *remote.Repository, job queue.Job, desc ocispec.Descriptor, final bool) (Outcome, error, bool) {
	sibling, err := w.store.FindIndexed(ctx, rec.key, w.optionsHash)
	if errors.Is(err, db.ErrJobNotFound) {
		return "", nil, false
	}
	if err != nil {
		outcome, err := rec.fail(ctx, fmt.Errorf("find another tag's index: %w", err), final)
		return outcome, err, true
	}
	wantV2 := w.versions&index.V2 != 0 && job.Tag != ""
	result := db.JobResult{OptionsHash: w.optionsHash}
	if wantV2 {
		if sibling.IndexDigest == "" {
			return "", nil, false
		}
		builder, err := index.NewIndexBuilder(repo, w.buildOpts...)
		if err != nil {
			outcome, err := rec.fail(ctx, fmt.Errorf("index builder: %w", err), final)
			return outcome, err, true
		}
		v2Tag := builder.V2Tag(job.Tag)
		sociImage, err := repo.Manifests().Resolve(ctx, sibling.IndexDigest)
		if errors.Is(err, errdef.ErrNotFound) {
			log.Info("the v2 index of another tag is gone: building", "other_tag", sibling.Tag, "index", sibling.IndexDigest)
			return "", nil, false
		}
		if err == nil {
			err = repo.Tag(ctx, sociImage, v2Tag)
		}
		if err != nil {
			outcome, err := rec.fail(ctx, fmt.Errorf("tag the v2 index %s as %s: %w", sibling.IndexDigest, v2Tag, err), final)
			return outcome, err, true
		}
		result.IndexDigest = sibling.IndexDigest
		log.Info("soci index tagged", "v2_tag", v2Tag, "image_index", sibling.IndexDigest, "from_tag", sibling.Tag)
	}
	if err := w.store.Succeed(ctx, rec.key, result); err != nil {
		outcome, err := w.transientOrFailed(fmt.Errorf("record job success: %w", err), final)
		return outcome, err, true
	}
	log.Info("job succeeded: the image was indexed under another tag", "other_tag", sibling.Tag,
		"ztocs_built", 0, "bytes_read", 0)
	w.metrics.countZtocs(0, 0)
	return OutcomeSucceeded, nil, true
}

// buildStats times a build: layersDone is when the last layer's zTOC was
// built or reused, so layersDone-start is download+build and end-layersDone
// is the pushing of the indexes.
type buildStats struct {
	start, layersDone, end time.Time
	bytesRead              int64
}

// build builds and pushes img's SOCI indexes with the worker's options,
// its artifacts database and its locks.
func (w *Worker) build(ctx context.Context, log *slog.Logger, repo index.Repository, locks index.Locker, img index.Image) ([]index.IndexWithMetadata, buildStats, error) {
	var (
		bytesRead  atomic.Int64
		mu         sync.Mutex
		layersDone time.Time
	)
	progress := func(p index.LayerProgress) {
		switch p.State {
		case index.LayerBuilt, index.LayerReused, index.LayerSkipped, index.LayerFailed:
			mu.Lock()
			layersDone = time.Now()
			mu.Unlock()
		}
		if p.State == index.LayerBuilt {
			bytesRead.Add(p.Total)
		}
	}
	opts := append(append([]index.BuildOption(nil), w.buildOpts...),
		index.WithIndexVersion(w.versions),
		index.WithArtifactsDb(w.store),
		index.WithLocker(locks),
		index.WithLogger(log),
		index.WithProgress(progress),
	)
	stats := buildStats{start: time.Now()}
	builder, err := index.NewIndexBuilder(repo, opts...)
	if err != nil {
		return nil, stats, fmt.Errorf("index builder: %w", err)
	}
	results, err := builder.BuildImage(ctx, img)
	stats.end = time.Now()
	stats.bytesRead = bytesRead.Load()
	mu.Lock()
	stats.layersDone = layersDone
	mu.Unlock()
	if stats.layersDone.IsZero() || stats.layersDone.After(stats.end) {
		stats.layersDone = stats.end
	}
	return results, stats, err
}

func (w *Worker) transientOrFailed(err error, final bool) (Outcome, error) {
	if isTransient(err) && !final {
		return OutcomeRetried, err
	}
	return OutcomeFailed, err
}

// layerUses lists the zTOC each layer got, once per layer digest.
func layerUses(results []index.IndexWithMetadata) (uses []db.LayerUse, built, reused int) {
	seen := map[string]bool{}
	for _, r := range results {
		for _, l := range r.Layers {
			if l.Ztoc == nil || seen[l.Layer.Digest.String()] {
				continue
			}
			seen[l.Layer.Digest.String()] = true
			uses = append(uses, db.LayerUse{
				LayerDigest: l.Layer.Digest.String(),
				LayerSize:   l.Layer.Size,
				ZtocDigest:  l.Ztoc.Digest.String(),
				Reused:      l.State == index.LayerReused,
			})
			if l.State == index.LayerReused {
				reused++
			} else {
				built++
			}
		}
	}
	return uses, built, reused
}

// fetchManifest fetches a manifest by digest, verifying it.
func fetchManifest(ctx context.Context, repo interface {
	content.Resolver
	content.Fetcher
}, dgst string) (ocispec.Descriptor, []byte, error) {
	desc, err := repo.Resolve(ctx, dgst)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return desc, nil, fmt.Errorf("%w: %s: %w", ErrManifestGone, dgst, err)
		}
		return desc, nil, fmt.Errorf("resolve manifest %s: %w", dgst, err)
	}
	body, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return desc, nil, fmt.Errorf("%w: %s: %w", ErrManifestGone, dgst, err)
		}
		return desc, nil, fmt.Errorf("fetch manifest %s: %w", dgst, err)
	}
	return desc, body, nil
}

// jobRecorder writes a job's outcome to the database and turns it into the
// worker's result.
type jobRecorder struct {
	store  Store
	key    db.JobKey
	log    *slog.Logger
	worker string
}

// refuse records a job that fails before it is started (a registry not
// allowed, a manifest gone): the job gets its record and reason all the
// same. A transient cause before the final delivery records nothing.
func (r jobRecorder) refuse(ctx context.Context, cause error, final bool) (Outcome, error) {
	if isTransient(cause) && !final {
		return OutcomeRetried, cause
	}
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.store.Start(recCtx, r.key, r.worker); err != nil {
		r.log.Warn("could not record the job's failure", "error", err, "cause", cause)
		return OutcomeFailed, cause
	}
	return r.fail(ctx, cause, true)
}

func (r jobRecorder) skip(ctx context.Context, reason string) (Outcome, error) {
	r.log.Info("job skipped", "reason", reason)
	if err := r.store.Skip(ctx, r.key, reason); err != nil {
		if isTransient(err) {
			return OutcomeRetried, fmt.Errorf("record job skip: %w", err)
		}
		return OutcomeFailed, fmt.Errorf("record job skip: %w", err)
	}
	return OutcomeSkipped, nil
}

// fail records cause; a transient cause keeps the job queued for a retry
// unless this was the final delivery.
func (r jobRecorder) fail(ctx context.Context, cause error, final bool) (Outcome, error) {
	permanent := final || !isTransient(cause)
	// Record even when ctx ran out (job timeout): the outcome must land.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.store.Fail(recCtx, r.key, errors.New(oneLine(cause.Error())), permanent); err != nil {
		r.log.Warn("could not record the job's failure", "error", err, "cause", cause)
		if isTransient(err) && !final {
			return OutcomeRetried, errors.Join(cause, err)
		}
	}
	if permanent {
		return OutcomeFailed, cause
	}
	return OutcomeRetried, cause
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
