package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// BackfillProgress is how far a backfill of one target (a registry's
// catalog) got: the last repository it walked completely, in catalog order.
type BackfillProgress struct {
	Target         string
	LastRepository string
	// Repositories and Tags the interrupted runs walked, in all.
	Repositories int64
	Tags         int64
	StartedAt    time.Time
	UpdatedAt    time.Time
}

// BackfillStore keeps backfill progress, so that a backfill killed or
// cancelled mid-catalog resumes after the last repository it completed.
type BackfillStore interface {
	// BackfillProgress returns the progress of target's unfinished
	// backfill, or an error wrapping ErrNoBackfillProgress.
	BackfillProgress(ctx context.Context, target string) (*BackfillProgress, error)
	// SaveBackfillProgress records that the backfill of target completed
	// every repository up to lastRepository, and walked repositories and
	// tags more since the last save.
	SaveBackfillProgress(ctx context.Context, target, lastRepository string, repositories, tags int64) error
	// FinishBackfill forgets target's progress: its backfill walked the
	// whole catalog, and the next one starts from the beginning.
	FinishBackfill(ctx context.Context, target string) error
}

// ErrNoBackfillProgress: no backfill of the target is unfinished.
var ErrNoBackfillProgress = errors.New("no backfill in progress")

const backfillProgressSelect = `SELECT target, last_repository, repositories, tags, started_at, updated_at
	FROM backfill_progress WHERE target = $1`

func (r sqlReader) BackfillProgress(ctx context.Context, target string) (*BackfillProgress, error) {
	var p BackfillProgress
	var started, updated dbTime
	err := r.queryRow(ctx, backfillProgressSelect, target).Scan(&p.Target, &p.LastRepository, &p.Repositories,
		&p.Tags, &started, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: backfill of %s: %w", target, ErrNoBackfillProgress)
	}
	if err != nil {
		return nil, fmt.Errorf("db: backfill progress of %s: %w", target, err)
	}
	p.StartedAt, p.UpdatedAt = started.Time, updated.Time
	return &p, nil
}

func (s *postgresStore) SaveBackfillProgress(ctx context.Context, target, last string, repositories, tags int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO backfill_progress (target, last_repository, repositories, tags)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (target) DO UPDATE SET last_repository = excluded.last_repository,
			repositories = backfill_progress.repositories + excluded.repositories,
			tags = backfill_progress.tags + excluded.tags, updated_at = now()`, target, last, repositories, tags)
	if err != nil {
		return fmt.Errorf("db: save backfill progress of %s: %w", target, pgError(err))
	}
	return nil
}

func (s *postgresStore) FinishBackfill(ctx context.Context, target string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM backfill_progress WHERE target = $1", target); err != nil {
		return fmt.Errorf("db: finish backfill of %s: %w", target, pgError(err))
	}
	return nil
}

func (s *sqliteStore) SaveBackfillProgress(ctx context.Context, target, last string, repositories, tags int64) error {
	now := formatTime(time.Now())
	_, err := s.db.ExecContext(ctx, `INSERT INTO backfill_progress
		(target, last_repository, repositories, tags, started_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
		ON CONFLICT (target) DO UPDATE SET last_repository = excluded.last_repository,
			repositories = backfill_progress.repositories + excluded.repositories,
			tags = backfill_progress.tags + excluded.tags, updated_at = excluded.updated_at`,
		target, last, repositories, tags, now)
	if err != nil {
		return fmt.Errorf("db: save backfill progress of %s: %w", target, sqliteError(err))
	}
	return nil
}

func (s *sqliteStore) FinishBackfill(ctx context.Context, target string) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM backfill_progress WHERE target = ?1", target); err != nil {
		return fmt.Errorf("db: finish backfill of %s: %w", target, sqliteError(err))
	}
	return nil
}
