-- Core schema: the SOCI artifacts made (soci's artifacts DB, with the
-- repositories that hold each one) and one job per image.

-- +goose Up
CREATE TABLE artifacts (
    digest          text        PRIMARY KEY,
    type            text        NOT NULL
        CONSTRAINT artifacts_type_check CHECK (type IN ('soci_index', 'soci_layer', 'soci_prefetch')),
    size            bigint      NOT NULL CONSTRAINT artifacts_size_check CHECK (size >= 0),
    media_type      text        NOT NULL DEFAULT '',
    artifact_type   text        NOT NULL DEFAULT '',
    -- index: platform manifest digest; zTOC and prefetch: layer digest.
    original_digest text        NOT NULL DEFAULT '',
    -- index: digest of the image it was built for.
    image_digest    text        NOT NULL DEFAULT '',
    -- soci's meaning: index: image manifest digest; zTOC: layer digest.
    location        text        NOT NULL DEFAULT '',
    platform        text        NOT NULL DEFAULT '',
    span_size       bigint      NOT NULL DEFAULT 0,
    build_tool      text        NOT NULL DEFAULT '',
    builder_version text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX artifacts_image_digest_idx ON artifacts (image_digest) WHERE type = 'soci_index';
-- FindReusableZtoc.
CREATE INDEX artifacts_reusable_ztoc_idx ON artifacts (original_digest, span_size, builder_version)
    WHERE type = 'soci_layer';

-- The repositories that hold an artifact. A zTOC reused in many repositories
-- is one artifact with several locations.
CREATE TABLE artifact_locations (
    digest     text        NOT NULL REFERENCES artifacts (digest) ON DELETE CASCADE,
    registry   text        NOT NULL,
    repository text        NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, registry, repository)
);

CREATE INDEX artifact_locations_repository_idx ON artifact_locations (registry, repository);

-- One job per image: the last state of indexing registry/repository@digest.
CREATE TABLE jobs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry     text        NOT NULL,
    repository   text        NOT NULL,
    digest       text        NOT NULL,
    source       text        NOT NULL DEFAULT '',
    tag          text        NOT NULL DEFAULT '',
    status       text        NOT NULL
        CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'succeeded', 'skipped', 'failed')),
    skip_reason  text        NOT NULL DEFAULT '',
    last_error   text        NOT NULL DEFAULT '',
    attempts     integer     NOT NULL DEFAULT 0,
    options_hash text        NOT NULL DEFAULT '',
    bytes_read   bigint      NOT NULL DEFAULT 0,
    worker       text        NOT NULL DEFAULT '',
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CONSTRAINT jobs_image_key UNIQUE (registry, repository, digest)
);

CREATE INDEX jobs_status_idx ON jobs (status, finished_at);

-- Every run of a job, for the history a single jobs row overwrites.
CREATE TABLE job_attempts (
    job_id      bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    worker      text        NOT NULL DEFAULT '',
    status      text        NOT NULL
        CONSTRAINT job_attempts_status_check CHECK (status IN ('running', 'succeeded', 'skipped', 'failed')),
    error       text        NOT NULL DEFAULT '',
    bytes_read  bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (job_id, attempt)
);
