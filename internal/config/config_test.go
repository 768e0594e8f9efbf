package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	var cfg Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	l := Register(fs, &cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := l.Load()
	return cfg, err
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, nil, map[string]string{"DOCKER_CONFIG": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IndexVersion != IndexVersionV2 || cfg.Workers != 2 || cfg.SpanSize != 4<<20 || cfg.MinLayerSize != 10<<20 ||
		!cfg.AllPlatforms || cfg.Listen != DefaultAllInOneListen || cfg.DataDir != ".data" {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	if !cfg.UseEmbedded() {
		t.Error("no NATS and no database URL must mean all-in-one")
	}
}

func TestDataDirFollowsXDG(t *testing.T) {
	cfg, err := load(t, nil, map[string]string{"XDG_DATA_HOME": "/var/xdg"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/xdg/soci-indexer" {
		t.Errorf("data dir %q", cfg.DataDir)
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "indexer.yaml")
	yaml := "workers: 3\nnats_url: nats://file:4222\nindex_version: v1\nplatforms: [linux/amd64, linux/arm64]\nack_wait: 90s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"INDEXER_CONFIG":   file,
		"INDEXER_NATS_URL": "nats://env:4222",
		"INDEXER_WORKERS":  "5",
	}
	cfg, err := load(t, []string{"--workers", "7"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 7 {
		t.Errorf("workers = %d, want the flag's 7", cfg.Workers)
	}
	if cfg.NATSURL != "nats://env:4222" {
		t.Errorf("nats url = %q, want the environment's", cfg.NATSURL)
	}
	if cfg.IndexVersion != "v1" || cfg.AckWait != 90*time.Second {
		t.Errorf("file settings not applied: version %q ack wait %s", cfg.IndexVersion, cfg.AckWait)
	}
	if strings.Join(cfg.Platforms, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("platforms = %q", cfg.Platforms)
	}
	if cfg.UseEmbedded() {
		t.Error("a NATS URL given: not all-in-one")
	}
}

func TestInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"version":       {args: []string{"--index-version", "v3"}},
		"workers":       {args: []string{"--workers", "0"}},
		"env type":      {env: map[string]string{"INDEXER_WORKERS": "many"}},
		"auth":          {args: []string{"--registry-auth", "registry.example"}},
		"backfill":      {args: []string{"--backfill-interval", "1h"}},
		"unknown key":   {env: map[string]string{"INDEXER_CONFIG": writeFile(t, "wrokers: 2\n")}},
		"missing file":  {args: []string{"--config", "/nonexistent/indexer.yaml"}},
		"nested values": {env: map[string]string{"INDEXER_CONFIG": writeFile(t, "workers: {a: 1}\n")}},
		"span 0":        {args: []string{"--span-size", "0"}},
		"span 100":      {env: map[string]string{"INDEXER_SPAN_SIZE": "100"}},
		"span 64 KiB":   {args: []string{"--span-size", "65536"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := load(t, tc.args, tc.env); err == nil {
				t.Error("no error")
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCredentials(t *testing.T) {
	dockerConfig := writeFile(t, `{"auths":{"docker.example":{"auth":"`+"dXNlcjpwYXNz"+`"}}}`) // user:pass
	cfg, err := load(t, []string{
		"--registry-auth", "registry.example:5000=alice:s3cr:et",
		"--registry-auth", "token.example=<token>:abc",
		"--docker-config", dockerConfig,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := cfg.CredentialFunc()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := cred(ctx, "registry.example:5000")
	if err != nil || c.Username != "alice" || c.Password != "s3cr:et" {
		t.Errorf("flag credentials: %+v, %v", c, err)
	}
	c, err = cred(ctx, "token.example")
	if err != nil || c.RefreshToken != "abc" {
		t.Errorf("token credentials: %+v, %v", c, err)
	}
	c, err = cred(ctx, "docker.example")
	if err != nil || c.Username != "user" || c.Password != "pass" {
		t.Errorf("docker config credentials: %+v, %v", c, err)
	}
	c, err = cred(ctx, "other.example")
	if err != nil || c.Username != "" {
		t.Errorf("unknown host: %+v, %v", c, err)
	}
}

func TestBadAuthHidesPassword(t *testing.T) {
	_, err := load(t, []string{"--registry-auth", "hostonly-secret"}, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	_, err = load(t, []string{"--registry-auth", "host=nouserpart"}, nil)
	if err == nil || strings.Contains(err.Error(), "nouserpart") {
		t.Errorf("error %v must not show the secret", err)
	}
}

func TestPlainHTTP(t *testing.T) {
	cfg := Config{PlainHTTPRegistries: []string{"Registry.local:5000"}}
	if !cfg.UsesPlainHTTP("registry.local:5000") || cfg.UsesPlainHTTP("registry.local") {
		t.Error("plain HTTP per host")
	}
	cfg.PlainHTTP = true
	if !cfg.UsesPlainHTTP("any.example") {
		t.Error("--plain-http covers every host")
	}
}

func TestSettingsAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if s.Flag == "" || s.Env == "" || s.Usage == "" {
			t.Errorf("setting %+v lacks a flag, an env var or a description", s)
		}
		if !strings.HasPrefix(s.Env, "INDEXER_") {
			t.Errorf("env var %s lacks the INDEXER_ prefix", s.Env)
		}
		if seen[s.Env] {
			t.Errorf("env var %s declared twice", s.Env)
		}
		seen[s.Env] = true
	}
}

// TestDocsListEverySetting keeps the settings tables of docs/service.md
// and docs/webhook.md in step with the declared settings: each setting has
// exactly one row, with its environment variable and default, and
// docs/webhook.md names every setting cmd/webhook reads.
func TestDocsListEverySetting(t *testing.T) {
	rows := map[string][]string{}
	docs := map[string]string{}
	for _, doc := range []string{"service.md", "webhook.md"} {
		raw, err := os.ReadFile("../../docs/" + doc)
		if err != nil {
			t.Fatal(err)
		}
		docs[doc] = string(raw)
		for _, line := range strings.Split(string(raw), "\n") {
			if i := strings.Index(line, "| `--"); i >= 0 {
				flag := strings.SplitN(line[i+len("| `--"):], "`", 2)[0]
				rows[flag] = append(rows[flag], doc+": "+line)
			}
		}
	}
	declared := map[string]bool{}
	for _, s := range Settings() {
		declared[s.Flag] = true
		found := rows[s.Flag]
		if len(found) != 1 {
			t.Errorf("--%s has %d rows in docs/service.md and docs/webhook.md, want 1: %q", s.Flag, len(found), found)
			continue
		}
		row := found[0]
		def := "–"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		if !strings.Contains(row, "`"+s.Env+"`") || !strings.HasSuffix(strings.TrimSpace(row), "| "+def+" |") {
			t.Errorf("row of --%s does not say env %s and default %s:\n%s", s.Flag, s.Env, def, row)
		}
	}
	for flag := range rows {
		if !declared[flag] {
			t.Errorf("the docs have a row for --%s, which is no setting", flag)
		}
	}
	for _, f := range WebhookFlags {
		if !strings.Contains(docs["webhook.md"], "`--"+f+"`") {
			t.Errorf("docs/webhook.md does not name --%s, which cmd/webhook reads", f)
		}
	}
}

// All-in-one listens on loopback by default; a deployed service on every
// interface; an explicit address wins in both.
func TestListenDefaultsByMode(t *testing.T) {
	env := map[string]string{"DOCKER_CONFIG": t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "127.0.0.1:8080"},
		{[]string{"--nats-url", "nats://nats:4222", "--database-url", "postgres://db/indexer"}, ":8080"},
		{[]string{"--listen", "0.0.0.0:9000"}, "0.0.0.0:9000"},
		{[]string{"--nats-url", "nats://nats:4222", "--database-url", "postgres://db/indexer", "--listen", "127.0.0.1:9"}, "127.0.0.1:9"},
	} {
		cfg, err := load(t, tc.args, env)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listen != tc.want {
			t.Errorf("%v: listen %q, want %q", tc.args, cfg.Listen, tc.want)
		}
	}
}
