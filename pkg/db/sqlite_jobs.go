package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

func (s *sqliteStore) UpsertQueued(ctx context.Context, key JobKey, source string) (*Job, error) {
	if err := key.validate(); err != nil {
		return nil, err
	}
	job, err := scanJob(s.db.QueryRowContext(ctx, `
		INSERT INTO jobs AS j (registry, repository, digest, tag, source, status, queued_at)
		VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)
		ON CONFLICT (registry, repository, digest, tag) DO UPDATE SET
			source = CASE WHEN excluded.source <> '' THEN excluded.source ELSE j.source END,
			status = CASE WHEN j.status = 'failed' THEN 'queued' ELSE j.status END,
			queued_at = CASE WHEN j.status = 'failed' THEN excluded.queued_at ELSE j.queued_at END
		RETURNING `+strings.ReplaceAll(jobColumns, "j.", ""),
		key.Registry, key.Repository, key.Digest, key.Tag, source, formatTime(time.Now())))
	if err != nil {
		return nil, fmt.Errorf("db: queue job %s: %w", key, sqliteError(err))
	}
	return job, nil
}

func (s *sqliteStore) Start(ctx context.Context, key JobKey, worker string) (int, error) {
	if err := key.validate(); err != nil {
		return 0, err
	}
	var attempt int
	now := formatTime(time.Now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `
			INSERT INTO jobs AS j (registry, repository, digest, tag, status, attempts, worker, queued_at, started_at)
			VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?6)
			ON CONFLICT (registry, repository, digest, tag) DO UPDATE SET
				status = 'running', attempts = j.attempts + 1, worker = excluded.worker,
				started_at = excluded.started_at, finished_at = NULL, skip_reason = ''
			RETURNING id, attempts`,
			key.Registry, key.Repository, key.Digest, key.Tag, worker, now).Scan(&id, &attempt)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE job_attempts SET status = 'abandoned', error = ?, finished_at = ?
			WHERE job_id = ? AND status = 'running'`, abandonedError, now, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO job_attempts (job_id, attempt, worker, status, started_at)
			VALUES (?, ?, ?, 'running', ?)`, id, attempt, worker, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("db: start job %s: %w", key, sqliteError(err))
	}
	return attempt, nil
}

func (s *sqliteStore) finish(ctx context.Context, key JobKey, o outcome) error {
	now := formatTime(time.Now())
	finishedAt := sql.NullString{String: now, Valid: o.jobStatus != JobQueued}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var id int64
		var attempt int
		err := tx.QueryRowContext(ctx, `UPDATE jobs SET status = ?, skip_reason = ?, last_error = ?,
				bytes_read = ?, options_hash = ?, index_digest = ?, finished_at = ?
			WHERE registry = ? AND repository = ? AND digest = ? AND tag = ?
			RETURNING id, attempts`,
			o.jobStatus, o.skipReason, o.errorText, o.bytesRead, o.optionsHash, o.indexDigest, finishedAt,
			key.Registry, key.Repository, key.Digest, key.Tag).Scan(&id, &attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %w", key, ErrJobNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE job_attempts SET status = ?, error = ?, bytes_read = ?, finished_at = ?
			WHERE job_id = ? AND attempt = ? AND status = 'running'`,
			o.attemptStatus, o.errorText, o.bytesRead, now, id, attempt)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: mark job %s %s: %w", key, o.jobStatus, sqliteError(err))
	}
	return nil
}

func (s *sqliteStore) RemoveJob(ctx context.Context, key JobKey) error {
	if err := key.validate(); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM jobs WHERE registry = ? AND repository = ? AND digest = ? AND tag = ?",
		key.Registry, key.Repository, key.Digest, key.Tag)
	if err != nil {
		return fmt.Errorf("db: remove job %s: %w", key, sqliteError(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("db: %s: %w", key, ErrJobNotFound)
	}
	return nil
}
