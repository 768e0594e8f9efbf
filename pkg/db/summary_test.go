package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// The report views and ImageCoverage read summary tables that triggers keep
// (migration 00006). These queries are what the reports computed before,
// over every row: after each step of testSummaries, the summaries must give
// exactly what they give.
const (
	recomputeCoverage = `SELECT registry, repository, count(*), count(*) FILTER (WHERE status = 'succeeded'),
		count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
		count(*) FILTER (WHERE status IN ('queued', 'running'))
	FROM jobs GROUP BY registry, repository ORDER BY registry, repository`
	recomputeImageCoverage = `SELECT registry, repository, count(*),
		count(*) FILTER (WHERE best = 1), count(*) FILTER (WHERE best = 2),
		count(*) FILTER (WHERE best = 3), count(*) FILTER (WHERE best = 4)
	FROM (SELECT registry, repository, digest, min(CASE status WHEN 'succeeded' THEN 1
			WHEN 'running' THEN 2 WHEN 'queued' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END) AS best
		FROM jobs GROUP BY registry, repository, digest) images
	GROUP BY registry, repository ORDER BY registry, repository`
	recomputeReuse = `SELECT registry, repository, count(*) FILTER (WHERE NOT reused), count(*) FILTER (WHERE reused),
		coalesce(sum(layer_size) FILTER (WHERE NOT reused), 0), coalesce(sum(layer_size) FILTER (WHERE reused), 0)
	FROM layer_uses GROUP BY registry, repository
	ORDER BY 6 DESC, registry, repository`
	recomputeLargest = `SELECT u.layer_digest, max(u.layer_size), a.digest, a.size, a.span_size, count(*)
	FROM layer_uses u JOIN artifacts a ON a.digest = u.ztoc_digest
	GROUP BY u.layer_digest, a.digest, a.size, a.span_size
	ORDER BY 2 DESC, 4 DESC, 1, 3`
	// %s: the day of finished_at, the run time in seconds.
	recomputeThroughput = `SELECT %s AS day, count(*), count(*) FILTER (WHERE status = 'succeeded'),
		count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
		coalesce(sum(bytes_read), 0), coalesce(avg(%s), 0)
	FROM job_attempts WHERE finished_at IS NOT NULL AND status <> 'abandoned'
	GROUP BY 1 ORDER BY 1`
)

func readerOf(t *testing.T, s Store) (sqlReader, Backend) {
	t.Helper()
	switch s := s.(type) {
	case *postgresStore:
		return s.sqlReader, BackendPostgres
	case *sqliteStore:
		return s.sqlReader, BackendSQLite
	}
	t.Fatalf("store %T", s)
	return sqlReader{}, ""
}

// assertSummaries compares every report that reads a summary with its
// recomputation from the rows.
func assertSummaries(t *testing.T, s Store, step string) {
	t.Helper()
	ctx := context.Background()
	r, backend := readerOf(t, s)
	throughputSQL := fmt.Sprintf(recomputeThroughput, "date_trunc('day', finished_at AT TIME ZONE 'UTC')::date::text",
		"extract(epoch FROM finished_at - started_at)::double precision")
	if backend == BackendSQLite {
		throughputSQL = fmt.Sprintf(recomputeThroughput, "date(finished_at)",
			"(julianday(finished_at) - julianday(started_at)) * 86400.0")
	}
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %s: %v", step, name, err)
		}
		if !equalRows(got, want) {
			t.Errorf("%s: %s from the summary = %+v\nrecomputed = %+v", step, name, got, want)
		}
	}
	coverage, err := s.Coverage(ctx)
	want, err2 := runReport(ctx, r, "coverage", recomputeCoverage, scanCoverage)
	check("coverage", coverage, want, errors.Join(err, err2))

	images, err := s.ImageCoverage(ctx, "", "")
	wantImages, err2 := queryAll(ctx, r.query, func(row rowScanner) (ImageCoverageRow, error) {
		var c ImageCoverageRow
		err := row.Scan(&c.Registry, &c.Repository, &c.Images, &c.Indexed, &c.Pending, &c.Failed, &c.Skipped)
		return c, err
	}, recomputeImageCoverage)
	check("image coverage", images, wantImages, errors.Join(err, err2))

	reuse, err := s.Reuse(ctx)
	wantReuse, err2 := runReport(ctx, r, "reuse", recomputeReuse, scanReuse)
	check("reuse", reuse, wantReuse, errors.Join(err, err2))

	largest, err := s.Largest(ctx, 1000)
	wantLargest, err2 := runReport(ctx, r, "largest", recomputeLargest, scanLargest)
	check("largest", largest, wantLargest, errors.Join(err, err2))

	throughput, err := s.Throughput(ctx, 3650)
	wantThroughput, err2 := runReport(ctx, r, "throughput", throughputSQL, scanThroughput)
	check("throughput", throughput, wantThroughput, errors.Join(err, err2))
}

