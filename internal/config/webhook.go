package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// sourceFlags are the per-endpoint settings of the webhook.
func sourceFlags() []string {
	var out []string
	for _, src := range []string{"distribution", "harbor", "cloudevents", "ecr"} {
		out = append(out, src+"-token", src+"-auth-header", src+"-registry", src+"-disabled")
	}
	return out
}

// HookFlags are the settings of the webhook's handler: cmd/webhook and
// the webhook `indexer serve` runs in-process read them alike.
var HookFlags = append([]string{
	"webhook-secret", "max-body-bytes", "publish-timeout",
	"include-repository", "exclude-repository", "include-tag", "exclude-tag", "own-tag",
}, sourceFlags()...)

// WebhookOnly are the settings of cmd/webhook's own listener; serve's
// listener has no TLS and closes on its own schedule.
var WebhookOnly = []string{"tls-cert", "tls-key", "shutdown-timeout"}

// WebhookFlags are every setting cmd/webhook reads: its listener, the
// handler's, and the queue's (so that it publishes where the workers
// consume), plus the tag template its own-tag default follows and the
// allow-list it shares with the workers.
var WebhookFlags = append(append([]string{
	"listen", FlagNATSURL, FlagStream, FlagSubject, FlagConsumer, "dlq-stream", "dlq-prefix",
	"stream-replicas", "stream-duplicates", FlagV2TagTemplate, "allowed-registry",
}, HookFlags...), WebhookOnly...)

// RegisterServe declares the flags of `indexer serve`: every setting but
// cmd/webhook's listener's. The YAML file may still name those, so that
// one file serves both binaries.
func RegisterServe(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool)) *Loader {
	return RegisterExcept(fs, cfg, lookupEnv, WebhookOnly...)
}

// RegisterWebhook declares the flags of cmd/webhook (WebhookFlags) with
// the names, environment variables and YAML keys serve uses. Its Loader
// defaults --listen to webhook.DefaultListen and --nats-url to the local
// NATS server.
func RegisterWebhook(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool)) *Loader {
	l := RegisterOnly(fs, cfg, lookupEnv, true, WebhookFlags...)
	l.webhook = true
	return l
}

// ValidateWebhook checks the settings cmd/webhook reads.
func (c *Config) ValidateWebhook() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", ErrInvalid)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("%w: stream replicas must be 1 to 5, got %d", ErrInvalid, c.Replicas)
	}
	if c.MaxBodyBytes < 1 || c.PublishTimeout <= 0 || c.ShutdownTimeout < 0 {
		return fmt.Errorf("%w: max body bytes and publish timeout must be positive, shutdown timeout not negative", ErrInvalid)
	}
	if _, err := webhook.NewFilter(c.WebhookConfig().Filter); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// QueueConfig maps the settings onto pkg/queue's configuration. A custom
// stream gets its own dead-letter stream (and a custom subject its own
// dead-letter prefix) unless those are set too, so that several
// deployments (or tests) can share one NATS server.
func (c *Config) QueueConfig() queue.Config {
	qc := queue.Config{
		Stream:        c.Stream,
		SubjectPrefix: c.Subject,
		Consumer:      c.Consumer,
		DLQStream:     c.DLQStream,
		DLQPrefix:     c.DLQPrefix,
		Replicas:      c.Replicas,
		MaxDeliver:    c.MaxDeliver,
		AckWait:       c.AckWait,
		Duplicates:    c.StreamDuplicates,
	}
	if qc.DLQStream == "" && c.Stream != "" {
		qc.DLQStream = c.Stream + "_DLQ"
	}
	if qc.DLQPrefix == "" && c.Subject != "" {
		qc.DLQPrefix = "dlq." + c.Subject
	}
	return qc
}

// WebhookConfig is the webhook handler's configuration: sources without a
// token of their own take --webhook-secret, and without --own-tag the tags
// of the v2 tag template are the indexer's own.
func (c *Config) WebhookConfig() webhook.Config {
	source := func(s WebhookSource) webhook.SourceConfig {
		token := s.Token
		if token == "" {
			token = c.WebhookSecret
		}
		return webhook.SourceConfig{Disabled: s.Disabled, Token: token, AuthHeader: s.AuthHeader, Registry: s.Registry}
	}
	own := c.OwnTags
	if len(own) == 0 {
		own = []string{OwnTagGlob(c.V2TagTemplate)}
	}
	return webhook.Config{
		Distribution: source(c.Distribution),
		Harbor:       source(c.Harbor),
		CloudEvents:  source(c.CloudEvents),
		ECR:          source(c.ECR),
		Filter: webhook.FilterConfig{
			IncludeRepositories: c.IncludeRepositories,
			ExcludeRepositories: c.ExcludeRepositories,
			IncludeTags:         c.IncludeTags,
			ExcludeTags:         c.ExcludeTags,
			OwnTags:             own,
			AllowedRegistries:   c.AllowedRegistries,
		},
		MaxBodyBytes:   c.MaxBodyBytes,
		PublishTimeout: c.PublishTimeout,
	}
}

// WebhookServer is cmd/webhook's configuration.
func (c *Config) WebhookServer() webhook.ServerOptions {
	return webhook.ServerOptions{
		Listen:          c.Listen,
		TLSCert:         c.TLSCert,
		TLSKey:          c.TLSKey,
		NATSURL:         c.NATSURL,
		ShutdownTimeout: c.ShutdownTimeout,
		Queue:           c.QueueConfig(),
		Handler:         c.WebhookConfig(),
	}
}

// OwnTagGlob is the glob of the tags v2 indexes are pushed under, so the
// webhook drops their events before they reach the queue.
func OwnTagGlob(template string) string {
	if template == "" {
		template = index.DefaultV2TagTemplate
	}
	return strings.ReplaceAll(template, "{tag}", "*")
}
