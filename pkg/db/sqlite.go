package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// sqliteStore is the Store on a SQLite file, for one machine.
type sqliteStore struct {
	sqlReporter
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
	return &sqliteStore{sqlReporter: sqliteReporter(sqlDB), db: sqlDB, locks: newKeyedMutex(), logger: o.logger}, nil
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

func (s *sqliteStore) GetArtifactEntry(ctx context.Context, dgst string) (*index.ArtifactEntry, error) {
	e, err := scanArtifact(s.db.QueryRowContext(ctx, liteArtifactSelect+" WHERE a.digest = ?", dgst))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("db: %s: %w", dgst, index.ErrArtifactNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("db: get artifact %s: %w", dgst, err)
	}
	return e, nil
}

func (s *sqliteStore) GetArtifactType(ctx context.Context, dgst string) (index.ArtifactEntryType, error) {
	var t index.ArtifactEntryType
	err := s.db.QueryRowContext(ctx, "SELECT type FROM artifacts WHERE digest = ?", dgst).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("db: %s: %w", dgst, index.ErrArtifactNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("db: get artifact type %s: %w", dgst, err)
	}
	return t, nil
}

// queryArtifacts runs a query of liteArtifactSelect and reads every row.
func (s *sqliteStore) queryArtifacts(ctx context.Context, query string, args ...any) ([]*index.ArtifactEntry, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*index.ArtifactEntry
	for rows.Next() {
		e, err := scanArtifact(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *sqliteStore) Walk(ctx context.Context, f func(*index.ArtifactEntry) error) error {
	after := ""
	for {
		page, err := s.queryArtifacts(ctx, liteArtifactSelect+" WHERE a.digest > ? ORDER BY a.digest LIMIT ?",
			after, walkPageSize)
		if err != nil {
			return fmt.Errorf("db: walk artifacts: %w", err)
		}
		for _, e := range page {
			if err := f(e); err != nil {
				return err
			}
		}
		if len(page) < walkPageSize {
			return nil
		}
		after = page[len(page)-1].Digest
	}
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *sqliteStore) GetArtifactEntriesByImageDigest(ctx context.Context, imageDigest string) ([]string, error) {
	digests, err := queryStrings(ctx, s.db, `SELECT digest FROM artifacts
		WHERE type = 'soci_index' AND image_digest = ? AND media_type = ? ORDER BY digest`,
		imageDigest, ociManifestMediaType)
	if err != nil {
		return nil, fmt.Errorf("db: indexes of image %s: %w", imageDigest, err)
	}
	return digests, nil
}

func (s *sqliteStore) IndexEntriesOf(ctx context.Context, registry, repository string, digests []string) ([]*index.ArtifactEntry, error) {
	if len(digests) == 0 {
		return nil, nil
	}
	// The digests go in as one JSON array: SQLite has no array parameters.
	list, err := json.Marshal(digests)
	if err != nil {
		return nil, fmt.Errorf("db: indexes of %s/%s: %w", registry, repository, err)
	}
	entries, err := s.queryArtifacts(ctx, liteArtifactSelect+`
		WHERE a.type = 'soci_index'
		AND (a.image_digest IN (SELECT value FROM json_each(?3)) OR a.location IN (SELECT value FROM json_each(?3)))
		AND EXISTS (SELECT 1 FROM artifact_locations l
			WHERE l.digest = a.digest AND l.registry = ?1 AND l.repository = ?2)
		ORDER BY a.digest`, registry, repository, string(list))
	if err != nil {
		return nil, fmt.Errorf("db: indexes of %s/%s@%v: %w", registry, repository, digests, err)
	}
	return entries, nil
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

func (s *sqliteStore) FindReusableZtoc(ctx context.Context, layerDigest digest.Digest, spanSize int64, builderVersion string) (*index.ArtifactEntry, error) {
	found, err := s.queryArtifacts(ctx, liteArtifactSelect+`
		WHERE a.type = 'soci_layer' AND a.original_digest = ? AND a.span_size = ? AND a.builder_version = ?
		ORDER BY a.created_at DESC, a.digest LIMIT 1`, layerDigest.String(), spanSize, builderVersion)
	if err != nil {
		return nil, fmt.Errorf("db: find zTOC for layer %s: %w", layerDigest, err)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("db: zTOC for layer %s (span %d, builder %q): %w",
			layerDigest, spanSize, builderVersion, index.ErrArtifactNotFound)
	}
	return found[0], nil
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
