-- Where a backfill of a registry's catalog got to, as
-- migrations/postgres/00005_backfill_progress.sql.

-- +goose Up
CREATE TABLE backfill_progress (
    target          TEXT    PRIMARY KEY,
    last_repository TEXT    NOT NULL,
    repositories    INTEGER NOT NULL DEFAULT 0,
    tags            INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
