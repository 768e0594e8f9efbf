package app

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
)

// Benchmarks of the whole service in one process: embedded registry (on
// disk), embedded NATS, SQLite, default span and minimum layer sizes. Images
// are about 100 MB: four gzip layers of real files from this machine. Run:
//
//	go test ./internal/app -run '^$' -bench . -benchtime 5x -timeout 30m
//
// Results: docs/bench/service.md.

// benchLayerDirs give one layer each; benchLayerBytes of files per layer.
var benchLayerDirs = []string{"/usr/lib/x86_64-linux-gnu", "/usr/local/go/pkg", "/usr/share", "/usr/lib/postgresql"}

const benchLayerBytes = 60 << 20

// benchLayers builds the layers of a fresh image: id makes the digests new.
func benchLayers(b *testing.B, id string) []demoimage.Layer {
	b.Helper()
	var layers []demoimage.Layer
	for _, dir := range benchLayerDirs {
		l, err := demoimage.UniqueLayerFromDir(context.Background(), dir, benchLayerBytes, b.TempDir(), id)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
	}
	return layers
}

func imageSize(layers []demoimage.Layer) int64 {
	var n int64
	for _, l := range layers {
		n += l.Descriptor.Size
	}
	return n
}

func benchServer(b *testing.B, workers int) (*Server, func()) {
	b.Helper()
	cfg := testsupport.DefaultConfig(b)
	cfg.DataDir = b.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.RegistryListen = "127.0.0.1:0"
	cfg.Workers = workers
	cfg.PlainHTTP = true
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() { cancel(); <-done; s.Close() }
}

func benchRepo(b *testing.B, registry, name string) *remote.Repository {
	b.Helper()
	repos, err := testsupport.Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }})
	if err != nil {
		b.Fatal(err)
	}
	repo, err := repos(context.Background(), registry, name)
	if err != nil {
		b.Fatal(err)
	}
	return repo
}

// waitIndexed polls the job record every 10ms.
func waitIndexed(b *testing.B, store service.Store, key db.JobKey) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := store.Get(context.Background(), key)
		if err == nil && j.Status == db.JobSucceeded {
			return
		}
		if err == nil && (j.Status == db.JobFailed || j.Status == db.JobSkipped) {
			b.Fatalf("job %s: %s%s", j.Status, j.LastError, j.SkipReason)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("not indexed within 10 minutes")
}

