package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/internal/app"
	"github.com/soci-indexer/soci-indexer/internal/config"
)

func newBackfillCmd() *cobra.Command {
	var cfg config.Config
	cmd := &cobra.Command{
		Use:   "backfill REGISTRY[/REPOSITORY]...",
		Short: "Enqueue the images of a registry that have no SOCI index yet",
		Long: `backfill walks the registry's catalog (or one repository) and its tags, and
enqueues a job for every image the database does not know as indexed: images
pushed while the webhook was down, or before the service existed. It takes
the same settings as serve (--nats-url, --database-url, credentials...); in
all-in-one mode it finds the running server through --data-dir.`,
		Example: `  indexer backfill registry.example:5000 --since 72h
  indexer backfill 127.0.0.1:5000/demo/app --plain-http
  indexer backfill registry.example:5000/team/app --retry-failed`,
		Args: cobra.MinimumNArgs(1),
	}
	loader := config.RegisterExcept(cmd.Flags(), &cfg, os.LookupEnv, slices.Concat(config.ServeOnly, config.WebhookOnly)...)
	cmd.RunE = func(cmd *cobra.Command, targets []string) error {
		if err := loader.Load(); err != nil {
			return err
		}
		b, closeAll, err := app.OpenBackfiller(cmd.Context(), cfg, slog.Default())
		if err != nil {
			return err
		}
		defer closeAll()
		for _, target := range targets {
			stats, err := b.Run(cmd.Context(), target)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d repositories, %d tags, %d enqueued, %d already queued, "+
				"%d indexed, %d skipped, %d failed, %d ours, %d older, %d errors\n",
				target, stats.Repositories, stats.Tags, stats.Enqueued, stats.Duplicates, stats.Indexed,
				stats.Skipped, stats.Failed, stats.Ours, stats.Older, stats.Errors)
		}
		return nil
	}
	return cmd
}
