package scale_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// BenchmarkWorkerProcesses measures images indexed per minute by 1, 2 and
// 4 `indexer serve` processes (2 workers each) on one Postgres database and
// the machine's NATS, against the embedded registry. Each count gets its
// own database, stream and registry, and the same shape of image set:
// SOCI_BENCH_WORKERS_IMAGES images (default 16) of two 16 MiB layers of
// this machine's files, new content per run (so every zTOC is built). The
// workers are started and ready first; then `indexer backfill` enqueues
// every image, and the clock runs until the last job succeeded.
// scripts/bench-workers runs it.
func BenchmarkWorkerProcesses(b *testing.B) {
	images := envInt(b, "SOCI_BENCH_WORKERS_IMAGES", 16)
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("processes=%d", procs), func(b *testing.B) {
			for range b.N {
				perMin := workerRun(b, procs, images)
				b.ReportMetric(perMin, "images/min")
			}
		})
	}
}

func workerRun(b *testing.B, procs, images int) float64 {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := newCluster(b, clusterOptions{settings: map[string]string{
		"min_layer_size": "0",
		"backfill_rps":   "0",
	}})
	client, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		b.Fatal(err)
	}
	repo, err := client.RepositoryOf(ctx, c.reg.Addr(), "bench/app")
	if err != nil {
		b.Fatal(err)
	}
	dirs := []string{"/usr/lib/x86_64-linux-gnu", "/usr/share"}
	keys := make([]db.JobKey, images)
	run := time.Now().UnixNano()
	var bytes int64
	for i := range images {
		var ls []demoimage.Layer
		for l, dir := range dirs {
			layer, err := demoimage.UniqueLayerFromDir(ctx, dir, 16<<20, b.TempDir(), fmt.Sprintf("run %d image %d layer %d", run, i, l))
			if err != nil {
				b.Fatal(err)
			}
			if st, err := os.Stat(layer.Path); err == nil {
				bytes += st.Size()
			}
			ls = append(ls, layer)
		}
		tag := fmt.Sprintf("v%d", i)
		desc, err := demoimage.Push(ctx, repo, tag, ls)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range ls {
			_ = l.Remove()
		}
		keys[i] = db.JobKey{Registry: c.workerRegistry, Repository: "bench/app", Digest: desc.Digest.String(), Tag: tag}
	}
	for i := range procs {
		c.startWorker(fmt.Sprintf("worker-%d", i))
	}
	b.StartTimer()
	start := time.Now()
	bf := backfillProc(b, c, c.reg.Addr(), nil)
	if bf.err != nil || bf.enqueued != images {
		b.Fatalf("backfill enqueued %d of %d images: %v\n%s", bf.enqueued, images, bf.err, bf.out)
	}
	jobs, err := c.waitJobs(keys, 15*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	for _, j := range jobs {
		if j.Status != db.JobSucceeded {
			b.Fatalf("job %s/%s:%s %s: %s", j.Registry, j.Repository, j.Tag, j.Status, j.LastError)
		}
	}
	perMin := float64(images) / elapsed.Minutes()
	b.Logf("%d processes: %d images (%.0f MB compressed) in %s: %.1f images/min, load %s", procs, images,
		float64(bytes)/1e6, elapsed.Round(time.Millisecond), perMin, loadAvg())
	return perMin
}

func loadAvg() string {
	l, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(l) < 14 {
		return "?"
	}
	return string(l[:14])
}
