-- Where a backfill of a registry's catalog got to: the last repository it
-- walked completely, in catalog order. A backfill that is killed or
-- cancelled resumes after it; one that finishes deletes its row, so the
-- next run starts from the beginning of the catalog.

-- +goose Up
CREATE TABLE backfill_progress (
    target          text        PRIMARY KEY,
    last_repository text        NOT NULL,
    repositories    bigint      NOT NULL DEFAULT 0,
    tags            bigint      NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
