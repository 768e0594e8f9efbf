package queue_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
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

// machineNATS is the NATS server of the machine (scripts/ensure-services);
// NATS_URL overrides it.
func machineNATS() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// servers runs fn against the machine's NATS and an embedded nats-server.
func servers(t *testing.T, fn func(t *testing.T, url string)) {
	t.Helper()
	t.Run("machine", func(t *testing.T) {
		t.Parallel()
		fn(t, machineNATS())
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		fn(t, srv.ClientURL())
	})
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS at %s (run scripts/ensure-services): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// testConfig names streams uniquely, so tests share a server safely.
func testConfig(t *testing.T) queue.Config {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := strings.ToUpper(hex.EncodeToString(b[:]))
	return queue.Config{
		Stream:        "QUEUETEST_" + id,
		SubjectPrefix: "queuetest." + id + ".jobs",
		DLQStream:     "QUEUETEST_" + id + "_DLQ",
		DLQPrefix:     "queuetest." + id + ".dlq",
		Consumer:      "workers",
		MaxDeliver:    3,
		AckWait:       5 * time.Second,
		Duplicates:    time.Minute,
	}
}

// lockedBuffer collects a queue's log lines from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newQueue(t *testing.T, js jetstream.JetStream, cfg queue.Config, opts ...queue.Option) *queue.Queue {
	t.Helper()
	ctx := context.Background()
	q, err := queue.New(ctx, js, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), cfg.Stream)
		_ = js.DeleteStream(context.Background(), cfg.DLQStream)
	})
	return q
}

func job(n int) queue.Job {
	return queue.Job{
		Source:     "distribution",
		Registry:   "registry.test:5000",
		Repository: "team/app",
		Digest:     fmt.Sprintf("sha256:%064x", n),
		Tag:        fmt.Sprintf("v%d", n),
		Action:     queue.ActionPush,
		ReceivedAt: time.Now().UTC(),
	}
}

// consume runs Consume in the background until the test ends.
func consume(t *testing.T, q *queue.Queue, h queue.Handler, opts ...queue.ConsumeOption) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, h, append([]queue.ConsumeOption{queue.WithFetchWait(200 * time.Millisecond)}, opts...)...)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Consume: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stats(t *testing.T, q *queue.Queue) queue.Stats {
	t.Helper()
	st, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPublishDeduplicates(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		q := newQueue(t, js, testConfig(t))
		ctx := context.Background()

		first, err := q.Publish(ctx, job(1))
		if err != nil {
			t.Fatal(err)
		}
		again, err := q.Publish(ctx, job(1))
		if err != nil {
			t.Fatal(err)
		}
		if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
			t.Fatalf("publishes: %+v then %+v, want the second a duplicate of the first", first, again)
		}
		del := job(1)
		del.Action = queue.ActionDelete
		if ack, err := q.Publish(ctx, del); err != nil || ack.Duplicate {
			t.Fatalf("delete of the same digest: %+v, %v; want a new job", ack, err)
		}
		if st := stats(t, q); st.Messages != 2 {
			t.Fatalf("stats %+v, want 2 messages", st)
		}
		// The consumer's pending count catches up asynchronously.
		eventually(t, 5*time.Second, "2 jobs pending", func() bool { return stats(t, q).Pending == 2 })
	})
}

func TestPublishRejectsInvalidJob(t *testing.T) {
	_, js := connect(t, machineNATS())
	q := newQueue(t, js, testConfig(t))
	j := job(1)
	j.Digest = ""
	if _, err := q.Publish(context.Background(), j); !errors.Is(err, queue.ErrInvalidJob) {
		t.Fatalf("Publish without digest: %v, want ErrInvalidJob", err)
	}
}

func TestConsumeAcksAndBoundsConcurrency(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		q := newQueue(t, js, testConfig(t))
		const jobs, workers = 12, 3
		for i := range jobs {
			if _, err := q.Publish(context.Background(), job(i)); err != nil {
				t.Fatal(err)
			}
		}
		var running, peak, handled atomic.Int32
		var mu sync.Mutex
		seen := map[string]bool{}
		consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			seen[d.Job.Key()] = true
			mu.Unlock()
			handled.Add(1)
			return nil
		}, queue.WithConcurrency(workers))

		eventually(t, 20*time.Second, "all jobs handled and acked", func() bool {
			return handled.Load() == jobs && stats(t, q).Messages == 0
		})
		if p := peak.Load(); p > workers || p < 2 {
			t.Fatalf("peak concurrency %d, want 2..%d", p, workers)
		}
		if len(seen) != jobs {
			t.Fatalf("handled %d distinct jobs, want %d", len(seen), jobs)
		}
	})
}

