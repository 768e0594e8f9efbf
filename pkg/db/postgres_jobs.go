package db

import (
	"context"
	"fmt"
)

func (s *postgresStore) UpsertQueued(ctx context.Context, key JobKey, source, tag string) (*Job, error) {
	if err := key.validate(); err != nil {
		return nil, err
	}
	job, err := scanJob(s.pool.QueryRow(ctx, `
		INSERT INTO jobs AS j (registry, repository, digest, source, tag, status)
		VALUES ($1, $2, $3, $4, $5, 'queued')
		ON CONFLICT ON CONSTRAINT jobs_image_key DO UPDATE SET
			source = CASE WHEN excluded.source <> '' THEN excluded.source ELSE j.source END,
			tag = CASE WHEN excluded.tag <> '' THEN excluded.tag ELSE j.tag END,
			status = CASE WHEN j.status = 'failed' THEN 'queued' ELSE j.status END,
			queued_at = CASE WHEN j.status = 'failed' THEN now() ELSE j.queued_at END
		RETURNING `+jobColumns,
		key.Registry, key.Repository, key.Digest, source, tag))
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
	err := s.pool.QueryRow(ctx, `
		WITH job AS (
			INSERT INTO jobs AS j (registry, repository, digest, status, attempts, worker, started_at)
			VALUES ($1, $2, $3, 'running', 1, $4, now())
			ON CONFLICT ON CONSTRAINT jobs_image_key DO UPDATE SET
				status = 'running', attempts = j.attempts + 1, worker = excluded.worker,
				started_at = now(), finished_at = NULL, skip_reason = ''
			RETURNING id, attempts
		)
		INSERT INTO job_attempts (job_id, attempt, worker, status)
		SELECT id, attempts, $4, 'running' FROM job
		RETURNING attempt`,
		key.Registry, key.Repository, key.Digest, worker).Scan(&attempt)
	if err != nil {
		return 0, fmt.Errorf("db: start job %s: %w", key, pgError(err))
	}
	return attempt, nil
}

// pgFinishJob sets the job's outcome and closes its current attempt.
const pgFinishJob = `
WITH job AS (
	UPDATE jobs SET status = $4, skip_reason = $5, last_error = $6, bytes_read = $7, options_hash = $8,
		finished_at = CASE WHEN $4 = 'queued' THEN NULL ELSE now() END
	WHERE registry = $1 AND repository = $2 AND digest = $3
	RETURNING id, attempts
), attempt AS (
	UPDATE job_attempts a SET status = $9, error = $6, bytes_read = $7, finished_at = now()
	FROM job WHERE a.job_id = job.id AND a.attempt = job.attempts AND a.status = 'running'
	RETURNING 1
)
SELECT count(*) FROM job`

func (s *postgresStore) finish(ctx context.Context, key JobKey, o outcome) error {
	var n int
	err := s.pool.QueryRow(ctx, pgFinishJob, key.Registry, key.Repository, key.Digest,
		o.jobStatus, o.skipReason, o.errorText, o.bytesRead, o.optionsHash, o.attemptStatus).Scan(&n)
	if err != nil {
		return fmt.Errorf("db: mark job %s %s: %w", key, o.jobStatus, pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("db: %s: %w", key, ErrJobNotFound)
	}
	return nil
}
