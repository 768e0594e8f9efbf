-- One job per image and tag, as migrations/postgres/00003_jobs_per_tag.sql.
-- SQLite cannot change a table's constraints, so jobs and job_attempts are
-- rebuilt: the new tables are filled, the old ones dropped (attempts first,
-- so dropping jobs cascades to nothing) and the new ones renamed. The views
-- over them are dropped first and made again, since a rename re-checks
-- every view of the schema.

-- +goose Up
DROP VIEW report_coverage;
DROP VIEW report_failures;
DROP VIEW report_throughput;

CREATE TABLE jobs_new (
    id           INTEGER PRIMARY KEY,
    registry     TEXT    NOT NULL,
    repository   TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    source       TEXT    NOT NULL DEFAULT '',
    tag          TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL
        CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'succeeded', 'skipped', 'failed')),
    skip_reason  TEXT    NOT NULL DEFAULT '',
    last_error   TEXT    NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    options_hash TEXT    NOT NULL DEFAULT '',
    index_digest TEXT    NOT NULL DEFAULT '',
    bytes_read   INTEGER NOT NULL DEFAULT 0,
    worker       TEXT    NOT NULL DEFAULT '',
    queued_at    TEXT    NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    CONSTRAINT jobs_job_key UNIQUE (registry, repository, digest, tag)
);

INSERT INTO jobs_new (id, registry, repository, digest, source, tag, status, skip_reason, last_error, attempts,
                      options_hash, bytes_read, worker, queued_at, started_at, finished_at)
SELECT id, registry, repository, digest, source, tag, status, skip_reason, last_error, attempts,
       options_hash, bytes_read, worker, queued_at, started_at, finished_at
FROM jobs;

CREATE TABLE job_attempts_new (
    job_id      INTEGER NOT NULL REFERENCES jobs_new (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL
        CONSTRAINT job_attempts_status_check
        CHECK (status IN ('running', 'succeeded', 'skipped', 'failed', 'abandoned')),
    error       TEXT    NOT NULL DEFAULT '',
    bytes_read  INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

INSERT INTO job_attempts_new SELECT job_id, attempt, worker, status, error, bytes_read, started_at, finished_at
FROM job_attempts;

DROP TABLE job_attempts;
DROP TABLE jobs;
-- The rename also rewrites job_attempts_new's reference to jobs_new.
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE job_attempts_new RENAME TO job_attempts;

CREATE INDEX jobs_status_idx ON jobs (status, finished_at);
CREATE INDEX jobs_tag_idx ON jobs (registry, repository, tag);

CREATE VIEW report_coverage AS
SELECT registry,
       repository,
       count(*)                                           AS images,
       count(*) FILTER (WHERE status = 'succeeded')       AS indexed,
       count(*) FILTER (WHERE status = 'skipped')         AS skipped,
       count(*) FILTER (WHERE status = 'failed')          AS failed,
       count(*) FILTER (WHERE status IN ('queued', 'running')) AS pending
FROM jobs
GROUP BY registry, repository;

CREATE VIEW report_failures AS
SELECT registry, repository, digest, tag, attempts, last_error, worker, finished_at
FROM jobs
WHERE status = 'failed';


CREATE VIEW report_skipped AS
SELECT registry, repository, digest, tag, skip_reason, finished_at
FROM jobs
WHERE status = 'skipped';

-- An abandoned attempt counts in no outcome and has no run time.
CREATE VIEW report_throughput AS
SELECT date(finished_at)                 AS day,
       count(*)                          AS finished,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'skipped')   AS skipped,
       count(*) FILTER (WHERE status = 'failed')    AS failed,
       coalesce(sum(bytes_read), 0)      AS bytes_read,
       coalesce(avg((julianday(finished_at) - julianday(started_at)) * 86400.0), 0.0) AS avg_seconds
FROM job_attempts
WHERE finished_at IS NOT NULL AND status <> 'abandoned'
GROUP BY 1;
