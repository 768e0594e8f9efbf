package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// resultRows is what both drivers' query results offer: pgx.Rows and
// *sql.Rows.
type resultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// queryFunc runs sql and returns its rows and a function that closes them.
type queryFunc func(ctx context.Context, sql string, args ...any) (resultRows, func(), error)

func postgresQuery(pool *pgxpool.Pool) queryFunc {
	return func(ctx context.Context, q string, args ...any) (resultRows, func(), error) {
		rows, err := pool.Query(ctx, q, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	}
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func sqliteQuery(q queryer) queryFunc {
	return func(ctx context.Context, query string, args ...any) (resultRows, func(), error) {
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}
}

// queryAll runs query and scans every row with scan. It reads all rows
// before it returns, so the caller may use the store again while it goes
// through them (SQLite has one connection).
func queryAll[T any](ctx context.Context, query queryFunc, scan func(rowScanner) (T, error), sql string, args ...any) ([]T, error) {
	rows, closeRows, err := query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer closeRows()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// sqlReader implements the reads of Store, reports included, for both
// backends. Their SQL is the same but for how an artifact's locations are
// aggregated, how a list parameter is unpacked and the date arithmetic of
// the throughput report. It uses $n placeholders, which
// modernc.org/sqlite binds by number as pgx does.
//
// A row that is not there is told by errors.Is(err, sql.ErrNoRows):
// pgx.ErrNoRows matches it too.
type sqlReader struct {
	// queryRow runs sql for at most one row.
	queryRow func(ctx context.Context, sql string, args ...any) rowScanner
	query    queryFunc
	// artifactSelect selects artifactColumns and the artifact's locations
	// as a JSON array of [registry, repository] pairs, from artifacts a.
	artifactSelect string
	// jsonStrings returns a subquery of the strings in the JSON array that
	// parameter param holds: SQLite has no array parameters, so lists go in
	// as JSON on both backends.
	jsonStrings func(param string) string
	// throughputSQL selects report_throughput for the last $1 days.
	throughputSQL string
	// epochSQL is the SQL of timestamp column col in Unix seconds, for the
	// status page's throughput buckets (pkg/db/status.go).
	epochSQL func(col string) string
	// timeArg is t as a parameter compared with a timestamp column.
	timeArg func(t time.Time) any
}

func postgresReader(pool *pgxpool.Pool) sqlReader {
	return sqlReader{
		queryRow: func(ctx context.Context, q string, args ...any) rowScanner {
			return pool.QueryRow(ctx, q, args...)
		},
		query:          postgresQuery(pool),
		artifactSelect: pgArtifactSelect,
		jsonStrings: func(param string) string {
			return "SELECT json_array_elements_text(" + param + "::json)"
		},
		throughputSQL: `SELECT day::text, finished, succeeded, skipped, failed, bytes_read, avg_seconds
			FROM report_throughput WHERE day > current_date - $1::int ORDER BY day`,
		epochSQL: func(col string) string { return "floor(extract(epoch FROM " + col + "))::bigint" },
		timeArg:  func(t time.Time) any { return t },
	}
}

func sqliteReader(db *sql.DB) sqlReader {
	return sqlReader{
		queryRow: func(ctx context.Context, q string, args ...any) rowScanner {
			return db.QueryRowContext(ctx, q, args...)
		},
		query:          sqliteQuery(db),
		artifactSelect: liteArtifactSelect,
		jsonStrings: func(param string) string {
			return "SELECT value FROM json_each(" + param + ")"
		},
		throughputSQL: `SELECT day, finished, succeeded, skipped, failed, bytes_read, avg_seconds
			FROM report_throughput WHERE day > date('now', '-' || $1 || ' days') ORDER BY day`,
		epochSQL: func(col string) string { return "CAST(strftime('%s', " + col + ") AS INTEGER)" },
		timeArg:  func(t time.Time) any { return formatTime(t) },
	}
}

func (r sqlReader) GetArtifactEntry(ctx context.Context, dgst string) (*index.ArtifactEntry, error) {
	e, err := scanArtifact(r.queryRow(ctx, r.artifactSelect+" WHERE a.digest = $1", dgst))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: %s: %w", dgst, index.ErrArtifactNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("db: get artifact %s: %w", dgst, err)
	}
	return e, nil
}

func (r sqlReader) GetArtifactType(ctx context.Context, dgst string) (index.ArtifactEntryType, error) {
	var t index.ArtifactEntryType
	err := r.queryRow(ctx, "SELECT type FROM artifacts WHERE digest = $1", dgst).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("db: %s: %w", dgst, index.ErrArtifactNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("db: get artifact type %s: %w", dgst, err)
	}
	return t, nil
}

func (r sqlReader) Walk(ctx context.Context, f func(*index.ArtifactEntry) error) error {
	after := ""
	for {
		page, err := queryAll(ctx, r.query, scanArtifact,
			r.artifactSelect+" WHERE a.digest > $1 ORDER BY a.digest LIMIT $2", after, walkPageSize)
		if err != nil {
			return fmt.Errorf("db: walk artifacts: %w", err)
		}
		for _, e := range page {
			if err := f(e); err != nil {
				return err
			}
		}
		if len(page) < walkPageSize {
			return nil
		}
		after = page[len(page)-1].Digest
	}
}

func (r sqlReader) GetArtifactEntriesByImageDigest(ctx context.Context, imageDigest string) ([]string, error) {
	digests, err := queryAll(ctx, r.query, scanString, `SELECT digest FROM artifacts
		WHERE type = 'soci_index' AND image_digest = $1 AND media_type = $2 ORDER BY digest`,
		imageDigest, ociManifestMediaType)
	if err != nil {
		return nil, fmt.Errorf("db: indexes of image %s: %w", imageDigest, err)
	}
	return digests, nil
}

func (r sqlReader) IndexEntriesOf(ctx context.Context, registry, repository string, digests []string) ([]*index.ArtifactEntry, error) {
	if len(digests) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(digests)
	if err != nil {
		return nil, fmt.Errorf("db: indexes of %s/%s: %w", registry, repository, err)
	}
	// Two index lookups (artifacts_image_digest_idx, and
	// artifacts_index_location_idx of migration 00006): with OR in one
	// WHERE, Postgres walked every location of the repository instead
	// (p99 above 100 ms at a million images, docs/bench/db.md).
	inList := r.jsonStrings("$3")
	entries, err := queryAll(ctx, r.query, scanArtifact, r.artifactSelect+`
		WHERE a.digest IN (
			SELECT x.digest FROM artifacts x WHERE x.type = 'soci_index' AND x.image_digest IN (`+inList+`)
			UNION
			SELECT x.digest FROM artifacts x WHERE x.type = 'soci_index' AND x.location IN (`+inList+`))
		AND EXISTS (SELECT 1 FROM artifact_locations l
			WHERE l.digest = a.digest AND l.registry = $1 AND l.repository = $2)
		ORDER BY a.digest`, registry, repository, string(list))
	if err != nil {
		return nil, fmt.Errorf("db: indexes of %s/%s@%v: %w", registry, repository, digests, err)
	}
	return entries, nil
}

func (r sqlReader) FindReusableZtoc(ctx context.Context, layerDigest digest.Digest, spanSize int64, builderVersion string) (*index.ArtifactEntry, error) {
	e, err := scanArtifact(r.queryRow(ctx, r.artifactSelect+`
		WHERE a.type = 'soci_layer' AND a.original_digest = $1 AND a.span_size = $2 AND a.builder_version = $3
		ORDER BY a.created_at DESC, a.digest LIMIT 1`, layerDigest.String(), spanSize, builderVersion))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: zTOC for layer %s (span %d, builder %q): %w",
			layerDigest, spanSize, builderVersion, index.ErrArtifactNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("db: find zTOC for layer %s: %w", layerDigest, err)
	}
	return e, nil
}

// jobKeyWhere selects the job of the JobKey in parameters $1 to $4.
const jobKeyWhere = " WHERE j.registry = $1 AND j.repository = $2 AND j.digest = $3 AND j.tag = $4"

func (r sqlReader) Get(ctx context.Context, key JobKey) (*Job, error) {
	job, err := scanJob(r.queryRow(ctx, "SELECT "+jobColumns+" FROM jobs j"+jobKeyWhere,
		key.Registry, key.Repository, key.Digest, key.Tag))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: %s: %w", key, ErrJobNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("db: get job %s: %w", key, err)
	}
	return job, nil
}

