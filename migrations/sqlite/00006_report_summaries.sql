-- Report summaries, as migrations/postgres/00006_report_summaries.sql: the
-- report views and the status API's image coverage read summary tables that
-- triggers keep in step with the rows they count, in the transaction of the
-- write. The same triggers as Postgres's, written out per event (SQLite
-- triggers have no variables or functions). The migration fills the tables
-- from the rows already there; SQLite has one writer at a time, so nothing
-- is missed. Days are UTC dates (date(finished_at)), as the old view had.

-- +goose Up
CREATE TABLE summary_coverage (
    registry   TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    images     INTEGER NOT NULL,
    indexed    INTEGER NOT NULL,
    skipped    INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    pending    INTEGER NOT NULL,
    PRIMARY KEY (registry, repository)
) WITHOUT ROWID;

CREATE TABLE summary_images (
    registry   TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    indexed    INTEGER NOT NULL,
    pending    INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    skipped    INTEGER NOT NULL,
    PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;

CREATE TABLE summary_image_coverage (
    registry   TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    images     INTEGER NOT NULL,
    indexed    INTEGER NOT NULL,
    pending    INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    skipped    INTEGER NOT NULL,
    PRIMARY KEY (registry, repository)
) WITHOUT ROWID;

CREATE TABLE summary_reuse (
    registry          TEXT    NOT NULL,
    repository        TEXT    NOT NULL,
    ztocs_built       INTEGER NOT NULL,
    ztocs_reused      INTEGER NOT NULL,
    bytes_built       INTEGER NOT NULL,
    bytes_not_rebuilt INTEGER NOT NULL,
    PRIMARY KEY (registry, repository)
) WITHOUT ROWID;

CREATE TABLE summary_layers (
    layer_digest TEXT    NOT NULL,
    ztoc_digest  TEXT    NOT NULL,
    layer_size   INTEGER NOT NULL,
    ztoc_size    INTEGER NOT NULL,
    span_size    INTEGER NOT NULL,
    uses         INTEGER NOT NULL,
    PRIMARY KEY (layer_digest, ztoc_digest)
) WITHOUT ROWID;

CREATE TABLE summary_throughput (
    day        TEXT    PRIMARY KEY,
    finished   INTEGER NOT NULL,
    succeeded  INTEGER NOT NULL,
    skipped    INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    bytes_read INTEGER NOT NULL,
    seconds    REAL    NOT NULL
) WITHOUT ROWID;

-- Backfill from the rows already there.
INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
SELECT registry, repository, count(*), count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status IN ('queued', 'running'))
FROM jobs GROUP BY registry, repository;

INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
SELECT registry, repository, digest, count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status IN ('queued', 'running')), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'skipped')
FROM jobs GROUP BY registry, repository, digest;

INSERT INTO summary_image_coverage (registry, repository, images, indexed, pending, failed, skipped)
SELECT registry, repository, count(*), count(*) FILTER (WHERE best = 1), count(*) FILTER (WHERE best = 2),
       count(*) FILTER (WHERE best = 3), count(*) FILTER (WHERE best = 4)
FROM (SELECT registry, repository, CASE WHEN indexed > 0 THEN 1 WHEN pending > 0 THEN 2
          WHEN failed > 0 THEN 3 ELSE 4 END AS best
      FROM summary_images) i
GROUP BY registry, repository;

