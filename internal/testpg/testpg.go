// Package testpg gives each test its own database on the machine's real
// PostgreSQL, dropped when the test ends, so that tests of several packages
// can share one server. It is for tests only.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the database every test database is created from:
// $SOCI_TEST_POSTGRES_URL, or the machine's Postgres on 127.0.0.1:5432.
func AdminURL() string {
	if u := os.Getenv("SOCI_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDatabase creates an empty database named with prefix and a random
// suffix, drops it (closing its sessions) when the test ends, and returns
// its URL and name. Postgres must be running: CI starts it
// (scripts/ensure-services), so a missing server fails the test.
func NewDatabase(tb testing.TB, prefix string) (dsn, name string) {
	tb.Helper()
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		tb.Fatal(err)
	}
	name = prefix + "_" + hex.EncodeToString(suffix[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("PostgreSQL is needed for this test (set SOCI_TEST_POSTGRES_URL or run scripts/ensure-services): %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// TerminateConnections kills every session of database name, as a
// Postgres restart or a network cut would, and returns how many it killed.
func TerminateConnections(tb testing.TB, name string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
