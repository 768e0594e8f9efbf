// Package config is the one place where every setting of `indexer` and of
// `webhook` is declared: its flag, its environment variable, its key in the
// optional YAML file, its default and its meaning. Both binaries read the
// same YAML schema and the same INDEXER_* variables, so one settings file
// serves `indexer serve --webhook` and cmd/webhook alike. docs/service.md
// and docs/webhook.md list the same table (see Settings; a test keeps them
// in step), and the compose and Helm tests check the deployments against it.
//
// Precedence, lowest to highest: default, YAML file (--config), environment,
// command-line flag.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// Default HTTP listen addresses, by mode.
const (
	DefaultListen         = ":8080"
	DefaultAllInOneListen = "127.0.0.1:8080"
)

// Index versions accepted by Config.IndexVersion.
const (
	IndexVersionV1   = "v1"
	IndexVersionV2   = "v2"
	IndexVersionBoth = "both"
)

// Config holds every setting of the service.
type Config struct {
	// File is the YAML file the other settings may come from.
	File string

	// Mode and wiring.
	Embedded       bool
	DataDir        string
	NATSURL        string
	DatabaseURL    string
	Listen         string
	RegistryListen string
	Webhook        bool
	WebhookSecret  string
	StatusToken    string

	// Queue.
	Stream       string
	Subject      string
	Consumer     string
	Replicas     int
	MaxDeliver   int
	AckWait      time.Duration
	RetryBackoff time.Duration
	RetryMax     time.Duration

	// Workers.
	Workers       int
	JobTimeout    time.Duration
	ShutdownGrace time.Duration

	// Index building.
	IndexVersion     string
	V2TagTemplate    string
	SpanSize         int64
	MinLayerSize     int64
	Platforms        []string
	AllPlatforms     bool
	LayerConcurrency int
	RangeFetchConns  int

	// Registries.
	// AllowedRegistries are the registry hosts workers may reach and the
	// webhook accepts events for; empty means the embedded registry in
	// all-in-one mode with one, else every host.
	AllowedRegistries   []string
	PlainHTTP           bool
	PlainHTTPRegistries []string
	RegistryCAFile      string
	RegistryAuth        []string
	DockerConfig        string

	// Backfill.
	BackfillInterval time.Duration
	BackfillTargets  []string
	BackfillSince    time.Duration
	BackfillRetry    bool
	// BackfillConcurrency repositories are walked at once; BackfillRPS
	// caps the backfill's registry requests per second (0: no cap).
	BackfillConcurrency int
	BackfillRPS         int

	// Queue streams a process creates because they are missing.
	StreamDuplicates time.Duration
	DLQStream        string
	DLQPrefix        string

	// Webhook: the handler (cmd/webhook and serve's in-process webhook).
	MaxBodyBytes        int64
	PublishTimeout      time.Duration
	IncludeRepositories []string
	ExcludeRepositories []string
	IncludeTags         []string
	ExcludeTags         []string
	OwnTags             []string
	Distribution        WebhookSource
	Harbor              WebhookSource
	CloudEvents         WebhookSource
	ECR                 WebhookSource

	// Webhook: cmd/webhook's own listener.
	TLSCert         string
	TLSKey          string
	ShutdownTimeout time.Duration
}

// WebhookSource is the settings of one webhook endpoint.
type WebhookSource struct {
	Token      string
	AuthHeader string
	Registry   string
	Disabled   bool
}

// Setting describes one setting. Flag is without the leading dashes.
type Setting struct {
	Key     string // YAML key
	Flag    string
	Env     string
	Default string
	Usage   string
}

// binding ties a Setting to the Config field it fills.
type binding struct {
	Setting
	register func(fs *pflag.FlagSet, s Setting)
}

// DefaultDataDir is $XDG_DATA_HOME/soci-indexer when XDG_DATA_HOME is set,
// else ./.data.
func DefaultDataDir(lookupEnv func(string) (string, bool)) string {
	if x, ok := lookupEnv("XDG_DATA_HOME"); ok && x != "" {
		return filepath.Join(x, "soci-indexer")
	}
	return ".data"
}