func (r sqlReader) List(ctx context.Context, filter JobFilter) ([]*Job, error) {
	jobs, err := queryAll(ctx, r.query, scanJob, "SELECT "+jobColumns+` FROM jobs j
		WHERE ($1 = '' OR j.registry = $1) AND ($2 = '' OR j.repository = $2) AND ($3 = '' OR j.status = $3)
			AND ($5 = '' OR j.digest = $5) AND ($6 = '' OR j.tag = $6)
		ORDER BY j.queued_at DESC, j.id DESC LIMIT $4`,
		filter.Registry, filter.Repository, string(filter.Status), filter.limit(), filter.Digest, filter.Tag)
	if err != nil {
		return nil, fmt.Errorf("db: list jobs: %w", err)
	}
	return jobs, nil
}

func (r sqlReader) Attempts(ctx context.Context, key JobKey) ([]*JobAttempt, error) {
	attempts, err := queryAll(ctx, r.query, scanAttempt, "SELECT "+attemptColumns+` FROM job_attempts a
		JOIN jobs j ON j.id = a.job_id`+jobKeyWhere+" ORDER BY a.attempt",
		key.Registry, key.Repository, key.Digest, key.Tag)
	if err != nil {
		return nil, fmt.Errorf("db: attempts of job %s: %w", key, err)
	}
	if len(attempts) == 0 {
		// No attempts, or no job: Get tells which.
		if _, err := r.Get(ctx, key); err != nil {
			return nil, err
		}
	}
	return attempts, nil
}

func (r sqlReader) IsIndexed(ctx context.Context, key JobKey, optionsHash string) (bool, error) {
	var indexed bool
	err := r.queryRow(ctx, "SELECT EXISTS (SELECT 1 FROM jobs j"+jobKeyWhere+
		" AND j.status = 'succeeded' AND j.options_hash = $5)",
		key.Registry, key.Repository, key.Digest, key.Tag, optionsHash).Scan(&indexed)
	if err != nil {
		return false, fmt.Errorf("db: is %s indexed: %w", key, err)
	}
	return indexed, nil
}

func (r sqlReader) FindIndexed(ctx context.Context, key JobKey, optionsHash string) (*Job, error) {
	job, err := scanJob(r.queryRow(ctx, "SELECT "+jobColumns+` FROM jobs j
		WHERE j.registry = $1 AND j.repository = $2 AND j.digest = $3
			AND j.status = 'succeeded' AND j.options_hash = $4
		ORDER BY CASE WHEN j.index_digest <> '' THEN 0 ELSE 1 END, j.finished_at DESC, j.id DESC
		LIMIT 1`, key.Registry, key.Repository, key.Digest, optionsHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: %s indexed with options %s: %w", key.Image(), optionsHash, ErrJobNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("db: find indexed job of %s: %w", key.Image(), err)
	}
	return job, nil
}
