package db

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
)

// newPostgresDSN creates an empty database for the test and drops it when
// the test ends.
func newPostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn, _ := testpg.NewDatabase(tb, "soci_test")
	return dsn
}

func newSQLiteDSN(tb testing.TB) string {
	return "sqlite://" + filepath.Join(tb.TempDir(), "indexer.db")
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
