// Command indexer builds SOCI indexes for images in a registry: as the
// service's workers (serve), and by hand (index, ztoc, backfill, report).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if !errors.Is(err, errNotLazyLoadable) {
			fmt.Fprintln(os.Stderr, "indexer:", err)
		}
		os.Exit(code)
	}
}

func newRootCmd() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "indexer",
		Short:         "Build SOCI indexes for container images in a registry",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", envOr("INDEXER_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env INDEXER_LOG_LEVEL)")
	root.AddCommand(
		newZtocCmd(),
		newIndexCmd(),
		newMigrateCmd(),
		newReportCmd(),
		newQueueCmd(),
		newServeCmd(),
		newBackfillCmd(),
		newDemoCmd(),
		newStatusCmd(),
	)
	return root
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
