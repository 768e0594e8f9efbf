package config

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// loadAs loads args and env the way serve or cmd/webhook does.
func loadAs(t *testing.T, webhookBinary bool, args []string, env map[string]string) (Config, *pflag.FlagSet, error) {
	t.Helper()
	var cfg Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	register := RegisterServe
	if webhookBinary {
		register = RegisterWebhook
	}
	l := register(fs, &cfg, lookup)
	if err := fs.Parse(args); err != nil {
		return cfg, fs, err
	}
	if err := l.Resolve(); err != nil {
		return cfg, fs, err
	}
	if webhookBinary {
		return cfg, fs, cfg.ValidateWebhook()
	}
	return cfg, fs, cfg.Validate()
}

// One settings file, read by serve and by cmd/webhook: both accept every
// key, and the webhook handler and the queue come out the same.
func TestServeAndWebhookReadOneFile(t *testing.T) {
	file := writeFile(t, `
nats_url: nats://nats:4222
database_url: postgres://indexer@db/indexer
listen: ":9090"
webhook_secret: shared
harbor_token: harbor-own
ecr_disabled: true
cloudevents_registry: zot.example:5000
include_repositories: ["team/**"]
exclude_tags: ["*-rc"]
stream: JOBS
subject: jobs
stream_duplicates: 30m
publish_timeout: 3s
v2_tag_template: "{tag}-lazy"
allowed_registries: [registry.example]
workers: 4
tls_cert: /etc/tls.crt
tls_key: /etc/tls.key
shutdown_timeout: 20s
`)
	env := map[string]string{"INDEXER_CONFIG": file, "DOCKER_CONFIG": t.TempDir(), "INDEXER_INCLUDE_TAGS": "v*,latest"}
	serve, serveFlags, err := loadAs(t, false, nil, env)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	hook, hookFlags, err := loadAs(t, true, []string{"--publish-timeout", "5s"}, env)
	if err != nil {
		t.Fatalf("webhook: %v", err)
	}
	if serveFlags.Lookup("tls-cert") != nil || hookFlags.Lookup("workers") != nil {
		t.Error("serve declares cmd/webhook's listener flags, or the webhook the workers'")
	}
	if serve.Workers != 4 || hook.TLSCert != "/etc/tls.crt" || hook.ShutdownTimeout != 20*time.Second {
		t.Errorf("each binary's own settings: workers %d, tls %q, shutdown %s", serve.Workers, hook.TLSCert, hook.ShutdownTimeout)
	}
	if hook.Listen != ":9090" || hook.NATSURL != "nats://nats:4222" {
		t.Errorf("webhook listen %q, NATS %q", hook.Listen, hook.NATSURL)
	}
	if !reflect.DeepEqual(serve.QueueConfig(), hook.QueueConfig()) {
		t.Errorf("queue: serve %+v, webhook %+v", serve.QueueConfig(), hook.QueueConfig())
	}
	want := queue.Config{Stream: "JOBS", SubjectPrefix: "jobs", DLQStream: "JOBS_DLQ", DLQPrefix: "dlq.jobs",
		Replicas: 1, MaxDeliver: 5, AckWait: time.Minute, Duplicates: 30 * time.Minute}
	if got := hook.QueueConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("webhook queue %+v, want %+v", got, want)
	}
	sh, wh := serve.WebhookConfig(), hook.WebhookConfig()
	if sh.PublishTimeout != 3*time.Second || wh.PublishTimeout != 5*time.Second {
		t.Errorf("publish timeout: file's 3s in serve (%s), the flag's 5s in the webhook (%s)", sh.PublishTimeout, wh.PublishTimeout)
	}
	wh.PublishTimeout = sh.PublishTimeout
	if !reflect.DeepEqual(sh, wh) {
		t.Errorf("handler: serve %+v, webhook %+v", sh, wh)
	}
	for name, c := range map[string]struct{ got, want any }{
		"default token":        {wh.Distribution.Token, "shared"},
		"own token":            {wh.Harbor.Token, "harbor-own"},
		"disabled":             {wh.ECR.Disabled, true},
		"registry":             {wh.CloudEvents.Registry, "zot.example:5000"},
		"include repositories": {wh.Filter.IncludeRepositories, []string{"team/**"}},
		"include tags (env)":   {wh.Filter.IncludeTags, []string{"v*", "latest"}},
		"exclude tags":         {wh.Filter.ExcludeTags, []string{"*-rc"}},
		"own tags":             {wh.Filter.OwnTags, []string{"*-lazy"}},
		"allowed registries":   {wh.Filter.AllowedRegistries, []string{"registry.example"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
}

func TestWebhookDefaults(t *testing.T) {
	cfg, _, err := loadAs(t, true, []string{"--webhook-secret", "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.WebhookServer()
	if o.Listen != webhook.DefaultListen || o.NATSURL != "nats://127.0.0.1:4222" || o.ShutdownTimeout != 10*time.Second {
		t.Errorf("listener defaults: %+v", o)
	}
	h := o.Handler
	if h.MaxBodyBytes != webhook.DefaultMaxBodyBytes || h.PublishTimeout != webhook.DefaultPublishTimeout ||
		!slices.Equal(h.Filter.OwnTags, webhook.DefaultOwnTags()) || h.Harbor.Token != "s" || h.Harbor.Disabled {
		t.Errorf("handler defaults: %+v", h)
	}
	if o.Queue.Stream != "" || o.Queue.DLQStream != "" || o.Queue.Duplicates != queue.DefaultDuplicates {
		t.Errorf("queue defaults: %+v (empty names are pkg/queue's defaults, as for serve)", o.Queue)
	}
}

func TestWebhookInvalid(t *testing.T) {
	for name, args := range map[string][]string{
		"half TLS":        {"--tls-cert", "/etc/tls.crt"},
		"body size":       {"--max-body-bytes", "0"},
		"bad duration":    {"--publish-timeout", "soon"},
		"workers' flag":   {"--workers", "3"},
		"replicas":        {"--stream-replicas", "7"},
		"unknown yaml":    {"--config", writeFile(t, "lisen: x\n")},
		"old nested yaml": {"--config", writeFile(t, "queue:\n  stream: X\n")},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := loadAs(t, true, args, nil); err == nil {
				t.Error("no error")
			}
		})
	}
}