INSERT INTO summary_reuse (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
SELECT registry, repository, count(*) FILTER (WHERE NOT reused), count(*) FILTER (WHERE reused),
       coalesce(sum(layer_size) FILTER (WHERE NOT reused), 0), coalesce(sum(layer_size) FILTER (WHERE reused), 0)
FROM layer_uses GROUP BY registry, repository;

INSERT INTO summary_layers (layer_digest, ztoc_digest, layer_size, ztoc_size, span_size, uses)
SELECT u.layer_digest, u.ztoc_digest, max(u.layer_size), max(a.size), max(a.span_size), count(*)
FROM layer_uses u JOIN artifacts a ON a.digest = u.ztoc_digest
GROUP BY u.layer_digest, u.ztoc_digest;

INSERT INTO summary_throughput (day, finished, succeeded, skipped, failed, bytes_read, seconds)
SELECT date(finished_at), count(*), count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
       coalesce(sum(bytes_read), 0),
       coalesce(sum((julianday(finished_at) - julianday(started_at)) * 86400.0), 0.0)
FROM job_attempts
WHERE finished_at IS NOT NULL AND status <> 'abandoned'
GROUP BY 1;

CREATE INDEX summary_layers_largest_idx ON summary_layers (layer_size DESC, ztoc_size DESC, layer_digest, ztoc_digest);
CREATE INDEX summary_layers_ztoc_idx ON summary_layers (ztoc_digest);
CREATE INDEX job_attempts_finished_idx ON job_attempts (finished_at);
CREATE INDEX artifacts_index_location_idx ON artifacts (location) WHERE type = 'soci_index';
-- The coverage report no longer reads jobs: its index (00004) would only
-- cost every job write.
DROP INDEX jobs_coverage_idx;
-- report failures and skipped (the CLI's latest 50, the status page's 20):
-- their order, so the latest N are the first N entries.
CREATE INDEX jobs_failed_latest_idx ON jobs ((finished_at IS NULL), finished_at DESC, registry, repository, digest)
    WHERE status = 'failed';
CREATE INDEX jobs_skipped_latest_idx ON jobs ((finished_at IS NULL), finished_at DESC, registry, repository, digest, tag)
    WHERE status = 'skipped';

-- Jobs: a job's category (indexed, pending, failed, skipped) counts in its
-- repository and its image. Job keys never change; a change of key counts
-- as a job removed and one added.

-- +goose StatementBegin
CREATE TRIGGER jobs_summary_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (NEW.registry, NEW.repository, 1, (NEW.status = 'succeeded'), (NEW.status = 'skipped'), (NEW.status = 'failed'), (NEW.status IN ('queued', 'running')))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed, pending = pending + excluded.pending;
    INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (NEW.registry, NEW.repository, NEW.digest, (NEW.status = 'succeeded'), (NEW.status IN ('queued', 'running')), (NEW.status = 'failed'), (NEW.status = 'skipped'))
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = indexed + excluded.indexed, pending = pending + excluded.pending,
        failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER jobs_summary_delete AFTER DELETE ON jobs
BEGIN
    INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (OLD.registry, OLD.repository, -1, -(OLD.status = 'succeeded'), -(OLD.status = 'skipped'), -(OLD.status = 'failed'), -(OLD.status IN ('queued', 'running')))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed, pending = pending + excluded.pending;
    INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (OLD.registry, OLD.repository, OLD.digest, -(OLD.status = 'succeeded'), -(OLD.status IN ('queued', 'running')), -(OLD.status = 'failed'), -(OLD.status = 'skipped'))
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = indexed + excluded.indexed, pending = pending + excluded.pending,
        failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
    DELETE FROM summary_coverage WHERE registry = OLD.registry AND repository = OLD.repository AND images = 0;
    DELETE FROM summary_images WHERE registry = OLD.registry AND repository = OLD.repository AND digest = OLD.digest
        AND indexed + pending + failed + skipped = 0;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER jobs_summary_status AFTER UPDATE OF status ON jobs
    WHEN OLD.registry = NEW.registry AND OLD.repository = NEW.repository AND OLD.digest = NEW.digest
        AND CASE OLD.status WHEN 'succeeded' THEN 1 WHEN 'queued' THEN 2 WHEN 'running' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END
            <> CASE NEW.status WHEN 'succeeded' THEN 1 WHEN 'queued' THEN 2 WHEN 'running' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END
BEGIN
    INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (NEW.registry, NEW.repository, 0, (NEW.status = 'succeeded') - (OLD.status = 'succeeded'), (NEW.status = 'skipped') - (OLD.status = 'skipped'), (NEW.status = 'failed') - (OLD.status = 'failed'), (NEW.status IN ('queued', 'running')) - (OLD.status IN ('queued', 'running')))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed, pending = pending + excluded.pending;
    INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (NEW.registry, NEW.repository, NEW.digest, (NEW.status = 'succeeded') - (OLD.status = 'succeeded'), (NEW.status IN ('queued', 'running')) - (OLD.status IN ('queued', 'running')), (NEW.status = 'failed') - (OLD.status = 'failed'), (NEW.status = 'skipped') - (OLD.status = 'skipped'))
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = indexed + excluded.indexed, pending = pending + excluded.pending,
        failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER jobs_summary_key AFTER UPDATE OF registry, repository, digest ON jobs
    WHEN NOT (OLD.registry = NEW.registry AND OLD.repository = NEW.repository AND OLD.digest = NEW.digest)
BEGIN
    INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (OLD.registry, OLD.repository, -1, -(OLD.status = 'succeeded'), -(OLD.status = 'skipped'), -(OLD.status = 'failed'), -(OLD.status IN ('queued', 'running')))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed, pending = pending + excluded.pending;
    INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (OLD.registry, OLD.repository, OLD.digest, -(OLD.status = 'succeeded'), -(OLD.status IN ('queued', 'running')), -(OLD.status = 'failed'), -(OLD.status = 'skipped'))
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = indexed + excluded.indexed, pending = pending + excluded.pending,
        failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
    DELETE FROM summary_coverage WHERE registry = OLD.registry AND repository = OLD.repository AND images = 0;
    DELETE FROM summary_images WHERE registry = OLD.registry AND repository = OLD.repository AND digest = OLD.digest
        AND indexed + pending + failed + skipped = 0;
    INSERT INTO summary_coverage (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (NEW.registry, NEW.repository, 1, (NEW.status = 'succeeded'), (NEW.status = 'skipped'), (NEW.status = 'failed'), (NEW.status IN ('queued', 'running')))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed, pending = pending + excluded.pending;
    INSERT INTO summary_images (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (NEW.registry, NEW.repository, NEW.digest, (NEW.status = 'succeeded'), (NEW.status IN ('queued', 'running')), (NEW.status = 'failed'), (NEW.status = 'skipped'))
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = indexed + excluded.indexed, pending = pending + excluded.pending,
        failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
END;
-- +goose StatementEnd

-- Images: an image counts once per repository, in its best state (1
-- indexed, 2 pending, 3 failed, 4 skipped; 0: no job left). summary_images
-- rows never change key.

-- +goose StatementBegin
CREATE TRIGGER summary_images_insert AFTER INSERT ON summary_images
BEGIN
    INSERT INTO summary_image_coverage (registry, repository, images, indexed, pending, failed, skipped)
    VALUES (NEW.registry, NEW.repository,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) <> 0) - 0,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 1) - 0,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 2) - 0,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 3) - 0,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 4) - 0)
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        pending = pending + excluded.pending, failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
    DELETE FROM summary_image_coverage WHERE registry = NEW.registry AND repository = NEW.repository AND images = 0;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER summary_images_delete AFTER DELETE ON summary_images
