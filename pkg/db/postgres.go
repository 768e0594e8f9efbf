package db

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// postgresStore is the Store on PostgreSQL, shared by every worker.
type postgresStore struct {
	sqlReader
	jobFinisher
	pool *pgxpool.Pool
	// lockPool holds the connections of advisory locks, apart from pool so
	// that lock holders can never starve the queries they wait to make.
	lockPool *pgxpool.Pool
	logger   *slog.Logger

	// lockConns are the connections of open lock sessions. Whoever removes
	// a connection from the map (the session or Close) owns it.
	mu        sync.Mutex
	lockConns map[*pgxpool.Conn]*pgLockSession
	closed    bool // no new lock session after Close
}

var _ Store = (*postgresStore)(nil)

func openPostgres(ctx context.Context, dsn string, o options) (*postgresStore, error) {
	pool, err := connectPostgres(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	report, err := migrate(ctx, sqlDB, BackendPostgres, maxVersion, o.logger)
	if closeErr := sqlDB.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("db: close migration handle: %w", closeErr)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	report.log(o.logger)
	lockCfg := pool.Config() // a copy
	lockCfg.MaxConns = o.maxLockConns
	lockCfg.MinConns = 0
	lockPool, err := pgxpool.NewWithConfig(ctx, lockCfg) // connects on first Lock
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: lock pool: %w", err)
	}
	s := &postgresStore{
		sqlReader: postgresReader(pool),
		pool:      pool,
		lockPool:  lockPool,
		logger:    o.logger,
		lockConns: make(map[*pgxpool.Conn]*pgLockSession),
	}
	s.jobFinisher = s.finish
	return s, nil
}

// connectPostgres opens a pool and proves it can reach the server, so a bad
// DSN fails at start-up naming the host rather than at the first job.
func connectPostgres(ctx context.Context, dsn string, o options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("db: postgres dsn: %w", err)
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	addr := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: connect to postgres at %s: %w", addr, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: connect to postgres at %s: %w", addr, err)
	}
	return pool, nil
}

func (s *postgresStore) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes the connections that hold locks, which releases the locks,
// then the pool; pgxpool would otherwise wait for them to be unlocked.
func (s *postgresStore) Close() error {
	s.mu.Lock()
	held := s.lockConns
	s.lockConns = map[*pgxpool.Conn]*pgLockSession{}
	s.closed = true
	s.mu.Unlock()
	for conn, l := range held {
		l.closeForStore(conn)
	}
	s.lockPool.Close()
	s.pool.Close()
	return nil
}

// Lock takes one advisory lock on a session of its own (LockSession).
func (s *postgresStore) Lock(ctx context.Context, key string) (func(), error) {
	return lockAlone(ctx, s, key)
}

// LockSession returns a session on one connection of the lock pool. Its
// locks are session-level advisory locks: they are held exactly as long as
// the caller wants and die with the connection if the process does.
func (s *postgresStore) LockSession(ctx context.Context) (LockSession, error) {
	conn, err := s.lockPool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("db: lock session: %w", err)
	}
	l := &pgLockSession{store: s, conn: conn, held: map[string]int{}}
	l.stopCtx, l.stop = context.WithCancel(context.Background())
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.lockConns[conn] = l
	}
	s.mu.Unlock()
	if closed {
		// Close ran while the connection was being acquired: the pool's Close
		// waits for it.
		conn.Release()
		return nil, fmt.Errorf("db: lock session: %w", errStoreClosed)
	}
	return l, nil
}

// pgLockSession is a LockSession on one Postgres connection. The
// connection serves one query at a time, so a lock taken while the session
// already holds one is polled with pg_try_advisory_lock: a blocking wait
// would keep the session's own unlocks from running. The first lock of a
// session, while it holds none, blocks in pg_advisory_lock.
type pgLockSession struct {
	store *postgresStore
	// stopCtx ends the session's query in flight when the store closes.
	stopCtx context.Context
	stop    context.CancelFunc
	mu      sync.Mutex // serialises the connection
	conn    *pgxpool.Conn
	held    map[string]int
}

// queryContext is ctx, also ended when the store closes.
func (l *pgLockSession) queryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.stopCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// closeForStore is the store's Close of a session still open: it ends the
// query in flight, then closes conn, which drops its locks. Close took conn
// out of the map, so it is the store's to close even if the session has
// let go of it meanwhile (closeLocked found it not owned).
func (l *pgLockSession) closeForStore(conn *pgxpool.Conn) {
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn, l.held = nil, nil
	closeHijacked(conn)
}

