package db

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// rowScanner is a pgx.Row, *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// timeLayout is how SQLite stores times: fixed width, so text order is time
// order, and readable by SQLite's date functions.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// storedTime is t as both backends keep it: UTC, to the microsecond
// (Postgres's precision).
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func formatTime(t time.Time) string { return storedTime(t).Format(timeLayout) }

// dbTime scans a timestamp from either backend: time.Time from pgx, text
// from SQLite, NULL as the zero time.
type dbTime struct{ time.Time }

func (t *dbTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = v.UTC()
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	default:
		return fmt.Errorf("db: cannot scan %T into a time", src)
	}
	return nil
}

func (t *dbTime) parse(s string) error {
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("db: bad time %q: %w", s, err)
	}
	t.Time = parsed.UTC()
	return nil
}

// Value lets a dbTime be a SQLite parameter.
func (t dbTime) Value() (driver.Value, error) {
	if t.IsZero() {
		return nil, nil
	}
	return formatTime(t.Time), nil
}

// locationsJSON scans the JSON array of [registry, repository] pairs both
// backends aggregate an artifact's locations into.
type locationsJSON []index.Location

func (l *locationsJSON) Scan(src any) error {
	var raw []byte
	switch v := src.(type) {
	case nil:
		*l = nil
		return nil
	case string:
		raw = []byte(v)
	case []byte:
		raw = v
	default:
		return fmt.Errorf("db: cannot scan %T into locations", src)
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return fmt.Errorf("db: bad locations %q: %w", raw, err)
	}
	locs := make([]index.Location, 0, len(pairs))
	for _, p := range pairs {
		locs = append(locs, index.Location{Registry: p[0], Repository: p[1]})
	}
	*l = locs
	return nil
}

// artifactColumns is the select list scanArtifact reads, for an artifacts
// table aliased "a"; both backends build the locations array with it.
const artifactColumns = `a.digest, a.type, a.size, a.media_type, a.artifact_type, a.original_digest,
	a.image_digest, a.location, a.platform, a.span_size, a.build_tool, a.builder_version, a.created_at`

func scanArtifact(row rowScanner) (*index.ArtifactEntry, error) {
	var (
		e         index.ArtifactEntry
		createdAt dbTime
		locs      locationsJSON
	)
	err := row.Scan(&e.Digest, &e.Type, &e.Size, &e.MediaType, &e.ArtifactType, &e.OriginalDigest,
		&e.ImageDigest, &e.Location, &e.Platform, &e.SpanSize, &e.BuildToolIdentifier, &e.BuilderVersion,
		&createdAt, &locs)
	if err != nil {
		return nil, err
	}
	e.CreatedAt = createdAt.Time
	e.Locations = locs
	return &e, nil
}

func scanString(row rowScanner) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

// jobColumns is the select list scanJob reads, for a jobs table aliased "j".
const jobColumns = `j.registry, j.repository, j.digest, j.source, j.tag, j.status, j.skip_reason,
	j.last_error, j.attempts, j.options_hash, j.index_digest, j.bytes_read, j.worker, j.queued_at, j.started_at,
	j.finished_at`

func scanJob(row rowScanner) (*Job, error) {
	var (
		j                         Job
		queued, started, finished dbTime
	)
	err := row.Scan(&j.Registry, &j.Repository, &j.Digest, &j.Source, &j.Tag, &j.Status, &j.SkipReason,
		&j.LastError, &j.Attempts, &j.OptionsHash, &j.IndexDigest, &j.BytesRead, &j.Worker, &queued, &started, &finished)
	if err != nil {
		return nil, err
	}
	j.QueuedAt, j.StartedAt, j.FinishedAt = queued.Time, started.Time, finished.Time
	return &j, nil
}

const attemptColumns = `a.attempt, a.worker, a.status, a.error, a.bytes_read, a.started_at, a.finished_at`

func scanAttempt(row rowScanner) (*JobAttempt, error) {
	var (
		a                 JobAttempt
		started, finished dbTime
	)
	if err := row.Scan(&a.Attempt, &a.Worker, &a.Status, &a.Error, &a.BytesRead, &started, &finished); err != nil {
		return nil, err
	}
	a.StartedAt, a.FinishedAt = started.Time, finished.Time
	return &a, nil
}

// walkPageSize is how many entries Walk reads per query. Walk holds no
// cursor while it calls back, so the callback may use the store.
const walkPageSize = 500

// ociManifestMediaType marks index entries, as in soci's artifacts DB.
const ociManifestMediaType = "application/vnd.oci.image.manifest.v1+json"