func (c *Config) bindings(lookupEnv func(string) (string, bool)) []binding {
	str := func(p *string, def string) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.StringVar(p, s.Flag, def, s.Usage) }
	}
	boolean := func(p *bool, def bool) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.BoolVar(p, s.Flag, def, s.Usage) }
	}
	integer := func(p *int, def int) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.IntVar(p, s.Flag, def, s.Usage) }
	}
	size := func(p *int64, def int64) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.Int64Var(p, s.Flag, def, s.Usage) }
	}
	dur := func(p *time.Duration, def time.Duration) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.DurationVar(p, s.Flag, def, s.Usage) }
	}
	list := func(p *[]string) func(*pflag.FlagSet, Setting) {
		return func(fs *pflag.FlagSet, s Setting) { fs.StringSliceVar(p, s.Flag, nil, s.Usage) }
	}
	b := func(key, flag, env, def, usage string, reg func(*pflag.FlagSet, Setting)) binding {
		return binding{Setting{Key: key, Flag: flag, Env: env, Default: def, Usage: usage}, reg}
	}
	dataDir := DefaultDataDir(lookupEnv)
	out := []binding{
		b("embedded", "embedded", "INDEXER_EMBEDDED", "false",
			"all-in-one: embedded NATS, SQLite and webhook in this process (the default when neither --nats-url nor --database-url is set)",
			boolean(&c.Embedded, false)),
		b("data_dir", "data-dir", "INDEXER_DATA_DIR", "$XDG_DATA_HOME/soci-indexer or ./.data",
			"where the all-in-one mode keeps NATS, SQLite and registry data", str(&c.DataDir, dataDir)),
		b("nats_url", "nats-url", "INDEXER_NATS_URL", "",
			"NATS server(s) with JetStream, comma-separated for a cluster, e.g. nats://n1:4222,nats://n2:4222 (cmd/webhook: nats://127.0.0.1:4222 when empty)", str(&c.NATSURL, "")),
		b("database_url", "database-url", "INDEXER_DATABASE_URL", "",
			"postgres://user:pass@host/db or sqlite://PATH", str(&c.DatabaseURL, "")),
		b("listen", "listen", "INDEXER_LISTEN", "serve: 127.0.0.1:8080 all-in-one, :8080 otherwise; cmd/webhook: :8085",
			"HTTP address for /metrics, /healthz, /readyz and the webhook's /hooks/...", str(&c.Listen, "")),
		b("registry_listen", "registry-listen", "INDEXER_REGISTRY_LISTEN", "",
			"all-in-one: also run a registry on this address whose notifications feed the workers", str(&c.RegistryListen, "")),
		b("webhook", "webhook", "INDEXER_WEBHOOK", "false",
			"also serve the webhook endpoints (/hooks/...) on --listen; always on in all-in-one mode", boolean(&c.Webhook, false)),
		b("webhook_secret", "webhook-secret", "INDEXER_WEBHOOK_SECRET", "",
			"token the webhook requires from every sender without a token of its own (--<source>-token; all-in-one: generated when empty)", str(&c.WebhookSecret, "")),
		b("status_token", "status-token", "INDEXER_STATUS_TOKEN", "",
			"read token of the status API and page under /status/ (all-in-one: generated in the data dir when empty; off otherwise when empty)", str(&c.StatusToken, "")),

		b("stream", "stream", "INDEXER_STREAM", "",
			"JetStream stream name (empty: pkg/queue's default)", str(&c.Stream, "")),
		b("subject", "subject", "INDEXER_SUBJECT", "",
			"JetStream subject prefix (empty: pkg/queue's default)", str(&c.Subject, "")),
		b("consumer", "consumer", "INDEXER_CONSUMER", "",
			"durable consumer shared by all workers (empty: pkg/queue's default)", str(&c.Consumer, "")),
		b("stream_replicas", "stream-replicas", "INDEXER_STREAM_REPLICAS", "1",
			"replicas of a stream this process creates because it is missing (an existing stream is kept as it is; see docs/nats.md)",
			integer(&c.Replicas, 1)),
		b("max_deliver", "max-deliver", "INDEXER_MAX_DELIVER", "5",
			"deliveries of one job before it goes to the dead letter, for a consumer this process creates (workers follow the consumer's value on the server)",
			integer(&c.MaxDeliver, 5)),
		b("ack_wait", "ack-wait", "INDEXER_ACK_WAIT", "1m",
			"time without progress after which JetStream redelivers a job, for a consumer this process creates (workers follow the consumer's value on the server and signal progress every third of it)",
			dur(&c.AckWait, time.Minute)),
		b("retry_backoff", "retry-backoff", "INDEXER_RETRY_BACKOFF", "2s",
			"first delay before a job that failed transiently is retried; doubles per delivery", dur(&c.RetryBackoff, 2*time.Second)),
		b("retry_max", "retry-max", "INDEXER_RETRY_MAX", "2m",
			"longest retry delay", dur(&c.RetryMax, 2*time.Minute)),

		b("workers", "workers", "INDEXER_WORKERS", "2",
			"jobs handled at the same time by this process", integer(&c.Workers, 2)),
		b("job_timeout", "job-timeout", "INDEXER_JOB_TIMEOUT", "30m",
			"longest time one job may take", dur(&c.JobTimeout, 30*time.Minute)),
		b("shutdown_grace", "shutdown-grace", "INDEXER_SHUTDOWN_GRACE", "30s",
			"on SIGTERM, time given to running jobs before they are handed back to the queue", dur(&c.ShutdownGrace, 30*time.Second)),

		b("index_version", "index-version", "INDEXER_INDEX_VERSION", IndexVersionV2,
			"SOCI index version to build: v2 (what soci-snapshotter reads by default), v1 (referrers) or both",
			str(&c.IndexVersion, IndexVersionV2)),
		b("v2_tag_template", "v2-tag-template", "INDEXER_V2_TAG_TEMPLATE", "{tag}-soci",
			"tag of the v2 SOCI-enabled image index; {tag} is the image's tag", str(&c.V2TagTemplate, "")),
		b("span_size", "span-size", "INDEXER_SPAN_SIZE", "4194304",
			"zTOC span size in uncompressed bytes (at least 1 MiB: each span adds a 32 KiB window to the zTOC)", size(&c.SpanSize, 1<<22)),
		b("min_layer_size", "min-layer-size", "INDEXER_MIN_LAYER_SIZE", "10485760",
			"layers smaller than this (compressed) get no zTOC", size(&c.MinLayerSize, 10<<20)),
		b("platforms", "platform", "INDEXER_PLATFORMS", "",
			"platforms to index in multi-platform images (e.g. linux/amd64); empty with --all-platforms=false means the host's",
			list(&c.Platforms)),
		b("all_platforms", "all-platforms", "INDEXER_ALL_PLATFORMS", "true",
			"index every platform of a multi-platform image", boolean(&c.AllPlatforms, true)),
		b("layer_concurrency", "layer-concurrency", "INDEXER_LAYER_CONCURRENCY", "2",
			"layers of one image processed at the same time", integer(&c.LayerConcurrency, 2)),
		b("range_fetch_conns", "range-fetch-conns", "INDEXER_RANGE_FETCH_CONNS", "4",
			"HTTP Range GETs at a time for one layer of 64 MiB or more, from registries that answer Range (1: one ordinary GET)",
			integer(&c.RangeFetchConns, 4)),

		b("allowed_registries", "allowed-registry", "INDEXER_ALLOWED_REGISTRIES", "",
			"registry hosts (host[:port]) workers may reach and the webhook takes events for; others are refused (repeatable; empty: the embedded registry when it runs, else all)",
			list(&c.AllowedRegistries)),
		b("plain_http", "plain-http", "INDEXER_PLAIN_HTTP", "false",
			"talk plain HTTP to every registry", boolean(&c.PlainHTTP, false)),
		b("plain_http_registries", "plain-http-registry", "INDEXER_PLAIN_HTTP_REGISTRIES", "",
			"registries (host[:port]) reached over plain HTTP", list(&c.PlainHTTPRegistries)),
		b("registry_ca_file", "registry-ca-file", "INDEXER_REGISTRY_CA_FILE", "",
			"PEM file of extra CAs trusted for registries", str(&c.RegistryCAFile, "")),
		b("registry_auth", "registry-auth", "INDEXER_REGISTRY_AUTH", "",
			"credentials per registry: HOST=USER:PASSWORD (repeatable; comma-separated in env/YAML); override the Docker config",
			list(&c.RegistryAuth)),
		b("docker_config", "docker-config", "INDEXER_DOCKER_CONFIG", "$DOCKER_CONFIG/config.json or ~/.docker/config.json",
			"Docker config file with registry credentials (and credential helpers)", str(&c.DockerConfig, "")),

		b("backfill_interval", "backfill-interval", "INDEXER_BACKFILL_INTERVAL", "0",
			"serve: run the backfill of --backfill-target this often (0: never)", dur(&c.BackfillInterval, 0)),
		b("backfill_targets", "backfill-target", "INDEXER_BACKFILL_TARGETS", "",
			"serve: REGISTRY[/REPO] walked by the scheduled backfill (repeatable)", list(&c.BackfillTargets)),
		b("backfill_since", "since", "INDEXER_BACKFILL_SINCE", "0",
			"backfill: only images whose config says they were created within this duration (0: all)",
			dur(&c.BackfillSince, 0)),
		b("backfill_retry_failed", "retry-failed", "INDEXER_BACKFILL_RETRY_FAILED", "false",
			"backfill: enqueue again the images whose job failed for good (after fixing what failed them)",
			boolean(&c.BackfillRetry, false)),
		b("backfill_concurrency", "backfill-concurrency", "INDEXER_BACKFILL_CONCURRENCY", "4",
			"backfill: repositories walked at once (0: 4)", integer(&c.BackfillConcurrency, 4)),
		b("backfill_rps", "backfill-rps", "INDEXER_BACKFILL_RPS", "50",
			"backfill: registry requests per second at most, for registries that throttle (0: no limit)",
			integer(&c.BackfillRPS, 50)),

		b("stream_duplicates", "stream-duplicates", "INDEXER_STREAM_DUPLICATES", "10m",
			"deduplication window (Nats-Msg-Id) of a stream this process creates because it is missing",
			dur(&c.StreamDuplicates, queue.DefaultDuplicates)),
		b("dlq_stream", "dlq-stream", "INDEXER_DLQ_STREAM", "INDEX_JOBS_DLQ, or STREAM_DLQ for a custom --stream",
			"dead-letter stream", str(&c.DLQStream, "")),
		b("dlq_prefix", "dlq-prefix", "INDEXER_DLQ_PREFIX", "index.dlq, or dlq.SUBJECT for a custom --subject",
			"subject prefix of dead letters", str(&c.DLQPrefix, "")),

		b("max_body_bytes", "max-body-bytes", "INDEXER_MAX_BODY_BYTES", "1048576",
			"webhook: largest accepted request body", size(&c.MaxBodyBytes, webhook.DefaultMaxBodyBytes)),
		b("publish_timeout", "publish-timeout", "INDEXER_PUBLISH_TIMEOUT", "2s",
			"webhook: wait for JetStream's ack of a job before answering 503", dur(&c.PublishTimeout, webhook.DefaultPublishTimeout)),
		b("include_repositories", "include-repository", "INDEXER_INCLUDE_REPOSITORIES", "",
			"webhook: repository globs to index (repeatable; empty: all)", list(&c.IncludeRepositories)),
		b("exclude_repositories", "exclude-repository", "INDEXER_EXCLUDE_REPOSITORIES", "",
			"webhook: repository globs to skip (repeatable)", list(&c.ExcludeRepositories)),
		b("include_tags", "include-tag", "INDEXER_INCLUDE_TAGS", "",
			"webhook: tag globs to index (repeatable; empty: all; events by digest alone always pass)", list(&c.IncludeTags)),
		b("exclude_tags", "exclude-tag", "INDEXER_EXCLUDE_TAGS", "",
			"webhook: tag globs to skip (repeatable)", list(&c.ExcludeTags)),
		b("own_tags", "own-tag", "INDEXER_OWN_TAGS", "--v2-tag-template with {tag} as *",
			"webhook: tag globs of the indexer's own pushes, always skipped (repeatable)", list(&c.OwnTags)),
	}
	for _, src := range []struct {
		name string
		s    *WebhookSource
	}{
		{"distribution", &c.Distribution}, {"harbor", &c.Harbor}, {"cloudevents", &c.CloudEvents}, {"ecr", &c.ECR},
	} {
		key, env := src.name+"_", "INDEXER_"+strings.ToUpper(src.name)+"_"
		out = append(out,
			b(key+"token", src.name+"-token", env+"TOKEN", "--webhook-secret",
				"webhook: token the "+src.name+" endpoint requires", str(&src.s.Token, "")),
			b(key+"auth_header", src.name+"-auth-header", env+"AUTH_HEADER", "Authorization",
				"webhook: header carrying the "+src.name+" token", str(&src.s.AuthHeader, "")),
			b(key+"registry", src.name+"-registry", env+"REGISTRY", "",
				"webhook: registry host put in "+src.name+" jobs, replacing the payload's", str(&src.s.Registry, "")),
			b(key+"disabled", src.name+"-disabled", env+"DISABLED", "false",
				"webhook: turn the "+src.name+" endpoint off (404)", boolean(&src.s.Disabled, false)),
		)
	}
	return append(out,
		b("tls_cert", "tls-cert", "INDEXER_TLS_CERT", "",
			"cmd/webhook: TLS certificate file (PEM); with --tls-key, serve HTTPS", str(&c.TLSCert, "")),
		b("tls_key", "tls-key", "INDEXER_TLS_KEY", "",
			"cmd/webhook: TLS private key file (PEM)", str(&c.TLSKey, "")),
		b("shutdown_timeout", "shutdown-timeout", "INDEXER_SHUTDOWN_TIMEOUT", "10s",
			"cmd/webhook: time in-flight requests get to finish on shutdown", dur(&c.ShutdownTimeout, 10*time.Second)),
	)
}