// Lock polling backs off from lockPollMin to lockPollMax.
const (
	lockPollMin = 2 * time.Millisecond
	lockPollMax = 100 * time.Millisecond
)

func (l *pgLockSession) Lock(ctx context.Context, key string) (func(), error) {
	delay := lockPollMin
	for {
		ok, err := l.tryLock(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("db: lock %q: %w", key, err)
		}
		if ok {
			var once sync.Once
			return func() { once.Do(func() { l.unlock(key) }) }, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("db: lock %q: %w", key, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, lockPollMax)
	}
}

// tryLock takes key if it is free; a session that holds nothing waits for
// it. The same key twice in one session waits for the first unlock (Postgres
// would grant it twice).
func (l *pgLockSession) tryLock(ctx context.Context, key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return false, errLockSessionClosed
	}
	if l.held[key] > 0 {
		return false, nil
	}
	ok := true
	var err error
	qctx, done := l.queryContext(ctx)
	defer done()
	if len(l.held) == 0 {
		_, err = l.conn.Exec(qctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
	} else {
		err = l.conn.QueryRow(qctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&ok)
	}
	if err != nil {
		// The lock may have been granted just as ctx ended; closing the
		// session is the only sure way to drop it, and drops the others.
		l.closeLocked(true)
		return false, err
	}
	if ok {
		l.held[key]++
	}
	return ok, nil
}

func (l *pgLockSession) unlock(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.held[key] == 0 {
		return
	}
	if l.held[key]--; l.held[key] == 0 {
		delete(l.held, key)
	}
	ctx, cancel := l.queryContext(context.Background())
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Second)
	defer cancelTimeout()
	var released bool
	err := l.conn.QueryRow(ctx, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key).Scan(&released)
	if err != nil || !released {
		l.store.logger.Warn("advisory unlock failed; closing the session to release it", "key", key,
			"error", err, "also_released", len(l.held))
		l.closeLocked(true)
	}
}

// Close releases the session's locks and returns its connection.
func (l *pgLockSession) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	if len(l.held) > 0 {
		ctx, cancel := l.queryContext(context.Background())
		defer cancel()
		ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Second)
		defer cancelTimeout()
		if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
			l.closeLocked(true)
			return
		}
	}
	l.closeLocked(false)
}

// closeLocked gives the connection back (or closes it, dropping every
// lock) unless the store's Close has taken it already.
func (l *pgLockSession) closeLocked(hijack bool) {
	conn := l.conn
	l.conn, l.held = nil, nil
	l.stop()
	l.store.mu.Lock()
	_, owned := l.store.lockConns[conn]
	delete(l.store.lockConns, conn)
	l.store.mu.Unlock()
	if !owned {
		return
	}
	if hijack {
		closeHijacked(conn)
		return
	}
	conn.Release()
}

func closeHijacked(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Hijack().Close(ctx)
}

// pgArtifactSelect reads artifacts with their locations as JSON.
const pgArtifactSelect = `SELECT ` + artifactColumns + `,
	coalesce((SELECT json_agg(json_build_array(l.registry, l.repository) ORDER BY l.registry, l.repository)
		FROM artifact_locations l WHERE l.digest = a.digest), '[]')
FROM artifacts a`

// pgWriteArtifact upserts one artifact and adds its locations in one round
// trip: the locations insert reads the digest the upsert returns.
const pgWriteArtifact = `
WITH artifact AS (
	INSERT INTO artifacts (digest, type, size, media_type, artifact_type, original_digest, image_digest,
		location, platform, span_size, build_tool, builder_version, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13::timestamptz, now()))
	ON CONFLICT (digest) DO UPDATE SET
		type = excluded.type, size = excluded.size, media_type = excluded.media_type,
		artifact_type = excluded.artifact_type, original_digest = excluded.original_digest,
		image_digest = excluded.image_digest, location = excluded.location, platform = excluded.platform,
		span_size = excluded.span_size, build_tool = excluded.build_tool,
		builder_version = excluded.builder_version, created_at = excluded.created_at
	RETURNING digest
)
INSERT INTO artifact_locations (digest, registry, repository)
SELECT artifact.digest, l.registry, l.repository
FROM artifact, unnest($14::text[], $15::text[]) AS l (registry, repository)
ON CONFLICT DO NOTHING`

