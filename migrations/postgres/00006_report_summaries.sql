-- Report summaries. The report views (and the status API's image coverage)
-- aggregated every job, attempt or layer use: at a million jobs and five
-- million artifacts, 0.1-10 s each (docs/bench/db.md). Each now reads a
-- summary table that triggers keep in step with the rows it counts, in the
-- transaction of the write that changes them, so a report is exact and
-- costs a read of its summary rows:
--
--   summary_coverage        jobs per repository by status      (report_coverage)
--   summary_images          jobs per image by status           (feeds summary_image_coverage)
--   summary_image_coverage  images per repository by best state (ImageCoverage, the status API)
--   summary_reuse           layer uses per repository           (report_reuse)
--   summary_layers          uses per layer and zTOC, with sizes (report_largest: an index gives the top N)
--   summary_throughput      finished attempts per UTC day       (report_throughput)
--
-- A summary row whose counts reach zero is deleted, so each table holds what
-- a GROUP BY over the counted rows would give. The migration fills the
-- tables from the rows already there, with the writers locked out so that
-- nothing committed in between is missed: an upgraded database reports the
-- same as before, at once. migrations/sqlite/00006_report_summaries.sql is
-- the same with SQLite triggers; pkg/db's conformance tests check both
-- against a full recomputation.

-- +goose Up
LOCK TABLE jobs, job_attempts, layer_uses, artifacts IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE summary_coverage (
    registry   text   NOT NULL,
    repository text   NOT NULL,
    images     bigint NOT NULL,
    indexed    bigint NOT NULL,
    skipped    bigint NOT NULL,
    failed     bigint NOT NULL,
    pending    bigint NOT NULL,
    PRIMARY KEY (registry, repository)
);

CREATE TABLE summary_images (
    registry   text   NOT NULL,
    repository text   NOT NULL,
    digest     text   NOT NULL,
    indexed    bigint NOT NULL,
    pending    bigint NOT NULL,
    failed     bigint NOT NULL,
    skipped    bigint NOT NULL,
    PRIMARY KEY (registry, repository, digest)
);

CREATE TABLE summary_image_coverage (
    registry   text   NOT NULL,
    repository text   NOT NULL,
    images     bigint NOT NULL,
    indexed    bigint NOT NULL,
    pending    bigint NOT NULL,
    failed     bigint NOT NULL,
    skipped    bigint NOT NULL,
    PRIMARY KEY (registry, repository)
);

CREATE TABLE summary_reuse (
    registry          text   NOT NULL,
    repository        text   NOT NULL,
    ztocs_built       bigint NOT NULL,
    ztocs_reused      bigint NOT NULL,
    bytes_built       bigint NOT NULL,
    bytes_not_rebuilt bigint NOT NULL,
    PRIMARY KEY (registry, repository)
);

-- ztoc_size and span_size are the zTOC's (artifacts), copied so that the
-- largest-first index covers the report's whole order.
CREATE TABLE summary_layers (
    layer_digest text   NOT NULL,
    ztoc_digest  text   NOT NULL,
    layer_size   bigint NOT NULL,
    ztoc_size    bigint NOT NULL,
    span_size    bigint NOT NULL,
    uses         bigint NOT NULL,
    PRIMARY KEY (layer_digest, ztoc_digest)
);

-- seconds: the sum of the attempts' run times; avg_seconds = seconds / finished.
CREATE TABLE summary_throughput (
    day        date             PRIMARY KEY,
    finished   bigint           NOT NULL,
    succeeded  bigint           NOT NULL,
    skipped    bigint           NOT NULL,
    failed     bigint           NOT NULL,
    bytes_read bigint           NOT NULL,
    seconds    double precision NOT NULL
);

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
SELECT date_trunc('day', finished_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'skipped'),
       count(*) FILTER (WHERE status = 'failed'), coalesce(sum(bytes_read), 0),
       coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)
FROM job_attempts
WHERE finished_at IS NOT NULL AND status <> 'abandoned'
GROUP BY 1;

-- The report's order, so its top N is the first N entries of this index.
CREATE INDEX summary_layers_largest_idx ON summary_layers (layer_size DESC, ztoc_size DESC, layer_digest, ztoc_digest);
-- A zTOC whose size changes updates its rows.
CREATE INDEX summary_layers_ztoc_idx ON summary_layers (ztoc_digest);
-- The status page counts the attempts finished in the last hour.
CREATE INDEX job_attempts_finished_idx ON job_attempts (finished_at);
-- IndexEntriesOf (every delete event) finds an image's indexes by their
-- image digest (artifacts_image_digest_idx) or by their manifest digest.
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

