package webhook

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestLoadSettingsPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook.yaml")
	yaml := `
listen: ":9000"
nats_url: nats://file:4222
token: from-file
queue:
  stream: FILE_STREAM
  max_deliver: 7
  duplicates: 30m
webhook:
  publish_timeout: 3s
  distribution:
    registry: registry.example
  harbor:
    token: harbor-file
  filter:
    include_repositories: ["team/**"]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"WEBHOOK_CONFIG":        path,
		"WEBHOOK_NATS_URL":      "nats://env:4222",
		"WEBHOOK_QUEUE_STREAM":  "ENV_STREAM",
		"WEBHOOK_EXCLUDE_TAGS":  "*-rc, tmp-*",
		"WEBHOOK_ECR_DISABLED":  "true",
		"WEBHOOK_ECR_REGISTRY":  "1.dkr.ecr.eu-west-1.amazonaws.com",
		"WEBHOOK_UNRELATED_VAR": "ignored",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s, err := LoadSettings([]string{"--queue-stream", "FLAG_STREAM", "--harbor-auth-header=X-Harbor-Auth"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ got, want any }{
		"listen from file":               {s.Listen, ":9000"},
		"nats url from env over file":    {s.NATSURL, "nats://env:4222"},
		"stream from flag over env":      {s.Queue.Stream, "FLAG_STREAM"},
		"max deliver from file":          {s.Queue.MaxDeliver, 7},
		"duplicates from file":           {s.Queue.Duplicates, 30 * time.Minute},
		"ack wait default (unset)":       {s.Queue.AckWait, time.Duration(0)},
		"publish timeout from file":      {s.Webhook.PublishTimeout, 3 * time.Second},
		"default token applied":          {s.Webhook.Distribution.Token, "from-file"},
		"own token kept":                 {s.Webhook.Harbor.Token, "harbor-file"},
		"auth header from flag":          {s.Webhook.Harbor.AuthHeader, "X-Harbor-Auth"},
		"registry from file":             {s.Webhook.Distribution.Registry, "registry.example"},
		"exclude tags from env":          {s.Webhook.Filter.ExcludeTags, []string{"*-rc", "tmp-*"}},
		"include repositories from file": {s.Webhook.Filter.IncludeRepositories, []string{"team/**"}},
		"own tags default":               {s.Webhook.Filter.OwnTags, []string{"*-soci"}},
		"ecr disabled from env":          {s.Webhook.ECR.Disabled, true},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
}

func TestLoadSettingsErrors(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("lisen: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"unknown yaml key": {"--config", path},
		"missing file":     {"--config", path + ".missing"},
		"bad duration":     {"--publish-timeout", "soon"},
		"unknown flag":     {"--nope"},
		"stray argument":   {"extra"},
	} {
		if _, err := LoadSettings(args, none); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	env := func(k string) (string, bool) { return "x", k == "WEBHOOK_QUEUE_REPLICAS" }
	if _, err := LoadSettings(nil, env); err == nil {
		t.Error("bad WEBHOOK_QUEUE_REPLICAS: no error")
	}
}
