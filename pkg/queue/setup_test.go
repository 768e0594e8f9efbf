package queue_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// recorder is a slog handler that keeps every record, to count them.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records at level have a message starting with prefix.
func (r *recorder) count(level slog.Level, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			n++
		}
	}
	return n
}

func consumerConfig(t *testing.T, js jetstream.JetStream, cfg queue.Config) jetstream.ConsumerConfig {
	t.Helper()
	c, err := js.Consumer(context.Background(), cfg.Stream, cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Config
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// The webhook (a publisher) and the workers, started in either order with
// different local settings, end with one consumer: the first worker's,
// which every worker then follows.
func TestConsumerBelongsToWorkers(t *testing.T) {
	for _, order := range []string{"webhook first", "workers first"} {
		t.Run(order, func(t *testing.T) {
			t.Parallel()
			_, js := connect(t, machineNATS())
			ctx := context.Background()
			base := testConfig(t)
			t.Cleanup(func() {
				_ = js.DeleteStream(context.Background(), base.Stream)
				_ = js.DeleteStream(context.Background(), base.DLQStream)
			})
			webhookCfg, workerCfg, otherWorkerCfg := base, base, base
			webhookCfg.AckWait, webhookCfg.MaxDeliver, webhookCfg.Duplicates = 5*time.Minute, 5, 2*time.Minute
			workerCfg.AckWait, workerCfg.MaxDeliver = time.Minute, 3
			otherWorkerCfg.AckWait, otherWorkerCfg.MaxDeliver = 2*time.Minute, 7

			webhookLog, workerLog, otherLog := &recorder{}, &recorder{}, &recorder{}
			var hook *queue.Queue
			openWebhook := func() {
				var err error
				if hook, err = queue.NewPublisher(ctx, js, webhookCfg, queue.WithLogger(slog.New(webhookLog))); err != nil {
					t.Fatal(err)
				}
			}
			if order == "webhook first" {
				openWebhook()
				if _, err := js.Consumer(ctx, base.Stream, base.Consumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
					t.Fatalf("after the webhook started, consumer lookup: %v; want none", err)
				}
			}
			w1, err := queue.New(ctx, js, workerCfg, queue.WithLogger(slog.New(workerLog)))
			if err != nil {
				t.Fatal(err)
			}
			if order == "workers first" {
				openWebhook()
			}
			w2, err := queue.New(ctx, js, otherWorkerCfg, queue.WithLogger(slog.New(otherLog)))
			if err != nil {
				t.Fatal(err)
			}

			cc := consumerConfig(t, js, base)
			if cc.AckWait != time.Minute || cc.MaxDeliver != 3 {
				t.Fatalf("consumer on the server: ack wait %s, max deliver %d; want the first worker's 1m, 3", cc.AckWait, cc.MaxDeliver)
			}
			for name, q := range map[string]*queue.Queue{"worker 1": w1, "worker 2": w2} {
				if c := q.Config(); c.AckWait != cc.AckWait || c.MaxDeliver != cc.MaxDeliver {
					t.Errorf("%s follows ack wait %s, max deliver %d; the server says %s, %d", name, c.AckWait, c.MaxDeliver, cc.AckWait, cc.MaxDeliver)
				}
			}
			const mismatch = "queue: consumer exists with other settings"
			if n := otherLog.count(slog.LevelWarn, mismatch); n != 1 {
				t.Errorf("worker 2 logged %d consumer mismatch warnings, want 1", n)
			}
			if n := workerLog.count(slog.LevelWarn, mismatch); n != 0 {
				t.Errorf("worker 1 (the consumer's creator) logged %d mismatch warnings", n)
			}
			// The streams were made by whoever came first, and kept.
			sc := streamConfig(t, js, base.Stream)
			wantDup := workerCfg.Duplicates
			if order == "webhook first" {
				wantDup = webhookCfg.Duplicates
			}
			if sc.Duplicates != wantDup {
				t.Errorf("dedup window %s, want %s (the first process's)", sc.Duplicates, wantDup)
			}
			if hook.Config().Duplicates != wantDup {
				t.Errorf("the webhook uses dedup window %s, the stream has %s", hook.Config().Duplicates, wantDup)
			}
			// The publisher still sees the queue's depth.
			if _, err := hook.Publish(ctx, job(1)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "one job pending", func() bool { return stats(t, hook).Pending == 1 })
			if err := hook.Consume(ctx, func(context.Context, *queue.Delivery) error { return nil }); err == nil {
				t.Error("a publisher consumed")
			}
		})
	}
}

// Setup is the deliberate change: it updates what exists, and running
// workers follow.
func TestSetupChangesAndWorkersFollow(t *testing.T) {
	_, js := connect(t, machineNATS())
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.AckWait, cfg.MaxDeliver = time.Minute, 3
	w := newQueue(t, js, cfg)
	finalAt := make(chan uint64, 10)
	consume(t, w, func(ctx context.Context, d *queue.Delivery) error {
		if d.Final() {
			finalAt <- d.NumDelivered
		}
		return errors.New("fails")
	}, queue.WithSettingsRefresh(50*time.Millisecond), queue.WithRetryBackoff(10*time.Millisecond, 10*time.Millisecond))

	want := cfg
	want.AckWait, want.MaxDeliver, want.Duplicates = 2*time.Minute, 2, 3*time.Minute
	if _, err := queue.Setup(ctx, js, want); err != nil {
		t.Fatal(err)
	}
	if cc := consumerConfig(t, js, cfg); cc.AckWait != want.AckWait || cc.MaxDeliver != 2 {
		t.Fatalf("after setup: consumer %s/%d", cc.AckWait, cc.MaxDeliver)
	}
	if sc := streamConfig(t, js, cfg.Stream); sc.Duplicates != want.Duplicates {
		t.Fatalf("after setup: dedup window %s", sc.Duplicates)
	}
	eventually(t, 5*time.Second, "the worker to follow the new settings", func() bool {
		c := w.Config()
		return c.MaxDeliver == 2 && c.AckWait == want.AckWait
	})
	if _, err := w.Publish(ctx, job(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-finalAt:
		if n != 2 {
			t.Fatalf("final delivery was number %d, want 2 (the server's max deliver)", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no final delivery")
	}
	eventually(t, 5*time.Second, "the dead letter", func() bool { return stats(t, w).DeadLetters == 1 })
	dls, err := w.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if dls[0].Reason != queue.ReasonMaxDeliveries || dls[0].Deliveries != 2 {
		t.Fatalf("dead letter %+v, want max_deliveries after 2", dls[0])
	}

	fresh := testConfig(t)
	fresh.MaxDeliver = 0
	cur, err := queue.Current(ctx, js, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if cur.MaxDeliver != queue.DefaultMaxDeliver {
		t.Fatalf("Current of a queue that does not exist: max deliver %d, want the default", cur.MaxDeliver)
	}
	probe := cfg
	probe.MaxDeliver = 9
	if cur, err = queue.Current(ctx, js, probe); err != nil || cur.MaxDeliver != 2 || cur.Duplicates != want.Duplicates {
		t.Fatalf("Current = %+v, %v; want the server's max deliver 2 and dedup window", cur, err)
	}
}

// A worker configured with a long ack wait paces its progress signals from
// the server's short one, and decides the last delivery from the server's
// max deliver.
func TestWorkersPaceFromServerSettings(t *testing.T) {
	_, js := connect(t, machineNATS())
	ctx := context.Background()
	cfg := testConfig(t)
	server := cfg
	server.AckWait, server.MaxDeliver = 600*time.Millisecond, 2
	newQueue(t, js, server) // the first worker made the consumer
	local := cfg
	local.AckWait, local.MaxDeliver = time.Hour, 10
	w, err := queue.New(ctx, js, local)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx, job(2)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	consume(t, w, func(ctx context.Context, d *queue.Delivery) error {
		calls.Add(1)
		stop := d.KeepAlive(ctx)
		defer stop()
		time.Sleep(4 * server.AckWait)
		return d.Ack(ctx)
	}, queue.WithConcurrency(2))
	eventually(t, 10*time.Second, "the job acked", func() bool { return stats(t, w).Messages == 0 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1: progress was not signalled within the server's ack wait", n)
	}
}

// While JetStream cannot be reached the pull loop backs off: a bounded
// number of pulls and log lines over an outage of a known length, one
// warning when it begins and one info when it ends.
func TestPullBacksOffDuringOutage(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// Publishes fail at once while disconnected, as pulls do on a cluster
	// whose stream has no leader.
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	cfg := testConfig(t)
	q, err := queue.New(context.Background(), js, cfg, queue.WithLogger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan string, 1)
	const (
		base, limit = 50 * time.Millisecond, 400 * time.Millisecond
		logEvery    = time.Second
		outage      = 3 * time.Second
	)
	consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
		handled <- d.Job.Key()
		return nil
	}, queue.WithPullBackoff(base, limit), queue.WithOutageLogInterval(logEvery), queue.WithoutDeadLetterWatch())

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	eventually(t, 5*time.Second, "the outage warning", func() bool {
		return rec.count(slog.LevelWarn, "queue: pulling jobs fails") == 1
	})
	time.Sleep(outage - time.Since(began)) // the outage lasts this long
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the recovery", func() bool {
		return rec.count(slog.LevelInfo, "queue: pulling jobs works again") == 1
	})
	total := time.Since(began)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := q.Publish(ctx, job(3)); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-handled:
		if k != job(3).Key() {
			t.Fatalf("handled %s", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no job handled after the outage")
	}

	attempts := rec.count(slog.LevelDebug, "queue: pull failed")
	// Doubling from base to limit, then one pull per limit.
	maxAttempts := 4 + int(total/limit) + 2
	if attempts < 3 || attempts > maxAttempts {
		t.Errorf("%d failed pulls over %s, want 3..%d", attempts, total.Round(time.Millisecond), maxAttempts)
	}
	again := rec.count(slog.LevelWarn, "queue: pulling jobs still fails")
	if maxAgain := int(total/logEvery) + 1; again > maxAgain {
		t.Errorf("%d repeated outage warnings over %s, want at most %d", again, total.Round(time.Millisecond), maxAgain)
	}
	if n := rec.count(slog.LevelWarn, "queue: pulling jobs fails"); n != 1 {
		t.Errorf("%d outage-begins warnings, want 1", n)
	}
	if n := rec.count(slog.LevelInfo, "queue: pulling jobs works again"); n != 1 {
		t.Errorf("%d recoveries logged, want 1", n)
	}
	t.Logf("outage of %s: %d failed pulls, %d repeated warnings", total.Round(time.Millisecond), attempts, again)
}
