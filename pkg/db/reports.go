package db

import (
	"context"
	"fmt"
)

// The reports are reads of sqlReader: the report views have the same
// columns in both schemas, and only the date arithmetic of the throughput
// query differs (sqlReader.throughputSQL).

// runReport reads every row of a report query.
func runReport[T any](ctx context.Context, r sqlReader, name, query string, scan func(rowScanner, *T) error, args ...any) ([]T, error) {
	rows, err := queryAll(ctx, r.query, func(row rowScanner) (T, error) {
		var v T
		err := scan(row, &v)
		return v, err
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("db: %s report: %w", name, err)
	}
	return rows, nil
}

func (r sqlReader) Coverage(ctx context.Context) ([]CoverageRow, error) {
	return runReport(ctx, r, "coverage", coverageQuery, scanCoverage)
}

func (r sqlReader) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	return runReport(ctx, r, "failures", failuresQuery+" LIMIT $1", scanFailure, limit)
}

func (r sqlReader) Skipped(ctx context.Context, limit int) ([]SkippedRow, error) {
	return runReport(ctx, r, "skipped", skippedQuery+" LIMIT $1", scanSkipped, limit)
}

func (r sqlReader) Reuse(ctx context.Context) ([]ReuseRow, error) {
	return runReport(ctx, r, "reuse", reuseQuery, scanReuse)
}

func (r sqlReader) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	return runReport(ctx, r, "largest", largestQuery+" LIMIT $1", scanLargest, limit)
}

func (r sqlReader) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	return runReport(ctx, r, "throughput", r.throughputSQL, scanThroughput, days)
}