BEGIN
    INSERT INTO summary_image_coverage (registry, repository, images, indexed, pending, failed, skipped)
    VALUES (OLD.registry, OLD.repository,
            0 - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) <> 0),
            0 - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 1),
            0 - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 2),
            0 - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 3),
            0 - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 4))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        pending = pending + excluded.pending, failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
    DELETE FROM summary_image_coverage WHERE registry = OLD.registry AND repository = OLD.repository AND images = 0;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER summary_images_update AFTER UPDATE ON summary_images
    WHEN CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END
        <> CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END
BEGIN
    INSERT INTO summary_image_coverage (registry, repository, images, indexed, pending, failed, skipped)
    VALUES (NEW.registry, NEW.repository,
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) <> 0) - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) <> 0),
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 1) - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 1),
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 2) - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 2),
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 3) - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 3),
            ((CASE WHEN NEW.indexed > 0 THEN 1 WHEN NEW.pending > 0 THEN 2 WHEN NEW.failed > 0 THEN 3 WHEN NEW.skipped > 0 THEN 4 ELSE 0 END) = 4) - ((CASE WHEN OLD.indexed > 0 THEN 1 WHEN OLD.pending > 0 THEN 2 WHEN OLD.failed > 0 THEN 3 WHEN OLD.skipped > 0 THEN 4 ELSE 0 END) = 4))
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = images + excluded.images, indexed = indexed + excluded.indexed,
        pending = pending + excluded.pending, failed = failed + excluded.failed, skipped = skipped + excluded.skipped;
    DELETE FROM summary_image_coverage WHERE registry = NEW.registry AND repository = NEW.repository AND images = 0;
