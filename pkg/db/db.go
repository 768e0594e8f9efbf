// Package db records what soci-indexer builds and does: the SOCI artifacts
// (soci-snapshotter's artifacts DB, plus the repositories that hold each
// artifact), one job per image with its attempts, and reports over both.
//
// Two backends satisfy the same Store: PostgreSQL (pgx), shared by every
// worker, and SQLite (modernc.org/sqlite), for a single machine. Open picks
// one from the DSN and brings its schema up to date.
package db

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// Store is everything the service keeps in its database.
type Store interface {
	ArtifactStore
	JobStore
	Reporter
	BackfillStore
	StatusReader
	// Locker serialises work on one key (an image's referrers update)
	// across every user of the database; each Lock holds a session.
	index.Locker
	// LockSession returns a session for the locks of one job (see
	// LockSession); it waits while every lock connection is in use.
	LockSession(ctx context.Context) (LockSession, error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the connections. Locks still held are released.
	Close() error
}

// ArtifactStore is soci's artifacts DB with what a registry-side service
// adds: batched writes, per-image layer records and image removal.
type ArtifactStore interface {
	index.ArtifactsDb
	// WriteArtifactEntries is WriteArtifactEntry for many entries in a few
	// round trips. A digest given twice is written once, the last one wins.
	WriteArtifactEntries(ctx context.Context, entries []*index.ArtifactEntry) error
	// RecordLayerUses records which zTOC each layer of the image got and
	// whether it was built or reused. The zTOCs must have been written.
	RecordLayerUses(ctx context.Context, image JobKey, uses []LayerUse) error
	// RemoveImage forgets a deleted image: its job, its layer records, and
	// the location in its repository of its index and of the zTOCs no other
	// image of that repository uses. Artifacts left with no location and no
	// use are deleted; zTOCs still used elsewhere stay.
	RemoveImage(ctx context.Context, registry, repository, imageDigest string) (*Removal, error)
	// IndexEntriesOf returns the SOCI index entries held in the repository
	// that were built for one of digests: those whose ImageDigest or
	// Location is one of them, ordered by digest. It is how a deleted image
	// finds its indexes without walking every artifact.
	IndexEntriesOf(ctx context.Context, registry, repository string, digests []string) ([]*index.ArtifactEntry, error)
}

// LayerUse is one layer of an indexed image and the zTOC it got.
type LayerUse struct {
	LayerDigest string
	LayerSize   int64
	ZtocDigest  string
	// Reused is true when the zTOC was found by FindReusableZtoc rather
	// than built from the layer.
	Reused bool
}

// Removal is what RemoveImage removed.
type Removal struct {
	// Indexes whose location in the image's repository was removed.
	Indexes []string
	// Ztocs whose location in the image's repository was removed: no other
	// image there uses them. Their blobs may be deleted from that repository.
	Ztocs []string
	// Deleted artifacts: no location and no use was left.
	Deleted []string
}

// Backend is the kind of database a DSN names.
type Backend string

const (
	BackendPostgres Backend = "postgres" // postgres:// and postgresql:// DSNs
	BackendSQLite   Backend = "sqlite"   // sqlite:// and file: DSNs
)

// Option configures Open and Migrate.
type Option func(*options)

type options struct {
	logger       *slog.Logger
	maxConns     int32
	maxLockConns int32
}

// WithLogger sets the logger for migrations and lock diagnostics. The
// default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMaxConns caps the Postgres pool for queries (pgxpool's default,
// max(4, GOMAXPROCS), otherwise).
func WithMaxConns(n int32) Option {
	return func(o *options) { o.maxConns = n }
}

// WithMaxLockConns caps how many Postgres lock sessions the store holds at
// once (default 16): each LockSession, and each Lock, keeps one connection
// of a pool of its own while it holds locks. Further ones wait for a
// connection, holding nothing: a pool smaller than the number of workers
// slows them, it cannot deadlock them.
func WithMaxLockConns(n int32) Option {
	return func(o *options) { o.maxLockConns = n }
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler), maxLockConns: 16}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Open connects to the database named by dsn, applies pending migrations and
// returns the store. DSNs:
//
//	postgres://user@host:5432/db?sslmode=disable  (also postgresql://)
//	sqlite:///var/lib/soci-indexer/indexer.db      (sqlite://PATH)
//	file:indexer.db                                 (file:PATH)
//
// A database migrated by a newer binary is refused with an error wrapping
// ErrSchemaTooNew.
func Open(ctx context.Context, dsn string, opts ...Option) (Store, error) {
	backend, target, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	switch backend {
	case BackendPostgres:
		return openPostgres(ctx, target, o)
	default:
		return openSQLite(ctx, target, o)
	}
}

// ParseDSN tells which backend dsn names and returns what that backend's
// driver takes: the URL itself for Postgres, a modernc.org/sqlite DSN for
// SQLite.
func ParseDSN(dsn string) (Backend, string, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return BackendPostgres, dsn, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		path := strings.TrimPrefix(dsn, "sqlite://")
		if path == "" || strings.HasPrefix(path, "?") {
			return "", "", fmt.Errorf("db: dsn %q: %w: sqlite:// needs a file path", dsn, ErrBadDSN)
		}
		return BackendSQLite, "file:" + path, nil
	case strings.HasPrefix(dsn, "file:"):
		if len(dsn) == len("file:") {
			return "", "", fmt.Errorf("db: dsn %q: %w: file: needs a path", dsn, ErrBadDSN)
		}
		return BackendSQLite, dsn, nil
	default:
		return "", "", fmt.Errorf("db: dsn %q: %w: want a postgres://, postgresql://, sqlite:// or file: URL", redactDSN(dsn), ErrBadDSN)
	}
}

// redactDSN hides a password an unrecognised DSN may carry.
func redactDSN(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at >= 0 {
		return "…" + dsn[at:]
	}
	return dsn
}
