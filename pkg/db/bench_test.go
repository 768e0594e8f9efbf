package db

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

const (
	benchBatchRows  = 100_000
	benchPerRowRows = 5_000 // the baseline is slow; fewer rows give the same rate
)

// BenchmarkArtifactWrites measures artifact writes per second: 100k rows
// through WriteArtifactEntries (COPY into staging + one upsert on Postgres,
// one transaction on SQLite) against one WriteArtifactEntry round trip per
// row, both in the same run. Every row is a new zTOC with one location.
func BenchmarkArtifactWrites(b *testing.B) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{{"postgres", newPostgresDSN}, {"sqlite", newSQLiteDSN}} {
		b.Run(backend.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, backend.dsn(b))
			next := 0
			entries := func(n int) []*index.ArtifactEntry {
				out := make([]*index.ArtifactEntry, n)
				for i := range out {
					next++
					out[i] = ztocEntry(fakeDigest(fmt.Sprint("bench layer ", next)), 1<<22, "v1", repoA)
				}
				return out
			}
			var batched, perRow time.Duration
			b.ResetTimer()
			for range b.N {
				batch := entries(benchBatchRows)
				start := time.Now()
				if err := s.WriteArtifactEntries(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batched += time.Since(start)

				rows := entries(benchPerRowRows)
				start = time.Now()
				for _, e := range rows {
					if err := s.WriteArtifactEntry(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
				perRow += time.Since(start)
			}
			batchedRate := float64(b.N*benchBatchRows) / batched.Seconds()
			perRowRate := float64(b.N*benchPerRowRows) / perRow.Seconds()
			b.ReportMetric(batchedRate, "batched_rows/s")
			b.ReportMetric(perRowRate, "per_row_rows/s")
			b.ReportMetric(batchedRate/perRowRate, "speedup")
		})
	}
}

// BenchmarkCoverageReport times the coverage report over 100k jobs in 1000
// repositories, and over the same jobs with 100k artifacts beside them.
func BenchmarkCoverageReport(b *testing.B) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{{"postgres", newPostgresDSN}, {"sqlite", newSQLiteDSN}} {
		b.Run(backend.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, backend.dsn(b))
			seedJobs(b, s, 100_000, 1000)
			b.ResetTimer()
			for range b.N {
				rows, err := s.Coverage(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(rows) != 1000 {
					b.Fatalf("coverage has %d repositories, want 1000", len(rows))
				}
			}
		})
	}
}