func (s *postgresStore) WriteArtifactEntry(ctx context.Context, entry *index.ArtifactEntry) error {
	if err := checkEntry(entry); err != nil {
		return err
	}
	var createdAt *time.Time
	if !entry.CreatedAt.IsZero() {
		t := storedTime(entry.CreatedAt)
		createdAt = &t
	}
	registries, repositories := splitLocations(entry.Locations)
	_, err := s.pool.Exec(ctx, pgWriteArtifact,
		entry.Digest, entry.Type, entry.Size, entry.MediaType, entry.ArtifactType, entry.OriginalDigest,
		entry.ImageDigest, entry.Location, entry.Platform, entry.SpanSize, entry.BuildToolIdentifier,
		entry.BuilderVersion, createdAt, registries, repositories)
	if err != nil {
		return fmt.Errorf("db: write artifact %s: %w", entry.Digest, pgError(err))
	}
	return nil
}

var pgArtifactStagingColumns = []string{"ord", "digest", "type", "size", "media_type", "artifact_type",
	"original_digest", "image_digest", "location", "platform", "span_size", "build_tool", "builder_version", "created_at"}

// WriteArtifactEntries copies the entries into temporary tables and upserts
// from there: two COPYs and two statements for any number of entries.
func (s *postgresStore) WriteArtifactEntries(ctx context.Context, entries []*index.ArtifactEntry) error {
	if len(entries) == 0 {
		return nil
	}
	now := time.Now()
	artifactRows := make([][]any, 0, len(entries))
	var locationRows [][]any
	for i, e := range entries {
		if err := checkEntry(e); err != nil {
			return err
		}
		createdAt := e.CreatedAt
		if createdAt.IsZero() {
			createdAt = now
		}
		createdAt = storedTime(createdAt)
		artifactRows = append(artifactRows, []any{int64(i), e.Digest, string(e.Type), e.Size, e.MediaType,
			e.ArtifactType, e.OriginalDigest, e.ImageDigest, e.Location, e.Platform, e.SpanSize,
			e.BuildToolIdentifier, e.BuilderVersion, createdAt})
		for _, loc := range e.Locations {
			locationRows = append(locationRows, []any{e.Digest, loc.Registry, loc.Repository})
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			CREATE TEMP TABLE artifacts_staging (ord bigint, LIKE artifacts) ON COMMIT DROP;
			CREATE TEMP TABLE artifact_locations_staging (digest text, registry text, repository text) ON COMMIT DROP`)
		if err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"artifacts_staging"}, pgArtifactStagingColumns,
			pgx.CopyFromRows(artifactRows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"artifact_locations_staging"},
			[]string{"digest", "registry", "repository"}, pgx.CopyFromRows(locationRows)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO artifacts (digest, type, size, media_type, artifact_type, original_digest, image_digest,
				location, platform, span_size, build_tool, builder_version, created_at)
			SELECT DISTINCT ON (digest) digest, type, size, media_type, artifact_type, original_digest, image_digest,
				location, platform, span_size, build_tool, builder_version, created_at
			FROM artifacts_staging
			ORDER BY digest, ord DESC
			ON CONFLICT (digest) DO UPDATE SET
				type = excluded.type, size = excluded.size, media_type = excluded.media_type,
				artifact_type = excluded.artifact_type, original_digest = excluded.original_digest,
				image_digest = excluded.image_digest, location = excluded.location, platform = excluded.platform,
				span_size = excluded.span_size, build_tool = excluded.build_tool,
				builder_version = excluded.builder_version, created_at = excluded.created_at`)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO artifact_locations (digest, registry, repository)
			SELECT DISTINCT digest, registry, repository FROM artifact_locations_staging
			ON CONFLICT DO NOTHING`)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: write %d artifacts: %w", len(entries), pgError(err))
	}
	return nil
}

func (s *postgresStore) RemoveArtifactEntryByIndexDigest(ctx context.Context, dgst string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM artifacts WHERE digest = $1 AND type = 'soci_index'", dgst)
	if err != nil {
		return fmt.Errorf("db: remove index %s: %w", dgst, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return notAnIndex(s.GetArtifactType(ctx, dgst))
}

func (s *postgresStore) RemoveOldArtifacts(ctx context.Context, exists index.ExistsFunc) error {
	stale, err := findStale(ctx, s, exists)
	if err != nil {
		return err
	}
	if len(stale.locations) == 0 && len(stale.artifacts) == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		digests, registries, repositories := stale.locationColumns()
		if _, err := tx.Exec(ctx, `DELETE FROM artifact_locations l
			USING unnest($1::text[], $2::text[], $3::text[]) AS s (digest, registry, repository)
			WHERE l.digest = s.digest AND l.registry = s.registry AND l.repository = s.repository`,
			digests, registries, repositories); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM artifacts WHERE digest = ANY($1)", stale.artifacts)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: remove old artifacts: %w", err)
	}
	s.logger.Info("removed old artifacts", "artifacts", len(stale.artifacts), "locations", len(stale.locations))
	return nil
}

func (s *postgresStore) RecordLayerUses(ctx context.Context, image JobKey, uses []LayerUse) error {
	// In layer digest order: the summary rows the triggers update
	// (summary_layers, keyed by layer digest first) are then locked in the
	// same order by every writer, as RemoveImage's delete does, so two
	// images sharing base layers cannot deadlock.
	uses = slices.SortedFunc(slices.Values(uniqueLayerUses(uses)), func(a, b LayerUse) int {
		return strings.Compare(a.LayerDigest, b.LayerDigest)
	})
	if len(uses) == 0 {
		return nil
	}
	layers := make([]string, len(uses))
	sizes := make([]int64, len(uses))
	ztocs := make([]string, len(uses))
	reused := make([]bool, len(uses))
	for i, u := range uses {
		layers[i], sizes[i], ztocs[i], reused[i] = u.LayerDigest, u.LayerSize, u.ZtocDigest, u.Reused
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO layer_uses (registry, repository, image_digest, layer_digest, layer_size, ztoc_digest, reused)
		SELECT $1, $2, $3, u.layer_digest, u.layer_size, u.ztoc_digest, u.reused
		FROM unnest($4::text[], $5::bigint[], $6::text[], $7::boolean[]) AS u (layer_digest, layer_size, ztoc_digest, reused)
		ON CONFLICT (registry, repository, image_digest, layer_digest) DO UPDATE SET
			layer_size = excluded.layer_size, ztoc_digest = excluded.ztoc_digest,
			reused = excluded.reused, recorded_at = now()`,
		image.Registry, image.Repository, image.Digest, layers, sizes, ztocs, reused)
	if err != nil {
		return fmt.Errorf("db: record layers of %s: %w", image, pgError(err))
	}
	return nil
}

