package db

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/soci-indexer/soci-indexer/migrations"
)

func TestSQLiteConformance(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) Store { return openStore(t, newSQLiteDSN(t)) })
}

func TestSQLiteFileDSN(t *testing.T) {
	t.Parallel()
	dsn := "file:" + t.TempDir() + "/indexer.db"
	s := openStore(t, dsn)
	mustWrite(t, s, ztocEntry(fakeDigest("layer"), 1<<22, "v1", repoA))
	s.Close()
	// Reopening finds the data and applies no migration again.
	report, err := Migrate(context.Background(), dsn)
	if err != nil || len(report.Applied) != 0 || report.From != report.To || report.To < 2 {
		t.Fatalf("Migrate on an up-to-date file = %+v, %v", report, err)
	}
	mustGet(t, openStore(t, dsn), fakeDigest("ztoc "+fakeDigest("layer")+" 4194304 v1"))
}

func TestSQLiteUpgradeKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := newSQLiteDSN(t)
	_, target, err := ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := connectSQLite(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate(ctx, sqlDB, BackendSQLite, 1, discardLogger()); err != nil {
		t.Fatal(err)
	}
	seedVersion1(t, sqlDB)
	sqlDB.Close()

	report, err := Migrate(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if latest := latestMigration(t, migrations.SQLite); report.From != 1 || report.To != latest || len(report.Applied) != migrationFiles(t, migrations.SQLite)-1 {
		t.Errorf("upgrade = %+v, want 1 → %d", report, latest)
	}
	assertSeedVersion1(t, openStore(t, dsn))
}

func TestSQLiteSchemaTooNew(t *testing.T) {
	t.Parallel()
	dsn := newSQLiteDSN(t)
	openStore(t, dsn).Close()
	_, target, _ := ParseDSN(dsn)
	sqlDB, err := sql.Open("sqlite", target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlDB.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)"); err != nil {
		t.Fatal(err)
	}
	sqlDB.Close()
	_, err = Open(context.Background(), dsn)
	var tooNew *SchemaTooNewError
	if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &tooNew) || tooNew.DatabaseVersion != 99 {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew with version 99", err)
	}
}

func TestSQLiteUpgradeBackfillsSummaries(t *testing.T) {
	t.Parallel()
	dsn := newSQLiteDSN(t)
	_, target, err := ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := connectSQLite(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	testUpgradeBackfillsSummaries(t, dsn, sqlDB, BackendSQLite)
}
