package scale_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/opencontainers/go-digest"
	"github.com/pressly/goose/v3"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/migrations"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// The database at scale: BenchmarkDatabaseAtScale fills a database that
// the real migrations made (db.Open) with 1,000,000 jobs in 10,000
// repositories and 5,000,000 artifacts, cheaply, in SQL (generate_series),
// then times what the service runs against it: the per-job queries through
// the real db.Store (p50 and p99 of many calls on random rows), and the
// report views. It prints EXPLAIN (ANALYZE, BUFFERS) of each statement,
// and the same plans without the indexes of migration 00004, dropped in a
// transaction that is rolled back (a baseline in the same run, on the same
// data). scripts/bench-db runs it and writes docs/bench/db.md's section.
//
// SOCI_BENCH_DB_OUT names the Markdown file the results go to (default:
// the test log only). SOCI_BENCH_DB_KEEP=1 keeps the filled database and
// SOCI_BENCH_DB_REUSE=NAME times an existing one instead of filling anew.

const (
	benchJobs      = 1_000_000
	benchRepos     = 10_000
	benchArtifacts = 5_000_000
	benchBases     = 1_000 // base layers shared across images
	benchRegistry  = "reg.example:5000"
	benchOptions   = "opts-v1"
	benchBuilder   = "v1"
)

