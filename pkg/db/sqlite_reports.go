package db

import (
	"context"
	"fmt"
)

// liteReport runs a report query; scan reads one row into a new T.
func liteReport[T any](ctx context.Context, s *sqliteStore, name, query string, scan func(rowScanner, *T) error, args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("db: %s report: %w", name, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, fmt.Errorf("db: %s report: %w", name, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: %s report: %w", name, err)
	}
	return out, nil
}

func (s *sqliteStore) Coverage(ctx context.Context) ([]CoverageRow, error) {
	return liteReport(ctx, s, "coverage", `SELECT registry, repository, images, indexed, skipped, failed, pending
		FROM report_coverage ORDER BY registry, repository`,
		func(row rowScanner, r *CoverageRow) error {
			return row.Scan(&r.Registry, &r.Repository, &r.Images, &r.Indexed, &r.Skipped, &r.Failed, &r.Pending)
		})
}

func (s *sqliteStore) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	return liteReport(ctx, s, "failures", `SELECT registry, repository, digest, tag, attempts, last_error, worker,
			finished_at
		FROM report_failures ORDER BY finished_at IS NULL, finished_at DESC, registry, repository, digest LIMIT ?`,
		func(row rowScanner, r *FailureRow) error {
			var finished dbTime
			err := row.Scan(&r.Registry, &r.Repository, &r.Digest, &r.Tag, &r.Attempts, &r.LastError, &r.Worker, &finished)
			r.FinishedAt = finished.Time
			return err
		}, limit)
}

func (s *sqliteStore) Reuse(ctx context.Context) ([]ReuseRow, error) {
	return liteReport(ctx, s, "reuse", `SELECT registry, repository, ztocs_built, ztocs_reused, bytes_built,
			bytes_not_rebuilt
		FROM report_reuse ORDER BY bytes_not_rebuilt DESC, registry, repository`,
		func(row rowScanner, r *ReuseRow) error {
			return row.Scan(&r.Registry, &r.Repository, &r.ZtocsBuilt, &r.ZtocsReused, &r.BytesBuilt, &r.BytesNotRebuilt)
		})
}

func (s *sqliteStore) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	return liteReport(ctx, s, "largest", `SELECT layer_digest, layer_size, ztoc_digest, ztoc_size, span_size, uses
		FROM report_largest ORDER BY layer_size DESC, ztoc_size DESC, layer_digest LIMIT ?`,
		func(row rowScanner, r *LargestRow) error {
			return row.Scan(&r.LayerDigest, &r.LayerSize, &r.ZtocDigest, &r.ZtocSize, &r.SpanSize, &r.Uses)
		}, limit)
}

func (s *sqliteStore) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	return liteReport(ctx, s, "throughput", `SELECT day, finished, succeeded, skipped, failed, bytes_read, avg_seconds
		FROM report_throughput WHERE day > date('now', '-' || ? || ' days') ORDER BY day`,
		func(row rowScanner, r *ThroughputRow) error {
			return row.Scan(&r.Day, &r.Finished, &r.Succeeded, &r.Skipped, &r.Failed, &r.BytesRead, &r.AvgSeconds)
		}, days)
}
