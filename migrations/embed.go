// Package migrations holds the SQL schema of soci-indexer's database, one
// directory per dialect. Files are applied in order by goose; they are
// forward-only, so a new version is always a new file.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

var (
	// Postgres holds the migrations for PostgreSQL (goose dialect "postgres").
	Postgres fs.FS = mustSub("postgres")
	// SQLite holds the migrations for SQLite (goose dialect "sqlite3").
	SQLite fs.FS = mustSub("sqlite")
)

// mustSub cannot fail for a directory the embed pattern above names.
func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
