package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// pgReport runs a report query and collects its rows by position.
func pgReport[T any](ctx context.Context, s *postgresStore, name, query string, args ...any) ([]T, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("db: %s report: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
	if err != nil {
		return nil, fmt.Errorf("db: %s report: %w", name, err)
	}
	return out, nil
}

func (s *postgresStore) Coverage(ctx context.Context) ([]CoverageRow, error) {
	return pgReport[CoverageRow](ctx, s, "coverage", `SELECT registry, repository, images, indexed, skipped, failed, pending
		FROM report_coverage ORDER BY registry, repository`)
}

func (s *postgresStore) Failures(ctx context.Context, limit int) ([]FailureRow, error) {
	return pgReport[FailureRow](ctx, s, "failures", `SELECT registry, repository, digest, tag, attempts::bigint,
			last_error, worker, finished_at
		FROM report_failures ORDER BY finished_at DESC NULLS LAST, registry, repository, digest LIMIT $1`, limit)
}

func (s *postgresStore) Reuse(ctx context.Context) ([]ReuseRow, error) {
	return pgReport[ReuseRow](ctx, s, "reuse", `SELECT registry, repository, ztocs_built, ztocs_reused,
			bytes_built::bigint, bytes_not_rebuilt::bigint
		FROM report_reuse ORDER BY bytes_not_rebuilt DESC, registry, repository`)
}

func (s *postgresStore) Largest(ctx context.Context, limit int) ([]LargestRow, error) {
	return pgReport[LargestRow](ctx, s, "largest", `SELECT layer_digest, layer_size, ztoc_digest, ztoc_size, span_size, uses
		FROM report_largest ORDER BY layer_size DESC, ztoc_size DESC, layer_digest LIMIT $1`, limit)
}

func (s *postgresStore) Throughput(ctx context.Context, days int) ([]ThroughputRow, error) {
	return pgReport[ThroughputRow](ctx, s, "throughput", `SELECT day::text, finished, succeeded, skipped, failed,
			bytes_read::bigint, avg_seconds
		FROM report_throughput WHERE day > current_date - $1::int ORDER BY day`, days)
}
