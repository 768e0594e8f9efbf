package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// errNoDSN is returned by the database commands when neither
// --database-url nor INDEXER_DATABASE_URL names a database.
var errNoDSN = errors.New("--database-url is required (or set INDEXER_DATABASE_URL): postgres://… or sqlite://PATH")

// databaseFlag declares serve's --database-url (env INDEXER_DATABASE_URL)
// on cmd; the returned func resolves it once flags are parsed.
func databaseFlag(cmd *cobra.Command) func() (string, error) {
	var cfg config.Config
	l := config.RegisterOnly(cmd.Flags(), &cfg, os.LookupEnv, false, config.FlagDatabaseURL)
	return func() (string, error) {
		if err := l.Resolve(); err != nil {
			return "", err
		}
		if cfg.DatabaseURL == "" {
			return "", errNoDSN
		}
		return cfg.DatabaseURL, nil
	}
}

func newMigrateCmd() *cobra.Command {
	var dsnOf func() (string, error)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema up to date",
		Long: `Applies the database migrations this binary carries that the database lacks.
serve and index do the same at start-up; run migrate to do it ahead of a rollout.
It refuses a database migrated by a newer binary.`,
		Example: `  indexer migrate --database-url postgres://indexer@db:5432/indexer
  indexer migrate --database-url sqlite:///var/lib/soci-indexer/indexer.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, err := dsnOf()
			if err != nil {
				return err
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
	dsnOf = databaseFlag(cmd)
	return cmd
}
