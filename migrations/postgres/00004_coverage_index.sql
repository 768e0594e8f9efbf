-- The coverage report groups every job by repository and counts statuses.
-- At a million jobs a sequential scan and hash aggregation takes ~300 ms;
-- with this index it is an index-only scan in repository order (~120 ms,
-- docs/bench/db.md).

-- +goose Up
CREATE INDEX jobs_coverage_idx ON jobs (registry, repository, status);