func TestNakBacksOffExponentially(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		cfg.MaxDeliver = 5
		q := newQueue(t, js, cfg)
		if _, err := q.Publish(context.Background(), job(1)); err != nil {
			t.Fatal(err)
		}
		const base = 300 * time.Millisecond
		var mu sync.Mutex
		var times []time.Time
		var deliveries []uint64
		consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			mu.Lock()
			times = append(times, time.Now())
			deliveries = append(deliveries, d.NumDelivered)
			n := len(times)
			mu.Unlock()
			if n < 3 {
				return fmt.Errorf("transient failure %d", n)
			}
			return nil
		}, queue.WithRetryBackoff(base, time.Minute))

		eventually(t, 20*time.Second, "the third delivery to succeed", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(times) == 3 && stats(t, q).Messages == 0
		})
		mu.Lock()
		defer mu.Unlock()
		if deliveries[0] != 1 || deliveries[1] != 2 || deliveries[2] != 3 {
			t.Fatalf("NumDelivered %v, want 1 2 3", deliveries)
		}
		if gap := times[1].Sub(times[0]); gap < base {
			t.Fatalf("first retry after %s, want ≥ %s", gap, base)
		}
		if gap := times[2].Sub(times[1]); gap < 2*base {
			t.Fatalf("second retry after %s, want ≥ %s (doubled)", gap, 2*base)
		}
		if st := stats(t, q); st.DeadLetters != 0 {
			t.Fatalf("dead letters %d, want 0", st.DeadLetters)
		}
	})
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		var logs lockedBuffer
		q := newQueue(t, js, testConfig(t), queue.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		ctx := context.Background()
		if _, err := q.Publish(ctx, job(7)); err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int32
		stop := consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			calls.Add(1)
			return queue.Permanent(errors.New("manifest is not an image"))
		})
		eventually(t, 10*time.Second, "a dead letter", func() bool { return stats(t, q).DeadLetters == 1 })
		dls, err := q.DeadLetters(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		dl := dls[0]
		if dl.Reason != queue.ReasonTerminated || !strings.Contains(dl.LastError, "manifest is not an image") ||
			dl.Deliveries != 1 || dl.Job.Key() != job(7).Key() {
			t.Fatalf("dead letter %+v", dl)
		}
		eventually(t, 5*time.Second, "the work stream to empty", func() bool { return stats(t, q).Messages == 0 })
		if n := calls.Load(); n != 1 {
			t.Fatalf("handler called %d times, want 1", n)
		}
		// Once Consume has returned every delivery is settled: removing the
		// terminated job, which the server may already have dropped, is no
		// failure.
		stop()
		if strings.Contains(logs.String(), "settling a job failed") {
			t.Errorf("dead-lettering logged a settle failure:\n%s", logs.String())
		}
	})
}

func TestMaxDeliverDeadLettersAndRetry(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		cfg.MaxDeliver = 3
		q := newQueue(t, js, cfg)
		ctx := context.Background()
		if _, err := q.Publish(ctx, job(3)); err != nil {
			t.Fatal(err)
		}
		var fail atomic.Bool
		fail.Store(true)
		var calls atomic.Int32
		consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			calls.Add(1)
			if fail.Load() {
				return fmt.Errorf("registry unreachable (try %d)", d.NumDelivered)
			}
			return nil
		}, queue.WithRetryBackoff(50*time.Millisecond, time.Second))

		eventually(t, 15*time.Second, "a dead letter", func() bool { return stats(t, q).DeadLetters == 1 })
		// The poison message must not stay in the work-queue stream.
		eventually(t, 5*time.Second, "the work stream to empty", func() bool { return stats(t, q).Messages == 0 })
		dls, err := q.DeadLetters(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		dl := dls[0]
		if dl.Reason != queue.ReasonMaxDeliveries || dl.Deliveries != 3 || dl.LastError != "registry unreachable (try 3)" {
			t.Fatalf("dead letter %+v", dl)
		}
		if n := calls.Load(); n != 3 {
			t.Fatalf("handler called %d times, want 3", n)
		}

		// Fixed: retry it. It runs again with a fresh delivery count,
		// although its key is still inside the dedup window.
		fail.Store(false)
		if _, err := q.RetryDeadLetter(ctx, dl.Sequence); err != nil {
			t.Fatal(err)
		}
		if _, err := q.RetryDeadLetter(ctx, dl.Sequence); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("second retry of the same dead letter: %v, want ErrNotFound", err)
		}
		eventually(t, 10*time.Second, "the retried job to succeed", func() bool {
			st := stats(t, q)
			return calls.Load() == 4 && st.Messages == 0 && st.DeadLetters == 0
		})
	})
}

