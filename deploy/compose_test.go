// Package deploy_test checks docker-compose.yml, the registry configuration
// and the Dockerfile against what the code reads, since Docker itself cannot
// run in CI: every environment variable is one a binary declares, the URLs
// point at services and ports that exist, and the webhook's secret and queue
// settings agree on both sides.
package deploy_test

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   any               `yaml:"depends_on"`
}

type build struct {
	Context string `yaml:"context"`
	Target  string `yaml:"target"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// containerPorts returns the container side of "host:container" mappings.
func containerPorts(s service) map[string]bool {
	out := map[string]bool{}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		out[parts[len(parts)-1]] = true
	}
	return out
}

// listenPort returns the port of a ":8080"-style address.
func listenPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return port
}

func indexerServices(c composeFile) map[string]service {
	out := map[string]service{}
	for name, s := range c.Services {
		if s.Build != nil && (s.Build.Target == "worker" || s.Build.Target == "indexer") {
			out[name] = s
		}
	}
	return out
}

func TestComposeIndexersUseDeclaredSettings(t *testing.T) {
	c := readCompose(t)
	indexers := indexerServices(c)
	if len(indexers) < 2 {
		t.Fatalf("want at least two indexer services, got %d", len(indexers))
	}
	declared := map[string]bool{}
	for _, s := range config.Settings() {
		declared[s.Env] = true
	}
	for name, s := range indexers {
		for env := range s.Environment {
			if !declared[env] {
				t.Errorf("%s: %s is not a setting of internal/config", name, env)
			}
		}
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			t.Errorf("%s: command %v, want serve", name, s.Command)
		}
		cfg := loadIndexerConfig(t, s.Environment)
		if cfg.UseEmbedded() {
			t.Errorf("%s: would run all-in-one; it must use the compose NATS and Postgres", name)
		}
		if !containerPorts(s)[listenPort(t, cfg.Listen)] {
			t.Errorf("%s: listens on %s but publishes %v", name, cfg.Listen, s.Ports)
		}
		checkNATSURL(t, c, name, cfg.NATSURL)
		checkPostgresURL(t, c, name, cfg.DatabaseURL)
		for _, target := range cfg.BackfillTargets {
			checkRegistryHost(t, c, name, target)
			if !cfg.UsesPlainHTTP(target) {
				t.Errorf("%s: backfill target %s is reached over HTTPS, but the compose registry serves HTTP", name, target)
			}
		}
	}
}

func loadIndexerConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	var cfg config.Config
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	loader := config.RegisterServe(fs, &cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := loader.Load(); err != nil {
		t.Fatalf("indexer settings from docker-compose.yml: %v", err)
	}
	return cfg
}

func checkNATSURL(t *testing.T, c composeFile, who, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "nats" {
		t.Errorf("%s: NATS URL %q", who, raw)
		return
	}
	nats, ok := c.Services[u.Hostname()]
	if !ok {
		t.Errorf("%s: NATS host %s is no service", who, u.Hostname())
		return
	}
	if u.Port() != "4222" || !containerPorts(nats)["4222"] {
		t.Errorf("%s: NATS port %s, the nats service listens on 4222", who, u.Port())
	}
	if !strings.Contains(strings.Join(nats.Command, " "), "--jetstream") {
		t.Errorf("nats service runs without JetStream: %v", nats.Command)
	}
}

func checkPostgresURL(t *testing.T, c composeFile, who, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "postgres" {
		t.Errorf("%s: database URL %q", who, raw)
		return
	}
	pg, ok := c.Services[u.Hostname()]
	if !ok {
		t.Errorf("%s: database host %s is no service", who, u.Hostname())
		return
	}
	password, _ := u.User.Password()
	if u.Port() != "5432" || u.User.Username() != pg.Environment["POSTGRES_USER"] ||
		password != pg.Environment["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != pg.Environment["POSTGRES_DB"] {
		t.Errorf("%s: database URL %s does not match the %s service's user, password and database", who, raw, u.Hostname())
	}
}

func checkRegistryHost(t *testing.T, c composeFile, who, hostPort string) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Errorf("%s: registry %q: %v", who, hostPort, err)
		return
	}
	reg, ok := c.Services[host]
	if !ok || !containerPorts(reg)[port] {
		t.Errorf("%s: registry %s is no service port", who, hostPort)
	}
}

// webhookSettings loads the webhook's settings from its compose
// environment as cmd/webhook does, and returns the variables it looked up.
func webhookSettings(t *testing.T, env map[string]string) (config.Config, map[string]bool) {
	t.Helper()
	read := map[string]bool{}
	var cfg config.Config
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	loader := config.RegisterWebhook(fs, &cfg, func(k string) (string, bool) {
		read[k] = true
		v, ok := env[k]
		return v, ok
	})
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := loader.Resolve(); err != nil {
		t.Fatalf("webhook settings from docker-compose.yml: %v", err)
	}
	if err := cfg.ValidateWebhook(); err != nil {
		t.Fatalf("webhook settings from docker-compose.yml: %v", err)
	}
	return cfg, read
}

func TestComposeWebhook(t *testing.T) {
	c := readCompose(t)
	wh, ok := c.Services["webhook"]
	if !ok || wh.Build == nil || wh.Build.Target != "webhook" {
		t.Fatal("no webhook service built from the Dockerfile's webhook target")
	}
	settings, read := webhookSettings(t, wh.Environment)
	for env := range wh.Environment {
		if !read[env] {
			t.Errorf("webhook: %s is not a setting cmd/webhook reads", env)
		}
	}
	if !containerPorts(wh)[listenPort(t, settings.Listen)] {
		t.Errorf("webhook listens on %s but publishes %v", settings.Listen, wh.Ports)
	}
	checkNATSURL(t, c, "webhook", settings.NATSURL)
	checkRegistryHost(t, c, "webhook", settings.WebhookConfig().Distribution.Registry)

	// Webhook and workers must name the same streams, or jobs go where no
	// worker reads. (The consumer's limits are the workers' alone.)
	q := settings.QueueConfig()
	for name, s := range indexerServices(c) {
		cfg := loadIndexerConfig(t, s.Environment)
		if cfg.NATSURL != settings.NATSURL {
			t.Errorf("%s: NATS %s, webhook %s", name, cfg.NATSURL, settings.NATSURL)
		}
		iq := cfg.QueueConfig()
		if iq.Stream != q.Stream || iq.SubjectPrefix != q.SubjectPrefix || iq.DLQStream != q.DLQStream ||
			iq.DLQPrefix != q.DLQPrefix || iq.Consumer != q.Consumer {
			t.Errorf("%s: queue %+v, webhook %+v", name, iq, q)
		}
	}
}

func TestRegistryNotifiesTheWebhook(t *testing.T) {
	c := readCompose(t)
	reg, ok := c.Services["registry"]
	if !ok {
		t.Fatal("no registry service")
	}
	const mountedAt = "/etc/distribution/config.yml"
	var source string
	for _, v := range reg.Volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == mountedAt {
			source = parts[0]
		}
	}
	if source == "" {
		t.Fatalf("registry service does not mount its configuration at %s", mountedAt)
	}
	f, err := os.Open("../" + source)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := configuration.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", source, err)
	}
	if !containerPorts(reg)[listenPort(t, cfg.HTTP.Addr)] {
		t.Errorf("registry listens on %s but publishes %v", cfg.HTTP.Addr, reg.Ports)
	}
	if enabled, _ := cfg.Storage["delete"]["enabled"].(bool); !enabled {
		t.Error("registry deletes are off: no delete events, and oras-go cannot remove old referrers indexes")
	}
	settings, _ := webhookSettings(t, c.Services["webhook"].Environment)
	if len(cfg.Notifications.Endpoints) != 1 {
		t.Fatalf("want one notification endpoint, got %d", len(cfg.Notifications.Endpoints))
	}
	ep := cfg.Notifications.Endpoints[0]
	u, err := url.Parse(ep.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Services[u.Hostname()]; !ok || u.Hostname() != "webhook" {
		t.Errorf("notifications go to %s, not to the webhook service", u.Host)
	}
	if u.Port() != listenPort(t, settings.Listen) || u.Path != webhook.PathDistribution {
		t.Errorf("notification URL %s, webhook serves %s on %s", ep.URL, webhook.PathDistribution, settings.Listen)
	}
	token := settings.WebhookConfig().Distribution.Token
	if got, want := ep.Headers.Get("Authorization"), "Bearer "+token; got != want || token == "" {
		t.Errorf("registry sends Authorization %q, webhook expects %q", got, want)
	}
	if !cfg.Notifications.EventConfig.IncludeReferences {
		t.Error("includereferences is off")
	}
}

func TestDockerfileHasComposeTargets(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?im)^FROM\s+\S+\s+AS\s+(\S+)`).FindAllStringSubmatch(string(raw), -1) {
		targets[m[1]] = true
	}
	for name, s := range readCompose(t).Services {
		if s.Build == nil {
			continue
		}
		if !targets[s.Build.Target] {
			t.Errorf("%s: Dockerfile has no target %q", name, s.Build.Target)
		}
	}
	if !strings.Contains(string(raw), "CGO_ENABLED=0") {
		t.Error("the images are built without CGO_ENABLED=0")
	}
	for _, cmd := range []string{"./cmd/indexer", "./cmd/webhook"} {
		if !strings.Contains(string(raw), cmd) {
			t.Errorf("Dockerfile does not build %s", cmd)
		}
	}
}