// Settings describes every setting, in the order of docs/service.md.
func Settings() []Setting {
	var c Config
	var out []Setting
	out = append(out, Setting{Key: "", Flag: "config", Env: "INDEXER_CONFIG", Usage: "YAML file with any of the settings below (keys as listed)"})
	for _, b := range c.bindings(os.LookupEnv) {
		out = append(out, b.Setting)
	}
	return out
}

// Loader fills a Config from flags, environment and the YAML file.
type Loader struct {
	cfg       *Config
	fs        *pflag.FlagSet
	bindings  []binding
	lookupEnv func(string) (string, bool)
	// all are every setting's bindings, when bindings is a subset (the
	// YAML file may name any of them); noFile ignores --config.
	all    []binding
	noFile bool
	// webhook: the loader of cmd/webhook, whose listener and NATS URL
	// default differently from serve's.
	webhook bool
}

// Register declares the flags of every setting on fs and returns the Loader
// that resolves them once fs is parsed. lookupEnv is os.LookupEnv outside
// tests.
func Register(fs *pflag.FlagSet, cfg *Config, lookupEnv func(string) (string, bool)) *Loader {
	fs.StringVar(&cfg.File, "config", "", "YAML file with settings (env INDEXER_CONFIG)")
	l := &Loader{cfg: cfg, fs: fs, bindings: cfg.bindings(lookupEnv), lookupEnv: lookupEnv}
	for _, b := range l.bindings {
		b.register(fs, b.Setting)
	}
	return l
}

