-- The coverage report's index, as migrations/postgres/00004_coverage_index.sql.

-- +goose Up
CREATE INDEX jobs_coverage_idx ON jobs (registry, repository, status);
