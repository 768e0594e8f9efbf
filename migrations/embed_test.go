package migrations

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// Both dialects must carry the same migrations, so a version number means
// the same schema whichever database a deployment uses.
func TestDialectsHaveTheSameMigrations(t *testing.T) {
	names := func(fsys fs.FS) []string {
		t.Helper()
		files, err := fs.Glob(fsys, "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	pg, lite := names(Postgres), names(SQLite)
	if len(pg) < 2 {
		t.Fatalf("postgres migrations = %v, want at least 2", pg)
	}
	if !slices.Equal(pg, lite) {
		t.Errorf("postgres has %v, sqlite has %v", pg, lite)
	}
	for _, name := range pg {
		for dialect, fsys := range map[string]fs.FS{"postgres": Postgres, "sqlite": SQLite} {
			body, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(body), "-- +goose Up") {
				t.Errorf("%s/%s has no -- +goose Up annotation", dialect, name)
			}
			if strings.Contains(string(body), "-- +goose Down") {
				t.Errorf("%s/%s has a down section; migrations are forward-only", dialect, name)
			}
		}
	}
}
