package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	// ErrBadDSN is returned for a DSN no backend accepts.
	ErrBadDSN = errors.New("unsupported database DSN")
	// ErrJobNotFound is returned for a job that does not exist.
	ErrJobNotFound = errors.New("job not found")
	// ErrConflict matches a *ConstraintError for a unique violation.
	ErrConflict = errors.New("conflicts with an existing row")
)

// SchemaTooNewError is returned by Open and Migrate when the database has a
// migration this binary does not know: a newer binary migrated it, and this
// one could misread or corrupt its data.
type SchemaTooNewError struct {
	DatabaseVersion int64
	KnownVersion    int64
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary knows (%d): upgrade soci-indexer",
		e.DatabaseVersion, e.KnownVersion)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// ErrSchemaTooNew matches a *SchemaTooNewError.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// ConstraintError is a write the schema refused: a unique, check, foreign
// key or not-null violation. Retrying it gives the same answer.
type ConstraintError struct {
	Constraint string // e.g. "artifacts_type_check"; may be empty for SQLite
	Kind       string // "unique", "check", "foreign key", "not null"
	Err        error  // the driver's error (*pgconn.PgError, *sqlite.Error)
}

func (e *ConstraintError) Error() string {
	if e.Constraint == "" {
		return fmt.Sprintf("%s constraint violated: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("%s constraint %s violated: %v", e.Kind, e.Constraint, e.Err)
}

func (e *ConstraintError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrConflict) true for unique violations.
func (e *ConstraintError) Is(target error) bool {
	return target == ErrConflict && e.Kind == "unique"
}

// IsTransient reports whether err may go away if the same call is made
// again: a lost or refused connection, a server shutting down, a
// serialization failure or deadlock, a busy SQLite file, a timeout. The
// service naks such jobs for a retry and terminates the others.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientSQLState(pgErr.Code)
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr),
		errors.As(err, &netErr),
		pgconn.Timeout(err),
		pgconn.SafeToRetry(err),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// transientSQLState reports whether a Postgres SQLSTATE is worth a retry.
func transientSQLState(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now
		"57014": // query_canceled (statement_timeout)
		return true
	}
	switch code[:2] {
	case "08", // connection exception
		"53": // insufficient resources (too many connections, disk full)
		return true
	}
	return false
}

// pgError turns a Postgres constraint violation into a *ConstraintError and
// leaves other errors alone.
func pgError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	kind := map[string]string{
		"23505": "unique",
		"23P01": "exclusion",
		"23514": "check",
		"23503": "foreign key",
		"23502": "not null",
	}[pgErr.Code]
	if kind == "" {
		return err
	}
	return &ConstraintError{Constraint: pgErr.ConstraintName, Kind: kind, Err: err}
}

// sqliteError is pgError for SQLite, whose messages carry the constraint
// name ("CHECK constraint failed: artifacts_type_check").
func sqliteError(err error) error {
	var liteErr *sqlite.Error
	if !errors.As(err, &liteErr) || liteErr.Code()&0xff != sqlite3.SQLITE_CONSTRAINT {
		return err
	}
	var kind string
	switch liteErr.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		kind = "unique"
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		kind = "check"
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		kind = "foreign key"
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		kind = "not null"
	default:
		return err
	}
	var name string
	if i := strings.LastIndex(liteErr.Error(), "constraint failed: "); i >= 0 {
		name = liteErr.Error()[i+len("constraint failed: "):]
		if j := strings.LastIndex(name, " ("); j >= 0 { // the driver appends " (code)"
			name = name[:j]
		}
	}
	return &ConstraintError{Constraint: name, Kind: kind, Err: err}
}
