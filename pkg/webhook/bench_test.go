package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// benchClients is the number of concurrent senders of the load generator.
const benchClients = 32

// discardPublisher answers every publish at once: the baseline measures the
// HTTP server, parsing and filtering without JetStream.
type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, queue.Job) (queue.PublishAck, error) {
	return queue.PublishAck{}, nil
}
func (discardPublisher) Ready(context.Context) error { return nil }

// distributionEnvelope is one manifest push event with a unique digest.
func distributionEnvelope(i int) []byte {
	return fmt.Appendf(nil, `{"events":[{"id":"bench-%d","timestamp":"2026-11-27T00:00:00Z","action":"push",`+
		`"target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064x","size":399,`+
		`"repository":"bench/app","url":"http://127.0.0.1:5000/v2/bench/app/manifests/sha256:%064x","tag":"v%d",`+
		`"references":[{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064x","size":78}]},`+
		`"request":{"host":"127.0.0.1:5000"},"actor":{}}]}`, i, i, i, i, i)
}

// BenchmarkIngest posts b.N distinct notifications from benchClients
// concurrent clients over loopback and reports accepted events per second
// and the p50/p99 request latency. Run with a fixed count, e.g.
// -benchtime=20000x.
func BenchmarkIngest(b *testing.B) {
	ns, err := natsserver.Start(natsserver.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("baseline-http-no-publish", func(b *testing.B) {
		benchHTTP(b, discardPublisher{})
	})
	b.Run("jetstream-publish-no-http", func(b *testing.B) {
		q := benchQueue(b, js)
		runLoad(b, func(i int) error {
			_, err := q.Publish(context.Background(), queue.Job{Source: "distribution", Registry: "127.0.0.1:5000",
				Repository: "bench/app", Digest: fmt.Sprintf("sha256:%064x", i), Action: queue.ActionPush})
			return err
		})
	})
	b.Run("webhook-jetstream-file", func(b *testing.B) {
		benchHTTP(b, benchQueue(b, js))
	})
}

func benchQueue(b *testing.B, js jetstream.JetStream) *queue.Queue {
	b.Helper()
	cfg := queueConfig()
	q, err := queue.New(context.Background(), js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), cfg.Stream)
		_ = js.DeleteStream(context.Background(), cfg.DLQStream)
	})
	return q
}

func benchHTTP(b *testing.B, pub webhook.Publisher) {
	h, err := webhook.New(pub, allSources(webhook.Config{}))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
	url := srv.URL + webhook.PathDistribution
	runLoad(b, func(i int) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(distributionEnvelope(i)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", webhook.MediaTypeDistributionEventsV2)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		// Drain so the connection is reused.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// runLoad calls send(i) for i in [0, b.N) from benchClients goroutines and
// reports throughput and latency percentiles.
func runLoad(b *testing.B, send func(i int) error) {
	b.Helper()
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := send(i); err != nil {
					failed.Add(1)
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d sends failed", n, b.N)
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	// CPU time of the whole process (load generator, webhook and embedded
	// NATS) per event: unlike wall-clock rates, it holds on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/event")
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandlerCPU is the handler's own cost per request, without a
// network or JetStream.
func BenchmarkHandlerCPU(b *testing.B) {
	h, err := webhook.New(discardPublisher{}, allSources(webhook.Config{}))
	if err != nil {
		b.Fatal(err)
	}
	body := distributionEnvelope(1)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, webhook.PathDistribution, bytes.NewReader(body))
		req.Header.Set("Content-Type", webhook.MediaTypeDistributionEventsV2)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
}