// equalRows compares report rows; average seconds may differ in the last
// digits (a sum kept row by row against an average of all rows).
func equalRows(got, want any) bool {
	g, ok := got.([]ThroughputRow)
	if !ok {
		switch got := got.(type) {
		case []CoverageRow:
			return slices.Equal(got, want.([]CoverageRow)) || len(got)+len(want.([]CoverageRow)) == 0
		case []ImageCoverageRow:
			return slices.Equal(got, want.([]ImageCoverageRow)) || len(got)+len(want.([]ImageCoverageRow)) == 0
		case []ReuseRow:
			return slices.Equal(got, want.([]ReuseRow)) || len(got)+len(want.([]ReuseRow)) == 0
		case []LargestRow:
			return slices.Equal(got, want.([]LargestRow)) || len(got)+len(want.([]LargestRow)) == 0
		}
		return false
	}
	w := want.([]ThroughputRow)
	return slices.EqualFunc(g, w, func(a, b ThroughputRow) bool {
		close := math.Abs(a.AvgSeconds-b.AvgSeconds) <= 1e-6*max(1, math.Abs(b.AvgSeconds))
		a.AvgSeconds, b.AvgSeconds = 0, 0
		return a == b && close
	})
}

// testSummaries runs a registry's life through the Store (jobs with several
// tags, retries, abandoned attempts, built and reused zTOCs, re-indexing,
// tag and image deletes, garbage collection) and checks after each step
// that the summaries equal a recomputation from the rows.
func testSummaries(t *testing.T, s Store) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	base := ztocEntry(fakeDigest("base layer"), 1<<22, "v1", repoA, repoB)
	own1 := ztocEntry(fakeDigest("own layer 1"), 1<<22, "v1", repoA)
	own2 := ztocEntry(fakeDigest("own layer 2"), 1<<22, "v1", repoB)
	own2.Size = 9000
	old := ztocEntry(fakeDigest("old layer"), 1<<22, "v0", repoB)
	mustWrite(t, s, base, own1, own2, old)
	key := func(loc index.Location, image, tag string) JobKey {
		return JobKey{Registry: loc.Registry, Repository: loc.Repository, Digest: fakeDigest(image), Tag: tag}
	}
	app1, app1latest := key(repoA, "app 1", "v1"), key(repoA, "app 1", "latest")
	app2 := key(repoA, "app 2", "v2")
	svc1, svc1b := key(repoB, "svc 1", "v1"), key(repoB, "svc 1", "")
	svc2 := key(repoB, "svc 2", "v2")
	assertSummaries(t, s, "empty")

	// Events queue jobs; image app 1 has two tags.
	for _, k := range []JobKey{app1, app1latest, app2, svc1, svc1b, svc2} {
		_, err := s.UpsertQueued(ctx, k, "test")
		must(err)
	}
	assertSummaries(t, s, "queued")

	// app 1:v1 is built: base and own layer 1 (base built here).
	_, err := s.Start(ctx, app1, "w1")
	must(err)
	must(s.RecordLayerUses(ctx, app1, []LayerUse{
		{LayerDigest: own1.OriginalDigest, LayerSize: 700, ZtocDigest: own1.Digest},
		{LayerDigest: base.OriginalDigest, LayerSize: 300, ZtocDigest: base.Digest},
	}))
	must(s.Succeed(ctx, app1, JobResult{BytesRead: 1000, OptionsHash: "o"}))
	assertSummaries(t, s, "app 1:v1 built")

	// app 1:latest: a transient failure, a retry, then skipped.
	_, err = s.Start(ctx, app1latest, "w1")
	must(err)
	must(s.Fail(ctx, app1latest, errors.New("registry 503"), false))
	assertSummaries(t, s, "transient failure")
	_, err = s.Start(ctx, app1latest, "w2")
	must(err)
	must(s.Skip(ctx, app1latest, "already indexed"))
	assertSummaries(t, s, "retry skipped")

	// app 2: failed for good, queued again by an event, started by a worker
	// that dies, started again (the first attempt abandoned), succeeds.
	_, err = s.Start(ctx, app2, "w1")
	must(err)
	must(s.Fail(ctx, app2, errors.New("bad gzip"), true))
	assertSummaries(t, s, "permanent failure")
	_, err = s.UpsertQueued(ctx, app2, "test")
	must(err)
	_, err = s.Start(ctx, app2, "w1")
	must(err)
	assertSummaries(t, s, "running")
	_, err = s.Start(ctx, app2, "w2")
	must(err)
	assertSummaries(t, s, "abandoned")
	must(s.RecordLayerUses(ctx, app2, []LayerUse{
		{LayerDigest: base.OriginalDigest, LayerSize: 300, ZtocDigest: base.Digest, Reused: true},
	}))
	must(s.Succeed(ctx, app2, JobResult{BytesRead: 10, OptionsHash: "o"}))
	assertSummaries(t, s, "app 2 reused base")

	// Repository B: svc 1 under a tag and by digest; svc 2 uses the base
	// layer and an old zTOC.
	for _, k := range []JobKey{svc1, svc1b, svc2} {
		_, err := s.Start(ctx, k, "w3")
		must(err)
	}
	must(s.RecordLayerUses(ctx, svc1, []LayerUse{
		{LayerDigest: base.OriginalDigest, LayerSize: 300, ZtocDigest: base.Digest, Reused: true},
		{LayerDigest: own2.OriginalDigest, LayerSize: 5000, ZtocDigest: own2.Digest},
	}))
	must(s.Succeed(ctx, svc1, JobResult{BytesRead: 5000, OptionsHash: "o"}))
	must(s.Fail(ctx, svc1b, errors.New("401"), true))
	must(s.RecordLayerUses(ctx, svc2, []LayerUse{
		{LayerDigest: base.OriginalDigest, LayerSize: 300, ZtocDigest: base.Digest, Reused: true},
		{LayerDigest: old.OriginalDigest, LayerSize: 40000, ZtocDigest: old.Digest, Reused: true},
	}))
	must(s.Succeed(ctx, svc2, JobResult{BytesRead: 1, OptionsHash: "o"}))
	assertSummaries(t, s, "repository b")

	// Re-index: the same uses again (no change), then app 1's own layer
	// recorded as reused with another size, and svc 2's layer with a new
	// zTOC.
	must(s.RecordLayerUses(ctx, app1, []LayerUse{
		{LayerDigest: own1.OriginalDigest, LayerSize: 700, ZtocDigest: own1.Digest},
		{LayerDigest: base.OriginalDigest, LayerSize: 300, ZtocDigest: base.Digest},
	}))
	assertSummaries(t, s, "same uses again")
	must(s.RecordLayerUses(ctx, app1, []LayerUse{
		{LayerDigest: own1.OriginalDigest, LayerSize: 650, ZtocDigest: own1.Digest, Reused: true},
	}))
	assertSummaries(t, s, "re-index: a use changed")
	newer := ztocEntry(fakeDigest("old layer"), 1<<22, "v1", repoB)
	mustWrite(t, s, newer)
	must(s.RecordLayerUses(ctx, svc2, []LayerUse{
		{LayerDigest: old.OriginalDigest, LayerSize: 40000, ZtocDigest: newer.Digest},
	}))
	assertSummaries(t, s, "re-index: a new zTOC")
	// A zTOC written again with another size.
	own2.Size = 12000
	mustWrite(t, s, own2)
	assertSummaries(t, s, "zTOC size changed")

	// Deletes: a tag, then whole images, then garbage collection of a zTOC
	// still used (its uses go with it).
	must(s.RemoveJob(ctx, app1latest))
	assertSummaries(t, s, "tag deleted")
	_, err = s.RemoveImage(ctx, app1.Registry, app1.Repository, app1.Digest)
	must(err)
	assertSummaries(t, s, "image app 1 deleted")
	_, err = s.RemoveImage(ctx, svc1.Registry, svc1.Repository, svc1.Digest)
	must(err)
	assertSummaries(t, s, "image svc 1 deleted")
	must(s.RemoveOldArtifacts(ctx, func(_ context.Context, e *index.ArtifactEntry, _ index.Location) (bool, error) {
		return e.Digest != base.Digest, nil
	}))
	assertSummaries(t, s, "base zTOC collected")
	for _, k := range []JobKey{app2, svc2} {
		_, err := s.RemoveImage(ctx, k.Registry, k.Repository, k.Digest)
		must(err)
	}
	assertSummaries(t, s, "everything deleted")
	if cov, err := s.Coverage(ctx); err != nil || len(cov) != 0 {
		t.Errorf("Coverage with no jobs = %+v, %v; want no rows", cov, err)
	}
	if l, err := s.Largest(ctx, 10); err != nil || len(l) != 0 {
		t.Errorf("Largest with no layer uses = %+v, %v; want no rows", l, err)
	}
}

