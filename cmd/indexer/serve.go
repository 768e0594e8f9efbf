package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/soci-indexer/soci-indexer/internal/app"
	"github.com/soci-indexer/soci-indexer/internal/config"
)

func newServeCmd() *cobra.Command {
	var cfg config.Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the indexing workers (and, all-in-one, the webhook, NATS, SQLite and a registry)",
		Long: `serve consumes index jobs from NATS JetStream and gives every pushed image a
SOCI index. With neither --nats-url nor --database-url (or with --embedded) it
runs all-in-one: an embedded NATS server and a SQLite database under
--data-dir, and the webhook on --listen; --registry-listen adds a registry
whose pushes are indexed. Every setting is also read from the environment
(INDEXER_*) and from the YAML file --config; see docs/service.md. cmd/webhook
reads the same flags, variables and file.`,
		Example: `  indexer serve --registry-listen 127.0.0.1:5000
  indexer serve --nats-url nats://nats:4222 --database-url postgres://indexer@db/indexer --workers 4`,
		Args: cobra.NoArgs,
	}
	loader := config.RegisterServe(cmd.Flags(), &cfg, os.LookupEnv)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := loader.Load(); err != nil {
			return err
		}
		return app.Serve(cmd.Context(), cfg, slog.Default())
	}
	return cmd
}