func (s *postgresStore) RemoveImage(ctx context.Context, registry, repository, imageDigest string) (*Removal, error) {
	removal := &Removal{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		*removal = Removal{}
		rows, err := tx.Query(ctx, `DELETE FROM layer_uses
			WHERE registry = $1 AND repository = $2 AND image_digest = $3 RETURNING ztoc_digest`,
			registry, repository, imageDigest)
		if err != nil {
			return err
		}
		used, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// A zTOC leaves the repository only when no other image there uses it.
		rows, err = tx.Query(ctx, `DELETE FROM artifact_locations l
			WHERE l.registry = $1 AND l.repository = $2 AND l.digest = ANY($3)
			AND NOT EXISTS (SELECT 1 FROM layer_uses u
				WHERE u.ztoc_digest = l.digest AND u.registry = $1 AND u.repository = $2)
			RETURNING l.digest`, registry, repository, used)
		if err != nil {
			return err
		}
		if removal.Ztocs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `DELETE FROM artifact_locations l USING artifacts a
			WHERE a.digest = l.digest AND a.type = 'soci_index' AND (a.image_digest = $3 OR a.location = $3)
			AND l.registry = $1 AND l.repository = $2
			RETURNING l.digest`, registry, repository, imageDigest)
		if err != nil {
			return err
		}
		if removal.Indexes, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `DELETE FROM artifacts a
			WHERE a.digest = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM artifact_locations l WHERE l.digest = a.digest)
			AND NOT EXISTS (SELECT 1 FROM layer_uses u WHERE u.ztoc_digest = a.digest)
			RETURNING a.digest`, append(append([]string{}, used...), removal.Indexes...))
		if err != nil {
			return err
		}
		if removal.Deleted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM jobs WHERE registry = $1 AND repository = $2 AND digest = $3",
			registry, repository, imageDigest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("db: remove image %s/%s@%s: %w", registry, repository, imageDigest, err)
	}
	removal.sort()
	return removal, nil
}
