-- One job per image and tag: an image pushed under several tags gets a v2
-- index tag for each, so each (digest, tag) keeps what was built for it
-- (options hash, v2 index digest, when). Attempts cut off by a dead worker
-- are closed as 'abandoned' when their job starts again. Rows of the old
-- schema keep their last tag and become that tag's job.

-- +goose Up
ALTER TABLE jobs DROP CONSTRAINT jobs_image_key;
ALTER TABLE jobs ADD CONSTRAINT jobs_job_key UNIQUE (registry, repository, digest, tag);
-- The digest of the v2 SOCI-enabled image index pushed under the tag's v2
-- tag; '' when the job built no v2 index.
ALTER TABLE jobs ADD COLUMN index_digest text NOT NULL DEFAULT '';
-- A tag delete finds its jobs by tag.
CREATE INDEX jobs_tag_idx ON jobs (registry, repository, tag);

ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_status_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_status_check
    CHECK (status IN ('running', 'succeeded', 'skipped', 'failed', 'abandoned'));

-- Jobs that were looked at and not indexed, with the reason.
CREATE VIEW report_skipped AS
SELECT registry, repository, digest, tag, skip_reason, finished_at
FROM jobs
WHERE status = 'skipped';

-- An abandoned attempt did not finish: it counts in no outcome and its
-- duration (until the job was started again) is no run time.
CREATE OR REPLACE VIEW report_throughput AS
SELECT date_trunc('day', finished_at AT TIME ZONE 'UTC')::date  AS day,
       count(*)                                                 AS finished,
       count(*) FILTER (WHERE status = 'succeeded')             AS succeeded,
       count(*) FILTER (WHERE status = 'skipped')               AS skipped,
       count(*) FILTER (WHERE status = 'failed')                AS failed,
       coalesce(sum(bytes_read), 0)                             AS bytes_read,
       coalesce(avg(extract(epoch FROM finished_at - started_at)), 0)::double precision AS avg_seconds
FROM job_attempts
WHERE finished_at IS NOT NULL AND status <> 'abandoned'
GROUP BY 1;
