package db

import (
	"context"
	"fmt"
)

func (s *postgresStore) report(ctx context.Context, name, query string, scan func(rowScanner) error, args ...any) error {
	rows, err := s.pool.Query(ctx, query, args...)
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

func (s *postgresStore) Coverage(ctx context.Context) ([]CoverageRow, error) {
	var out rowsOf[CoverageRow]
	return out.rows, s.report(ctx, "coverage", coverageQuery, out.scanWith(scanCoverage))
}

func (s *postgresStore) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	var out rowsOf[FailureRow]
	return out.rows, s.report(ctx, "failures", failuresQuery+" LIMIT $1", out.scanWith(scanFailure), limit)
}

func (s *postgresStore) Reuse(ctx context.Context) ([]ReuseRow, error) {
	var out rowsOf[ReuseRow]
	return out.rows, s.report(ctx, "reuse", reuseQuery, out.scanWith(scanReuse))
}

func (s *postgresStore) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	var out rowsOf[LargestRow]
	return out.rows, s.report(ctx, "largest", largestQuery+" LIMIT $1", out.scanWith(scanLargest), limit)
}

func (s *postgresStore) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	var out rowsOf[ThroughputRow]
	return out.rows, s.report(ctx, "throughput", `SELECT day::text, finished, succeeded, skipped, failed, bytes_read,
			avg_seconds
		FROM report_throughput WHERE day > current_date - $1::int ORDER BY day`,
		out.scanWith(scanThroughput), days)
}
