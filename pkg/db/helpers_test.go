package db

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// adminURL is the Postgres every test database is created on.
func adminURL() string {
	if u := os.Getenv("SOCI_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// newPostgresDSN creates an empty database for the test and drops it when
// the test ends. Postgres must be running: CI starts it
// (scripts/ensure-services), so a missing server fails the test.
func newPostgresDSN(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		tb.Fatalf("Postgres is needed for this test (set SOCI_TEST_POSTGRES_URL or run scripts/ensure-services): %v", err)
	}
	defer admin.Close(ctx)
	name := "soci_test_" + randomHex(tb, 8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, adminURL())
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func newSQLiteDSN(tb testing.TB) string {
	return "sqlite://" + filepath.Join(tb.TempDir(), "indexer.db")
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func openStore(tb testing.TB, dsn string, opts ...Option) Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// fakeDigest is a well-formed sha256 digest derived from s.
func fakeDigest(s string) string {
	return digest.FromString(s).String()
}
