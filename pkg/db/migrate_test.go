package db

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

var seedZtoc = &index.ArtifactEntry{
	Digest:              fakeDigest("seed ztoc"),
	Size:                2048,
	Location:            fakeDigest("seed layer"),
	OriginalDigest:      fakeDigest("seed layer"),
	Type:                index.ArtifactEntryTypeLayer,
	MediaType:           "application/octet-stream",
	CreatedAt:           time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC),
	SpanSize:            1 << 22,
	BuildToolIdentifier: "seed",
	BuilderVersion:      "v0",
	Locations:           []index.Location{repoA},
}

var seedJob = JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("seed image")}

// seedVersion1 writes rows the way schema version 1 stores them, with plain
// SQL both dialects accept, as a binary of that version would have.
func seedVersion1(t *testing.T, sqlDB *sql.DB) {
	t.Helper()
	const at = "'2026-11-27T01:00:00.000000000Z'"
	for _, stmt := range []string{
		`INSERT INTO artifacts (digest, type, size, media_type, original_digest, location, span_size,
			build_tool, builder_version, created_at)
		VALUES ('` + seedZtoc.Digest + `', 'soci_layer', 2048, 'application/octet-stream', '` + seedZtoc.OriginalDigest +
			`', '` + seedZtoc.Location + `', 4194304, 'seed', 'v0', ` + at + `)`,
		`INSERT INTO artifact_locations (digest, registry, repository, added_at)
		VALUES ('` + seedZtoc.Digest + `', '` + repoA.Registry + `', '` + repoA.Repository + `', ` + at + `)`,
		`INSERT INTO jobs (registry, repository, digest, status, attempts, options_hash, bytes_read, worker,
			queued_at, started_at, finished_at)
		VALUES ('` + seedJob.Registry + `', '` + seedJob.Repository + `', '` + seedJob.Digest + `', 'succeeded', 1,
			'opts', 777, 'w0', ` + at + `, ` + at + `, ` + at + `)`,
		// An attempt its worker never closed (killed).
		`INSERT INTO job_attempts (job_id, attempt, worker, status, started_at)
		SELECT id, 1, 'w0', 'running', ` + at + ` FROM jobs WHERE digest = '` + seedJob.Digest + `'`,
	} {
		if _, err := sqlDB.Exec(stmt); err != nil {
			t.Fatalf("seed version 1: %v\n%s", err, stmt)
		}
	}
}

// assertSeedVersion1 checks that the rows seedVersion1 wrote survived the
// upgrade and work with what the later migrations added.
func assertSeedVersion1(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	assertEntry(t, mustGet(t, s, seedZtoc.Digest), seedZtoc)
	job := mustGetJob(t, s, seedJob)
	if job.Status != JobSucceeded || job.BytesRead != 777 || job.Worker != "w0" {
		t.Errorf("seeded job after upgrade = %+v", job)
	}
	if ok, err := s.IsIndexed(ctx, seedJob, "opts"); !ok || err != nil {
		t.Errorf("IsIndexed(seeded job) = %v, %v", ok, err)
	}
	// Version 2 added layer_uses and the views.
	if err := s.RecordLayerUses(ctx, seedJob, []LayerUse{{LayerDigest: seedZtoc.OriginalDigest, LayerSize: 10,
		ZtocDigest: seedZtoc.Digest}}); err != nil {
		t.Fatal(err)
	}
	coverage, err := s.Coverage(ctx)
	if err != nil || len(coverage) != 1 || coverage[0].Indexed != 1 {
		t.Errorf("Coverage after upgrade = %+v, %v", coverage, err)
	}
	largest, err := s.Largest(ctx, 5)
	if err != nil || len(largest) != 1 || largest[0].ZtocDigest != seedZtoc.Digest {
		t.Errorf("Largest after upgrade = %+v, %v", largest, err)
	}
	// Version 3: the old row is the job of its tag (none); another tag is
	// another job; the attempt left running is closed as abandoned when
	// the job starts again.
	other := seedJob
	other.Tag = "latest"
	if _, err := s.UpsertQueued(ctx, other, "test"); err != nil {
		t.Fatal(err)
	}
	if found, err := s.FindIndexed(ctx, other, "opts"); err != nil || found.Tag != seedJob.Tag {
		t.Errorf("FindIndexed after upgrade = %+v, %v", found, err)
	}
	if attempt, err := s.Start(ctx, seedJob, "w1"); err != nil || attempt != 2 {
		t.Fatalf("Start after upgrade = %d, %v", attempt, err)
	}
	attempts, err := s.Attempts(ctx, seedJob)
	if err != nil || len(attempts) != 2 || attempts[0].Status != JobAbandoned || attempts[0].FinishedAt.IsZero() ||
		attempts[1].Status != JobRunning {
		t.Errorf("attempts after a restart = %+v, %v; want abandoned, running", attempts, err)
	}
}

func TestParseDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn, target string
		backend     Backend
	}{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?sslmode=disable", BackendPostgres},
		{"postgresql://u@h/db", "postgresql://u@h/db", BackendPostgres},
		{"sqlite:///var/lib/x.db", "file:/var/lib/x.db", BackendSQLite},
		{"sqlite://rel/x.db", "file:rel/x.db", BackendSQLite},
		{"file:x.db?mode=rwc", "file:x.db?mode=rwc", BackendSQLite},
	} {
		backend, target, err := ParseDSN(tc.dsn)
		if err != nil || backend != tc.backend || target != tc.target {
			t.Errorf("ParseDSN(%q) = %s, %q, %v; want %s, %q", tc.dsn, backend, target, err, tc.backend, tc.target)
		}
	}
	for _, dsn := range []string{"", "mysql://u:secret@h/db", "sqlite://", "file:", "/tmp/x.db"} {
		_, _, err := ParseDSN(dsn)
		if err == nil {
			t.Errorf("ParseDSN(%q): no error", dsn)
			continue
		}
		if dsn == "mysql://u:secret@h/db" && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseDSN error shows the password: %v", err)
		}
	}
}
