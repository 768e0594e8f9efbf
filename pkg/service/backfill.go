package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Publisher stores jobs for the workers; *queue.Queue is one.
type Publisher interface {
	Publish(ctx context.Context, job queue.Job) (queue.PublishAck, error)
}

// BackfillSource is the Job.Source of jobs the backfill enqueues.
const BackfillSource = "backfill"

// Backfiller walks registries (catalog, then tags) and enqueues the images
// that have no SOCI index yet: those pushed while the webhook was down, or
// before the service existed.
type Backfiller struct {
	repos     RepositoryFunc
	registry  func(host string) (*remote.Registry, error)
	store     Store
	publisher Publisher
	worker    *Worker
	since     time.Duration
	retry     bool
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	// concurrency repositories are walked at once; pageSize is the n of
	// catalog and tag list requests; limiter paces every registry request.
	concurrency int
	pageSize    int
	limiter     *rate.Limiter
}

// Backfill defaults.
const (
	DefaultBackfillConcurrency = 4
	DefaultBackfillPageSize    = 100
)

// BackfillOption configures a Backfiller.
type BackfillOption func(*Backfiller)

// WithSince enqueues only images whose config says they were created within
// d of now; image indexes and images without a creation time are always
// considered. Zero means every image.
func WithSince(d time.Duration) BackfillOption {
	return func(b *Backfiller) { b.since = d }
}

// WithRetryFailed enqueues again the images whose job failed for good,
// which a backfill otherwise leaves alone: a corrupt layer stays corrupt,
// but a fixed credential or registry deserves another try.
func WithRetryFailed(retry bool) BackfillOption {
	return func(b *Backfiller) { b.retry = retry }
}

// WithBackfillMetrics records the walk's results in m.
func WithBackfillMetrics(m *Metrics) BackfillOption {
	return func(b *Backfiller) { b.metrics = m }
}

// WithBackfillLogger sets the logger (default: discard).
func WithBackfillLogger(l *slog.Logger) BackfillOption {
	return func(b *Backfiller) { b.log = l }
}

// WithIndexedBy tells whether a tag counts as indexed the way w does:
// its job succeeded with w's build options. Without it any successful job
// of the tag counts.
func WithIndexedBy(w *Worker) BackfillOption {
	return func(b *Backfiller) { b.worker = w }
}

// WithBackfillConcurrency walks n repositories at once (default 4).
func WithBackfillConcurrency(n int) BackfillOption {
	return func(b *Backfiller) {
		if n > 0 {
			b.concurrency = n
		}
	}
}

// WithBackfillRate sends at most rps registry requests per second (catalog,
// tag lists, manifests), in bursts of at most the concurrency; 0 means no
// limit. Registries throttle clients that go faster (429).
func WithBackfillRate(rps int) BackfillOption {
	return func(b *Backfiller) {
		if rps > 0 {
			b.limiter = rate.NewLimiter(rate.Limit(rps), 1)
		} else {
			b.limiter = nil
		}
	}
}

// WithBackfillPageSize asks the registry for n repositories or tags per
// page of the catalog and tag lists (default 100).
func WithBackfillPageSize(n int) BackfillOption {
	return func(b *Backfiller) {
		if n > 0 {
			b.pageSize = n
		}
	}
}

// limitedClient waits for the limiter before each request.
type limitedClient struct {
	client  remote.Client
	limiter *rate.Limiter
}

func (c limitedClient) Do(req *http.Request) (*http.Response, error) {
	if err := c.limiter.Wait(req.Context()); err != nil {
		return nil, err
	}
	return c.client.Do(req)
}

// repo returns a client for one repository, paced and paged.
func (b *Backfiller) repo(ctx context.Context, host, name string) (*remote.Repository, error) {
	repo, err := b.repos(ctx, host, name)
	if err != nil {
		return nil, err
	}
	repo.TagListPageSize = b.pageSize
	if b.limiter != nil {
		repo.Client = limitedClient{client: repo.Client, limiter: b.limiter}
	}
	return repo, nil
}