func TestRetryAllDeadLetters(t *testing.T) {
	_, js := connect(t, machineNATS())
	cfg := testConfig(t)
	cfg.MaxDeliver = 1
	q := newQueue(t, js, cfg)
	ctx := context.Background()
	for i := range 3 {
		if _, err := q.Publish(ctx, job(i)); err != nil {
			t.Fatal(err)
		}
	}
	stop := consume(t, q, func(ctx context.Context, d *queue.Delivery) error { return errors.New("down") })
	eventually(t, 10*time.Second, "three dead letters", func() bool { return stats(t, q).DeadLetters == 3 })
	stop()
	n, err := q.RetryAllDeadLetters(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RetryAllDeadLetters = %d, %v; want 3", n, err)
	}
	if st := stats(t, q); st.DeadLetters != 0 || st.Messages != 3 {
		t.Fatalf("after retry: %+v, want 3 jobs and no dead letters", st)
	}
}

// A worker that dies holding a job: its job is redelivered to another.
func TestKilledConsumerJobIsRedelivered(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		cfg.AckWait = time.Second
		newQueue(t, js, cfg)

		// Worker 1 on its own connection takes the job and dies mid-job.
		_, js1 := connect(t, url)
		q1, err := queue.New(context.Background(), js1, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q1.Publish(context.Background(), job(9)); err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		ctx1, cancel1 := context.WithCancel(context.Background())
		defer cancel1()
		done1 := make(chan struct{})
		go func() {
			defer close(done1)
			_ = q1.Consume(ctx1, func(ctx context.Context, d *queue.Delivery) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			}, queue.WithFetchWait(200*time.Millisecond), queue.WithoutDeadLetterWatch())
		}()
		<-started
		js1.Conn().Close() // the worker's process is gone: no ack, no nak

		_, js2 := connect(t, url)
		q2, err := queue.Bind(context.Background(), js2, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan uint64, 1)
		consume(t, q2, func(ctx context.Context, d *queue.Delivery) error {
			got <- d.NumDelivered
			return nil
		})
		select {
		case n := <-got:
			if n != 2 {
				t.Fatalf("redelivery NumDelivered = %d, want 2", n)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("job not redelivered after its worker died")
		}
		cancel1()
		<-done1
		eventually(t, 5*time.Second, "the job acked", func() bool { return stats(t, q2).Messages == 0 })
	})
}

// On shutdown, a job whose handler is cut short goes back at once (not
// after AckWait) and counts no failure against it beyond the delivery.
func TestShutdownGivesJobsBack(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		cfg.AckWait = time.Minute // a redelivery within the test proves a nak
		q := newQueue(t, js, cfg)
		if _, err := q.Publish(context.Background(), job(5)); err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		stop := consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			close(started)
			<-ctx.Done() // long work, interrupted
			return ctx.Err()
		}, queue.WithDrainTimeout(100*time.Millisecond))
		<-started
		stop()

		got := make(chan uint64, 1)
		consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			got <- d.NumDelivered
			return nil
		})
		select {
		case n := <-got:
			if n != 2 {
				t.Fatalf("NumDelivered = %d, want 2", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("job not given back on shutdown")
		}
		if st := stats(t, q); st.DeadLetters != 0 {
			t.Fatalf("dead letters %d, want 0", st.DeadLetters)
		}
	})
}

// A handler that finishes within the drain timeout still acks its job.
func TestShutdownLetsJobsFinish(t *testing.T) {
	_, js := connect(t, machineNATS())
	q := newQueue(t, js, testConfig(t))
	if _, err := q.Publish(context.Background(), job(6)); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var finished atomic.Bool
	stop := consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
		close(started)
		time.Sleep(300 * time.Millisecond)
		finished.Store(ctx.Err() == nil)
		return nil
	}, queue.WithDrainTimeout(5*time.Second))
	<-started
	stop()
	if !finished.Load() {
		t.Fatal("handler context cancelled before the drain timeout")
	}
	if st := stats(t, q); st.Messages != 0 {
		t.Fatalf("messages %d after drain, want 0 (acked)", st.Messages)
	}
}

func TestKeepAlivePreventsRedelivery(t *testing.T) {
	_, js := connect(t, machineNATS())
	cfg := testConfig(t)
	cfg.AckWait = 600 * time.Millisecond
	q := newQueue(t, js, cfg)
	if _, err := q.Publish(context.Background(), job(2)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
		calls.Add(1)
		stop := d.KeepAlive(ctx)
		defer stop()
		time.Sleep(4 * cfg.AckWait)
		return d.Ack(ctx)
	}, queue.WithConcurrency(2))
	eventually(t, 10*time.Second, "the job acked", func() bool { return stats(t, q).Messages == 0 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1 (no redelivery during long work)", n)
	}
}