END;
-- +goose StatementEnd

-- Layer uses: reuse per repository and uses per layer and zTOC. A layer's
-- size is the largest recorded for it with that zTOC; a use removed that had
-- it looks the largest up again among the uses left.

-- +goose StatementBegin
CREATE TRIGGER layer_uses_summary_insert AFTER INSERT ON layer_uses
BEGIN
    INSERT INTO summary_reuse (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
    VALUES (NEW.registry, NEW.repository, (NOT NEW.reused), (NEW.reused <> 0),
            CASE WHEN NEW.reused THEN 0 ELSE NEW.layer_size END, CASE WHEN NEW.reused THEN NEW.layer_size ELSE 0 END)
    ON CONFLICT (registry, repository) DO UPDATE SET
        ztocs_built = ztocs_built + excluded.ztocs_built, ztocs_reused = ztocs_reused + excluded.ztocs_reused,
        bytes_built = bytes_built + excluded.bytes_built, bytes_not_rebuilt = bytes_not_rebuilt + excluded.bytes_not_rebuilt;
    INSERT INTO summary_layers (layer_digest, ztoc_digest, layer_size, ztoc_size, span_size, uses)
    SELECT NEW.layer_digest, NEW.ztoc_digest, NEW.layer_size, a.size, a.span_size, 1
    FROM artifacts a WHERE a.digest = NEW.ztoc_digest
    ON CONFLICT (layer_digest, ztoc_digest) DO UPDATE SET
        uses = uses + 1, layer_size = max(layer_size, excluded.layer_size);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER layer_uses_summary_delete AFTER DELETE ON layer_uses
BEGIN
    INSERT INTO summary_reuse (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
    VALUES (OLD.registry, OLD.repository, -(NOT OLD.reused), -(OLD.reused <> 0),
            CASE WHEN OLD.reused THEN 0 ELSE -OLD.layer_size END, CASE WHEN OLD.reused THEN -OLD.layer_size ELSE 0 END)
    ON CONFLICT (registry, repository) DO UPDATE SET
        ztocs_built = ztocs_built + excluded.ztocs_built, ztocs_reused = ztocs_reused + excluded.ztocs_reused,
        bytes_built = bytes_built + excluded.bytes_built, bytes_not_rebuilt = bytes_not_rebuilt + excluded.bytes_not_rebuilt;
    DELETE FROM summary_reuse WHERE registry = OLD.registry AND repository = OLD.repository
        AND ztocs_built + ztocs_reused = 0;
    UPDATE summary_layers SET uses = uses - 1,
        layer_size = CASE WHEN OLD.layer_size < layer_size THEN layer_size
            ELSE coalesce((SELECT max(u.layer_size) FROM layer_uses u
                WHERE u.ztoc_digest = OLD.ztoc_digest AND u.layer_digest = OLD.layer_digest), 0) END
    WHERE layer_digest = OLD.layer_digest AND ztoc_digest = OLD.ztoc_digest;
    DELETE FROM summary_layers WHERE layer_digest = OLD.layer_digest AND ztoc_digest = OLD.ztoc_digest AND uses = 0;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER layer_uses_summary_update AFTER UPDATE ON layer_uses
    WHEN OLD.registry IS NOT NEW.registry OR OLD.repository IS NOT NEW.repository
        OR OLD.layer_digest IS NOT NEW.layer_digest OR OLD.layer_size IS NOT NEW.layer_size
        OR OLD.ztoc_digest IS NOT NEW.ztoc_digest OR OLD.reused IS NOT NEW.reused
BEGIN
    INSERT INTO summary_reuse (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
    VALUES (OLD.registry, OLD.repository, -(NOT OLD.reused), -(OLD.reused <> 0),
            CASE WHEN OLD.reused THEN 0 ELSE -OLD.layer_size END, CASE WHEN OLD.reused THEN -OLD.layer_size ELSE 0 END)
    ON CONFLICT (registry, repository) DO UPDATE SET
        ztocs_built = ztocs_built + excluded.ztocs_built, ztocs_reused = ztocs_reused + excluded.ztocs_reused,
        bytes_built = bytes_built + excluded.bytes_built, bytes_not_rebuilt = bytes_not_rebuilt + excluded.bytes_not_rebuilt;
    DELETE FROM summary_reuse WHERE registry = OLD.registry AND repository = OLD.repository
        AND ztocs_built + ztocs_reused = 0;
    UPDATE summary_layers SET uses = uses - 1,
        layer_size = CASE WHEN OLD.layer_size < layer_size THEN layer_size
            ELSE coalesce((SELECT max(u.layer_size) FROM layer_uses u
                WHERE u.ztoc_digest = OLD.ztoc_digest AND u.layer_digest = OLD.layer_digest), 0) END
    WHERE layer_digest = OLD.layer_digest AND ztoc_digest = OLD.ztoc_digest;
    DELETE FROM summary_layers WHERE layer_digest = OLD.layer_digest AND ztoc_digest = OLD.ztoc_digest AND uses = 0;
    INSERT INTO summary_reuse (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
    VALUES (NEW.registry, NEW.repository, (NOT NEW.reused), (NEW.reused <> 0),
            CASE WHEN NEW.reused THEN 0 ELSE NEW.layer_size END, CASE WHEN NEW.reused THEN NEW.layer_size ELSE 0 END)
    ON CONFLICT (registry, repository) DO UPDATE SET
        ztocs_built = ztocs_built + excluded.ztocs_built, ztocs_reused = ztocs_reused + excluded.ztocs_reused,
        bytes_built = bytes_built + excluded.bytes_built, bytes_not_rebuilt = bytes_not_rebuilt + excluded.bytes_not_rebuilt;
    INSERT INTO summary_layers (layer_digest, ztoc_digest, layer_size, ztoc_size, span_size, uses)
    SELECT NEW.layer_digest, NEW.ztoc_digest, NEW.layer_size, a.size, a.span_size, 1
    FROM artifacts a WHERE a.digest = NEW.ztoc_digest
    ON CONFLICT (layer_digest, ztoc_digest) DO UPDATE SET
        uses = uses + 1, layer_size = max(layer_size, excluded.layer_size);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER artifacts_summary AFTER UPDATE OF size, span_size ON artifacts
    WHEN OLD.size IS NOT NEW.size OR OLD.span_size IS NOT NEW.span_size
BEGIN
    UPDATE summary_layers SET ztoc_size = NEW.size, span_size = NEW.span_size WHERE ztoc_digest = NEW.digest;
END;
-- +goose StatementEnd

-- Attempts: a finished attempt (not abandoned) counts on the UTC day it
-- finished.

-- +goose StatementBegin
CREATE TRIGGER job_attempts_summary_insert AFTER INSERT ON job_attempts
    WHEN NEW.finished_at IS NOT NULL AND NEW.status <> 'abandoned'
BEGIN
    INSERT INTO summary_throughput (day, finished, succeeded, skipped, failed, bytes_read, seconds)
    SELECT date(NEW.finished_at), 1, (NEW.status = 'succeeded'), (NEW.status = 'skipped'),
           (NEW.status = 'failed'), NEW.bytes_read,
           (julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400.0
    WHERE NEW.finished_at IS NOT NULL AND NEW.status <> 'abandoned'
    ON CONFLICT (day) DO UPDATE SET
        finished = finished + excluded.finished, succeeded = succeeded + excluded.succeeded,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed,
        bytes_read = bytes_read + excluded.bytes_read, seconds = seconds + excluded.seconds;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER job_attempts_summary_delete AFTER DELETE ON job_attempts
    WHEN OLD.finished_at IS NOT NULL AND OLD.status <> 'abandoned'
BEGIN
    INSERT INTO summary_throughput (day, finished, succeeded, skipped, failed, bytes_read, seconds)
    SELECT date(OLD.finished_at), -1, -(OLD.status = 'succeeded'), -(OLD.status = 'skipped'),
           -(OLD.status = 'failed'), -OLD.bytes_read,
           -(julianday(OLD.finished_at) - julianday(OLD.started_at)) * 86400.0
    WHERE OLD.finished_at IS NOT NULL AND OLD.status <> 'abandoned'
    ON CONFLICT (day) DO UPDATE SET
        finished = finished + excluded.finished, succeeded = succeeded + excluded.succeeded,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed,
        bytes_read = bytes_read + excluded.bytes_read, seconds = seconds + excluded.seconds;
    DELETE FROM summary_throughput WHERE day = date(OLD.finished_at) AND finished = 0;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER job_attempts_summary_update AFTER UPDATE ON job_attempts
    WHEN OLD.status IS NOT NEW.status OR OLD.finished_at IS NOT NEW.finished_at
        OR OLD.started_at IS NOT NEW.started_at OR OLD.bytes_read IS NOT NEW.bytes_read
BEGIN
    INSERT INTO summary_throughput (day, finished, succeeded, skipped, failed, bytes_read, seconds)
    SELECT date(OLD.finished_at), -1, -(OLD.status = 'succeeded'), -(OLD.status = 'skipped'),
           -(OLD.status = 'failed'), -OLD.bytes_read,
           -(julianday(OLD.finished_at) - julianday(OLD.started_at)) * 86400.0
    WHERE OLD.finished_at IS NOT NULL AND OLD.status <> 'abandoned'
    ON CONFLICT (day) DO UPDATE SET
        finished = finished + excluded.finished, succeeded = succeeded + excluded.succeeded,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed,
        bytes_read = bytes_read + excluded.bytes_read, seconds = seconds + excluded.seconds;
    DELETE FROM summary_throughput WHERE day = date(OLD.finished_at) AND finished = 0;
    INSERT INTO summary_throughput (day, finished, succeeded, skipped, failed, bytes_read, seconds)
    SELECT date(NEW.finished_at), 1, (NEW.status = 'succeeded'), (NEW.status = 'skipped'),
           (NEW.status = 'failed'), NEW.bytes_read,
           (julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400.0
    WHERE NEW.finished_at IS NOT NULL AND NEW.status <> 'abandoned'
    ON CONFLICT (day) DO UPDATE SET
        finished = finished + excluded.finished, succeeded = succeeded + excluded.succeeded,
        skipped = skipped + excluded.skipped, failed = failed + excluded.failed,
        bytes_read = bytes_read + excluded.bytes_read, seconds = seconds + excluded.seconds;
END;
-- +goose StatementEnd

-- The report views read the summaries; their names and columns stay.
DROP VIEW report_coverage;
CREATE VIEW report_coverage AS
SELECT registry, repository, images, indexed, skipped, failed, pending
FROM summary_coverage;

DROP VIEW report_reuse;
CREATE VIEW report_reuse AS
SELECT registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt
FROM summary_reuse;

DROP VIEW report_largest;
CREATE VIEW report_largest AS
SELECT layer_digest, layer_size, ztoc_digest, ztoc_size, span_size, uses
FROM summary_layers;

DROP VIEW report_throughput;
CREATE VIEW report_throughput AS
SELECT day, finished, succeeded, skipped, failed, bytes_read,
       seconds / finished AS avg_seconds
FROM summary_throughput;
