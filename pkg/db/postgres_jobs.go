package db

import (
	"context"
	"fmt"
)

func (s *postgresStore) UpsertQueued(ctx context.Context, key JobKey, source string) (*Job, error) {
	if err := key.validate(); err != nil {
		return nil, err
	}
	job, err := scanJob(s.pool.QueryRow(ctx, `
		INSERT INTO jobs AS j (registry, repository, digest, tag, source, status)
		VALUES ($1, $2, $3, $4, $5, 'queued')
		ON CONFLICT ON CONSTRAINT jobs_job_key DO UPDATE SET
			source = CASE WHEN excluded.source <> '' THEN excluded.source ELSE j.source END,
			status = CASE WHEN j.status = 'failed' THEN 'queued' ELSE j.status END,
			queued_at = CASE WHEN j.status = 'failed' THEN now() ELSE j.queued_at END
		RETURNING `+jobColumns,
		key.Registry, key.Repository, key.Digest, key.Tag, source))
	if err != nil {
		return nil, fmt.Errorf("db: queue job %s: %w", key, pgError(err))
	}
	return job, nil
}

func (s *postgresStore) Start(ctx context.Context, key JobKey, worker string) (int, error) {
	if err := key.validate(); err != nil {
		return 0, err
	}
	var attempt int
	// The statement's parts see the rows as they were before it: the
	// abandoned update cannot touch the attempt the statement inserts.
	err := s.pool.QueryRow(ctx, `
		WITH job AS (
			INSERT INTO jobs AS j (registry, repository, digest, tag, status, attempts, worker, started_at)
			VALUES ($1, $2, $3, $4, 'running', 1, $5, now())
			ON CONFLICT ON CONSTRAINT jobs_job_key DO UPDATE SET
				status = 'running', attempts = j.attempts + 1, worker = excluded.worker,
				started_at = now(), finished_at = NULL, skip_reason = ''
			RETURNING id, attempts
		), abandoned AS (
			UPDATE job_attempts a SET status = 'abandoned', error = $6, finished_at = now()
			FROM job WHERE a.job_id = job.id AND a.status = 'running'
			RETURNING 1
		)
		INSERT INTO job_attempts (job_id, attempt, worker, status)
		SELECT id, attempts, $5, 'running' FROM job
		RETURNING attempt`,
		key.Registry, key.Repository, key.Digest, key.Tag, worker, abandonedError).Scan(&attempt)
	if err != nil {
		return 0, fmt.Errorf("db: start job %s: %w", key, pgError(err))
	}
	return attempt, nil
}

// pgFinishJob sets the job's outcome and closes its current attempt.
const pgFinishJob = `
WITH job AS (
	UPDATE jobs SET status = $5, skip_reason = $6, last_error = $7, bytes_read = $8, options_hash = $9,
		index_digest = $11, finished_at = CASE WHEN $5 = 'queued' THEN NULL ELSE now() END
	WHERE registry = $1 AND repository = $2 AND digest = $3 AND tag = $4
	RETURNING id, attempts
), attempt AS (
	UPDATE job_attempts a SET status = $10, error = $7, bytes_read = $8, finished_at = now()
	FROM job WHERE a.job_id = job.id AND a.attempt = job.attempts AND a.status = 'running'
	RETURNING 1
)
SELECT count(*) FROM job`

func (s *postgresStore) finish(ctx context.Context, key JobKey, o outcome) error {
	var n int
	err := s.pool.QueryRow(ctx, pgFinishJob, key.Registry, key.Repository, key.Digest, key.Tag,
		o.jobStatus, o.skipReason, o.errorText, o.bytesRead, o.optionsHash, o.attemptStatus, o.indexDigest).Scan(&n)
	if err != nil {
		return fmt.Errorf("db: mark job %s %s: %w", key, o.jobStatus, pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("db: %s: %w", key, ErrJobNotFound)
	}
	return nil
}

func (s *postgresStore) RemoveJob(ctx context.Context, key JobKey) error {
	if err := key.validate(); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM jobs WHERE registry = $1 AND repository = $2 AND digest = $3 AND tag = $4",
		key.Registry, key.Repository, key.Digest, key.Tag)
	if err != nil {
		return fmt.Errorf("db: remove job %s: %w", key, pgError(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: %s: %w", key, ErrJobNotFound)
	}
	return nil
}