// pullAll reads every layer of an image, as a node pulling it would.
func pullAll(b *testing.B, repo *remote.Repository, layers []demoimage.Layer) {
	b.Helper()
	for _, l := range layers {
		rc, err := repo.Fetch(context.Background(), l.Descriptor)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// pullAndGunzip reads and decompresses every layer, as a node unpacking
// the image would (without writing files).
func pullAndGunzip(b *testing.B, repo *remote.Repository, layers []demoimage.Layer) {
	b.Helper()
	for _, l := range layers {
		rc, err := repo.Fetch(context.Background(), l.Descriptor)
		if err != nil {
			b.Fatal(err)
		}
		gz, err := gzip.NewReader(rc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, gz); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPushToIndex: from the end of a push (manifest PUT answered) to
// the job recorded succeeded, for images whose layers are all new, against
// the time to pull the same image's layers from the same registry.
func BenchmarkPushToIndex(b *testing.B) {
	s, stop := benchServer(b, 2)
	defer stop()
	repo := benchRepo(b, s.RegistryAddr(), "bench/latency")
	var latencies, pulls, unpacks []time.Duration
	var size int64
	for i := range b.N {
		b.StopTimer()
		layers := benchLayers(b, fmt.Sprintf("latency-%d-%d", time.Now().UnixNano(), i))
		size = imageSize(layers)
		tag := fmt.Sprintf("v%d", i)
		desc, err := demoimage.Push(context.Background(), repo, tag, layers)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		waitIndexed(b, s.Store(), db.JobKey{Registry: s.RegistryAddr(), Repository: "bench/latency", Digest: desc.Digest.String(), Tag: tag})
		latencies = append(latencies, time.Since(start))
		b.StopTimer()
		start = time.Now()
		pullAll(b, repo, layers)
		pulls = append(pulls, time.Since(start))
		start = time.Now()
		pullAndGunzip(b, repo, layers)
		unpacks = append(unpacks, time.Since(start))
		b.StartTimer()
	}
	b.ReportMetric(float64(p50(latencies).Milliseconds()), "p50-push-to-index-ms")
	b.ReportMetric(float64(p50(pulls).Milliseconds()), "p50-pull-ms")
	b.ReportMetric(float64(p50(unpacks).Milliseconds()), "p50-pull-gunzip-ms")
	b.ReportMetric(float64(p50(latencies))/float64(p50(pulls)), "index/pull")
	b.ReportMetric(float64(p50(latencies))/float64(p50(unpacks)), "index/pull-gunzip")
	b.ReportMetric(float64(size)/1e6, "image-MB")
}

// benchThroughput pushes images to a registry that sends no events, then
// enqueues them all at once and times two workers indexing them; baseline:
// two pullers pulling the same images.
func benchThroughput(b *testing.B, images int, known bool) {
	s, stop := benchServer(b, 2)
	defer stop()
	reg, err := embeddedregistry.Start(context.Background(), embeddedregistry.Options{RootDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	repo := benchRepo(b, reg.Addr(), "bench/throughput")
	var perMinute, pullPerMinute []float64
	for round := range b.N {
		b.StopTimer()
		var shared []demoimage.Layer
		if known {
			shared = benchLayers(b, fmt.Sprintf("known-%d-%d", time.Now().UnixNano(), round))
			// Index the layers once, so every timed image finds its zTOCs.
			desc, err := demoimage.Push(context.Background(), repo, fmt.Sprintf("warm-%d", round), shared)
			if err != nil {
				b.Fatal(err)
			}
			warm := queue.Job{Source: "bench", Registry: reg.Addr(), Repository: "bench/throughput", Digest: desc.Digest.String(),
				Tag: fmt.Sprintf("warm-%d", round), Action: queue.ActionPush}
			if _, err := s.Queue().Publish(context.Background(), warm); err != nil {
				b.Fatal(err)
			}
			waitIndexed(b, s.Store(), db.JobKey{Registry: reg.Addr(), Repository: "bench/throughput", Digest: desc.Digest.String(), Tag: warm.Tag})
		}
		var jobs []queue.Job
		var all [][]demoimage.Layer
		for i := range images {
			layers := shared
			if !known {
				layers = benchLayers(b, fmt.Sprintf("new-%d-%d-%d", time.Now().UnixNano(), round, i))
			}
			all = append(all, layers)
			tag := fmt.Sprintf("t%d-%d", round, i)
			desc, err := demoimage.Push(context.Background(), repo, tag, layers,
				demoimage.WithAnnotations(map[string]string{"bench": fmt.Sprintf("%d-%d-%d", round, i, time.Now().UnixNano())}))
			if err != nil {
				b.Fatal(err)
			}
			jobs = append(jobs, queue.Job{Source: "bench", Registry: reg.Addr(), Repository: "bench/throughput",
				Digest: desc.Digest.String(), MediaType: desc.MediaType, Tag: tag,
				Action: queue.ActionPush, ReceivedAt: time.Now()})
		}
		b.StartTimer()
		start := time.Now()
		for _, j := range jobs {
			if _, err := s.Queue().Publish(context.Background(), j); err != nil {
				b.Fatal(err)
			}
		}
		for _, j := range jobs {
			waitIndexed(b, s.Store(), db.JobKey{Registry: j.Registry, Repository: j.Repository, Digest: j.Digest, Tag: j.Tag})
		}
		perMinute = append(perMinute, float64(images)/time.Since(start).Minutes())
		b.StopTimer()
		start = time.Now()
		var wg sync.WaitGroup
		next := make(chan []demoimage.Layer)
		for range 2 {
			wg.Go(func() {
				for layers := range next {
					pullAll(b, repo, layers)
				}
			})
		}
		for _, layers := range all {
			next <- layers
		}
		close(next)
		wg.Wait()
		pullPerMinute = append(pullPerMinute, float64(images)/time.Since(start).Minutes())
		b.StartTimer()
	}
	slices.Sort(perMinute)
	slices.Sort(pullPerMinute)
	b.ReportMetric(perMinute[len(perMinute)/2], "images/min")
	b.ReportMetric(pullPerMinute[len(pullPerMinute)/2], "pulls/min")
}

func BenchmarkThroughputNewLayers(b *testing.B)   { benchThroughput(b, 4, false) }
func BenchmarkThroughputKnownLayers(b *testing.B) { benchThroughput(b, 4, true) }