// A worker whose final delivery ends without a result (it died) still gets
// its job dead-lettered, through the max-deliveries advisory.
func TestNoResultOnFinalDeliveryIsDeadLettered(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		cfg.MaxDeliver = 2
		cfg.AckWait = 500 * time.Millisecond
		q := newQueue(t, js, cfg)
		if _, err := q.Publish(context.Background(), job(4)); err != nil {
			t.Fatal(err)
		}
		// Two dead workers: each takes the job and never answers.
		cons, err := js.Consumer(context.Background(), cfg.Stream, cfg.Consumer)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for range batch.Messages() {
				n++
			}
			if n != 1 {
				t.Fatalf("dead worker %d got %d jobs, want 1", i+1, n)
			}
		}
		// A live worker: the job never reaches it, but it notices the
		// job ran out of deliveries.
		var calls atomic.Int32
		consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
			calls.Add(1)
			return nil
		})
		eventually(t, 15*time.Second, "a dead letter", func() bool { return stats(t, q).DeadLetters == 1 })
		eventually(t, 5*time.Second, "the work stream to empty", func() bool { return stats(t, q).Messages == 0 })
		dls, err := q.DeadLetters(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if dls[0].Reason != queue.ReasonNoResult || dls[0].Job.Key() != job(4).Key() {
			t.Fatalf("dead letter %+v", dls[0])
		}
		if n := calls.Load(); n != 0 {
			t.Fatalf("handler called %d times, want 0", n)
		}
	})
}

func TestBindNeedsExistingStreams(t *testing.T) {
	_, js := connect(t, machineNATS())
	if _, err := queue.Bind(context.Background(), js, testConfig(t)); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Bind on missing streams: %v, want ErrNotFound", err)
	}
}

func TestJobKeyAndValidate(t *testing.T) {
	j := job(1)
	if want := "registry.test:5000/team/app:v1@sha256:" + strings.Repeat("0", 63) + "1/push"; j.Key() != want {
		t.Fatalf("Key = %s, want %s", j.Key(), want)
	}
	j.Action = "pull"
	if err := j.Validate(); !errors.Is(err, queue.ErrInvalidJob) {
		t.Fatalf("Validate pull: %v", err)
	}
}

func TestNewRefusesOverlappingSubjects(t *testing.T) {
	_, js := connect(t, machineNATS())
	cfg := testConfig(t)
	cfg.DLQPrefix = cfg.SubjectPrefix + ".dead"
	if _, err := queue.New(context.Background(), js, cfg); err == nil {
		_ = js.DeleteStream(context.Background(), cfg.Stream)
		t.Fatal("New with the DLQ subjects inside the work subjects succeeded")
	}
}

// Shutdown on a job's last allowed delivery: a nak would strand it, so it
// is queued afresh rather than dead-lettered.
func TestShutdownOnFinalDeliveryRequeues(t *testing.T) {
	_, js := connect(t, machineNATS())
	cfg := testConfig(t)
	cfg.MaxDeliver = 1
	q := newQueue(t, js, cfg)
	if _, err := q.Publish(context.Background(), job(8)); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	stop := consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}, queue.WithDrainTimeout(50*time.Millisecond))
	<-started
	stop()

	got := make(chan queue.Job, 1)
	consume(t, q, func(ctx context.Context, d *queue.Delivery) error {
		if d.NumDelivered != 1 {
			return fmt.Errorf("NumDelivered %d, want 1", d.NumDelivered)
		}
		got <- d.Job
		return nil
	})
	select {
	case j := <-got:
		if j.Key() != job(8).Key() {
			t.Fatalf("got %s", j.Key())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("job not requeued after shutdown on its final delivery")
	}
	eventually(t, 5*time.Second, "an empty work stream", func() bool { return stats(t, q).Messages == 0 })
	if st := stats(t, q); st.DeadLetters != 0 {
		t.Fatalf("dead letters %d, want 0", st.DeadLetters)
	}
}

// TestRemoveFromWorkOfAGoneJob: removing a job the server already dropped
// (as servers from 2.10 do on Term) succeeds; a job still there is removed.
func TestRemoveFromWorkOfAGoneJob(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		_, js := connect(t, url)
		cfg := testConfig(t)
		q := newQueue(t, js, cfg)
		ctx := context.Background()
		ack, err := q.Publish(ctx, job(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := queue.RemoveFromWork(q, ctx, ack.Sequence); err != nil {
			t.Fatalf("remove a stored job: %v", err)
		}
		if st := stats(t, q); st.Messages != 0 {
			t.Fatalf("work stream holds %d messages after the remove", st.Messages)
		}
		if err := queue.RemoveFromWork(q, ctx, ack.Sequence); err != nil {
			t.Errorf("remove a job already gone: %v", err)
		}
		if err := queue.RemoveFromWork(q, ctx, ack.Sequence+100); err != nil {
			t.Errorf("remove a sequence never stored: %v", err)
		}
	})
}