// seedJobs inserts n finished jobs spread over repos repositories with one
// statement, so setting up the benchmark takes seconds.
func seedJobs(b *testing.B, s Store, n, repos int) {
	b.Helper()
	ctx := context.Background()
	var err error
	switch s := s.(type) {
	case *postgresStore:
		_, err = s.pool.Exec(ctx, `INSERT INTO jobs (registry, repository, digest, status, finished_at)
			SELECT 'reg', 'repo' || (i % $2), 'sha256:' || md5(i::text),
				(ARRAY['succeeded', 'skipped', 'failed', 'queued'])[1 + i % 4], now()
			FROM generate_series(1, $1) AS i`, n, repos)
	case *sqliteStore:
		_, err = s.db.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
			INSERT INTO jobs (registry, repository, digest, status, queued_at, finished_at)
			SELECT 'reg', 'repo' || (i % ?2), 'sha256:' || i,
				CASE i % 4 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'skipped' WHEN 2 THEN 'failed' ELSE 'queued' END,
				'2026-11-27T00:00:00.000000000Z', '2026-11-27T00:00:00.000000000Z'
			FROM seq`, n, repos)
	default:
		b.Fatalf("no seeding for %T", s)
	}
	if err != nil {
		b.Fatal(err)
	}
}

// summaryTriggers are the triggers of migration 00006 that keep the report
// summaries; BenchmarkJobWrites drops them for its baseline.
var summaryTriggers = []struct{ table, postgres, sqlite string }{
	{"jobs", "jobs_summary", "jobs_summary_insert"},
	{"jobs", "jobs_summary_update", "jobs_summary_delete"},
	{"jobs", "jobs_summary_delete", "jobs_summary_status"},
	{"jobs", "", "jobs_summary_key"},
	{"layer_uses", "layer_uses_summary", "layer_uses_summary_insert"},
	{"layer_uses", "layer_uses_summary_update", "layer_uses_summary_delete"},
	{"layer_uses", "", "layer_uses_summary_update"},
	{"artifacts", "artifacts_summary", "artifacts_summary"},
	{"job_attempts", "job_attempts_summary_insert", "job_attempts_summary_insert"},
	{"job_attempts", "job_attempts_summary_delete", "job_attempts_summary_delete"},
	{"job_attempts", "job_attempts_summary_update", "job_attempts_summary_update"},
}

func dropSummaryTriggers(b *testing.B, s Store) {
	b.Helper()
	ctx := context.Background()
	for _, tr := range summaryTriggers {
		var err error
		switch s := s.(type) {
		case *postgresStore:
			if tr.postgres != "" {
				_, err = s.pool.Exec(ctx, "DROP TRIGGER "+tr.postgres+" ON "+tr.table)
			}
		case *sqliteStore:
			if tr.sqlite != "" {
				_, err = s.db.ExecContext(ctx, "DROP TRIGGER "+tr.sqlite)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

const (
	benchWriteJobs    = 400 // per writer
	benchWriteWriters = 4
)

// BenchmarkJobWrites measures what the summaries cost the writes: jobs per
// second through the worker's writes for one image (UpsertQueued, Start,
// RecordLayerUses of 4 layers, one a base layer every image shares,
// Succeed), from 4 concurrent writers in one repository, so that they all
// update the same summary rows (the repository's, the day's, the base
// layer's). "summaries" is the schema as migrated; "no-triggers" the same
// schema with the summary triggers dropped, in the same run.
func BenchmarkJobWrites(b *testing.B) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{{"postgres", newPostgresDSN}, {"sqlite", newSQLiteDSN}} {
		for _, mode := range []string{"summaries", "no-triggers"} {
			b.Run(backend.name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				s := openStore(b, backend.dsn(b), WithMaxConns(benchWriteWriters+2))
				if mode == "no-triggers" {
					dropSummaryTriggers(b, s)
				}
				base := ztocEntry(fakeDigest("bench base layer"), 1<<22, "v1", repoA)
				if err := s.WriteArtifactEntry(ctx, base); err != nil {
					b.Fatal(err)
				}
				var elapsed time.Duration
				b.ResetTimer()
				for n := range b.N {
					start := time.Now()
					errs := make(chan error, benchWriteWriters)
					for w := range benchWriteWriters {
						go func() {
							errs <- writeJobs(ctx, s, base, fmt.Sprint(n, "/", w), benchWriteJobs)
						}()
					}
					for range benchWriteWriters {
						if err := <-errs; err != nil {
							b.Fatal(err)
						}
					}
					elapsed += time.Since(start)
				}
				b.ReportMetric(float64(b.N*benchWriteWriters*benchWriteJobs)/elapsed.Seconds(), "jobs/s")
			})
		}
	}
}

// writeJobs indexes n images as a worker records them; a transient error
// (deadlock, busy) is retried as the service would.
func writeJobs(ctx context.Context, s Store, base *index.ArtifactEntry, prefix string, n int) error {
	for i := range n {
		k := JobKey{Registry: repoA.Registry, Repository: repoA.Repository,
			Digest: fakeDigest(fmt.Sprint("bench image ", prefix, " ", i)), Tag: "v1"}
		uses := []LayerUse{{LayerDigest: base.OriginalDigest, LayerSize: 30 << 20, ZtocDigest: base.Digest, Reused: true}}
		var ztocs []*index.ArtifactEntry
		for l := range 3 {
			z := ztocEntry(fakeDigest(fmt.Sprint("bench layer ", prefix, " ", i, " ", l)), 1<<22, "v1", repoA)
			ztocs = append(ztocs, z)
			uses = append(uses, LayerUse{LayerDigest: z.OriginalDigest, LayerSize: 10 << 20, ZtocDigest: z.Digest})
		}
		steps := []func() error{
			func() error { _, err := s.UpsertQueued(ctx, k, "bench"); return err },
			func() error { _, err := s.Start(ctx, k, "bench"); return err },
			func() error { return s.WriteArtifactEntries(ctx, ztocs) },
			func() error { return s.RecordLayerUses(ctx, k, uses) },
			func() error { return s.Succeed(ctx, k, JobResult{BytesRead: 40 << 20, OptionsHash: "o"}) },
		}
		for _, step := range steps {
			for try := 0; ; try++ {
				err := step()
				if err == nil {
					break
				}
				if !IsTransient(err) || try == 5 {
					return err
				}
			}
		}
	}
	return nil
}