// NewBackfiller returns a Backfiller that reads registries through repos,
// asks store what is indexed and enqueues through publisher.
func NewBackfiller(repos RepositoryFunc, store Store, publisher Publisher, opts ...BackfillOption) *Backfiller {
	b := &Backfiller{
		repos:     repos,
		store:     store,
		publisher: publisher,
		log:       slog.New(slog.DiscardHandler),
		now:       time.Now,

		concurrency: DefaultBackfillConcurrency,
		pageSize:    DefaultBackfillPageSize,
	}
	b.registry = func(host string) (*remote.Registry, error) {
		// The catalog call uses the same client settings as repositories.
		repo, err := repos(context.Background(), host, "catalog")
		if err != nil {
			return nil, err
		}
		reg, err := remote.NewRegistry(host)
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", host, err)
		}
		reg.Client = repo.Client
		if b.limiter != nil {
			reg.Client = limitedClient{client: repo.Client, limiter: b.limiter}
		}
		reg.PlainHTTP = repo.PlainHTTP
		reg.RepositoryListPageSize = b.pageSize
		return reg, nil
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// BackfillStats counts what one run saw, one count per tag.
type BackfillStats struct {
	Repositories int
	Tags         int
	// Enqueued: published as new jobs.
	Enqueued int
	// Duplicates: published, but JetStream already held the same job
	// (digest, tag, action) within its dedup window: nothing new queued.
	Duplicates int
	// Indexed: the database says this tag of the image was indexed with
	// the current options.
	Indexed int
	// Skipped and Failed: the database says the job was looked at and not
	// indexed (with a reason), or failed for good (unless WithRetryFailed).
	Skipped int
	Failed  int
	// Ours: our own artifacts (v2 index tags, SOCI-enabled image indexes).
	Ours int
	// Older: created before the WithSince window.
	Older  int
	Errors int
	// ResumedAfter is the repository a catalog walk resumed after: an
	// earlier run of the same target was interrupted there.
	ResumedAfter string
}

// statsCounter adds up the stats of repositories walked at once.
type statsCounter struct {
	mu sync.Mutex
	s  BackfillStats
}

func (c *statsCounter) add(f func(s *BackfillStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.s)
}

func (c *statsCounter) get() BackfillStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

// Run walks target, "REGISTRY" (every repository of the catalog) or
// "REGISTRY/REPOSITORY", and enqueues every tagged image not indexed yet.
// The catalog and the tag lists are read page by page (n and last,
// following the registry's Link headers), the repositories of a page
// walked a few at once, so memory does not grow with the registry. After
// each catalog page the last repository is saved in the database: a walk
// that is killed or cancelled resumes after it on the next Run of the same
// target, and a walk that reaches the end starts again from the beginning
// next time. Errors on single tags are logged and counted; the walk goes
// on. An error is returned when the catalog or a tag list cannot be read,
// or a job cannot be enqueued.
func (b *Backfiller) Run(ctx context.Context, target string) (BackfillStats, error) {
	var stats statsCounter
	host, repository, _ := strings.Cut(target, "/")
	if host == "" {
		return BackfillStats{}, fmt.Errorf("backfill target %q: want REGISTRY[/REPOSITORY]", target)
	}
	if repository != "" {
		if err := b.repository(ctx, host, repository, &stats); err != nil {
			return stats.get(), err
		}
		stats.add(func(s *BackfillStats) { s.Repositories++ })
	} else if err := b.catalog(ctx, host, &stats); err != nil {
		return stats.get(), err
	}
	st := stats.get()
	b.log.Info("backfill done", "target", target, "repositories", st.Repositories, "tags", st.Tags,
		"enqueued", st.Enqueued, "duplicates", st.Duplicates, "indexed", st.Indexed,
		"skipped", st.Skipped, "failed", st.Failed, "ours", st.Ours, "older", st.Older,
		"errors", st.Errors, "resumed_after", st.ResumedAfter)
	return st, nil
}

// catalog walks every repository of host's catalog, from where an
// interrupted walk stopped.
func (b *Backfiller) catalog(ctx context.Context, host string, stats *statsCounter) error {
	reg, err := b.registry(host)
	if err != nil {
		return err
	}
	last := ""
	if b.store != nil {
		p, err := b.store.BackfillProgress(ctx, host)
		switch {
		case errors.Is(err, db.ErrNoBackfillProgress):
		case err != nil:
			return fmt.Errorf("backfill: %w", err)
		default:
			last = p.LastRepository
			stats.add(func(s *BackfillStats) { s.ResumedAfter = last })
			b.log.Info("backfill: resuming an interrupted walk", "registry", host, "after", last,
				"repositories_before", p.Repositories, "started_at", p.StartedAt)
		}
	}
	err = reg.Repositories(ctx, last, func(page []string) error {
		before := stats.get()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(b.concurrency)
		for _, name := range page {
			g.Go(func() error {
				if err := b.repository(gctx, host, name, stats); err != nil {
					return err
				}
				stats.add(func(s *BackfillStats) { s.Repositories++ })
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if b.store != nil && len(page) > 0 {
			after := stats.get()
			// A cancelled walk keeps the progress it saved before.
			if err := b.store.SaveBackfillProgress(context.WithoutCancel(ctx), host, page[len(page)-1],
				int64(after.Repositories-before.Repositories), int64(after.Tags-before.Tags)); err != nil {
				return fmt.Errorf("backfill: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("backfill: list repositories of %s: %w", host, err)
	}
	if b.store != nil {
		if err := b.store.FinishBackfill(ctx, host); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
	}
	return nil
}

func (b *Backfiller) repository(ctx context.Context, host, name string, stats *statsCounter) error {
	repo, err := b.repo(ctx, host, name)
	if err != nil {
		return err
	}
	err = repo.Tags(ctx, "", func(page []string) error {
		for _, tag := range page {
			if err := b.tag(ctx, repo, host, name, tag, stats); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("backfill: list tags of %s/%s: %w", host, name, err)
	}
	return nil
}

// tag checks one tag and enqueues its image if it is due.
func (b *Backfiller) tag(ctx context.Context, repo *remote.Repository, host, name, tag string, stats *statsCounter) error {
	if index.IsReferrersTag(tag) {
		return nil
	}
	stats.add(func(s *BackfillStats) { s.Tags++ })
	log := b.log.With("registry", host, "repository", name, "tag", tag)
	job, verdict, err := b.check(ctx, repo, host, name, tag)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		stats.add(func(s *BackfillStats) { s.Errors++ })
		b.metrics.countBackfill("error")
		log.Warn("backfill: cannot check image", "error", err)
		return nil
	}
	if verdict != backfillEnqueue {
		stats.add(func(s *BackfillStats) { *verdict.count(s)++ })
		b.metrics.countBackfill(string(verdict))
		return nil
	}
	ack, err := b.publisher.Publish(ctx, job)
	if err != nil {
		return fmt.Errorf("backfill: enqueue %s: %w", job.Key(), err)
	}
	if ack.Duplicate {
		stats.add(func(s *BackfillStats) { s.Duplicates++ })
		b.metrics.countBackfill("duplicate")
		log.Debug("backfill: image already queued", "digest", job.Digest)
		return nil
	}
	if b.store != nil {
		key := db.JobKey{Registry: job.Registry, Repository: job.Repository, Digest: job.Digest, Tag: tag}
		if _, err := b.store.UpsertQueued(ctx, key, BackfillSource); err != nil {
			log.Warn("backfill: cannot record the queued job", "error", err)
		}
	}
	stats.add(func(s *BackfillStats) { s.Enqueued++ })
	b.metrics.countBackfill("enqueued")
	log.Info("backfill: image enqueued", "digest", job.Digest)
	return nil
}

// backfillVerdict is what the backfill decides for one tag; the values
// label the backfill metric.
type backfillVerdict string

const (
	backfillEnqueue backfillVerdict = "enqueued"
	backfillIndexed backfillVerdict = "indexed" // the database says so
	backfillSkipped backfillVerdict = "skipped" // the database has the reason
	backfillFailed  backfillVerdict = "failed"  // for good, and not retried
	backfillOurs    backfillVerdict = "ours"    // our own artifact
	backfillTooOld  backfillVerdict = "older"   // created before --since
)

func (v backfillVerdict) count(s *BackfillStats) *int {
	switch v {
	case backfillIndexed:
		return &s.Indexed
	case backfillSkipped:
		return &s.Skipped
	case backfillFailed:
		return &s.Failed
	case backfillOurs:
		return &s.Ours
	case backfillTooOld:
		return &s.Older
	}
	return &s.Enqueued
}

// check resolves a tag and tells whether its job is due. Only the
// database's record of this tag makes it indexed; without one the
// manifest is read, so our own artifacts are told by content.
func (b *Backfiller) check(ctx context.Context, repo *remote.Repository, host, name, tag string) (queue.Job, backfillVerdict, error) {
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		return queue.Job{}, backfillEnqueue, fmt.Errorf("resolve: %w", err)
	}
	job := queue.Job{
		Source:     BackfillSource,
		Registry:   host,
		Repository: name,
		Digest:     desc.Digest.String(),
		Tag:        tag,
		MediaType:  desc.MediaType,
		Action:     queue.ActionPush,
		ReceivedAt: b.now().UTC(),
	}
	if b.store != nil {
		rec, err := b.store.Get(ctx, db.JobKey{Registry: host, Repository: name, Digest: job.Digest, Tag: tag})
		switch {
		case errors.Is(err, db.ErrJobNotFound):
		case err != nil:
			return job, backfillEnqueue, fmt.Errorf("job record: %w", err)
		case rec.Status == db.JobFailed && b.retry:
		case rec.Status == db.JobFailed:
			return job, backfillFailed, nil
		case rec.Status == db.JobSkipped:
			return job, backfillSkipped, nil
		case rec.Status == db.JobSucceeded:
			if b.worker == nil || rec.OptionsHash == b.worker.optionsHash {
				return job, backfillIndexed, nil
			}
		}
	}
	body, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return job, backfillEnqueue, fmt.Errorf("fetch manifest: %w", err)
	}
	kind, err := classify(ctx, repo, desc.MediaType, body, tag)
	if err != nil {
		return job, backfillEnqueue, fmt.Errorf("classify manifest: %w", err)
	}
	if kind.Ours() {
		return job, backfillOurs, nil
	}
	if b.since > 0 && kind.Class == index.ClassImage {
		created, err := b.created(ctx, repo, body)
		if err != nil {
			return job, backfillEnqueue, err
		}
		if !created.IsZero() && created.Before(b.now().Add(-b.since)) {
			return job, backfillTooOld, nil
		}
	}
	return job, backfillEnqueue, nil
}

// created reads the creation time from an image's config.
func (b *Backfiller) created(ctx context.Context, repo *remote.Repository, manifestBody []byte) (time.Time, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifestBody, &m); err != nil {
		return time.Time{}, fmt.Errorf("decode manifest: %w", err)
	}
	body, err := content.FetchAll(ctx, repo, m.Config)
	if errors.Is(err, errdef.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("fetch config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(body, &cfg); err != nil || cfg.Created == nil {
		return time.Time{}, nil
	}
	return *cfg.Created, nil
}

// RunEvery runs the backfill of every target each interval until ctx ends.
func (b *Backfiller) RunEvery(ctx context.Context, interval time.Duration, targets []string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, target := range targets {
			if _, err := b.Run(ctx, target); err != nil && ctx.Err() == nil {
				b.log.Error("backfill failed", "target", target, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
