package scale_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/regfill"
	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// BenchmarkBackfillLargeRegistry fills a real distribution registry
// (embedded, filesystem storage) with SOCI_BENCH_BACKFILL_REPOS
// repositories (default 10,000) of SOCI_BENCH_BACKFILL_TAGS tags each
// (default 5), cheaply (internal/regfill: blobs pushed once and mounted
// into every repository, one small manifest per tag), then runs
// `indexer backfill REGISTRY` as a process of its own on the machine's
// NATS and a Postgres database three times:
//  1. killed with SIGKILL once its saved progress passes a fifth of the
//     catalog;
//  2. again: it must resume after the saved repository and finish;
//  3. again, right after: it walks everything and must enqueue nothing.
//
// It reports tags checked per second and the peak RSS of runs 2 and 3.
// scripts/bench-backfill runs it.
func BenchmarkBackfillLargeRegistry(b *testing.B) {
	repos, tags := envInt(b, "SOCI_BENCH_BACKFILL_REPOS", 10_000), envInt(b, "SOCI_BENCH_BACKFILL_TAGS", 5)
	ctx := context.Background()
	c := newCluster(b, clusterOptions{settings: map[string]string{
		"backfill_rps": "0", "backfill_concurrency": "8",
	}})
	host := c.reg.Addr()
	t0 := time.Now()
	n, err := regfill.Fill(ctx, regfill.Options{Registry: host, Repositories: repos, Tags: tags, Prefix: "bf", Concurrency: 8})
	if err != nil || n != int64(repos*tags) {
		b.Fatalf("fill: %d manifests, %v", n, err)
	}
	fill := time.Since(t0)
	b.Logf("filled %d repositories, %d tags in %s (%.0f manifests/s)", repos, n, fill.Round(time.Millisecond), float64(n)/fill.Seconds())
	b.ResetTimer()

	// Run 1: killed mid-walk.
	killed := backfillProc(b, c, host, func(p *os.Process) {
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			pr, err := c.store.BackfillProgress(ctx, host)
			if err == nil && pr.Repositories >= int64(repos/5) {
				_ = p.Signal(syscall.SIGKILL)
				return
			}
			if p.Signal(syscall.Signal(0)) != nil { // it ended on its own
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if killed.err == nil {
		b.Fatalf("run 1 was not killed: %s", killed.out)
	}
	saved, err := c.store.BackfillProgress(ctx, host)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("run 1 killed after %s: progress %s, %d repositories, %d tags", killed.wall.Round(time.Millisecond),
		saved.LastRepository, saved.Repositories, saved.Tags)

	// Run 2: resumes and finishes.
	resumed := backfillProc(b, c, host, nil)
	if resumed.err != nil {
		b.Fatalf("run 2: %v\n%s", resumed.err, resumed.out)
	}
	if want := repos - int(saved.Repositories); resumed.repos != want {
		b.Errorf("run 2 walked %d repositories, want the %d after %s", resumed.repos, want, saved.LastRepository)
	}
	if _, err := c.store.BackfillProgress(ctx, host); !errors.Is(err, db.ErrNoBackfillProgress) {
		b.Errorf("progress after run 2: %v, want none", err)
	}

	// Run 3: nothing new.
	again := backfillProc(b, c, host, nil)
	if again.err != nil {
		b.Fatalf("run 3: %v\n%s", again.err, again.out)
	}
	if again.repos != repos || again.tags != repos*tags || again.enqueued != 0 {
		b.Errorf("run 3: %d repositories, %d tags, %d enqueued; want %d, %d and 0", again.repos, again.tags,
			again.enqueued, repos, repos*tags)
	}
	stream, err := c.js.Stream(ctx, c.stream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if info.State.Msgs != uint64(repos*tags) {
		b.Errorf("%d jobs in the stream after the runs, want %d: every tag once", info.State.Msgs, repos*tags)
	}
	for name, r := range map[string]backfillRun{"resumed": resumed, "second": again} {
		b.ReportMetric(float64(r.tags)/r.wall.Seconds(), name+"-tags/s")
		b.ReportMetric(float64(r.maxRSS)/1024, name+"-peak-RSS-MiB")
		b.Logf("run %s: %d repositories, %d tags, %d enqueued, %d already queued in %s: %.0f tags/s, peak RSS %.1f MiB, CPU %.1f s",
			name, r.repos, r.tags, r.enqueued, r.duplicates, r.wall.Round(time.Millisecond),
			float64(r.tags)/r.wall.Seconds(), float64(r.maxRSS)/1024, r.cpu.Seconds())
	}
	b.ReportMetric(float64(n)/fill.Seconds(), "fill-manifests/s")
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		tb.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

type backfillRun struct {
	err                               error
	out                               string
	wall, cpu                         time.Duration
	maxRSS                            int64 // KiB
	repos, tags, enqueued, duplicates int
}

var backfillLine = regexp.MustCompile(`: (\d+) repositories, (\d+) tags, (\d+) enqueued, (\d+) already queued`)

// backfillProc runs `indexer backfill host` to its end; during calls
// during(process) while it runs.
func backfillProc(tb testing.TB, c *cluster, host string, during func(*os.Process)) backfillRun {
	tb.Helper()
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(c.bin, "indexer"), "backfill", host)
	cmd.Env = append(c.workerEnv("127.0.0.1:0"), "INDEXER_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	if during != nil {
		go during(cmd.Process)
	}
	r := backfillRun{err: cmd.Wait()}
	r.wall = time.Since(start)
	r.out = out.String()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if m := backfillLine.FindStringSubmatch(r.out); m != nil {
		for i, p := range []*int{&r.repos, &r.tags, &r.enqueued, &r.duplicates} {
			*p, _ = strconv.Atoi(m[i+1])
		}
	} else if r.err == nil {
		r.err = fmt.Errorf("no summary line in the output")
	}
	return r
}
