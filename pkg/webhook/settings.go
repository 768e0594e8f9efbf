package webhook

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Settings is everything the webhook server needs: listener, NATS, queue
// and handler configuration. LoadSettings fills it from defaults, an
// optional YAML file, environment variables and flags, each overriding
// the one before.
type Settings struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	NATSURL string `yaml:"nats_url"`
	// Token is the default token of every source without its own.
	Token           string        `yaml:"token"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	LogLevel        string        `yaml:"log_level"`

	Queue   QueueSettings `yaml:"queue"`
	Webhook Config        `yaml:"webhook"`
}

// QueueSettings is the YAML shape of queue.Config.
type QueueSettings struct {
	Stream        string        `yaml:"stream"`
	SubjectPrefix string        `yaml:"subject_prefix"`
	DLQStream     string        `yaml:"dlq_stream"`
	DLQPrefix     string        `yaml:"dlq_prefix"`
	Consumer      string        `yaml:"consumer"`
	Replicas      int           `yaml:"replicas"`
	MemoryStorage bool          `yaml:"memory_storage"`
	Duplicates    time.Duration `yaml:"duplicates"`
	// MaxDeliver and AckWait are ignored: the workers' consumer owns
	// them. They are still read, so older configuration files load.
	MaxDeliver int           `yaml:"max_deliver"`
	AckWait    time.Duration `yaml:"ack_wait"`
}

// QueueConfig converts to queue.Config. Replicas, storage and the dedup
// window apply only to a stream the webhook creates because it is missing.
func (q QueueSettings) QueueConfig() queue.Config {
	return queue.Config{
		Stream: q.Stream, SubjectPrefix: q.SubjectPrefix, DLQStream: q.DLQStream, DLQPrefix: q.DLQPrefix,
		Consumer: q.Consumer, Replicas: q.Replicas, MemoryStorage: q.MemoryStorage,
		Duplicates: q.Duplicates, MaxDeliver: q.MaxDeliver, AckWait: q.AckWait,
	}
}

// DefaultSettings returns the defaults documented in docs/webhook.md.
func DefaultSettings() Settings {
	return Settings{
		Listen:          ":8085",
		NATSURL:         "nats://127.0.0.1:4222",
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        "info",
		Queue: QueueSettings{
			Stream: queue.DefaultStream, SubjectPrefix: queue.DefaultSubjectPrefix,
			DLQStream: queue.DefaultDLQStream, DLQPrefix: queue.DefaultDLQPrefix,
			Consumer: queue.DefaultConsumer, Replicas: 1, Duplicates: queue.DefaultDuplicates,
		},
		Webhook: Config{
			MaxBodyBytes:   DefaultMaxBodyBytes,
			PublishTimeout: DefaultPublishTimeout,
			Filter:         FilterConfig{OwnTags: DefaultOwnTags()},
		},
	}
}

// setting is one flag and its environment variable, bound to a field.
type setting struct {
	flag, env, usage string
	value            flag.Value
}

// EnvPrefix prefixes every environment variable of the webhook.
const EnvPrefix = "WEBHOOK_"

func (s *Settings) table() []setting {
	t := []setting{
		{"listen", "LISTEN", "address to listen on", (*stringValue)(&s.Listen)},
		{"tls-cert", "TLS_CERT", "TLS certificate file (PEM); with tls-key, serve HTTPS", (*stringValue)(&s.TLSCert)},
		{"tls-key", "TLS_KEY", "TLS private key file (PEM)", (*stringValue)(&s.TLSKey)},
		{"nats-url", "NATS_URL", "NATS server URL(s), comma-separated", (*stringValue)(&s.NATSURL)},
		{"token", "TOKEN", "default shared secret of every source without its own", (*stringValue)(&s.Token)},
		{"shutdown-timeout", "SHUTDOWN_TIMEOUT", "time to finish in-flight requests on shutdown", (*durationValue)(&s.ShutdownTimeout)},
		{"log-level", "LOG_LEVEL", "debug, info, warn or error", (*stringValue)(&s.LogLevel)},

		{"queue-stream", "QUEUE_STREAM", "JetStream work-queue stream", (*stringValue)(&s.Queue.Stream)},
		{"queue-subject-prefix", "QUEUE_SUBJECT_PREFIX", "subject prefix of jobs", (*stringValue)(&s.Queue.SubjectPrefix)},
		{"queue-dlq-stream", "QUEUE_DLQ_STREAM", "dead-letter stream", (*stringValue)(&s.Queue.DLQStream)},
		{"queue-dlq-prefix", "QUEUE_DLQ_PREFIX", "subject prefix of dead letters", (*stringValue)(&s.Queue.DLQPrefix)},
		{"queue-consumer", "QUEUE_CONSUMER", "durable consumer shared by the workers", (*stringValue)(&s.Queue.Consumer)},
		{"queue-replicas", "QUEUE_REPLICAS", "replicas of a stream the webhook creates (an existing stream is kept as it is)", (*intValue)(&s.Queue.Replicas)},
		{"queue-memory", "QUEUE_MEMORY", "keep streams the webhook creates in memory instead of files", (*boolValue)(&s.Queue.MemoryStorage)},
		{"queue-duplicates", "QUEUE_DUPLICATES", "deduplication window of a stream the webhook creates", (*durationValue)(&s.Queue.Duplicates)},
		{"queue-max-deliver", "QUEUE_MAX_DELIVER", "ignored (the workers' consumer sets it); accepted for older configurations", (*intValue)(&s.Queue.MaxDeliver)},
		{"queue-ack-wait", "QUEUE_ACK_WAIT", "ignored (the workers' consumer sets it); accepted for older configurations", (*durationValue)(&s.Queue.AckWait)},

		{"max-body-bytes", "MAX_BODY_BYTES", "largest accepted request body", (*int64Value)(&s.Webhook.MaxBodyBytes)},
		{"publish-timeout", "PUBLISH_TIMEOUT", "wait for JetStream's ack before answering 503", (*durationValue)(&s.Webhook.PublishTimeout)},
		{"include-repositories", "INCLUDE_REPOSITORIES", "repository globs to index (comma-separated; empty: all)", (*listValue)(&s.Webhook.Filter.IncludeRepositories)},
		{"exclude-repositories", "EXCLUDE_REPOSITORIES", "repository globs to skip", (*listValue)(&s.Webhook.Filter.ExcludeRepositories)},
		{"include-tags", "INCLUDE_TAGS", "tag globs to index (events by digest alone always pass)", (*listValue)(&s.Webhook.Filter.IncludeTags)},
		{"exclude-tags", "EXCLUDE_TAGS", "tag globs to skip", (*listValue)(&s.Webhook.Filter.ExcludeTags)},
		{"own-tags", "OWN_TAGS", "tag globs of the indexer's own pushes, always skipped", (*listValue)(&s.Webhook.Filter.OwnTags)},
		{"allowed-registries", "ALLOWED_REGISTRIES", "registry hosts (host[:port]) jobs may name; events for others are refused (empty: all)", (*listValue)(&s.Webhook.Filter.AllowedRegistries)},
	}
	for _, src := range []struct {
		name string
		cfg  *SourceConfig
	}{
		{"distribution", &s.Webhook.Distribution},
		{"harbor", &s.Webhook.Harbor},
		{"cloudevents", &s.Webhook.CloudEvents},
		{"ecr", &s.Webhook.ECR},
	} {
		env := strings.ToUpper(src.name) + "_"
		t = append(t,
			setting{src.name + "-token", env + "TOKEN", "shared secret of the " + src.name + " endpoint", (*stringValue)(&src.cfg.Token)},
			setting{src.name + "-auth-header", env + "AUTH_HEADER", "header carrying the " + src.name + " token (default Authorization)", (*stringValue)(&src.cfg.AuthHeader)},
			setting{src.name + "-registry", env + "REGISTRY", "registry host for " + src.name + " jobs (default: from the payload)", (*stringValue)(&src.cfg.Registry)},
			setting{src.name + "-disabled", env + "DISABLED", "turn the " + src.name + " endpoint off", (*boolValue)(&src.cfg.Disabled)},
		)
	}
	return t
}

// LoadSettings reads settings from defaults, then the YAML file named by
// --config or WEBHOOK_CONFIG, then WEBHOOK_* environment variables (read
// through lookupEnv), then flags in args.
func LoadSettings(args []string, lookupEnv func(string) (string, bool)) (Settings, error) {
	s := DefaultSettings()
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	var configPath string
	fs.StringVar(&configPath, "config", "", "YAML configuration file (env "+EnvPrefix+"CONFIG)")
	table := s.table()
	for _, st := range table {
		fs.Var(st.value, st.flag, st.usage+" (env "+EnvPrefix+st.env+")")
	}
	// First pass only finds the config file; flags are applied again last.
	if err := fs.Parse(args); err != nil {
		return Settings{}, err
	}
	if fs.NArg() > 0 {
		return Settings{}, fmt.Errorf("webhook: unexpected arguments %q", fs.Args())
	}
	if configPath == "" {
		configPath, _ = lookupEnv(EnvPrefix + "CONFIG")
	}
	s = DefaultSettings()
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return Settings{}, fmt.Errorf("webhook: config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
			return Settings{}, fmt.Errorf("webhook: config %s: %w", configPath, err)
		}
	}
	for _, st := range table {
		if v, ok := lookupEnv(EnvPrefix + st.env); ok {
			if err := st.value.Set(v); err != nil {
				return Settings{}, fmt.Errorf("webhook: %s%s: %w", EnvPrefix, st.env, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return Settings{}, err
	}
	s.applyDefaultToken()
	return s, nil
}

// applyDefaultToken gives sources without a token the default one.
func (s *Settings) applyDefaultToken() {
	for _, src := range []*SourceConfig{&s.Webhook.Distribution, &s.Webhook.Harbor, &s.Webhook.CloudEvents, &s.Webhook.ECR} {
		if src.Token == "" {
			src.Token = s.Token
		}
	}
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*v = intValue(n)
	return nil
}

type int64Value int64

func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	*v = int64Value(n)
	return nil
}

type boolValue bool

func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*v = boolValue(b)
	return nil
}

// listValue is a comma-separated list; setting it replaces the list.
type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }
func (v *listValue) Set(s string) error {
	*v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*v = append(*v, p)
		}
	}
	return nil
}