-- Jobs: count a job's category (indexed, pending, failed, skipped) change
-- in its repository and its image.
-- +goose StatementBegin
CREATE FUNCTION summary_count_job(reg text, repo text, dgst text,
                                  dn bigint, di bigint, dp bigint, df bigint, ds bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF dn = 0 AND di = 0 AND dp = 0 AND df = 0 AND ds = 0 THEN
        RETURN;
    END IF;
    INSERT INTO summary_coverage AS c (registry, repository, images, indexed, skipped, failed, pending)
    VALUES (reg, repo, dn, di, ds, df, dp)
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = c.images + excluded.images, indexed = c.indexed + excluded.indexed,
        skipped = c.skipped + excluded.skipped, failed = c.failed + excluded.failed,
        pending = c.pending + excluded.pending
    RETURNING images INTO n;
    IF n = 0 THEN
        DELETE FROM summary_coverage WHERE registry = reg AND repository = repo AND images = 0;
    END IF;
    INSERT INTO summary_images AS m (registry, repository, digest, indexed, pending, failed, skipped)
    VALUES (reg, repo, dgst, di, dp, df, ds)
    ON CONFLICT (registry, repository, digest) DO UPDATE SET
        indexed = m.indexed + excluded.indexed, pending = m.pending + excluded.pending,
        failed = m.failed + excluded.failed, skipped = m.skipped + excluded.skipped
    RETURNING indexed + pending + failed + skipped INTO n;
    IF n = 0 THEN
        DELETE FROM summary_images WHERE registry = reg AND repository = repo AND digest = dgst
            AND indexed + pending + failed + skipped = 0;
    END IF;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION summary_jobs_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.registry = NEW.registry AND OLD.repository = NEW.repository
            AND OLD.digest = NEW.digest THEN
        PERFORM summary_count_job(NEW.registry, NEW.repository, NEW.digest, 0,
            (NEW.status = 'succeeded')::int - (OLD.status = 'succeeded')::int,
            (NEW.status IN ('queued', 'running'))::int - (OLD.status IN ('queued', 'running'))::int,
            (NEW.status = 'failed')::int - (OLD.status = 'failed')::int,
            (NEW.status = 'skipped')::int - (OLD.status = 'skipped')::int);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM summary_count_job(OLD.registry, OLD.repository, OLD.digest, -1,
            -(OLD.status = 'succeeded')::int, -(OLD.status IN ('queued', 'running'))::int,
            -(OLD.status = 'failed')::int, -(OLD.status = 'skipped')::int);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM summary_count_job(NEW.registry, NEW.repository, NEW.digest, 1,
            (NEW.status = 'succeeded')::int, (NEW.status IN ('queued', 'running'))::int,
            (NEW.status = 'failed')::int, (NEW.status = 'skipped')::int);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD; -- a BEFORE DELETE trigger: go on with the delete
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- A job's delete is counted BEFORE it, so before the foreign key's cascade
-- deletes its attempts: like Succeed, Skip and Fail, a delete then locks
-- the repository's summary row before the day's (summary_throughput), and
-- the two cannot deadlock. (An INSERT … ON CONFLICT fires BEFORE INSERT
-- triggers even when it updates, so inserts are counted AFTER.)
CREATE TRIGGER jobs_summary AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION summary_jobs_change();
CREATE TRIGGER jobs_summary_delete BEFORE DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION summary_jobs_change();
CREATE TRIGGER jobs_summary_update AFTER UPDATE OF registry, repository, digest, status ON jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.registry IS DISTINCT FROM NEW.registry
          OR OLD.repository IS DISTINCT FROM NEW.repository OR OLD.digest IS DISTINCT FROM NEW.digest)
    EXECUTE FUNCTION summary_jobs_change();

