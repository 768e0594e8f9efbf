package main

import (
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/pkg/db"
)

func newReportCmd() *cobra.Command {
	var (
		dsnOf  func() (string, error)
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "report " + strings.Join(db.ReportNames, "|"),
		Short: "Print a report from the database",
		Long: `Prints one of the report views (docs/db.md describes them):
  coverage     jobs (image, tag) per repository: indexed, skipped, failed, pending
  failures     permanently failed jobs with their last error
  skipped      jobs looked at and not indexed, with the reason
  reuse        zTOCs built and reused per repository, and the layer bytes not rebuilt
  largest      the largest layers that got a zTOC, with the zTOC's size
  throughput   attempts finished per UTC day, bytes read, mean duration`,
		Example: `  indexer report coverage --database-url postgres://indexer@db/indexer
  indexer report failures --limit 10 --json`,
		ValidArgs: db.ReportNames,
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			dsn, err := dsnOf()
			if err != nil {
				return err
			}
			store, err := db.OpenExisting(cmd.Context(), dsn, db.WithLogger(slog.Default()))
			if err != nil {
				return err
			}
			defer store.Close()
			rows, err := db.RunReport(cmd.Context(), store, args[0], limit)
			if err != nil {
				return err
			}
			if asJSON {
				return db.WriteReportJSON(cmd.OutOrStdout(), rows)
			}
			return db.WriteReportTable(cmd.OutOrStdout(), rows)
		},
	}
	fl := cmd.Flags()
	dsnOf = databaseFlag(cmd)
	fl.BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	fl.IntVar(&limit, "limit", 0, "rows for failures and largest, days for throughput (0: 50, 20 and 30)")
	return cmd
}
