package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/soci-indexer/soci-indexer/migrations"
)

// MigrationReport is what Migrate did.
type MigrationReport struct {
	Backend Backend
	// From and To are the schema versions before and after (0: empty).
	From, To int64
	Applied  []AppliedMigration
}

// AppliedMigration is one migration file applied.
type AppliedMigration struct {
	Version  int64
	File     string
	Duration time.Duration
}

func (r *MigrationReport) log(logger *slog.Logger) {
	for _, m := range r.Applied {
		logger.Info("applied database migration", "backend", r.Backend, "file", m.File, "duration", m.Duration)
	}
}

// Migrate brings the database named by dsn to the latest schema, as Open
// does, and says what it applied.
func Migrate(ctx context.Context, dsn string, opts ...Option) (*MigrationReport, error) {
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
		if sqlDB, err = connectSQLite(ctx, target); err != nil {
			return nil, err
		}
	}
	defer sqlDB.Close()
	return migrate(ctx, sqlDB, backend, maxVersion, o.logger)
}

// maxVersion stands for the newest migration.
const maxVersion = math.MaxInt64

// migrate applies the migrations up to version toVersion (tests stop short
// of the latest to test upgrades).
func migrate(ctx context.Context, sqlDB *sql.DB, backend Backend, toVersion int64, logger *slog.Logger) (*MigrationReport, error) {
	dialect, files := goose.DialectSQLite3, migrations.SQLite
	providerOpts := []goose.ProviderOption{
		goose.WithSlog(logger),
		goose.WithDisableGlobalRegistry(true),
	}
	if backend == BackendPostgres {
		dialect, files = goose.DialectPostgres, migrations.Postgres
		// Workers starting together must not run the same migration twice.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("db: migration lock: %w", err)
		}
		providerOpts = append(providerOpts, goose.WithSessionLocker(locker))
	}
	provider, err := goose.NewProvider(dialect, sqlDB, files, providerOpts...)
	if err != nil {
		return nil, fmt.Errorf("db: load migrations: %w", err)
	}
	current, known, err := provider.GetVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("db: read schema version: %w", err)
	}
	if current > known {
		return nil, fmt.Errorf("db: %w", &SchemaTooNewError{DatabaseVersion: current, KnownVersion: known})
	}
	report := &MigrationReport{Backend: backend, From: current, To: current}
	results, err := provider.UpTo(ctx, toVersion)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		report.Applied = append(report.Applied, AppliedMigration{
			Version: r.Source.Version, File: r.Source.Path, Duration: r.Duration,
		})
		report.To = r.Source.Version
	}
	if err != nil {
		var partial *goose.PartialError
		if errors.As(err, &partial) && partial.Failed != nil {
			return report, fmt.Errorf("db: migration %s: %w", partial.Failed.Source.Path, partial.Err)
		}
		return report, fmt.Errorf("db: migrate: %w", err)
	}
	return report, nil
}