-- Images: an image counts once per repository, in its best state (1
-- indexed, 2 pending, 3 failed, 4 skipped; 0: no job left).
-- +goose StatementBegin
CREATE FUNCTION summary_image_best(i bigint, p bigint, f bigint, s bigint) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN i > 0 THEN 1 WHEN p > 0 THEN 2 WHEN f > 0 THEN 3 WHEN s > 0 THEN 4 ELSE 0 END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION summary_images_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reg  text;
    repo text;
    ob   int := 0;
    nb   int := 0;
    n    bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        reg := NEW.registry; repo := NEW.repository;
    ELSE
        reg := OLD.registry; repo := OLD.repository;
        ob := summary_image_best(OLD.indexed, OLD.pending, OLD.failed, OLD.skipped);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        nb := summary_image_best(NEW.indexed, NEW.pending, NEW.failed, NEW.skipped);
    END IF;
    IF ob = nb THEN
        RETURN NULL;
    END IF;
    INSERT INTO summary_image_coverage AS c (registry, repository, images, indexed, pending, failed, skipped)
    VALUES (reg, repo, (nb <> 0)::int - (ob <> 0)::int, (nb = 1)::int - (ob = 1)::int,
            (nb = 2)::int - (ob = 2)::int, (nb = 3)::int - (ob = 3)::int, (nb = 4)::int - (ob = 4)::int)
    ON CONFLICT (registry, repository) DO UPDATE SET
        images = c.images + excluded.images, indexed = c.indexed + excluded.indexed,
        pending = c.pending + excluded.pending, failed = c.failed + excluded.failed,
        skipped = c.skipped + excluded.skipped
    RETURNING images INTO n;
    IF n = 0 THEN
        DELETE FROM summary_image_coverage WHERE registry = reg AND repository = repo AND images = 0;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- summary_images rows never change key.
CREATE TRIGGER summary_images_coverage AFTER INSERT OR UPDATE OR DELETE ON summary_images
    FOR EACH ROW EXECUTE FUNCTION summary_images_change();

