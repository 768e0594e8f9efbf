package app

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
)

// layerGate is an HTTP transport that holds every layer download (a blob
// GET larger than minSize) until released or the request is cancelled.
type layerGate struct {
	base     http.RoundTripper
	minSize  int64
	entered  chan struct{}
	once     sync.Once
	release  chan struct{}
	delay    time.Duration
	inFlight atomic.Int32
}

func newLayerGate(delay time.Duration) *layerGate {
	return &layerGate{base: http.DefaultTransport, minSize: 64 << 10, entered: make(chan struct{}),
		release: make(chan struct{}), delay: delay}
}

func (g *layerGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/blobs/sha256:") {
		return g.base.RoundTrip(req)
	}
	resp, err := g.base.RoundTrip(req)
	if err != nil || resp.ContentLength < g.minSize {
		return resp, err
	}
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	g.once.Do(func() { close(g.entered) })
	timer := time.NewTimer(g.delay)
	defer timer.Stop()
	select {
	case <-g.release:
	case <-timer.C:
	case <-req.Context().Done():
		resp.Body.Close()
		return nil, req.Context().Err()
	}
	return resp, nil
}

// TestKilledWorkerJobIsRedelivered: a worker that dies in the middle of a
// layer (its connection gone, no ack, no nak) has its job redelivered to
// another worker after the ack wait, and finished.
func TestKilledWorkerJobIsRedelivered(t *testing.T) {
	ns := testsupport.NewEmbeddedNATS(t)
	cfg := testsupport.Config(t)
	cfg.NATSURL = ns.ClientURL()
	cfg.AckWait = 2 * time.Second
	reg := testsupport.StartRegistry(t, "", "")
	// Each worker has its own store on the same database, as two processes
	// would: the locks of the one that dies do not bind the other.
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "indexer.db")
	store, doomedStore := testsupport.OpenStore(t, dsn), testsupport.OpenStore(t, dsn)
	img := testsupport.PushImage(t, reg.Addr(), "kill/app", "v1", testsupport.LayerSize, testsupport.LayerSize)

	gate := newLayerGate(time.Hour)
	stuckRepos, err := testsupport.Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }, Transport: gate})
	if err != nil {
		t.Fatal(err)
	}
	buildOpts := service.WithBuildOptions(index.WithSpanSize(128<<10), index.WithMinLayerSize(0))
	doomed := service.NewWorker(stuckRepos, doomedStore, buildOpts, service.WithWorkerName("doomed"), service.WithLogger(testsupport.Logger(t)))
	healthy := service.NewWorker(testsupport.PlainRepos(t), store, buildOpts, service.WithWorkerName("healthy"), service.WithLogger(testsupport.Logger(t)))

	qDoomed, ncDoomed := testsupport.NewQueue(t, cfg)
	doomedCtx, cancelDoomed := context.WithCancel(context.Background())
	defer cancelDoomed()
	go func() {
		_ = qDoomed.Consume(doomedCtx, doomed.Handle, queue.WithFetchWait(200*time.Millisecond),
			queue.WithDrainTimeout(100*time.Millisecond))
	}()

	if _, err := qDoomed.Publish(context.Background(), testsupport.PushJob(reg.Addr(), "kill/app", "v1", img)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the doomed worker never started a layer")
	}
	// Kill: the connection goes, and with it every ack, nak and progress
	// signal. The handler stays stuck in the layer like a frozen process.
	ncDoomed.Close()

	qHealthy, _ := testsupport.NewQueue(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- qHealthy.Consume(ctx, healthy.Handle, queue.WithFetchWait(200*time.Millisecond)) }()
	defer func() { cancel(); <-done }()

	key := db.JobKey{Registry: reg.Addr(), Repository: "kill/app", Digest: img.Digest.String(), Tag: "v1"}
	job := testsupport.WaitJob(t, store, key, 30*time.Second, db.JobSucceeded)
	if job.Worker != "healthy" {
		t.Errorf("job finished by %q, want the healthy worker", job.Worker)
	}
	attempts, err := store.Attempts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 2 {
		t.Errorf("%d attempts, want 2 (the killed one and the redelivery)", len(attempts))
	}
	repo, err := testsupport.PlainRepos(t)(context.Background(), reg.Addr(), "kill/app")
	if err != nil {
		t.Fatal(err)
	}
	if socis, err := testsupport.V2Index(context.Background(), repo, "v1-soci"); err != nil || len(socis) != 1 {
		t.Errorf("v2 index after the redelivery: %d, %v", len(socis), err)
	}
}

