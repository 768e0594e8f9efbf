-- Core schema, as migrations/postgres/00001_schema.sql. Times are UTC text
-- with nine fractional digits ("2006-01-02T15:04:05.000000000Z") so they sort
-- as text and SQLite's date functions read them.

-- +goose Up
CREATE TABLE artifacts (
    digest          TEXT    PRIMARY KEY,
    type            TEXT    NOT NULL
        CONSTRAINT artifacts_type_check CHECK (type IN ('soci_index', 'soci_layer', 'soci_prefetch')),
    size            INTEGER NOT NULL CONSTRAINT artifacts_size_check CHECK (size >= 0),
    media_type      TEXT    NOT NULL DEFAULT '',
    artifact_type   TEXT    NOT NULL DEFAULT '',
    original_digest TEXT    NOT NULL DEFAULT '',
    image_digest    TEXT    NOT NULL DEFAULT '',
    location        TEXT    NOT NULL DEFAULT '',
    platform        TEXT    NOT NULL DEFAULT '',
    span_size       INTEGER NOT NULL DEFAULT 0,
    build_tool      TEXT    NOT NULL DEFAULT '',
    builder_version TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX artifacts_image_digest_idx ON artifacts (image_digest) WHERE type = 'soci_index';
CREATE INDEX artifacts_reusable_ztoc_idx ON artifacts (original_digest, span_size, builder_version)
    WHERE type = 'soci_layer';

CREATE TABLE artifact_locations (
    digest     TEXT NOT NULL REFERENCES artifacts (digest) ON DELETE CASCADE,
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repository)
) WITHOUT ROWID;

CREATE INDEX artifact_locations_repository_idx ON artifact_locations (registry, repository);

CREATE TABLE jobs (
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
    bytes_read   INTEGER NOT NULL DEFAULT 0,
    worker       TEXT    NOT NULL DEFAULT '',
    queued_at    TEXT    NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    CONSTRAINT jobs_image_key UNIQUE (registry, repository, digest)
);

CREATE INDEX jobs_status_idx ON jobs (status, finished_at);

CREATE TABLE job_attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL
        CONSTRAINT job_attempts_status_check CHECK (status IN ('running', 'succeeded', 'skipped', 'failed')),
    error       TEXT    NOT NULL DEFAULT '',
    bytes_read  INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;
