package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// errNoDSN is returned by the database commands when neither --dsn nor
// INDEXER_DSN names a database.
var errNoDSN = errors.New("--dsn is required (or set INDEXER_DSN): postgres://… or sqlite://PATH")

func newMigrateCmd() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema up to date",
		Long: `Applies the database migrations this binary carries that the database lacks.
serve and index do the same at start-up; run migrate to do it ahead of a rollout.
It refuses a database migrated by a newer binary.`,
		Example: `  indexer migrate --dsn postgres://indexer@db:5432/indexer
  indexer migrate --dsn sqlite:///var/lib/soci-indexer/indexer.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return errNoDSN
			}
			report, err := db.Migrate(cmd.Context(), dsn, db.WithLogger(slog.Default()))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, m := range report.Applied {
				fmt.Fprintf(out, "applied %s (%s)\n", m.File, m.Duration.Round(time.Millisecond))
			}
			fmt.Fprintf(out, "%s schema at version %d (was %d)\n", report.Backend, report.To, report.From)
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "dsn", os.Getenv("INDEXER_DSN"), "database: postgres://… or sqlite://PATH (env INDEXER_DSN)")
	return cmd
}