// TestPostgresConnectionLoss: the database's connections are killed again
// and again while images are indexed (registry → webhook → the machine's
// NATS → workers → Postgres). Jobs that hit it are retried; none is lost.
func TestPostgresConnectionLoss(t *testing.T) {
	cfg := testsupport.Config(t)
	testsupport.UseMachineNATS(t, &cfg)
	dsn, dbName := testpg.NewDatabase(t, "svc")
	cfg.DatabaseURL = dsn
	cfg.Webhook = true
	cfg.WebhookSecret = "test-secret"
	cfg.RegistryListen = "127.0.0.1:0"
	cfg.Workers = 2
	s := startServer(t, cfg)

	// Three outages while the images are pushed and indexed, as a restart
	// or a failover would cause.
	var killed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 3 {
			time.Sleep(600 * time.Millisecond)
			killed.Add(int64(testpg.TerminateConnections(t, dbName)))
		}
	})
	const images = 4
	var keys []db.JobKey
	for i := range images {
		tag := "v" + string(rune('1'+i))
		img := testsupport.PushImage(t, s.RegistryAddr(), "pg/app", tag, testsupport.LayerSize, testsupport.LayerSize)
		keys = append(keys, db.JobKey{Registry: s.RegistryAddr(), Repository: "pg/app", Digest: img.Digest.String(), Tag: tag})
	}
	wg.Wait() // all three outages have happened

	if killed.Load() == 0 {
		t.Fatal("no connection was killed: the test tested nothing")
	}
	t.Logf("%d database connections killed", killed.Load())
	for _, key := range keys {
		testsupport.WaitJob(t, s.Store(), key, 60*time.Second, db.JobSucceeded)
	}
	stats, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats.DeadLetters != 0 {
		t.Errorf("%d dead letters, want none", stats.DeadLetters)
	}
	repo, err := testsupport.PlainRepos(t)(context.Background(), s.RegistryAddr(), "pg/app")
	if err != nil {
		t.Fatal(err)
	}
	for i := range images {
		if _, err := testsupport.V2Index(context.Background(), repo, "v"+string(rune('1'+i))+"-soci"); err != nil {
			t.Errorf("image %d: %v", i, err)
		}
	}
}

// startMidLayer starts a server with the given shutdown grace whose
// registry reads of a layer stall for hold, pushes an image to repository
// and returns once its job has started a layer: the server, the image,
// the cancel of Run's context and Run's result.
func startMidLayer(t *testing.T, grace, hold time.Duration, repository string) (*Server, ocispec.Descriptor, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	cfg.ShutdownGrace = grace
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := Start(ctx, cfg, testsupport.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	gate := newLayerGate(hold)
	gated, err := testsupport.Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: s.plainHTTP, Transport: gate})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.useRepositories(gated); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	img := testsupport.PushImage(t, s.RegistryAddr(), repository, "v1", testsupport.LayerSize, testsupport.LayerSize)
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the job never started a layer")
	}
	return s, img, cancel, done
}

// TestShutdownDrains: cancelling the server while a job runs lets the job
// finish within the grace period, then Run returns.
func TestShutdownDrains(t *testing.T) {
	const grace = 10 * time.Second
	s, img, cancel, done := startMidLayer(t, grace, 1500*time.Millisecond, "drain/app")
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatal("Run did not return within the grace period")
	}
	t.Logf("drained in %s", time.Since(start))
	job, err := s.Store().Get(context.Background(), db.JobKey{Registry: s.RegistryAddr(), Repository: "drain/app", Digest: img.Digest.String(), Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != db.JobSucceeded {
		t.Errorf("job %s (%s): the running job should have finished during the drain", job.Status, job.LastError)
	}
}

// TestShutdownPastGraceHandsJobBack: a job longer than the grace period is
// cut short and handed back to the queue, not failed.
func TestShutdownPastGraceHandsJobBack(t *testing.T) {
	s, img, cancel, done := startMidLayer(t, 500*time.Millisecond, time.Hour, "cut/app")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	job, err := s.Store().Get(context.Background(), db.JobKey{Registry: s.RegistryAddr(), Repository: "cut/app", Digest: img.Digest.String(), Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status == db.JobFailed {
		t.Errorf("job failed (%s); a job cut short by shutdown must stay retryable", job.LastError)
	}
	stats, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Messages != 1 || stats.DeadLetters != 0 {
		t.Errorf("queue holds %d jobs and %d dead letters, want the job back in the queue", stats.Messages, stats.DeadLetters)
	}
}
