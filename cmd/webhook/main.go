// Command webhook receives registry notifications and turns them into
// durable jobs on NATS JetStream. It reads the settings of `indexer serve`
// (internal/config: the same flags, INDEXER_* variables and YAML file);
// see docs/webhook.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.LookupEnv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, lookupEnv func(string) (string, bool), stderr io.Writer) error {
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: webhook [flags]\n\nReceives registry notifications and queues index jobs on NATS JetStream.\n"+
			"Every flag is also read from INDEXER_<NAME> and from the YAML file --config, as `indexer serve` reads them.\n\nFlags:\n%s",
			fs.FlagUsages())
	}
	var cfg config.Config
	loader := config.RegisterWebhook(fs, &cfg, lookupEnv)
	logLevel := "info"
	if v, ok := lookupEnv("INDEXER_LOG_LEVEL"); ok {
		logLevel = v
	}
	fs.StringVar(&logLevel, "log-level", logLevel, "log level: debug, info, warn, error (env INDEXER_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := refuseOldEnv(environ); err != nil {
		return err
	}
	if err := loader.Resolve(); err != nil {
		return err
	}
	if err := cfg.ValidateWebhook(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return webhook.Serve(ctx, cfg.WebhookServer(), nil, log)
}

// renamed maps the webhook's former WEBHOOK_* variables whose new name is
// not just INDEXER_ + the rest; gone are those with no successor.
var (
	renamed = map[string]string{
		"WEBHOOK_TOKEN":                "INDEXER_WEBHOOK_SECRET",
		"WEBHOOK_QUEUE_STREAM":         "INDEXER_STREAM",
		"WEBHOOK_QUEUE_SUBJECT_PREFIX": "INDEXER_SUBJECT",
		"WEBHOOK_QUEUE_DLQ_STREAM":     "INDEXER_DLQ_STREAM",
		"WEBHOOK_QUEUE_DLQ_PREFIX":     "INDEXER_DLQ_PREFIX",
		"WEBHOOK_QUEUE_CONSUMER":       "INDEXER_CONSUMER",
		"WEBHOOK_QUEUE_REPLICAS":       "INDEXER_STREAM_REPLICAS",
		"WEBHOOK_QUEUE_DUPLICATES":     "INDEXER_STREAM_DUPLICATES",
	}
	gone = map[string]string{
		"WEBHOOK_QUEUE_MAX_DELIVER": "the consumer is the workers': set INDEXER_MAX_DELIVER on them",
		"WEBHOOK_QUEUE_ACK_WAIT":    "the consumer is the workers': set INDEXER_ACK_WAIT on them",
		"WEBHOOK_QUEUE_MEMORY":      "streams are created on files; `indexer queue setup --memory` makes memory streams",
	}
)

// refuseOldEnv fails on the WEBHOOK_* variables of earlier versions, which
// are no longer read: a deployment that still sets them would otherwise
// start with defaults (another NATS server, no token) and look healthy.
func refuseOldEnv(environ []string) error {
	var msgs []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "WEBHOOK_") {
			continue
		}
		if why, ok := gone[name]; ok {
			msgs = append(msgs, name+" is gone ("+why+")")
			continue
		}
		to, ok := renamed[name]
		if !ok {
			to = "INDEXER_" + strings.TrimPrefix(name, "WEBHOOK_")
		}
		msgs = append(msgs, name+" is now "+to)
	}
	if len(msgs) == 0 {
		return nil
	}
	slices.Sort(msgs)
	return fmt.Errorf("%w: the webhook reads INDEXER_* variables, as `indexer serve` does (docs/webhook.md): %s",
		config.ErrInvalid, strings.Join(msgs, "; "))
}