// fillSQL makes the data set. Every image has 4 layers: a base layer (one
// of benchBases, shared) and 3 of its own; succeeded images have their
// zTOCs, their SOCI index, their locations and layer uses. zTOCs of an old
// builder version (no longer reusable) bring artifacts to benchArtifacts.
var fillSQL = []struct{ what, sql string }{
	{"jobs", fmt.Sprintf(`
INSERT INTO jobs (registry, repository, digest, source, tag, status, skip_reason, last_error, attempts,
	options_hash, index_digest, bytes_read, worker, queued_at, started_at, finished_at)
SELECT '%[1]s', 'team' || (i %% 100) || '/app' || (i %% %[3]d),
	'sha256:' || md5('img' || i) || md5('img-' || i), 'distribution', 'v' || (i / %[3]d), st,
	CASE WHEN st = 'skipped' THEN 'no layer to index' ELSE '' END,
	CASE WHEN st = 'failed' THEN 'layer sha256:…: corrupt gzip stream' ELSE '' END,
	CASE st WHEN 'failed' THEN 3 WHEN 'queued' THEN 0 ELSE 1 END,
	CASE WHEN st = 'succeeded' THEN '%[4]s' ELSE '' END,
	CASE WHEN st = 'succeeded' THEN 'sha256:' || md5('v2' || i) || md5('v2-' || i) ELSE '' END,
	CASE WHEN st = 'succeeded' THEN 120000000 ELSE 0 END, 'worker-' || (i %% 8), t,
	CASE WHEN st <> 'queued' THEN t + interval '1 second' END,
	CASE WHEN st IN ('queued', 'running') THEN NULL ELSE t + interval '4 seconds' END
FROM (SELECT i,
	CASE WHEN i %% 100 < 90 THEN 'succeeded' WHEN i %% 100 < 94 THEN 'skipped' WHEN i %% 100 < 97 THEN 'failed'
		WHEN i %% 100 < 99 THEN 'queued' ELSE 'running' END AS st,
	now() - (i %% 7776000) * interval '1 second' AS t
	FROM generate_series(1, %[2]d) i) s
ORDER BY i`, benchRegistry, benchJobs, benchRepos, benchOptions)},
	{"job_attempts", `
INSERT INTO job_attempts (job_id, attempt, worker, status, error, bytes_read, started_at, finished_at)
SELECT j.id, a, j.worker,
	CASE WHEN j.status = 'running' THEN 'running' ELSE j.status END,
	j.last_error, j.bytes_read, j.started_at - (j.attempts - a) * interval '1 minute',
	j.finished_at - (j.attempts - a) * interval '1 minute'
FROM jobs j, generate_series(1, j.attempts) a`},
	{"artifacts: base-layer zTOCs", fmt.Sprintf(`
INSERT INTO artifacts (digest, type, size, media_type, original_digest, location, span_size, build_tool,
	builder_version, created_at)
SELECT 'sha256:' || md5('z' || l) || md5('z-' || l), 'soci_layer', 40000, 'application/octet-stream', l, l,
	4194304, 'soci-indexer', '%[2]s', now() - b * interval '1 minute'
FROM (SELECT b, 'sha256:' || md5('base' || b) || md5('base-' || b) AS l FROM generate_series(0, %[1]d - 1) b) s`,
		benchBases, benchBuilder)},
	{"artifacts: image zTOCs", fmt.Sprintf(`
INSERT INTO artifacts (digest, type, size, media_type, original_digest, location, span_size, build_tool,
	builder_version, created_at)
SELECT 'sha256:' || md5('z' || l) || md5('z-' || l), 'soci_layer', 40000, 'application/octet-stream', l, l,
	4194304, 'soci-indexer', '%[1]s', finished_at
FROM (SELECT j.finished_at, 'sha256:' || md5(j.digest || k) || md5(k || j.digest) AS l
	FROM jobs j, generate_series(1, 3) k WHERE j.status = 'succeeded') s`, benchBuilder)},
	{"artifacts: SOCI indexes", `
INSERT INTO artifacts (digest, type, size, media_type, artifact_type, original_digest, image_digest, location,
	platform, build_tool, builder_version, created_at)
SELECT 'sha256:' || md5('soci' || j.digest) || md5('soci-' || j.digest), 'soci_index', 1200,
	'application/vnd.oci.image.manifest.v1+json', 'application/vnd.amazon.soci.index.v2+json', j.digest,
	j.index_digest, j.digest, 'linux/amd64', 'soci-indexer', 'v1', j.finished_at
FROM jobs j WHERE j.status = 'succeeded'`},
	{"artifacts: zTOCs of an old builder", fmt.Sprintf(`
INSERT INTO artifacts (digest, type, size, media_type, original_digest, location, span_size, build_tool,
	builder_version, created_at)
SELECT 'sha256:' || md5('old' || n) || md5('old-' || n), 'soci_layer', 40000, 'application/octet-stream',
	'sha256:' || md5('oldl' || n) || md5('oldl-' || n), 'sha256:' || md5('oldl' || n) || md5('oldl-' || n),
	4194304, 'soci-indexer', 'v0', now() - interval '200 days'
FROM generate_series(1, %d - (SELECT count(*) FROM artifacts)) n`, benchArtifacts)},
	{"artifact_locations", fmt.Sprintf(`
INSERT INTO artifact_locations (digest, registry, repository, added_at)
SELECT 'sha256:' || md5('z' || l) || md5('z-' || l), j.registry, j.repository, j.finished_at
FROM jobs j, generate_series(1, 3) k, LATERAL (SELECT 'sha256:' || md5(j.digest || k) || md5(k || j.digest) AS l) x
WHERE j.status = 'succeeded'
UNION ALL
SELECT 'sha256:' || md5('soci' || j.digest) || md5('soci-' || j.digest), j.registry, j.repository, j.finished_at
FROM jobs j WHERE j.status = 'succeeded'
UNION ALL
SELECT DISTINCT ON (b, j.repository) 'sha256:' || md5('z' || l) || md5('z-' || l), j.registry, j.repository, now()
FROM jobs j, LATERAL (SELECT j.id %% %[1]d AS b, 'sha256:' || md5('base' || (j.id %% %[1]d)) || md5('base-' || (j.id %% %[1]d)) AS l) x
WHERE j.status = 'succeeded'
UNION ALL
SELECT a.digest, '%[2]s', 'team0/app' || (abs(hashtext(a.digest)) %% %[3]d), a.created_at
FROM artifacts a WHERE a.builder_version = 'v0'`, benchBases, benchRegistry, benchRepos)},
	{"layer_uses", fmt.Sprintf(`
INSERT INTO layer_uses (registry, repository, image_digest, layer_digest, layer_size, ztoc_digest, reused, recorded_at)
SELECT j.registry, j.repository, j.digest, x.l, 30000000, 'sha256:' || md5('z' || x.l) || md5('z-' || x.l), x.k = 0,
	j.finished_at
FROM jobs j, generate_series(0, 3) k,
	LATERAL (SELECT k, CASE WHEN k = 0 THEN 'sha256:' || md5('base' || (j.id %% %d)) || md5('base-' || (j.id %% %[1]d))
		ELSE 'sha256:' || md5(j.digest || k) || md5(k || j.digest) END AS l) x
WHERE j.status = 'succeeded'`, benchBases)},
}

// newIndexes are the indexes migration 00006 adds; the baseline plans run
// without them.
var newIndexes = []string{"job_attempts_finished_idx", "artifacts_index_location_idx", "jobs_failed_latest_idx",
	"jobs_skipped_latest_idx"}

// fillVersion is the schema the rows are filled into: before the report
// summaries of migration 00006, which then backfills them.
const fillVersion = 5

func migrateTo(ctx context.Context, tb testing.TB, dsn string, version int64) {
	sqlDB, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.Postgres, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		tb.Fatalf("migrate to %d: %v", version, err)
	}
}

