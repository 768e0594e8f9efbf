package db

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// sqliteStore is the Store on a SQLite file, for one machine.
type sqliteStore struct {
	sqlReader
	jobFinisher
	db     *sql.DB
	locks  *keyedMutex
	logger *slog.Logger
}

var _ Store = (*sqliteStore)(nil)

// sqliteParams make every connection wait for a busy file instead of
// failing, let readers run beside the writer (WAL), enforce foreign keys,
// and take the write lock when a transaction begins so two writers never
// deadlock upgrading a read lock.
const sqliteParams = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
	"&_pragma=synchronous(NORMAL)&_txlock=immediate"

func openSQLite(ctx context.Context, dsn string, o options) (*sqliteStore, error) {
	sqlDB, err := connectSQLite(ctx, dsn)
	if err != nil {
		return nil, err
	}
	report, err := migrate(ctx, sqlDB, BackendSQLite, maxVersion, o.logger)
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	report.log(o.logger)
	s := &sqliteStore{
		sqlReader: sqliteReader(sqlDB),
		db:        sqlDB,
		locks:     newKeyedMutex(),
		logger:    o.logger,
	}
	s.jobFinisher = s.finish
	return s, nil
}

func connectSQLite(ctx context.Context, dsn string) (*sql.DB, error) {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	sqlDB, err := sql.Open("sqlite", dsn+sep+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("db: open sqlite %s: %w", dsn, err)
	}
	// One connection: SQLite writes one at a time anyway, and one
	// connection cannot be busy against itself. Other processes (indexer
	// report) are handled by WAL and busy_timeout.
	sqlDB.SetMaxOpenConns(1)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("db: open sqlite %s: %w", dsn, err)
	}
	return sqlDB, nil
}

func (s *sqliteStore) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *sqliteStore) Close() error { return s.db.Close() }

// Lock is an in-process lock: a SQLite file has one machine, and the
// service runs its workers in one process on it.
func (s *sqliteStore) Lock(ctx context.Context, key string) (func(), error) {
	return s.locks.Lock(ctx, key)
}

// LockSession groups in-process locks; it holds no connection.
func (s *sqliteStore) LockSession(context.Context) (LockSession, error) {
	return &localLockSession{locks: s.locks}, nil
}

func (s *sqliteStore) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// liteArtifactSelect reads artifacts with their locations as JSON, in the
// order pgArtifactSelect gives them.
const liteArtifactSelect = `SELECT ` + artifactColumns + `,
	(SELECT json_group_array(json_array(l.registry, l.repository)) FROM (SELECT registry, repository
		FROM artifact_locations WHERE digest = a.digest ORDER BY registry, repository) AS l)
FROM artifacts a`

const liteUpsertArtifact = `
INSERT INTO artifacts (digest, type, size, media_type, artifact_type, original_digest, image_digest,
	location, platform, span_size, build_tool, builder_version, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (digest) DO UPDATE SET
	type = excluded.type, size = excluded.size, media_type = excluded.media_type,
	artifact_type = excluded.artifact_type, original_digest = excluded.original_digest,
	image_digest = excluded.image_digest, location = excluded.location, platform = excluded.platform,
	span_size = excluded.span_size, build_tool = excluded.build_tool,
	builder_version = excluded.builder_version, created_at = excluded.created_at`

const liteAddLocation = `INSERT INTO artifact_locations (digest, registry, repository, added_at)
VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`

func (s *sqliteStore) WriteArtifactEntry(ctx context.Context, entry *index.ArtifactEntry) error {
	return s.WriteArtifactEntries(ctx, []*index.ArtifactEntry{entry})
}

