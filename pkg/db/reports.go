package db

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlReporter implements Reporter for both backends. The report views have
// the same columns in both schemas; only how a query runs, the placeholder
// style and the date arithmetic differ.
type sqlReporter struct {
	query queryFunc
	// limit is the LIMIT clause with the dialect's first placeholder.
	limit string
	// throughputSQL selects report_throughput for the last N days (one
	// placeholder).
	throughputSQL string
}

func postgresReporter(pool *pgxpool.Pool) sqlReporter {
	return sqlReporter{
		query: postgresQuery(pool),
		limit: " LIMIT $1",
		throughputSQL: `SELECT day::text, finished, succeeded, skipped, failed, bytes_read, avg_seconds
			FROM report_throughput WHERE day > current_date - $1::int ORDER BY day`,
	}
}

func sqliteReporter(db *sql.DB) sqlReporter {
	return sqlReporter{
		query: sqliteQuery(db),
		limit: " LIMIT ?",
		throughputSQL: `SELECT day, finished, succeeded, skipped, failed, bytes_read, avg_seconds
			FROM report_throughput WHERE day > date('now', '-' || ? || ' days') ORDER BY day`,
	}
}

func (r sqlReporter) report(ctx context.Context, name, query string, scan func(rowScanner) error, args ...any) error {
	rows, closeRows, err := r.query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("db: %s report: %w", name, err)
	}
	defer closeRows()
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

func (r sqlReporter) Coverage(ctx context.Context) ([]CoverageRow, error) {
	var out rowsOf[CoverageRow]
	return out.rows, r.report(ctx, "coverage", coverageQuery, out.scanWith(scanCoverage))
}

func (r sqlReporter) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	var out rowsOf[FailureRow]
	return out.rows, r.report(ctx, "failures", failuresQuery+r.limit, out.scanWith(scanFailure), limit)
}

func (r sqlReporter) Reuse(ctx context.Context) ([]ReuseRow, error) {
	var out rowsOf[ReuseRow]
	return out.rows, r.report(ctx, "reuse", reuseQuery, out.scanWith(scanReuse))
}

func (r sqlReporter) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	var out rowsOf[LargestRow]
	return out.rows, r.report(ctx, "largest", largestQuery+r.limit, out.scanWith(scanLargest), limit)
}

func (r sqlReporter) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	var out rowsOf[ThroughputRow]
	return out.rows, r.report(ctx, "throughput", r.throughputSQL, out.scanWith(scanThroughput), days)
}