func BenchmarkDatabaseAtScale(b *testing.B) {
	ctx := context.Background()
	dsn := os.Getenv("SOCI_BENCH_DB_REUSE")
	if dsn == "" {
		if os.Getenv("SOCI_BENCH_DB_KEEP") != "" {
			dsn = keptDatabase(b)
		} else {
			dsn, _ = testpg.NewDatabase(b, "bench_db_scale")
		}
	} else {
		dsn = dbURL(b, dsn)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var fresh bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('jobs') IS NULL").Scan(&fresh); err != nil {
		b.Fatal(err)
	}
	if fresh {
		// The rows go in at the schema before the summaries, as a live
		// database's would; db.Migrate then applies the rest (timed).
		migrateTo(ctx, b, dsn, fillVersion)
	}

	var out strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&out, format, args...) }
	var load string
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(l))[:3], " ")
	}
	var pgVersion string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion); err != nil {
		b.Fatal(err)
	}
	say("Run %s, PostgreSQL %s, load average before the run %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), pgVersion, load)

	var jobs int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM jobs").Scan(&jobs); err != nil {
		b.Fatal(err)
	}
	if jobs == 0 {
		say("### Fill (SQL `generate_series` into the migrated schema, `synchronous_commit = off`)\n\n")
		say("| table | rows | seconds |\n|---|---:|---:|\n")
		if _, err := conn.Exec(ctx, "SET synchronous_commit = off; SET maintenance_work_mem = '256MB'"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for _, f := range fillSQL {
			t0 := time.Now()
			tag, err := conn.Exec(ctx, f.sql)
			if err != nil {
				b.Fatalf("fill %s: %v", f.what, err)
			}
			say("| %s | %d | %.1f |\n", f.what, tag.RowsAffected(), time.Since(t0).Seconds())
			b.Logf("filled %s: %d rows in %s", f.what, tag.RowsAffected(), time.Since(t0).Round(time.Millisecond))
		}
		t0 := time.Now()
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
			b.Fatal(err)
		}
		say("| VACUUM ANALYZE | | %.1f |\n\nFill total %.0f s.\n\n", time.Since(t0).Seconds(), time.Since(start).Seconds())
	}
	report, err := db.Migrate(ctx, dsn) // the real migrations, timed on the filled database
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range report.Applied {
		say("Migration %s applied to the filled database in %.1f s.\n\n", m.File, m.Duration.Seconds())
		b.Logf("applied %s in %s", m.File, m.Duration.Round(time.Millisecond))
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	store, err := db.Open(ctx, dsn, db.WithMaxConns(4))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	var counts [5]int64
	var size string
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM job_attempts),
		(SELECT count(*) FROM artifacts), (SELECT count(*) FROM artifact_locations), (SELECT count(*) FROM layer_uses),
		pg_size_pretty(pg_database_size(current_database()))`).Scan(&counts[0], &counts[1], &counts[2], &counts[3], &counts[4], &size); err != nil {
		b.Fatal(err)
	}
	if counts[0] != benchJobs || counts[2] != benchArtifacts {
		b.Fatalf("database has %d jobs and %d artifacts, want %d and %d", counts[0], counts[2], benchJobs, benchArtifacts)
	}
	say("Rows: jobs %d, job_attempts %d, artifacts %d, artifact_locations %d, layer_uses %d; database %s.\n\n",
		counts[0], counts[1], counts[2], counts[3], counts[4], size)

	s := sampleRows(ctx, b, conn)
	b.ResetTimer()
	hot := hotQueries(b, store, s)
	say("### Per-job queries, through `db.Store` (pgx pool), %d calls each on random rows\n\n", hotCalls)
	say("| call | what runs it | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|\n")
	slowest := time.Duration(0)
	for _, h := range hot {
		say("| `%s` | %s | %.2f | %.2f | %.2f |\n", h.name, h.who, ms(h.p50), ms(h.p99), ms(h.max))
		slowest = max(slowest, h.p99)
	}
	b.ReportMetric(ms(slowest), "worst-p99-ms")

	say("\n### Reports, through `db.Store`, against the full aggregates they replace (median of 3 each, same run)\n\n")
	say("\"summaries\": the report as it runs now (migration 00006). \"full aggregate\": the query the view or\n")
	say("method ran before 00006, over every row, on the same data.\n\n")
	say("| report | summaries, ms | full aggregate, ms | speedup |\n|---|---:|---:|---:|\n")
	after, before := reports(b, store), oldReports(ctx, b, conn)
	for i, r := range after {
		say("| `%s` | %.1f | %.1f | %.0f× |\n", r.name, ms(r.p50), ms(before[i].p50), float64(before[i].p50)/float64(max(r.p50, time.Microsecond)))
	}

	say("\n### EXPLAIN (ANALYZE, BUFFERS), with and without migration 00006\n\n")
	say("The statements as pkg/db sends them, with a sampled row's values. \"before 00006\": for a report, the\n")
	say("query it ran before (the full aggregate); for the others, the same statement (or, for IndexEntriesOf,\n")
	say("the one it was) in a transaction that first drops %s, then rolls back.\n\n", strings.Join(newIndexes, " and "))
	say("| statement | execution ms | before 00006, ms |\n|---|---:|---:|\n")
	plans := explainAll(ctx, b, conn, s)
	for _, p := range plans {
		say("| %s | %.2f | %.2f |\n", p.name, p.with, p.without)
	}
	for _, p := range plans {
		say("\n<details><summary>%s</summary>\n\n```\n%s\n```\n", p.name, p.plan)
		if p.withoutPlan != "" && p.withoutPlan != p.plan {
			say("\nbefore 00006:\n\n```\n%s\n```\n", p.withoutPlan)
		}
		say("\n</details>\n")
	}
	b.StopTimer()
	if path := os.Getenv("SOCI_BENCH_DB_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	} else {
		b.Log("\n" + out.String())
	}
}

// keptDatabase creates a database that outlives the benchmark.
func keptDatabase(tb testing.TB) string {
	name := fmt.Sprintf("bench_db_scale_kept_%d", time.Now().Unix())
	conn, err := pgx.Connect(context.Background(), testpg.AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("keeping database %s (SOCI_BENCH_DB_REUSE=%s to time it again; drop it after)", name, name)
	return dbURL(tb, name)
}

func dbURL(tb testing.TB, name string) string {
	u := testpg.AdminURL()
	i := strings.LastIndex(u, "/")
	if i < 0 {
		tb.Fatalf("admin URL %q", u)
	}
	rest := ""
	if q := strings.Index(u[i:], "?"); q >= 0 {
		rest = u[i+q:]
	}
	return u[:i+1] + name + rest
}

// benchSample is a set of rows the timed calls use.
type benchSample struct {
	jobs      []db.JobKey // succeeded jobs
	layers    []string    // their own layers' digests
	ztocs     []string
	indexes   []string // SOCI index digests
	failedKey db.JobKey
}

func sampleRows(ctx context.Context, tb testing.TB, conn *pgx.Conn) benchSample {
	var s benchSample
	rows, err := conn.Query(ctx, `SELECT registry, repository, digest, tag,
		'sha256:' || md5(digest || 1) || md5(1 || digest)
		FROM jobs TABLESAMPLE SYSTEM (0.5) WHERE status = 'succeeded' LIMIT $1`, hotCalls*2)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var k db.JobKey
		var layer string
		if err := rows.Scan(&k.Registry, &k.Repository, &k.Digest, &k.Tag, &layer); err != nil {
			tb.Fatal(err)
		}
		s.jobs = append(s.jobs, k)
		s.layers = append(s.layers, layer)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(s.jobs) < hotCalls*2 {
		tb.Fatalf("sampled %d succeeded jobs, want %d", len(s.jobs), hotCalls*2)
	}
	for i, l := range s.layers {
		var z, x string
		if err := conn.QueryRow(ctx, `SELECT 'sha256:' || md5('z' || $1::text) || md5('z-' || $1::text),
			'sha256:' || md5('soci' || $2::text) || md5('soci-' || $2::text)`, l, s.jobs[i].Digest).Scan(&z, &x); err != nil {
			tb.Fatal(err)
		}
		s.ztocs = append(s.ztocs, z)
		s.indexes = append(s.indexes, x)
	}
	if err := conn.QueryRow(ctx, "SELECT registry, repository, digest, tag FROM jobs WHERE status = 'failed' LIMIT 1").
		Scan(&s.failedKey.Registry, &s.failedKey.Repository, &s.failedKey.Digest, &s.failedKey.Tag); err != nil {
		tb.Fatal(err)
	}
	return s
}

const hotCalls = 200

type timing struct {
	name, who     string
	p50, p99, max time.Duration
}

func timeCalls(tb testing.TB, name, who string, n int, call func(i int) error) timing {
	tb.Helper()
	d := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := call(i); err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		d[i] = time.Since(t0)
	}
	slices.Sort(d)
	return timing{name: name, who: who, p50: d[n/2], p99: d[n*99/100], max: d[n-1]}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func hotQueries(tb testing.TB, store db.Store, s benchSample) []timing {
	ctx := context.Background()
	n := hotCalls
	newKey := func(i int) db.JobKey {
		k := s.jobs[i]
		k.Digest = digest.FromString(fmt.Sprintf("new image %d %d", i, time.Now().UnixNano())).String()
		return k
	}
	fresh := make([]db.JobKey, n)
	for i := range fresh {
		fresh[i] = newKey(i)
	}
	newZtoc := func(i, k int) *index.ArtifactEntry {
		layer := digest.FromString(fmt.Sprintf("new layer %s %d", fresh[i].Digest, k)).String()
		return &index.ArtifactEntry{Digest: digest.FromString("ztoc " + layer).String(), Size: 40000, Location: layer,
			OriginalDigest: layer, Type: index.ArtifactEntryTypeLayer, MediaType: "application/octet-stream",
			SpanSize: 4194304, BuildToolIdentifier: "soci-indexer", BuilderVersion: benchBuilder,
			Locations: []index.Location{{Registry: fresh[i].Registry, Repository: fresh[i].Repository}}}
	}
	var out []timing
	add := func(t timing) { out = append(out, t) }
	add(timeCalls(tb, "UpsertQueued (new job)", "webhook, backfill: every event", n, func(i int) error {
		_, err := store.UpsertQueued(ctx, fresh[i], "distribution")
		return err
	}))
	add(timeCalls(tb, "UpsertQueued (known job)", "every event for an indexed tag", n, func(i int) error {
		_, err := store.UpsertQueued(ctx, s.jobs[i], "distribution")
		return err
	}))
	add(timeCalls(tb, "Get", "backfill: every tag", n, func(i int) error {
		_, err := store.Get(ctx, s.jobs[i])
		return err
	}))
	add(timeCalls(tb, "IsIndexed", "worker: every job", n, func(i int) error {
		ok, err := store.IsIndexed(ctx, s.jobs[i], benchOptions)
		if err == nil && !ok {
			err = fmt.Errorf("%s not indexed", s.jobs[i])
		}
		return err
	}))
	add(timeCalls(tb, "FindIndexed", "worker: a new tag of a known image", n, func(i int) error {
		_, err := store.FindIndexed(ctx, s.jobs[i], benchOptions)
		return err
	}))
	add(timeCalls(tb, "Start", "worker: every job", n, func(i int) error {
		_, err := store.Start(ctx, fresh[i], "bench")
		return err
	}))
	add(timeCalls(tb, "FindReusableZtoc (hit)", "worker: every layer", n, func(i int) error {
		_, err := store.FindReusableZtoc(ctx, digest.Digest(s.layers[i]), 4194304, benchBuilder)
		return err
	}))
	add(timeCalls(tb, "FindReusableZtoc (miss)", "worker: every new layer", n, func(i int) error {
		_, err := store.FindReusableZtoc(ctx, digest.Digest(newZtoc(i, 9).OriginalDigest), 4194304, benchBuilder)
		if err != nil && !strings.Contains(err.Error(), index.ErrArtifactNotFound.Error()) {
			return err
		}
		return nil
	}))
	add(timeCalls(tb, "WriteArtifactEntries (3 zTOCs + index)", "worker: every built image", n, func(i int) error {
		idx := &index.ArtifactEntry{Digest: digest.FromString("soci " + fresh[i].Digest).String(), Size: 1200,
			Location: fresh[i].Digest, OriginalDigest: fresh[i].Digest, ImageDigest: fresh[i].Digest,
			Type: index.ArtifactEntryTypeIndex, MediaType: "application/vnd.oci.image.manifest.v1+json",
			Platform: "linux/amd64", BuilderVersion: benchBuilder,
			Locations: []index.Location{{Registry: fresh[i].Registry, Repository: fresh[i].Repository}}}
		return store.WriteArtifactEntries(ctx, []*index.ArtifactEntry{newZtoc(i, 1), newZtoc(i, 2), newZtoc(i, 3), idx})
	}))
	add(timeCalls(tb, "RecordLayerUses (3 layers)", "worker: every built image", n, func(i int) error {
		uses := make([]db.LayerUse, 3)
		for k := range uses {
			z := newZtoc(i, k+1)
			uses[k] = db.LayerUse{LayerDigest: z.OriginalDigest, LayerSize: 30000000, ZtocDigest: z.Digest}
		}
		return store.RecordLayerUses(ctx, fresh[i], uses)
	}))
	add(timeCalls(tb, "Succeed", "worker: every job", n, func(i int) error {
		return store.Succeed(ctx, fresh[i], db.JobResult{BytesRead: 1, OptionsHash: benchOptions})
	}))
	add(timeCalls(tb, "GetArtifactEntry", "index ls, gc", n, func(i int) error {
		_, err := store.GetArtifactEntry(ctx, s.ztocs[i])
		return err
	}))
	add(timeCalls(tb, "GetArtifactEntriesByImageDigest", "soci's ArtifactsDb API", n, func(i int) error {
		_, err := store.GetArtifactEntriesByImageDigest(ctx, s.jobs[i].Digest)
		return err
	}))
	add(timeCalls(tb, "IndexEntriesOf", "worker: every delete event", n, func(i int) error {
		e, err := store.IndexEntriesOf(ctx, s.jobs[i].Registry, s.jobs[i].Repository, []string{s.jobs[i].Digest})
		if err == nil && len(e) != 1 {
			err = fmt.Errorf("%d index entries of %s, want 1", len(e), s.jobs[i].Digest)
		}
		return err
	}))
	add(timeCalls(tb, "List (by digest)", "worker: every delete event", n, func(i int) error {
		_, err := store.List(ctx, db.JobFilter{Registry: s.jobs[i].Registry, Repository: s.jobs[i].Repository,
			Digest: s.jobs[i].Digest})
		return err
	}))
	add(timeCalls(tb, "List (by tag)", "worker: every tag delete", n, func(i int) error {
		_, err := store.List(ctx, db.JobFilter{Registry: s.jobs[i].Registry, Repository: s.jobs[i].Repository,
			Tag: s.jobs[i].Tag})
		return err
	}))
	// Last, as it deletes: images of the second half of the sample.
	add(timeCalls(tb, "RemoveImage", "worker: every image delete", n, func(i int) error {
		k := s.jobs[n+i]
		_, err := store.RemoveImage(ctx, k.Registry, k.Repository, k.Digest)
		return err
	}))
	return out
}

func reports(tb testing.TB, store db.Store) []timing {
	ctx := context.Background()
	var out []timing
	run := func(name string, f func() error) {
		out = append(out, timeCalls(tb, name, "", 3, func(int) error { return f() }))
	}
	run("coverage", func() error { _, err := store.Coverage(ctx); return err })
	run("failures (latest 50)", func() error { _, err := store.Failures(ctx, 50); return err })
	run("skipped (latest 50)", func() error { _, err := store.Skipped(ctx, 50); return err })
	run("reuse", func() error { _, err := store.Reuse(ctx); return err })
	run("largest (top 20)", func() error { _, err := store.Largest(ctx, 20); return err })
	run("throughput (30 days)", func() error { _, err := store.Throughput(ctx, 30); return err })
	run("status: ImageCoverage (all)", func() error { _, err := store.ImageCoverage(ctx, "", ""); return err })
	run("status: FinishedPerInterval (last hour, per minute)", func() error {
		_, err := store.FinishedPerInterval(ctx, time.Now().Add(-time.Hour).Truncate(time.Minute), time.Minute)
		return err
	})
	return out
}

// The queries the reports and status reads ran before migration 00006, in
// the order reports returns them.
var (
	oldCoverageSQL = `SELECT registry, repository, count(*), count(*) FILTER (WHERE status = 'succeeded'),
		count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
		count(*) FILTER (WHERE status IN ('queued', 'running'))
	FROM jobs GROUP BY registry, repository ORDER BY registry, repository`
	oldFailuresSQL = `SELECT registry, repository, digest, tag, attempts, last_error, worker, finished_at
		FROM report_failures ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest LIMIT 50`
	oldSkippedSQL = `SELECT registry, repository, digest, tag, skip_reason, finished_at
		FROM report_skipped ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest, tag LIMIT 50`
	oldReuseSQL = `SELECT registry, repository, count(*) FILTER (WHERE NOT reused), count(*) FILTER (WHERE reused),
		coalesce(sum(layer_size) FILTER (WHERE NOT reused), 0) AS bytes_built,
		coalesce(sum(layer_size) FILTER (WHERE reused), 0) AS bytes_not_rebuilt
	FROM layer_uses GROUP BY registry, repository ORDER BY bytes_not_rebuilt DESC, registry, repository`
	oldLargestSQL = `SELECT u.layer_digest, max(u.layer_size) AS layer_size, a.digest, a.size AS ztoc_size, a.span_size, count(*)
	FROM layer_uses u JOIN artifacts a ON a.digest = u.ztoc_digest
	GROUP BY u.layer_digest, a.digest, a.size, a.span_size
	ORDER BY layer_size DESC, ztoc_size DESC, u.layer_digest, a.digest LIMIT 20`
	oldThroughputSQL = `SELECT day::text, finished FROM (
		SELECT date_trunc('day', finished_at AT TIME ZONE 'UTC')::date AS day, count(*) AS finished,
			count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'skipped'),
			count(*) FILTER (WHERE status = 'failed'), coalesce(sum(bytes_read), 0),
			coalesce(avg(extract(epoch FROM finished_at - started_at)), 0)::double precision
		FROM job_attempts WHERE finished_at IS NOT NULL AND status <> 'abandoned' GROUP BY 1) t
	WHERE day > current_date - 30 ORDER BY day`
	oldImageCoverageSQL = `SELECT registry, repository, count(*),
		count(*) FILTER (WHERE best = 1), count(*) FILTER (WHERE best = 2),
		count(*) FILTER (WHERE best = 3), count(*) FILTER (WHERE best = 4)
	FROM (SELECT registry, repository, digest, min(CASE status WHEN 'succeeded' THEN 1
			WHEN 'running' THEN 2 WHEN 'queued' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END) AS best
		FROM jobs WHERE ($1 = '' OR registry = $1) AND ($2 = '' OR repository = $2)
		GROUP BY registry, repository, digest) images
	GROUP BY registry, repository ORDER BY registry, repository`
	oldFinishedSQL = `SELECT floor(extract(epoch FROM finished_at))::bigint / 60 AS bucket, count(*),
			count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'skipped'),
			count(*) FILTER (WHERE status = 'failed')
		FROM job_attempts
		WHERE finished_at IS NOT NULL AND status <> 'abandoned' AND floor(extract(epoch FROM finished_at))::bigint >= $1
		GROUP BY 1 ORDER BY 1`
)

// oldReports times the queries of before migration 00006 on the same data
// (the indexes 00006 added are there: the old queries cannot use them).
func oldReports(ctx context.Context, tb testing.TB, conn *pgx.Conn) []timing {
	var out []timing
	run := func(name, q string, args ...any) {
		out = append(out, timeCalls(tb, name, "", 3, func(int) error {
			rows, err := conn.Query(ctx, q, args...)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}))
	}
	run("coverage", oldCoverageSQL)
	run("failures", oldFailuresSQL)
	run("skipped", oldSkippedSQL)
	run("reuse", oldReuseSQL)
	run("largest", oldLargestSQL)
	run("throughput", oldThroughputSQL)
	run("image coverage", oldImageCoverageSQL, "", "")
	run("finished per interval", oldFinishedSQL, time.Now().Add(-time.Hour).Truncate(time.Minute).Unix())
	return out
}

type plan struct {
	name              string
	with, without     float64
	plan, withoutPlan string
	sql               string
	args              []any
	// before is the statement of before migration 00006, if it differs.
	before string
}

// explainAll runs EXPLAIN ANALYZE on pkg/db's statements (copied: they are
// not exported; keep them in step with pkg/db/reader.go, postgres.go,
// postgres_jobs.go and report.go).
func explainAll(ctx context.Context, tb testing.TB, conn *pgx.Conn, s benchSample) []plan {
	k, layer := s.jobs[0], s.layers[0]
	artifactSelect := `SELECT a.digest, a.type, a.size, a.media_type, a.artifact_type, a.original_digest,
	a.image_digest, a.location, a.platform, a.span_size, a.build_tool, a.builder_version, a.created_at,
	coalesce((SELECT json_agg(json_build_array(l.registry, l.repository) ORDER BY l.registry, l.repository)
		FROM artifact_locations l WHERE l.digest = a.digest), '[]')