-- Layer uses: reuse per repository and uses per layer and zTOC. A layer's
-- size is the largest recorded for it with that zTOC; a use removed
-- that had it looks the largest up again among the uses left.
-- +goose StatementBegin
CREATE FUNCTION summary_layer_uses_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO summary_reuse AS r (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
        VALUES (OLD.registry, OLD.repository, -(NOT OLD.reused)::int, -(OLD.reused)::int,
                CASE WHEN OLD.reused THEN 0 ELSE -OLD.layer_size END, CASE WHEN OLD.reused THEN -OLD.layer_size ELSE 0 END)
        ON CONFLICT (registry, repository) DO UPDATE SET
            ztocs_built = r.ztocs_built + excluded.ztocs_built, ztocs_reused = r.ztocs_reused + excluded.ztocs_reused,
            bytes_built = r.bytes_built + excluded.bytes_built,
            bytes_not_rebuilt = r.bytes_not_rebuilt + excluded.bytes_not_rebuilt
        RETURNING ztocs_built + ztocs_reused INTO n;
        IF n = 0 THEN
            DELETE FROM summary_reuse WHERE registry = OLD.registry AND repository = OLD.repository
                AND ztocs_built + ztocs_reused = 0;
        END IF;
        UPDATE summary_layers s SET uses = s.uses - 1,
            layer_size = CASE WHEN OLD.layer_size < s.layer_size THEN s.layer_size
                ELSE coalesce((SELECT max(u.layer_size) FROM layer_uses u
                    WHERE u.ztoc_digest = OLD.ztoc_digest AND u.layer_digest = OLD.layer_digest), 0) END
        WHERE s.layer_digest = OLD.layer_digest AND s.ztoc_digest = OLD.ztoc_digest
        RETURNING uses INTO n;
        IF n = 0 THEN
            DELETE FROM summary_layers WHERE layer_digest = OLD.layer_digest AND ztoc_digest = OLD.ztoc_digest
                AND uses = 0;
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO summary_reuse AS r (registry, repository, ztocs_built, ztocs_reused, bytes_built, bytes_not_rebuilt)
        VALUES (NEW.registry, NEW.repository, (NOT NEW.reused)::int, (NEW.reused)::int,
                CASE WHEN NEW.reused THEN 0 ELSE NEW.layer_size END, CASE WHEN NEW.reused THEN NEW.layer_size ELSE 0 END)
        ON CONFLICT (registry, repository) DO UPDATE SET
            ztocs_built = r.ztocs_built + excluded.ztocs_built, ztocs_reused = r.ztocs_reused + excluded.ztocs_reused,
            bytes_built = r.bytes_built + excluded.bytes_built,
            bytes_not_rebuilt = r.bytes_not_rebuilt + excluded.bytes_not_rebuilt;
        INSERT INTO summary_layers AS s (layer_digest, ztoc_digest, layer_size, ztoc_size, span_size, uses)
        SELECT NEW.layer_digest, NEW.ztoc_digest, NEW.layer_size, a.size, a.span_size, 1
        FROM artifacts a WHERE a.digest = NEW.ztoc_digest
        ON CONFLICT (layer_digest, ztoc_digest) DO UPDATE SET
            uses = s.uses + 1, layer_size = greatest(s.layer_size, excluded.layer_size);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER layer_uses_summary AFTER INSERT OR DELETE ON layer_uses
    FOR EACH ROW EXECUTE FUNCTION summary_layer_uses_change();
CREATE TRIGGER layer_uses_summary_update AFTER UPDATE ON layer_uses
    FOR EACH ROW
    WHEN ((OLD.registry, OLD.repository, OLD.layer_digest, OLD.layer_size, OLD.ztoc_digest, OLD.reused)
          IS DISTINCT FROM (NEW.registry, NEW.repository, NEW.layer_digest, NEW.layer_size, NEW.ztoc_digest, NEW.reused))
    EXECUTE FUNCTION summary_layer_uses_change();

-- +goose StatementBegin
CREATE FUNCTION summary_artifacts_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE summary_layers SET ztoc_size = NEW.size, span_size = NEW.span_size WHERE ztoc_digest = NEW.digest;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER artifacts_summary AFTER UPDATE OF size, span_size ON artifacts
    FOR EACH ROW
    WHEN (OLD.size IS DISTINCT FROM NEW.size OR OLD.span_size IS DISTINCT FROM NEW.span_size)
    EXECUTE FUNCTION summary_artifacts_change();

-- Attempts: a finished attempt (not abandoned) counts on the UTC day it
-- finished.
-- +goose StatementBegin
CREATE FUNCTION summary_count_attempt(p_finished timestamptz, p_started timestamptz, p_status text, p_bytes bigint, d int)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    dday date;
    n    bigint;
BEGIN
    IF p_finished IS NULL OR p_status = 'abandoned' THEN
        RETURN;
    END IF;
    dday := date_trunc('day', p_finished AT TIME ZONE 'UTC')::date;
    INSERT INTO summary_throughput AS t (day, finished, succeeded, skipped, failed, bytes_read, seconds)
    VALUES (dday, d, d * (p_status = 'succeeded')::int, d * (p_status = 'skipped')::int, d * (p_status = 'failed')::int,
            d * p_bytes, d * extract(epoch FROM p_finished - p_started)::double precision)
    ON CONFLICT (day) DO UPDATE SET
        finished = t.finished + excluded.finished, succeeded = t.succeeded + excluded.succeeded,
        skipped = t.skipped + excluded.skipped, failed = t.failed + excluded.failed,
        bytes_read = t.bytes_read + excluded.bytes_read, seconds = t.seconds + excluded.seconds
    RETURNING t.finished INTO n;
    IF n = 0 THEN
        DELETE FROM summary_throughput WHERE day = dday AND finished = 0;
    END IF;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION summary_job_attempts_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM summary_count_attempt(OLD.finished_at, OLD.started_at, OLD.status, OLD.bytes_read, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM summary_count_attempt(NEW.finished_at, NEW.started_at, NEW.status, NEW.bytes_read, 1);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER job_attempts_summary_insert AFTER INSERT ON job_attempts
    FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION summary_job_attempts_change();
CREATE TRIGGER job_attempts_summary_delete AFTER DELETE ON job_attempts
    FOR EACH ROW WHEN (OLD.finished_at IS NOT NULL AND OLD.status <> 'abandoned')
    EXECUTE FUNCTION summary_job_attempts_change();
CREATE TRIGGER job_attempts_summary_update AFTER UPDATE ON job_attempts
    FOR EACH ROW
    WHEN ((OLD.status, OLD.finished_at, OLD.started_at, OLD.bytes_read)
          IS DISTINCT FROM (NEW.status, NEW.finished_at, NEW.started_at, NEW.bytes_read))
    EXECUTE FUNCTION summary_job_attempts_change();

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
