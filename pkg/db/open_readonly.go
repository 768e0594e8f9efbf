package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/soci-indexer/soci-indexer/migrations"
)

// ErrNotMigrated is wrapped by OpenExisting when the database does not exist
// or its schema is behind this binary's.
var ErrNotMigrated = errors.New("database not migrated: run indexer migrate")

// OpenExisting opens a database for commands that only read it: unlike
// Open it neither creates a SQLite file nor migrates a schema. A missing
// SQLite file, or a schema behind this binary's migrations, is an error
// wrapping ErrNotMigrated.
func OpenExisting(ctx context.Context, dsn string, opts ...Option) (Store, error) {
	backend, target, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	var sqlDB *sql.DB
	switch backend {
	case BackendPostgres:
		pool, err := connectPostgres(ctx, target, o)
		if err != nil {
			return nil, err
		}
		defer pool.Close()
		sqlDB = stdlib.OpenDBFromPool(pool)
	default:
		path := sqlitePath(target)
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("db: sqlite database %s does not exist: %w to create it", path, ErrNotMigrated)
			}
			return nil, fmt.Errorf("db: sqlite database %s: %w", path, err)
		}
		if sqlDB, err = connectSQLite(ctx, target); err != nil {
			return nil, err
		}
	}
	current, known, err := schemaVersions(ctx, sqlDB, backend)
	sqlDB.Close()
	if err != nil {
		return nil, err
	}
	if current > known {
		return nil, fmt.Errorf("db: %w", &SchemaTooNewError{DatabaseVersion: current, KnownVersion: known})
	}
	if current < known {
		return nil, fmt.Errorf("db: %s schema at version %d, this binary's is %d: %w", backend, current, known, ErrNotMigrated)
	}
	// The schema is current: Open's migration step has nothing to apply.
	return Open(ctx, dsn, opts...)
}

// schemaVersions reads the database's schema version and the newest this
// binary carries, without applying anything.
func schemaVersions(ctx context.Context, sqlDB *sql.DB, backend Backend) (current, known int64, err error) {
	dialect, files := goose.DialectSQLite3, migrations.SQLite
	if backend == BackendPostgres {
		dialect, files = goose.DialectPostgres, migrations.Postgres
	}
	provider, err := goose.NewProvider(dialect, sqlDB, files, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, 0, fmt.Errorf("db: load migrations: %w", err)
	}
	// goose's GetVersions creates its version table when missing: a
	// database without one is at version 0, and stays untouched.
	exists := `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`
	if backend == BackendPostgres {
		exists = `SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'goose_db_version' AND schemaname = ANY (current_schemas(false))`
	}
	var n int
	if err := sqlDB.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("db: read schema version: %w", err)
	}
	if n == 0 {
		for _, src := range provider.ListSources() {
			known = max(known, src.Version)
		}
		return 0, known, nil
	}
	if current, known, err = provider.GetVersions(ctx); err != nil {
		return 0, 0, fmt.Errorf("db: read schema version: %w", err)
	}
	return current, known, nil
}

// sqlitePath is the file of a "file:PATH?params" SQLite DSN.
func sqlitePath(target string) string {
	p := strings.TrimPrefix(target, "file:")
	p, _, _ = strings.Cut(p, "?")
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	return p
}