FROM artifacts a`
	jobCols := `j.registry, j.repository, j.digest, j.source, j.tag, j.status, j.skip_reason,
	j.last_error, j.attempts, j.options_hash, j.index_digest, j.bytes_read, j.worker, j.queued_at, j.started_at,
	j.finished_at`
	list := fmt.Sprintf(`["%s"]`, k.Digest)
	hourAgo := time.Now().Add(-time.Hour).Truncate(time.Minute)
	plans := []plan{
		{name: "IsIndexed", sql: `SELECT EXISTS (SELECT 1 FROM jobs j WHERE j.registry = $1 AND j.repository = $2
			AND j.digest = $3 AND j.tag = $4 AND j.status = 'succeeded' AND j.options_hash = $5)`,
			args: []any{k.Registry, k.Repository, k.Digest, k.Tag, benchOptions}},
		{name: "FindIndexed", sql: "SELECT " + jobCols + ` FROM jobs j
		WHERE j.registry = $1 AND j.repository = $2 AND j.digest = $3
			AND j.status = 'succeeded' AND j.options_hash = $4
		ORDER BY CASE WHEN j.index_digest <> '' THEN 0 ELSE 1 END, j.finished_at DESC, j.id DESC
		LIMIT 1`, args: []any{k.Registry, k.Repository, k.Digest, benchOptions}},
		{name: "FindReusableZtoc", sql: artifactSelect + `
		WHERE a.type = 'soci_layer' AND a.original_digest = $1 AND a.span_size = $2 AND a.builder_version = $3
		ORDER BY a.created_at DESC, a.digest LIMIT 1`, args: []any{layer, 4194304, benchBuilder}},
		{name: "UpsertQueued (known job)", sql: `
		INSERT INTO jobs AS j (registry, repository, digest, tag, source, status)
		VALUES ($1, $2, $3, $4, $5, 'queued')
		ON CONFLICT ON CONSTRAINT jobs_job_key DO UPDATE SET
			source = CASE WHEN excluded.source <> '' THEN excluded.source ELSE j.source END,
			status = CASE WHEN j.status = 'failed' THEN 'queued' ELSE j.status END,
			queued_at = CASE WHEN j.status = 'failed' THEN now() ELSE j.queued_at END
		RETURNING ` + jobCols, args: []any{k.Registry, k.Repository, k.Digest, k.Tag, "distribution"}},
		{name: "IndexEntriesOf", sql: artifactSelect + `
		WHERE a.digest IN (
			SELECT x.digest FROM artifacts x WHERE x.type = 'soci_index'
				AND x.image_digest IN (SELECT json_array_elements_text($3::json))
			UNION
			SELECT x.digest FROM artifacts x WHERE x.type = 'soci_index'
				AND x.location IN (SELECT json_array_elements_text($3::json)))
		AND EXISTS (SELECT 1 FROM artifact_locations l
			WHERE l.digest = a.digest AND l.registry = $1 AND l.repository = $2)
		ORDER BY a.digest`, args: []any{k.Registry, k.Repository, list},
			before: artifactSelect + `
		WHERE a.type = 'soci_index' AND (a.image_digest IN (SELECT json_array_elements_text($3::json))
			OR a.location IN (SELECT json_array_elements_text($3::json)))
		AND EXISTS (SELECT 1 FROM artifact_locations l
			WHERE l.digest = a.digest AND l.registry = $1 AND l.repository = $2)
		ORDER BY a.digest`},
		{name: "RemoveImage: index locations", sql: `DELETE FROM artifact_locations l USING artifacts a
			WHERE a.digest = l.digest AND a.type = 'soci_index' AND (a.image_digest = $3 OR a.location = $3)
			AND l.registry = $1 AND l.repository = $2
			RETURNING l.digest`, args: []any{k.Registry, k.Repository, k.Digest}},
		{name: "List (by digest)", sql: "SELECT " + jobCols + ` FROM jobs j
		WHERE ($1 = '' OR j.registry = $1) AND ($2 = '' OR j.repository = $2) AND ($3 = '' OR j.status = $3)
			AND ($5 = '' OR j.digest = $5) AND ($6 = '' OR j.tag = $6)
		ORDER BY j.queued_at DESC, j.id DESC LIMIT $4`, args: []any{k.Registry, k.Repository, "", 100, k.Digest, ""}},
		{name: "report coverage", sql: `SELECT registry, repository, images, indexed, skipped, failed, pending
		FROM report_coverage ORDER BY registry, repository`, before: oldCoverageSQL},
		{name: "report failures", sql: `SELECT registry, repository, digest, tag, attempts, last_error, worker, finished_at
		FROM report_failures ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest LIMIT 50`},
		{name: "report reuse", sql: `SELECT registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt
		FROM report_reuse ORDER BY bytes_not_rebuilt DESC, registry, repository`, before: oldReuseSQL},
		{name: "report largest", sql: `SELECT layer_digest, layer_size, ztoc_digest, ztoc_size, span_size, uses
		FROM report_largest ORDER BY layer_size DESC, ztoc_size DESC, layer_digest, ztoc_digest LIMIT 20`,
			before: oldLargestSQL},
		{name: "report throughput", sql: `SELECT day::text, finished, succeeded, skipped, failed, bytes_read, avg_seconds
			FROM report_throughput WHERE day > current_date - $1::int ORDER BY day`, args: []any{30},
			before: strings.Replace(oldThroughputSQL, "current_date - 30", "current_date - $1::int", 1)},
		{name: "status: ImageCoverage", sql: `SELECT registry, repository, images, indexed, pending, failed, skipped
	FROM summary_image_coverage WHERE ($1 = '' OR registry = $1) AND ($2 = '' OR repository = $2)
	ORDER BY registry, repository`, args: []any{"", ""}, before: oldImageCoverageSQL},
		{name: "status: FinishedPerInterval (last hour)", sql: `SELECT floor(extract(epoch FROM finished_at))::bigint / $1 AS bucket, count(*),
			count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'skipped'),
			count(*) FILTER (WHERE status = 'failed')
		FROM job_attempts
		WHERE finished_at >= $3 AND status <> 'abandoned' AND floor(extract(epoch FROM finished_at))::bigint >= $2
		GROUP BY 1 ORDER BY 1`, args: []any{60, hourAgo.Unix(), hourAgo}},
	}
	explain := func(tx pgx.Tx, p plan) (string, float64) {
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+p.sql, p.args...)
		if err != nil {
			tb.Fatalf("explain %s: %v", p.name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			tb.Fatalf("explain %s: %v", p.name, err)
		}
		var exec float64
		for _, l := range lines {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Execution Time: "); ok {
				_, _ = fmt.Sscanf(v, "%f", &exec)
			}
		}
		return strings.Join(lines, "\n"), exec
	}
	// Each statement runs in a transaction that is rolled back, so the
	// writes among them change nothing; once to warm the cache, then timed.
	inTx := func(f func(tx pgx.Tx)) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		f(tx)
	}
	for i := range plans {
		inTx(func(tx pgx.Tx) {
			explain(tx, plans[i])
			plans[i].plan, plans[i].with = explain(tx, plans[i])
		})
		if plans[i].before != "" {
			inTx(func(tx pgx.Tx) {
				before := plan{name: plans[i].name, sql: plans[i].before, args: plans[i].args}
				explain(tx, before)
				plans[i].withoutPlan, plans[i].without = explain(tx, before)
			})
			continue
		}
		inTx(func(tx pgx.Tx) {
			for _, ix := range newIndexes {
				if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS "+ix); err != nil {
					tb.Fatal(err)
				}
			}
			explain(tx, plans[i])
			plans[i].withoutPlan, plans[i].without = explain(tx, plans[i])
		})
	}
	return plans
}