// Load applies the YAML file and the environment to every setting whose
// flag was not given, then validates the result. Call it after fs.Parse.
func (l *Loader) Load() error {
	if err := l.Resolve(); err != nil {
		return err
	}
	return l.cfg.Validate()
}

// Resolve is Load without the validation of the whole Config, for commands
// that take a few settings (RegisterOnly) and check those themselves.
func (l *Loader) Resolve() error {
	if l.noFile {
		l.cfg.File = ""
	} else if !l.fs.Changed("config") {
		if v, ok := l.lookupEnv("INDEXER_CONFIG"); ok {
			l.cfg.File = v
		}
	}
	fromFile := map[string]string{}
	if l.cfg.File != "" {
		var err error
		if fromFile, err = readYAML(l.cfg.File); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, b := range l.all {
		known[b.Key] = true
	}
	for _, b := range l.bindings {
		known[b.Key] = true
		if l.fs.Changed(b.Flag) {
			continue
		}
		value, source, ok := "", "", false
		if v, has := l.lookupEnv(b.Env); has {
			value, source, ok = v, "environment variable "+b.Env, true
		} else if v, has := fromFile[b.Key]; has {
			value, source, ok = v, fmt.Sprintf("%s: key %s", l.cfg.File, b.Key), true
		}
		if !ok {
			continue
		}
		if err := l.fs.Set(b.Flag, value); err != nil {
			return fmt.Errorf("config: %s: %w", source, err)
		}
	}
	for k := range fromFile {
		if !known[k] {
			return fmt.Errorf("config: %s: unknown key %q", l.cfg.File, k)
		}
	}
	if l.webhook {
		if l.cfg.Listen == "" {
			l.cfg.Listen = webhook.DefaultListen
		}
		if l.cfg.NATSURL == "" {
			l.cfg.NATSURL = nats.DefaultURL
		}
	}
	if l.cfg.Listen == "" {
		// All-in-one is a single machine's tool: it listens on loopback
		// unless told otherwise; a deployed service listens on every
		// interface of its container.
		l.cfg.Listen = DefaultListen
		if l.cfg.UseEmbedded() {
			l.cfg.Listen = DefaultAllInOneListen
		}
	}
	return nil
}

// readYAML reads a flat YAML map; lists become comma-separated values so
// that they go through the same flag parsing as the environment.
func readYAML(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, e := range v {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			return nil, fmt.Errorf("config: %s: key %q: nested maps are not settings", path, k)
		case nil:
			out[k] = ""
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Validate checks values the flag types do not.
func (c *Config) Validate() error {
	switch c.IndexVersion {
	case IndexVersionV1, IndexVersionV2, IndexVersionBoth:
	default:
		return fmt.Errorf("%w: index version %q: want v1, v2 or both", ErrInvalid, c.IndexVersion)
	}
	if c.Workers < 1 {
		return fmt.Errorf("%w: workers must be at least 1, got %d", ErrInvalid, c.Workers)
	}
	if c.RangeFetchConns < 1 {
		return fmt.Errorf("%w: range fetch connections must be at least 1, got %d", ErrInvalid, c.RangeFetchConns)
	}
	if c.LayerConcurrency < 1 {
		return fmt.Errorf("%w: layer concurrency must be at least 1, got %d", ErrInvalid, c.LayerConcurrency)
	}
	if err := ztoc.CheckSpanSize(c.SpanSize); err != nil {
		return fmt.Errorf("%w: span size: %w", ErrInvalid, err)
	}
	if c.MinLayerSize < 0 {
		return fmt.Errorf("%w: min layer size must be >= 0, got %d", ErrInvalid, c.MinLayerSize)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("%w: stream replicas must be 1 to 5, got %d", ErrInvalid, c.Replicas)
	}
	if c.AckWait < time.Second {
		return fmt.Errorf("%w: ack wait must be at least 1s, got %s", ErrInvalid, c.AckWait)
	}
	if c.BackfillConcurrency < 0 || c.BackfillRPS < 0 {
		return fmt.Errorf("%w: backfill concurrency and requests per second must be >= 0, got %d and %d",
			ErrInvalid, c.BackfillConcurrency, c.BackfillRPS)
	}
	if c.BackfillInterval > 0 && len(c.BackfillTargets) == 0 {
		return fmt.Errorf("%w: --backfill-interval needs at least one --backfill-target", ErrInvalid)
	}
	if _, err := c.Credentials(); err != nil {
		return err
	}
	return nil
}

// UseEmbedded reports whether the all-in-one mode runs: asked for, or
// nothing external configured.
func (c *Config) UseEmbedded() bool {
	return c.Embedded || (c.NATSURL == "" && c.DatabaseURL == "")
}
