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
