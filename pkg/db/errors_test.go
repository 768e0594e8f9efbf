package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestPgErrorMapping(t *testing.T) {
	unique := fmt.Errorf("write: %w", &pgconn.PgError{Code: "23505", ConstraintName: "jobs_image_key"})
	err := pgError(unique)
	var ce *ConstraintError
	if !errors.As(err, &ce) || ce.Constraint != "jobs_image_key" || ce.Kind != "unique" || !errors.Is(err, ErrConflict) {
		t.Errorf("unique violation mapped to %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Error("the ConstraintError does not wrap the PgError")
	}
	check := pgError(&pgconn.PgError{Code: "23514", ConstraintName: "artifacts_type_check"})
	if !errors.As(check, &ce) || ce.Kind != "check" || errors.Is(check, ErrConflict) {
		t.Errorf("check violation mapped to %v", check)
	}
	other := &pgconn.PgError{Code: "42P01"}
	if got := pgError(other); got != other {
		t.Errorf("undefined_table mapped to %v, want it unchanged", got)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{context.Canceled, false},
		{fmt.Errorf("q: %w", &pgconn.PgError{Code: "57P01"}), true}, // admin_shutdown
		{&pgconn.PgError{Code: "40001"}, true},                      // serialization_failure
		{&pgconn.PgError{Code: "40P01"}, true},                      // deadlock
		{&pgconn.PgError{Code: "08006"}, true},                      // connection_failure
		{&pgconn.PgError{Code: "53300"}, true},                      // too_many_connections
		{&pgconn.PgError{Code: "23505"}, false},                     // unique_violation
		{&pgconn.PgError{Code: "42601"}, false},                     // syntax_error
		{pgError(&pgconn.PgError{Code: "23514"}), false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{context.DeadlineExceeded, true},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSQLiteBusyIsTransient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := newSQLiteDSN(t)
	openStore(t, dsn).Close()
	_, target, _ := ParseDSN(dsn)
	// Two connections without a busy timeout: the second writer is refused.
	first, err := sql.Open("sqlite", target+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	tx, err := first.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	second, err := sql.Open("sqlite", target+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_, err = second.ExecContext(ctx, "DELETE FROM jobs")
	if err == nil || !IsTransient(err) {
		t.Errorf("write to a locked SQLite file: %v, want a transient error", err)
	}
}
