package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/config"
	embeddednats "github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// logRecorder keeps every log record (all levels), to count them, and
// passes them on to next.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	next    slog.Handler
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	if r.next.Enabled(ctx, rec.Level) {
		return r.next.Handle(ctx, rec)
	}
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(level slog.Level, prefix string, after time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) && !rec.Time.Before(after) {
			n++
		}
	}
	return n
}

// answer is one webhook response to one event.
type answer struct {
	at    time.Time
	image int
	code  int
}

// TestClusterFailover runs the webhook and two worker processes (each with
// its own NATS connection, through a comma-separated list of the nodes'
// URLs) against a real 3-node JetStream cluster with the streams at R3, on
// Postgres. During a run of images the stream leader is killed, and later a
// second node is stopped for a while (no quorum), then brought back.
func TestClusterFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cluster, err := embeddednats.StartCluster(embeddednats.ClusterConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Shutdown)
	if err := cluster.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	urls := cluster.ClientURLs()

	reg := testsupport.StartRegistry(t, "", "")
	dsn, _ := testpg.NewDatabase(t, "cluster")
	name := testsupport.UniqueName("CLUSTER")
	const secret = "cluster-secret"

	// The webhook, first, creates the streams at R3.
	ws := webhook.ServerOptions{
		NATSURL: urls,
		Queue: queue.Config{Stream: name, SubjectPrefix: strings.ToLower(name),
			DLQStream: name + "_DLQ", DLQPrefix: "dlq." + strings.ToLower(name), Consumer: "workers", Replicas: 3},
		Handler: webhook.Config{Distribution: webhook.SourceConfig{Token: secret},
			Harbor: webhook.SourceConfig{Disabled: true}, CloudEvents: webhook.SourceConfig{Disabled: true},
			ECR: webhook.SourceConfig{Disabled: true}},
		ShutdownTimeout: 2 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookURL := "http://" + ln.Addr().String() + webhook.PathDistribution
	hookCtx, stopHook := context.WithCancel(context.Background())
	hookDone := make(chan error, 1)
	go func() { hookDone <- webhook.Serve(hookCtx, ws, ln, testsupport.Logger(t)) }()
	t.Cleanup(func() {
		stopHook()
		if err := <-hookDone; err != nil {
			t.Errorf("webhook: %v", err)
		}
	})

	// An observer on its own connection.
	nc, err := queue.Connect(urls, "cluster-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Each look goes with its own timeout: a JetStream API request that no
	// server answers (a stream being created, a leader being elected) waits
	// for its context, and the test's would take the rest of the run.
	look := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 3*time.Second) }
	streamInfo := func() (*jetstream.StreamInfo, error) {
		c, cancel := look()
		defer cancel()
		s, err := js.Stream(c, name)
		if err != nil {
			return nil, err
		}
		return s.Info(c)
	}
	testsupport.WaitFor(t, 40*time.Second, "the webhook to create the streams", func() (bool, error) {
		for _, n := range []string{name, name + "_DLQ"} {
			c, cancel := look()
			s, err := js.Stream(c, n)
			cancel()
			if err != nil || s.CachedInfo().Config.Replicas != 3 {
				return false, err
			}
		}
		return true, nil
	})

	// Two workers with the local default of one replica: the streams stay R3.
	workerCfg := func() config.Config {
		cfg := testsupport.Config(t)
		cfg.NATSURL, cfg.DatabaseURL = urls, dsn
		cfg.Stream, cfg.Subject, cfg.Consumer = name, strings.ToLower(name), "workers"
		cfg.Replicas = 1
		cfg.Workers = 2
		cfg.PlainHTTPRegistries = []string{reg.Addr()}
		return cfg
	}
	var workers []*Server
	var logs []*logRecorder
	for range 2 {
		rec := &logRecorder{next: testsupport.Logger(t).Handler()}
		wctx, stop := context.WithCancel(context.Background())
		s, err := Start(wctx, workerCfg(), slog.New(rec))
		if err != nil {
			stop()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(wctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
			s.Close()
		})
		workers = append(workers, s)
		logs = append(logs, rec)
	}
	for _, n := range []string{name, name + "_DLQ"} {
		s, err := js.Stream(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("stream %s has %d replicas after the workers started, want 3", n, r)
		}
	}

	const images = 12
	descs := make([]ocispec.Descriptor, images)
	for i := range images {
		descs[i] = testsupport.PushImage(t, reg.Addr(), "cluster/app", fmt.Sprintf("v%d", i), testsupport.LayerSize)
	}

	// The registry's side: each event is sent until the webhook accepts it.
	var mu sync.Mutex
	var answers []answer
	accepted := 0
	acceptedCount := func() int { mu.Lock(); defer mu.Unlock(); return accepted }
	posterDone := make(chan struct{})
	go func() {
		defer close(posterDone)
		client := &http.Client{Timeout: 10 * time.Second}
		for i, desc := range descs {
			body := distributionEnvelope(fmt.Sprintf("ev-%d", i), reg.Addr(), "cluster/app", fmt.Sprintf("v%d", i), desc)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hookURL, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				code := 0
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				answers = append(answers, answer{time.Now(), i, code})
				if code == http.StatusAccepted {
					accepted++
				}
				mu.Unlock()
				if code == http.StatusAccepted {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(150 * time.Millisecond) // a run of pushes, not one burst
		}
	}()

	leader := func() *embeddednats.Server {
		var l *embeddednats.Server
		testsupport.WaitFor(t, 20*time.Second, "a stream leader", func() (bool, error) {
			si, err := streamInfo()
			if err != nil || si.Cluster == nil || si.Cluster.Leader == "" {
				return false, err
			}
			l = cluster.Node(si.Cluster.Leader)
			return l != nil, nil
		})
		return l
	}

	testsupport.WaitFor(t, 30*time.Second, "3 events accepted", func() (bool, error) { return acceptedCount() >= 3, nil })
	first := leader()
	killedLeader := time.Now()
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stream leader %s stopped", first.Name())

	testsupport.WaitFor(t, 30*time.Second, "7 events accepted", func() (bool, error) { return acceptedCount() >= 7, nil })
	var second *embeddednats.Server
	for _, n := range cluster.Nodes() {
		if n.Running() {
			second = n
			break
		}
	}
	lostQuorum := time.Now()
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s stopped too: no quorum", second.Name())
	// The outage lasts until the webhook has refused an event and the
	// workers have pulled in vain for a while.
	testsupport.WaitFor(t, 30*time.Second, "a 503 during the quorum loss", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range answers {
			if a.at.After(lostQuorum) && a.code == http.StatusServiceUnavailable {
				return true, nil
			}
		}
		return false, nil
	})
	time.Sleep(3*time.Second - time.Since(lostQuorum))
	if err := second.Restart(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	outage := restored.Sub(lostQuorum)
	t.Logf("%s back after %s", second.Name(), outage.Round(time.Millisecond))

	select {
	case <-posterDone:
	case <-ctx.Done():
		t.Fatal("not every event was accepted")
	}
	if err := first.Restart(); err != nil {
		t.Fatal(err)
	}

	// Every accepted event: one index.
	for i := range images {
		repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), "cluster/app")
		if err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("v%d-soci", i)
		testsupport.WaitFor(t, 60*time.Second, tag, func() (bool, error) {
			c, cancel := look()
			defer cancel()
			socis, err := testsupport.V2Index(c, repo, tag)
			return err == nil && len(socis) == 1, err
		})
	}
	// An ack lost in the quorum loss brings a job back after its image was
	// indexed: that delivery is skipped as already indexed, never built
	// again (one index per tag, checked above). So every image counts once
	// as succeeded, and a redelivery at most as skipped.
	succeeded, skipped, failed := 0.0, 0.0, 0.0
	for _, w := range workers {
		succeeded += jobsTotal(t, w.Metrics(), service.OutcomeSucceeded)
		skipped += jobsTotal(t, w.Metrics(), service.OutcomeSkipped)
		failed += jobsTotal(t, w.Metrics(), service.OutcomeFailed)
	}
	for i, desc := range descs {
		key := db.JobKey{Registry: reg.Addr(), Repository: "cluster/app", Digest: desc.Digest.String(), Tag: fmt.Sprintf("v%d", i)}
		if job, err := workers[0].Store().Get(ctx, key); err != nil || job.Status != db.JobSucceeded {
			t.Errorf("job of image %d: %+v, %v; want succeeded", i, job, err)
		}
	}
	if succeeded+skipped < images || succeeded > images || failed != 0 {
		t.Errorf("workers indexed %v images, skipped %v deliveries and failed %v; want %d indexed (or skipped as already indexed) and none failed",
			succeeded, skipped, failed, images)
	}

	// The webhook refused events only while there was no quorum: the
	// leader's loss alone (a new one is elected within the publish
	// timeout) cost no 503.
	mu.Lock()
	firstAcceptAfter := time.Time{}
	n503 := 0
	for _, a := range answers {
		if a.code == http.StatusAccepted && a.at.After(restored) && firstAcceptAfter.IsZero() {
			firstAcceptAfter = a.at
		}
	}
	for _, a := range answers {
		switch a.code {
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			n503++
			// A request sent just before the quorum went is answered
			// after; one sent before the restore may be answered after.
			if a.at.Before(lostQuorum) || (!firstAcceptAfter.IsZero() && a.at.After(firstAcceptAfter)) {
				t.Errorf("503 at %s for image %d outside the quorum loss (%s .. %s)", a.at.Format(time.StampMilli), a.image,
					lostQuorum.Format(time.StampMilli), firstAcceptAfter.Format(time.StampMilli))
			}
		default:
			t.Errorf("webhook answered %d for image %d", a.code, a.image)
		}
	}
	mu.Unlock()
	t.Logf("%d answers, %d of them 503; leader killed at +0, quorum lost at +%s, back at +%s", len(answers), n503,
		lostQuorum.Sub(killedLeader).Round(time.Millisecond), restored.Sub(killedLeader).Round(time.Millisecond))

	// No ghost messages: the queue is empty, as every replica sees it.
	checkEmpty := func(who string) {
		t.Helper()
		testsupport.WaitFor(t, 20*time.Second, "an empty queue on "+who, func() (bool, error) {
			c, cancel := look()
			defer cancel()
			st, err := workers[0].Queue().Stats(c)
			if err != nil {
				return false, err
			}
			if st.Messages != 0 || st.Pending != 0 || st.AckPending != 0 || st.DeadLetters != 0 {
				return false, fmt.Errorf("stats %+v", st)
			}
			// Deduplication held across the failovers: one message per image.
			return st.LastSeq == images, fmt.Errorf("last sequence %d, want %d", st.LastSeq, images)
		})
	}
	testsupport.WaitFor(t, 30*time.Second, "every replica current", func() (bool, error) {
		si, err := streamInfo()
		if err != nil || si.Cluster == nil || si.Cluster.Leader == "" || len(si.Cluster.Replicas) != 2 {
			return false, err
		}
		for _, r := range si.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false, fmt.Errorf("replica %+v", r)
			}
		}
		return si.Config.Replicas == 3, nil
	})
	checkEmpty("the leader")
	for range 2 {
		before := leader().Name()
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+name, nil, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		testsupport.WaitFor(t, 20*time.Second, "a new stream leader", func() (bool, error) {
			si, err := streamInfo()
			return err == nil && si.Cluster != nil && si.Cluster.Leader != "" && si.Cluster.Leader != before, err
		})
		checkEmpty(leader().Name())
	}
	for _, n := range []string{name, name + "_DLQ"} {
		s, err := js.Stream(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas at the end, want 3", n, r)
		}
	}

	// The workers waited for a leader with bounded logging and pulls.
	for i, rec := range logs {
		begins := rec.count(slog.LevelWarn, "queue: pulling jobs fails", killedLeader)
		again := rec.count(slog.LevelWarn, "queue: pulling jobs still fails", killedLeader)
		pulls := rec.count(slog.LevelDebug, "queue: pull failed", killedLeader)
		t.Logf("worker %d: %d outages begun, %d repeated warnings, %d failed pulls", i+1, begins, again, pulls)
		if begins > 3 || again > 2 {
			t.Errorf("worker %d logged %d outage warnings and %d repeats: not bounded", i+1, begins, again)
		}
		// 100ms doubling to 5s: at most ~7 pulls per outage plus one per 5s.
		if limit := 3*7 + int(time.Since(killedLeader)/(5*time.Second)) + 3; pulls > limit {
			t.Errorf("worker %d made %d failed pulls, want at most %d", i+1, pulls, limit)
		}
	}
	_ = nats.ErrTimeout
}
