package db

import (
	"context"
	"fmt"
)

func (s *sqliteStore) report(ctx context.Context, name, query string, scan func(rowScanner) error, args ...any) error {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("db: %s report: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("db: %s report: %w", name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("db: %s report: %w", name, err)
	}
	return nil
}

func (s *sqliteStore) Coverage(ctx context.Context) ([]CoverageRow, error) {
	var out rowsOf[CoverageRow]
	return out.rows, s.report(ctx, "coverage", coverageQuery, out.scanWith(scanCoverage))
}

func (s *sqliteStore) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	var out rowsOf[FailureRow]
	return out.rows, s.report(ctx, "failures", failuresQuery+" LIMIT ?", out.scanWith(scanFailure), limit)
}

func (s *sqliteStore) Reuse(ctx context.Context) ([]ReuseRow, error) {
	var out rowsOf[ReuseRow]
	return out.rows, s.report(ctx, "reuse", reuseQuery, out.scanWith(scanReuse))
}

func (s *sqliteStore) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	var out rowsOf[LargestRow]
	return out.rows, s.report(ctx, "largest", largestQuery+" LIMIT ?", out.scanWith(scanLargest), limit)
}

func (s *sqliteStore) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	var out rowsOf[ThroughputRow]
	return out.rows, s.report(ctx, "throughput", `SELECT day, finished, succeeded, skipped, failed, bytes_read, avg_seconds
		FROM report_throughput WHERE day > date('now', '-' || ? || ' days') ORDER BY day`,
		out.scanWith(scanThroughput), days)
}
