-- Reporting, as migrations/postgres/00002_reporting.sql.

-- +goose Up
CREATE TABLE layer_uses (
    registry     TEXT    NOT NULL,
    repository   TEXT    NOT NULL,
    image_digest TEXT    NOT NULL,
    layer_digest TEXT    NOT NULL,
    layer_size   INTEGER NOT NULL DEFAULT 0 CONSTRAINT layer_uses_layer_size_check CHECK (layer_size >= 0),
    ztoc_digest  TEXT    NOT NULL REFERENCES artifacts (digest) ON DELETE CASCADE,
    reused       INTEGER NOT NULL,
    recorded_at  TEXT    NOT NULL,
    PRIMARY KEY (registry, repository, image_digest, layer_digest)
) WITHOUT ROWID;

CREATE INDEX layer_uses_ztoc_idx ON layer_uses (ztoc_digest);

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

CREATE VIEW report_largest AS
SELECT u.layer_digest,
       max(u.layer_size) AS layer_size,
       a.digest          AS ztoc_digest,
       a.size            AS ztoc_size,
       a.span_size,
       count(*)          AS uses
FROM layer_uses u
JOIN artifacts a ON a.digest = u.ztoc_digest
GROUP BY u.layer_digest, a.digest, a.size, a.span_size;

CREATE VIEW report_reuse AS
SELECT registry,
       repository,
       count(*) FILTER (WHERE NOT reused)                      AS ztocs_built,
       count(*) FILTER (WHERE reused)                          AS ztocs_reused,
       coalesce(sum(layer_size) FILTER (WHERE NOT reused), 0)  AS bytes_built,
       coalesce(sum(layer_size) FILTER (WHERE reused), 0)      AS bytes_not_rebuilt
FROM layer_uses
GROUP BY registry, repository;

CREATE VIEW report_throughput AS
SELECT date(finished_at)                 AS day,
       count(*)                          AS finished,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'skipped')   AS skipped,
       count(*) FILTER (WHERE status = 'failed')    AS failed,
       coalesce(sum(bytes_read), 0)      AS bytes_read,
       coalesce(avg((julianday(finished_at) - julianday(started_at)) * 86400.0), 0.0) AS avg_seconds
FROM job_attempts
WHERE finished_at IS NOT NULL
GROUP BY 1;
