package service

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/regfill"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// countingTransport counts the requests it sends, and the catalog pages
// asked for with n=20.
type countingTransport struct {
	next                   http.RoundTripper
	requests, catalogPages atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	if req.URL.Path == "/v2/_catalog" && req.URL.Query().Get("n") == "20" {
		c.catalogPages.Add(1)
	}
	return c.next.RoundTrip(req)
}

// cancelAfter publishes to q and cancels the walk once n jobs are in.
type cancelAfter struct {
	q      *queue.Queue
	n      int64
	count  atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Publish(ctx context.Context, job queue.Job) (queue.PublishAck, error) {
	ack, err := c.q.Publish(ctx, job)
	if err == nil && c.count.Add(1) == c.n {
		c.cancel()
	}
	return ack, err
}

// TestBackfillResumesAndEnqueuesOnce: a backfill of a 200-repository
// registry reads the catalog 20 repositories a page, is cancelled mid-walk
// after 100 jobs, and the next run resumes after the last page it
// completed; together they queue each of the 600 tags once. A third run
// right after walks everything again and enqueues nothing.
func TestBackfillResumesAndEnqueuesOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := testsupport.StartRegistry(t, "", "")
	const repos, tags = 200, 3
	if n, err := regfill.Fill(ctx, regfill.Options{Registry: reg.Addr(), Repositories: repos, Tags: tags, Prefix: "bf"}); err != nil || n != repos*tags {
		t.Fatalf("fill: %d manifests, %v", n, err)
	}
	dsn, _ := testpg.NewDatabase(t, "soci_backfill")
	store := testsupport.OpenStore(t, dsn)
	cfg := testsupport.Config(t)
	cfg.NATSURL = testsupport.NewEmbeddedNATS(t).ClientURL()
	q, _ := testsupport.NewQueue(t, cfg)
	rt := &countingTransport{next: http.DefaultTransport}
	repoFunc, err := testsupport.Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	opts := []BackfillOption{WithBackfillPageSize(20), WithBackfillConcurrency(4), WithBackfillLogger(testsupport.Logger(t))}
	host := reg.Addr()
	messages := func() uint64 {
		t.Helper()
		st, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Messages
	}

	// Run 1: cancelled after 100 jobs, inside the catalog's second page.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	_, err = NewBackfiller(repoFunc, store, &cancelAfter{q: q, n: 100, cancel: stop}, opts...).Run(runCtx, host)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v, want context.Canceled", err)
	}
	p, err := store.BackfillProgress(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	first := regfill.RepositoryName("bf", 19)
	if p.LastRepository != first || p.Repositories != 20 || p.Tags != 60 {
		t.Fatalf("progress after the cancelled run = %+v, want %s after 20 repositories and 60 tags", p, first)
	}
	if n := messages(); n < 100 || n >= 120 {
		t.Errorf("%d jobs queued by the cancelled run, want 100 to 119", n)
	}

	// Run 2 resumes after the first page and finishes the walk.
	rt.catalogPages.Store(0)
	stats, err := NewBackfiller(repoFunc, store, q, opts...).Run(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if stats.ResumedAfter != first || stats.Repositories != repos-20 || stats.Tags != (repos-20)*tags ||
		stats.Enqueued+stats.Duplicates != (repos-20)*tags || stats.Errors != 0 {
		t.Errorf("resumed run = %+v, want %d repositories and %d tags after %s", stats, repos-20, (repos-20)*tags, first)
	}
	if pages := rt.catalogPages.Load(); pages < (repos-20)/20 {
		t.Errorf("resumed run read %d catalog pages of 20, want at least %d", pages, (repos-20)/20)
	}
	if _, err := store.BackfillProgress(ctx, host); !errors.Is(err, db.ErrNoBackfillProgress) {
		t.Errorf("progress after a complete walk: %v, want none", err)
	}
	if n := messages(); n != repos*tags {
		t.Errorf("%d jobs queued after the resumed run, want %d: every tag once", n, repos*tags)
	}

	// Run 3, right after: the whole catalog again, nothing new.
	rt.catalogPages.Store(0)
	stats, err = NewBackfiller(repoFunc, store, q, opts...).Run(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if stats.ResumedAfter != "" || stats.Repositories != repos || stats.Tags != repos*tags || stats.Enqueued != 0 {
		t.Errorf("second backfill = %+v, want %d repositories, %d tags and nothing enqueued", stats, repos, repos*tags)
	}
	if pages := rt.catalogPages.Load(); pages < repos/20 {
		t.Errorf("full walk read %d catalog pages of 20, want at least %d", pages, repos/20)
	}
	if n := messages(); n != repos*tags {
		t.Errorf("%d jobs queued after the second backfill, want still %d", n, repos*tags)
	}
}

// TestBackfillRate: with a limit of 20 requests per second, a backfill
// takes at least as long as its requests need at that rate.
func TestBackfillRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := testsupport.StartRegistry(t, "", "")
	if _, err := regfill.Fill(ctx, regfill.Options{Registry: reg.Addr(), Repositories: 2, Tags: 5, Prefix: "rate"}); err != nil {
		t.Fatal(err)
	}
	cfg := testsupport.Config(t)
	cfg.NATSURL = testsupport.NewEmbeddedNATS(t).ClientURL()
	q, _ := testsupport.NewQueue(t, cfg)
	rt := &countingTransport{next: http.DefaultTransport}
	repoFunc, err := testsupport.Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	const rps = 20
	start := time.Now()
	stats, err := NewBackfiller(repoFunc, testsupport.NewSQLite(t), q, WithBackfillRate(rps), WithBackfillConcurrency(4)).Run(ctx, reg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	elapsed, n := time.Since(start), rt.requests.Load()
	if stats.Tags != 10 || stats.Enqueued != 10 {
		t.Errorf("stats %+v, want 10 tags enqueued", stats)
	}
	// A burst of one: request k waits until (k-1)/rps.
	if min := time.Duration(n-1) * time.Second / rps; n < 20 || elapsed < min {
		t.Errorf("%d requests in %s at %d/s, want at least 20 requests and %s", n, elapsed, rps, min)
	}
	t.Logf("%d requests in %s at a limit of %d/s", n, elapsed.Round(time.Millisecond), rps)
}
