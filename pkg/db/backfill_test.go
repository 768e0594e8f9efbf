package db

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBackfillProgress: progress is saved per target, adds up across
// saves, and is gone after FinishBackfill, on both backends.
func TestBackfillProgress(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]func(testing.TB) string{"postgres": newPostgresDSN, "sqlite": newSQLiteDSN} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openStore(t, dsn(t))
			if _, err := s.BackfillProgress(ctx, "reg:5000"); !errors.Is(err, ErrNoBackfillProgress) {
				t.Fatalf("progress before any save: %v, want ErrNoBackfillProgress", err)
			}
			before := time.Now().Add(-time.Second)
			if err := s.SaveBackfillProgress(ctx, "reg:5000", "team/a", 3, 10); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveBackfillProgress(ctx, "reg:5000", "team/c", 2, 5); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveBackfillProgress(ctx, "other:5000", "x", 1, 1); err != nil {
				t.Fatal(err)
			}
			p, err := s.BackfillProgress(ctx, "reg:5000")
			if err != nil {
				t.Fatal(err)
			}
			if p.Target != "reg:5000" || p.LastRepository != "team/c" || p.Repositories != 5 || p.Tags != 15 {
				t.Errorf("progress = %+v, want team/c after 5 repositories and 15 tags", p)
			}
			if p.StartedAt.Before(before) || p.UpdatedAt.Before(p.StartedAt) {
				t.Errorf("started %s, updated %s; want both after %s", p.StartedAt, p.UpdatedAt, before)
			}
			if err := s.FinishBackfill(ctx, "reg:5000"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.BackfillProgress(ctx, "reg:5000"); !errors.Is(err, ErrNoBackfillProgress) {
				t.Errorf("progress after FinishBackfill: %v, want ErrNoBackfillProgress", err)
			}
			if p, err := s.BackfillProgress(ctx, "other:5000"); err != nil || p.LastRepository != "x" {
				t.Errorf("other target's progress = %+v, %v; want x", p, err)
			}
		})
	}
}

// latestMigration is the version of the last migration file of fsys: what
// Migrate brings a database to.
func latestMigration(t *testing.T, fsys fs.FS) int64 {
	t.Helper()
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	v, err := strconv.ParseInt(strings.SplitN(files[len(files)-1], "_", 2)[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// migrationFiles is the number of migrations of fsys.
func migrationFiles(t *testing.T, fsys fs.FS) int {
	t.Helper()
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}
