package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// TestMigrateAndReportCommands runs indexer migrate on a new database of
// each backend, then indexer report over jobs recorded through the store.
func TestMigrateAndReportCommands(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "indexer.db") },
		"postgres": func(t *testing.T) string {
			dsn, _ := testpg.NewDatabase(t, "cli")
			return dsn
		},
	}
	for name, newDSN := range backends {
		t.Run(name, func(t *testing.T) {
			dsn := newDSN(t)
			out, err := runIndexCmd(t, "migrate", "--database-url", dsn)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			if len(lines) < 2 || !strings.HasPrefix(lines[0], "applied ") ||
				!strings.HasPrefix(last, name+" schema at version ") || !strings.HasSuffix(last, "(was 0)") {
				t.Fatalf("first migrate printed:\n%s", out)
			}
			version := strings.Fields(last)[4]
			out, err = runIndexCmd(t, "migrate", "--database-url", dsn)
			if want := name + " schema at version " + version + " (was " + version + ")\n"; err != nil || out != want {
				t.Fatalf("second migrate: %v, printed %q, want %q", err, out, want)
			}

			ctx := context.Background()
			store, err := db.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			key := func(repo, s string) db.JobKey {
				return db.JobKey{Registry: "reg.test:5000", Repository: repo, Digest: digest.FromString(s).String(), Tag: "v1"}
			}
			for _, step := range []error{
				run(ctx, store, key("team/app", "a"), nil),
				run(ctx, store, key("team/app", "b"), errors.New("layer sha256:1: 401 unauthorized")),
				run(ctx, store, key("team/web", "c"), nil),
			} {
				if step != nil {
					t.Fatal(step)
				}
			}
			if _, err := store.UpsertQueued(ctx, key("team/app", "d"), "webhook"); err != nil {
				t.Fatal(err)
			}
			store.Close()

			out, err = runIndexCmd(t, "report", "coverage", "--database-url", dsn, "--json")
			if err != nil {
				t.Fatal(err)
			}
			var coverage []db.CoverageRow
			if err := json.Unmarshal([]byte(out), &coverage); err != nil {
				t.Fatalf("coverage --json %q: %v", out, err)
			}
			want := []db.CoverageRow{
				{Registry: "reg.test:5000", Repository: "team/app", Images: 3, Indexed: 1, Failed: 1, Pending: 1},
				{Registry: "reg.test:5000", Repository: "team/web", Images: 1, Indexed: 1},
			}
			if len(coverage) != len(want) || coverage[0] != want[0] || coverage[1] != want[1] {
				t.Errorf("coverage = %+v, want %+v", coverage, want)
			}

			out, err = runIndexCmd(t, "report", "failures", "--database-url", dsn)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out, "REGISTRY") || !strings.Contains(out, "401 unauthorized") ||
				strings.Count(strings.TrimSpace(out), "\n") != 1 {
				t.Errorf("failures table:\n%s", out)
			}
			for _, report := range db.ReportNames {
				if _, err := runIndexCmd(t, "report", report, "--database-url", dsn, "--json"); err != nil {
					t.Errorf("report %s: %v", report, err)
				}
			}
		})
	}

	for _, args := range [][]string{
		{"report", "nonsense", "--database-url", "sqlite://" + filepath.Join(t.TempDir(), "x.db")},
		{"report", "coverage", "--database-url", "mysql://x"},
		{"migrate", "--database-url", "nonsense"},
	} {
		if _, err := runIndexCmd(t, args...); err == nil {
			t.Errorf("indexer %v: no error", args)
		}
	}
	t.Setenv("INDEXER_DATABASE_URL", "")
	if _, err := runIndexCmd(t, "migrate"); !errors.Is(err, errNoDSN) {
		t.Errorf("migrate without a DSN: %v, want errNoDSN", err)
	}
}

// run records one attempt of the image's job: success when cause is nil,
// otherwise a permanent failure.
func run(ctx context.Context, store db.Store, key db.JobKey, cause error) error {
	if _, err := store.UpsertQueued(ctx, key, "webhook"); err != nil {
		return err
	}
	if _, err := store.Start(ctx, key, "worker-1"); err != nil {
		return err
	}
	if cause != nil {
		return store.Fail(ctx, key, cause, true)
	}
	return store.Succeed(ctx, key, db.JobResult{BytesRead: 1 << 20, OptionsHash: "h"})
}

// TestReportNeverCreatesOrMigrates: report reads; a missing SQLite file or
// a Postgres database without the schema is an error, and stays as it was.
func TestReportNeverCreatesOrMigrates(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.db")
	_, err := runIndexCmd(t, "report", "coverage", "--database-url", "sqlite://"+missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, db.ErrNotMigrated) {
		t.Errorf("report on a missing SQLite file: %v", err)
	}
	if _, statErr := os.Stat(missing); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("report created %s (%v)", missing, statErr)
	}

	dsn, _ := testpg.NewDatabase(t, "cliro")
	_, err = runIndexCmd(t, "report", "coverage", "--database-url", dsn)
	if err == nil || !strings.Contains(err.Error(), "run indexer migrate") {
		t.Errorf("report on an unmigrated Postgres database: %v", err)
	}
	if _, err := runIndexCmd(t, "migrate", "--database-url", dsn); err != nil {
		t.Fatal(err)
	}
	if _, err := runIndexCmd(t, "report", "coverage", "--database-url", dsn); err != nil {
		t.Errorf("report after migrate: %v", err)
	}
}