func (s *sqliteStore) WriteArtifactEntries(ctx context.Context, entries []*index.ArtifactEntry) error {
	for _, e := range entries {
		if err := checkEntry(e); err != nil {
			return err
		}
	}
	now := time.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		upsert, err := tx.PrepareContext(ctx, liteUpsertArtifact)
		if err != nil {
			return err
		}
		defer upsert.Close()
		addLocation, err := tx.PrepareContext(ctx, liteAddLocation)
		if err != nil {
			return err
		}
		defer addLocation.Close()
		for _, e := range entries {
			createdAt := e.CreatedAt
			if createdAt.IsZero() {
				createdAt = now
			}
			if _, err := upsert.ExecContext(ctx, e.Digest, e.Type, e.Size, e.MediaType, e.ArtifactType,
				e.OriginalDigest, e.ImageDigest, e.Location, e.Platform, e.SpanSize, e.BuildToolIdentifier,
				e.BuilderVersion, formatTime(createdAt)); err != nil {
				return fmt.Errorf("%s: %w", e.Digest, err)
			}
			for _, loc := range e.Locations {
				if _, err := addLocation.ExecContext(ctx, e.Digest, loc.Registry, loc.Repository,
					formatTime(now)); err != nil {
					return fmt.Errorf("%s: %w", e.Digest, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: write artifacts: %w", sqliteError(err))
	}
	return nil
}

// queryStrings reads the one text column of every row query returns; q is
// a *sql.DB or a *sql.Tx.
func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	return queryAll(ctx, sqliteQuery(q), scanString, query, args...)
}

func (s *sqliteStore) RemoveArtifactEntryByIndexDigest(ctx context.Context, dgst string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM artifacts WHERE digest = ? AND type = 'soci_index'", dgst)
	if err != nil {
		return fmt.Errorf("db: remove index %s: %w", dgst, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	return notAnIndex(s.GetArtifactType(ctx, dgst))
}

func (s *sqliteStore) RemoveOldArtifacts(ctx context.Context, exists index.ExistsFunc) error {
	stale, err := findStale(ctx, s, exists)
	if err != nil {
		return err
	}
	if len(stale.locations) == 0 && len(stale.artifacts) == 0 {
		return nil
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		for _, l := range stale.locations {
			if _, err := tx.ExecContext(ctx, `DELETE FROM artifact_locations
				WHERE digest = ? AND registry = ? AND repository = ?`,
				l.digest, l.loc.Registry, l.loc.Repository); err != nil {
				return err
			}
		}
		for _, d := range stale.artifacts {
			if _, err := tx.ExecContext(ctx, "DELETE FROM artifacts WHERE digest = ?", d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: remove old artifacts: %w", err)
	}
	s.logger.Info("removed old artifacts", "artifacts", len(stale.artifacts), "locations", len(stale.locations))
	return nil
}

func (s *sqliteStore) RecordLayerUses(ctx context.Context, image JobKey, uses []LayerUse) error {
	now := formatTime(time.Now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, u := range uniqueLayerUses(uses) {
			_, err := tx.ExecContext(ctx, `
				INSERT INTO layer_uses (registry, repository, image_digest, layer_digest, layer_size,
					ztoc_digest, reused, recorded_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (registry, repository, image_digest, layer_digest) DO UPDATE SET
					layer_size = excluded.layer_size, ztoc_digest = excluded.ztoc_digest,
					reused = excluded.reused, recorded_at = excluded.recorded_at`,
				image.Registry, image.Repository, image.Digest, u.LayerDigest, u.LayerSize, u.ZtocDigest,
				u.Reused, now)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db: record layers of %s: %w", image, sqliteError(err))
	}
	return nil
}

func (s *sqliteStore) RemoveImage(ctx context.Context, registry, repository, imageDigest string) (*Removal, error) {
	removal := &Removal{}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		*removal = Removal{}
		used, err := queryStrings(ctx, tx, `DELETE FROM layer_uses
			WHERE registry = ? AND repository = ? AND image_digest = ? RETURNING ztoc_digest`,
			registry, repository, imageDigest)
		if err != nil {
			return err
		}
		for _, d := range uniqueStrings(used) {
			// A zTOC leaves the repository only when no other image there uses it.
			gone, err := queryStrings(ctx, tx, `DELETE FROM artifact_locations
				WHERE registry = ?1 AND repository = ?2 AND digest = ?3
				AND NOT EXISTS (SELECT 1 FROM layer_uses u
					WHERE u.ztoc_digest = ?3 AND u.registry = ?1 AND u.repository = ?2)
				RETURNING digest`, registry, repository, d)
			if err != nil {
				return err
			}
			removal.Ztocs = append(removal.Ztocs, gone...)
		}
		removal.Indexes, err = queryStrings(ctx, tx, `DELETE FROM artifact_locations
			WHERE registry = ?1 AND repository = ?2 AND digest IN (SELECT digest FROM artifacts
				WHERE type = 'soci_index' AND (image_digest = ?3 OR location = ?3))
			RETURNING digest`, registry, repository, imageDigest)
		if err != nil {
			return err
		}
		for _, d := range uniqueStrings(append(used, removal.Indexes...)) {
			gone, err := queryStrings(ctx, tx, `DELETE FROM artifacts
				WHERE digest = ?1
				AND NOT EXISTS (SELECT 1 FROM artifact_locations WHERE digest = ?1)
				AND NOT EXISTS (SELECT 1 FROM layer_uses WHERE ztoc_digest = ?1)
				RETURNING digest`, d)
			if err != nil {
				return err
			}
			removal.Deleted = append(removal.Deleted, gone...)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM jobs WHERE registry = ? AND repository = ? AND digest = ?",
			registry, repository, imageDigest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("db: remove image %s/%s@%s: %w", registry, repository, imageDigest, err)
	}
	removal.sort()
	return removal, nil
}

func uniqueStrings(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