// testSummariesConcurrent finishes jobs of one repository from many
// goroutines: the summary rows they all update stay exact.
func testSummariesConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	z := ztocEntry(fakeDigest("shared layer"), 1<<22, "v1", repoA)
	mustWrite(t, s, z)
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			errs <- func() error {
				for i := range 5 {
					k := JobKey{Registry: repoA.Registry, Repository: repoA.Repository,
						Digest: fakeDigest(fmt.Sprintf("concurrent %d %d", g, i)), Tag: "v1"}
					if _, err := s.Start(ctx, k, "w"); err != nil {
						return err
					}
					if err := s.RecordLayerUses(ctx, k, []LayerUse{{LayerDigest: z.OriginalDigest, LayerSize: 10,
						ZtocDigest: z.Digest, Reused: i > 0}}); err != nil {
						return err
					}
					var err error
					switch i % 3 {
					case 0:
						err = s.Succeed(ctx, k, JobResult{BytesRead: int64(i)})
					case 1:
						err = s.Fail(ctx, k, errors.New("x"), true)
					default:
						_, err = s.RemoveImage(ctx, k.Registry, k.Repository, k.Digest)
					}
					if err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	deadline := time.After(2 * time.Minute)
	for range 16 {
		select {
		case err := <-errs:
			if err != nil && !IsTransient(err) {
				t.Fatal(err)
			} else if err != nil {
				t.Logf("transient: %v", err)
			}
		case <-deadline:
			t.Fatal("concurrent writers did not finish")
		}
	}
	assertSummaries(t, s, "concurrent writers")
}

// seedVersion5 writes, in plain SQL both dialects accept, the rows a
// database of schema version 5 (before the summaries) holds: jobs of every
// status, an image under two tags, attempts finished on two days (one
// abandoned, one running), zTOCs built and reused.
func seedVersion5(t *testing.T, sqlDB *sql.DB) {
	t.Helper()
	z1, z2 := fakeDigest("v5 ztoc 1"), fakeDigest("v5 ztoc 2")
	stmts := []string{
		`INSERT INTO artifacts (digest, type, size, span_size, created_at) VALUES
			('` + z1 + `', 'soci_layer', 100, 4194304, '2026-11-27T01:00:00.000000000Z'),
			('` + z2 + `', 'soci_layer', 200, 4194304, '2026-11-27T01:00:00.000000000Z')`,
		`INSERT INTO layer_uses (registry, repository, image_digest, layer_digest, layer_size, ztoc_digest, reused, recorded_at) VALUES
			('r:5000', 'a', 'i1', 'l1', 1000, '` + z1 + `', false, '2026-11-27T01:00:00.000000000Z'),
			('r:5000', 'a', 'i1', 'l2', 2000, '` + z2 + `', false, '2026-11-27T01:00:00.000000000Z'),
			('r:5000', 'a', 'i2', 'l1', 1000, '` + z1 + `', true, '2026-11-27T01:00:00.000000000Z'),
			('r:5000', 'b', 'i3', 'l1', 1000, '` + z1 + `', true, '2026-11-27T01:00:00.000000000Z')`,
	}
	jobs := []struct{ repo, image, tag, status string }{
		{"a", "i1", "v1", "succeeded"}, {"a", "i1", "latest", "failed"}, {"a", "i2", "v1", "succeeded"},
		{"a", "i4", "", "skipped"}, {"a", "i5", "", "queued"}, {"b", "i3", "v1", "running"}, {"b", "i6", "x", "failed"},
	}
	for n, j := range jobs {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO jobs (registry, repository, digest, tag, status, attempts,
			bytes_read, queued_at, started_at, finished_at) VALUES ('r:5000', '%s', '%s', '%s', '%s', 2, %d,
			'2026-11-26T23:00:00.000000000Z', '2026-11-26T23:59:00.000000000Z', '2026-11-27T00:00:01.000000000Z')`,
			j.repo, j.image, j.tag, j.status, 100*n))
		// Attempt 1 finished the day before, attempt 2 on the 27th (or
		// was abandoned, or is running).
		second := map[string]string{"queued": "abandoned", "running": "running"}[j.status]
		if second == "" {
			second = j.status
		}
		finished := fmt.Sprintf("'2026-11-27T00:00:0%d.250000000Z'", n)
		if second == "running" {
			finished = "NULL"
		}
		job := fmt.Sprintf("FROM jobs WHERE repository = '%s' AND digest = '%s' AND tag = '%s'", j.repo, j.image, j.tag)
		stmts = append(stmts, `INSERT INTO job_attempts (job_id, attempt, status, bytes_read, started_at, finished_at)
			SELECT id, 1, 'failed', 1, '2026-11-26T23:58:00.000000000Z', '2026-11-26T23:58:07.500000000Z' `+job,
			fmt.Sprintf(`INSERT INTO job_attempts (job_id, attempt, status, bytes_read, started_at, finished_at)
			SELECT id, 2, '%s', %d, '2026-11-26T23:59:00.000000000Z', %s `, second, 100*n, finished)+job)
	}
	for _, stmt := range stmts {
		if _, err := sqlDB.Exec(stmt); err != nil {
			t.Fatalf("seed version 5: %v\n%s", err, stmt)
		}
	}
}

// testUpgradeBackfillsSummaries migrates a database of version 5 with rows
// in it: the summaries migration 00006 fills must equal a recomputation at
// once, and stay so as the store writes.
func testUpgradeBackfillsSummaries(t *testing.T, dsn string, sqlDB *sql.DB, backend Backend) {
	ctx := context.Background()
	if _, err := migrate(ctx, sqlDB, backend, 5, discardLogger()); err != nil {
		t.Fatal(err)
	}
	seedVersion5(t, sqlDB)
	s := openStore(t, dsn)
	assertSummaries(t, s, "after the upgrade")
	if cov, err := s.Coverage(ctx); err != nil || len(cov) != 2 || cov[0].Images != 5 || cov[0].Indexed != 2 {
		t.Errorf("Coverage after the upgrade = %+v, %v", cov, err)
	}
	if tp, err := s.Throughput(ctx, 100000); err != nil || len(tp) != 2 || tp[0].Finished != 7 || tp[1].Finished != 5 {
		t.Errorf("Throughput after the upgrade = %+v, %v; want 7 attempts on the 26th, 5 on the 27th", tp, err)
	}
	k := JobKey{Registry: "r:5000", Repository: "b", Digest: "i3", Tag: "v1"}
	if _, err := s.Start(ctx, k, "w"); err != nil {
		t.Fatal(err)
	}
	if err := s.Succeed(ctx, k, JobResult{BytesRead: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage(ctx, "r:5000", "a", "i1"); err != nil {
		t.Fatal(err)
	}
	assertSummaries(t, s, "writes after the upgrade")
}
