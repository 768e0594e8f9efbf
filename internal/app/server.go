package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/datadir"
	embeddednats "github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
	"github.com/soci-indexer/soci-indexer/pkg/status"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// Server is a running `indexer serve`: workers, HTTP endpoints and, as
// configured, the webhook and the embedded NATS server, SQLite store and
// registry. Start it with Start, run the workers with Run.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	metrics *service.Metrics

	nats     *embeddednats.Server
	nc       *nats.Conn
	queue    *queue.Queue
	store    service.Store
	repos    service.RepositoryFunc
	worker   *service.Worker
	backfill *service.Backfiller

	httpLn   net.Listener
	httpSrv  *http.Server
	httpDone chan struct{}
	registry embeddedRegistry
	// registryHost is the embedded registry's host:port once it runs; the
	// webhook reads it while the server starts.
	registryHost atomic.Pointer[string]
	embedded     bool
	// publishOnly: this process publishes jobs and runs no workers.
	publishOnly bool
	dataDir     *datadir.Lock
	dsn         string
	natsURL     string
	secret      string
	statusToken string
}

// Start brings up everything but the workers: embedded parts, connections,
// HTTP endpoints and the embedded registry. Close undoes it.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, metrics: service.NewMetrics(), embedded: cfg.UseEmbedded(),
		dsn: cfg.DatabaseURL, natsURL: cfg.NATSURL, secret: cfg.WebhookSecret, statusToken: cfg.StatusToken}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.embedded {
		if err := s.startEmbedded(); err != nil {
			return nil, err
		}
	}
	if s.natsURL == "" || s.dsn == "" {
		return nil, fmt.Errorf("%w: outside all-in-one mode both a NATS URL and a database URL are needed", config.ErrInvalid)
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := s.startHTTP(); err != nil {
		return nil, err
	}
	if cfg.RegistryListen != "" {
		if err := s.startRegistry(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.newWorker(); err != nil {
		return nil, err
	}
	if s.dataDir != nil {
		// Last: the record says a server is ready there.
		if err := s.dataDir.Publish(datadir.Server{PID: os.Getpid(), NATSURL: s.natsURL, HTTP: "http://" + s.Addr(),
			Registry: s.RegistryAddr(), DatabaseURL: s.dsn}); err != nil {
			return nil, err
		}
	}
	s.logStartup()
	return s, nil
}

// startEmbedded takes the data directory (one server at a time), starts
// NATS with JetStream under it and picks the SQLite store and the webhook
// token kept there, for whatever was not given.
func (s *Server) startEmbedded() error {
	dir := datadir.Dir(s.cfg.DataDir)
	lock, err := dir.Lock()
	if err != nil {
		return err
	}
	s.dataDir = lock
	if s.natsURL == "" {
		ns, err := embeddednats.Start(embeddednats.Options{StoreDir: dir.NATSStore()})
		if err != nil {
			return err
		}
		s.nats = ns
		s.natsURL = ns.ClientURL()
	}
	if s.dsn == "" {
		s.dsn = dir.DatabaseURL()
	}
	if s.secret == "" {
		if s.secret, err = dir.WebhookToken(); err != nil {
			return err
		}
	}
	if s.statusToken == "" {
		if s.statusToken, err = dir.StatusToken(); err != nil {
			return err
		}
	}
	return nil
}

// connect opens the queue and the store. NATS reconnects forever, to any
// server of a cluster (--nats-url may list several): a worker outlives a
// NATS restart and a node's loss. Workers bind to the streams and the
// consumer as they are on the server, creating what is missing; a process
// that only publishes (publishOnly: one-off backfill) leaves the consumer
// to the workers.
func (s *Server) connect(ctx context.Context) error {
	nc, err := queue.Connect(s.natsURL, "soci-indexer", s.log)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURL(s.natsURL), err)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	open := queue.New
	if s.publishOnly {
		open = queue.NewPublisher
	}
	if s.queue, err = open(ctx, js, s.cfg.QueueConfig(), queue.WithLogger(s.log)); err != nil {
		return err
	}
	s.metrics.WatchQueue(s.queue.Stats)
	// Every held lock pins a connection: a job holds its own lock and the
	// builder's referrers lock while its layers query the database.
	conns := int32(s.cfg.Workers*(2+s.cfg.LayerConcurrency) + 4)
	if s.store, err = db.Open(ctx, s.dsn, db.WithLogger(s.log), db.WithMaxConns(conns)); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	return nil
}

// startHTTP serves /metrics, /healthz, /readyz and, when enabled, the
// webhook's /hooks/ endpoints.
func (s *Server) startHTTP() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	if s.statusToken != "" {
		mux.Handle("/status/", status.NewHandler(status.New(s.store, s.queue), s.statusToken, s.log))
	}
	if s.embedded || s.cfg.Webhook {
		// The same handler settings as cmd/webhook's, with the token
		// generated in the data directory when none was given.
		hc := s.cfg
		hc.WebhookSecret = s.secret
		wcfg := hc.WebhookConfig()
		wcfg.Filter.AllowRegistry = s.registryAllowed
		wh, err := webhook.New(s.queue, wcfg, webhook.WithLogger(s.log), webhook.WithRegistry(s.metrics.Registry))
		if errors.Is(err, webhook.ErrNoToken) {
			return fmt.Errorf("%w: %w: set --webhook-secret (or the endpoint's own token, or disable it)", config.ErrInvalid, err)
		}
		if err != nil {
			return err
		}
		mux.Handle("/hooks/", wh)
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.httpLn = ln
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.httpDone = make(chan struct{})
	go func() {
		defer close(s.httpDone)
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "error", err)
		}
	}()
	return nil
}

// ready answers 200 when the queue and the database answer.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := s.queue.Ready(ctx); err != nil {
		problems = append(problems, "queue: "+err.Error())
	}
	if err := s.store.Ping(ctx); err != nil {
		problems = append(problems, "database: "+err.Error())
	}
	if len(problems) > 0 {
		http.Error(w, strings.Join(problems, "\n"), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// startRegistry runs the embedded registry whose notifications go to this
// process's webhook.
func (s *Server) startRegistry(ctx context.Context) error {
	if !s.embedded && !s.cfg.Webhook {
		return fmt.Errorf("%w: --registry-listen needs the webhook (all-in-one mode or --webhook)", config.ErrInvalid)
	}
	root := datadir.Dir(s.cfg.DataDir).RegistryStorage()
	reg, err := startEmbeddedRegistry(ctx, s.cfg.RegistryListen, root,
		"http://"+dialable(s.httpLn.Addr().String())+webhook.PathDistribution, s.secret)
	if err != nil {
		return err
	}
	s.registry = reg
	addr := reg.Addr()
	s.registryHost.Store(&addr)
	return nil
}

// embeddedRegistry is the registry startEmbeddedRegistry runs.
type embeddedRegistry interface {
	Addr() string
	URL() string
	Close() error
}

// dialable turns a listen address into one a client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// plainHTTP is true for the registries configured so, and for the embedded
// registry, whichever loopback name a client pushed to it with.
func (s *Server) plainHTTP(host string) bool {
	if s.cfg.UsesPlainHTTP(host) {
		return true
	}
	if s.registry == nil {
		return false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	_, regPort, _ := net.SplitHostPort(s.registry.Addr())
	if port != regPort {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) newWorker() error {
	opts, err := s.cfg.RegistryClientOptions()
	if err != nil {
		return err
	}
	opts.PlainHTTPHost = s.plainHTTP
	// The workers delete what they made, so superseded referrers indexes
	// go too.
	opts.ReferrersGC = true
	client, err := registryclient.New(opts)
	if err != nil {
		return err
	}
	return s.useRepositories(client.RepositoryOf)
}

// useRepositories builds the worker and the backfiller on repos (tests
// give theirs a slowed transport).
func (s *Server) useRepositories(repos service.RepositoryFunc) error {
	s.repos = repos
	buildOpts, identity, err := BuildOptions(s.cfg)
	if err != nil {
		return err
	}
	version, err := index.ParseIndexVersion(s.cfg.IndexVersion)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	s.worker = service.NewWorker(s.repos, s.store,
		service.WithBuildOptions(buildOpts...),
		service.WithIndexVersion(version),
		service.WithOptionsIdentity(identity),
		service.WithJobTimeout(s.cfg.JobTimeout),
		service.WithRegistryAllowed(s.registryAllowed),
		service.WithMetrics(s.metrics),
		service.WithLogger(s.log),
	)
	s.backfill = service.NewBackfiller(s.repos, s.store, s.queue, service.WithIndexedBy(s.worker),
		service.WithSince(s.cfg.BackfillSince), service.WithRetryFailed(s.cfg.BackfillRetry),
		service.WithBackfillConcurrency(s.cfg.BackfillConcurrency), service.WithBackfillRate(s.cfg.BackfillRPS),
		service.WithBackfillMetrics(s.metrics), service.WithBackfillLogger(s.log))
	return nil
}

// BuildOptions maps the settings onto index build options, and returns the
// text that identifies them (see service.WithOptionsIdentity).
func BuildOptions(cfg config.Config) ([]index.BuildOption, string, error) {
	opts := []index.BuildOption{
		index.WithSpanSize(cfg.SpanSize),
		index.WithMinLayerSize(cfg.MinLayerSize),
		index.WithLayerConcurrency(cfg.LayerConcurrency),
		index.WithRangeFetch(index.DefaultRangeFetchMin, index.DefaultRangeFetchPart, cfg.RangeFetchConns),
	}
	identity := fmt.Sprintf("span=%d|min=%d|tag=%s", cfg.SpanSize, cfg.MinLayerSize, cfg.V2TagTemplate)
	if cfg.V2TagTemplate != "" {
		opts = append(opts, index.WithV2TagTemplate(cfg.V2TagTemplate))
	}
	switch {
	case len(cfg.Platforms) > 0:
		for _, p := range cfg.Platforms {
			platform, err := index.ParsePlatform(p)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %w", config.ErrInvalid, err)
			}
			opts = append(opts, index.WithPlatform(platform))
		}
		identity += "|platforms=" + strings.Join(cfg.Platforms, ",")
	case cfg.AllPlatforms:
		opts = append(opts, index.WithAllPlatforms())
		identity += "|platforms=all"
	}
	return opts, identity, nil
}

// logStartup says what runs where, and how to try it.
func (s *Server) logStartup() {
	mode := "workers"
	if s.embedded {
		mode = "all-in-one"
	}
	s.log.Info("soci-indexer serving", "mode", mode, "http", "http://"+dialable(s.httpLn.Addr().String()),
		"metrics", "/metrics", "workers", s.cfg.Workers, "index_version", s.cfg.IndexVersion)
	if s.nats != nil {
		s.log.Info("embedded NATS with JetStream", "url", s.natsURL, "store", datadir.Dir(s.cfg.DataDir).NATSStore())
	} else {
		s.log.Info("NATS", "url", redactURL(s.natsURL))
	}
	s.log.Info("database", "dsn", redactURL(s.dsn))
	if s.embedded || s.cfg.Webhook {
		token := "Authorization: Bearer <--webhook-secret>"
		if s.cfg.WebhookSecret == "" && s.dataDir != nil {
			token = "Authorization: Bearer $(cat " + datadir.Dir(s.cfg.DataDir).TokenFile() + ")"
		}
		s.log.Info("webhook", "distribution", "http://"+dialable(s.httpLn.Addr().String())+webhook.PathDistribution,
			"auth", token)
	}
	if s.registry != nil {
		addr := s.registry.Addr()
		s.log.Info("embedded registry (notifications go to the webhook)", "url", s.registry.URL(),
			"storage", datadir.Dir(s.cfg.DataDir).RegistryStorage())
		s.log.Info("try it: push an image, then list its SOCI indexes",
			"push", fmt.Sprintf("indexer demo push %s/demo/app:v1", addr),
			"list", fmt.Sprintf("indexer index ls %s/demo/app:v1 --plain-http", addr))
	}
}

// redactURL hides the password of a URL.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":…@" + rest[at+1:]
}

// Run runs the workers (and the scheduled backfill) until ctx is cancelled,
// then drains: running jobs get the shutdown grace period to finish before
// they are handed back to the queue. It does not Close the server.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.BackfillInterval > 0 {
		go s.backfill.RunEvery(ctx, s.cfg.BackfillInterval, s.cfg.BackfillTargets)
	}
	err := s.queue.Consume(ctx, s.worker.Handle,
		queue.WithConcurrency(s.cfg.Workers),
		queue.WithRetryBackoff(s.cfg.RetryBackoff, s.cfg.RetryMax),
		queue.WithDrainTimeout(s.cfg.ShutdownGrace),
		queue.WithFetchWait(time.Second),
	)
	s.log.Info("workers stopped")
	return err
}

// Close stops the HTTP server and the embedded parts and closes the
// connections.
func (s *Server) Close() error {
	var errs []error
	if s.registry != nil {
		errs = append(errs, s.registry.Close())
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.httpSrv.Shutdown(ctx))
		cancel()
		<-s.httpDone
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
	errs = append(errs, s.dataDir.Release())
	return errors.Join(errs...)
}

// Addr is the HTTP address (metrics, health, webhook).
func (s *Server) Addr() string { return dialable(s.httpLn.Addr().String()) }

// registryAllowed is the allow-list of registry hosts: the configured
// one; without one, the embedded registry's host (as 127.0.0.1:PORT or
// localhost:PORT) when it runs, else every host.
func (s *Server) registryAllowed(host string) bool {
	host = strings.ToLower(host)
	if len(s.cfg.AllowedRegistries) > 0 {
		for _, h := range s.cfg.AllowedRegistries {
			if strings.EqualFold(strings.TrimSpace(h), host) {
				return true
			}
		}
		return false
	}
	if s.cfg.RegistryListen == "" {
		return true
	}
	p := s.registryHost.Load()
	if p == nil {
		return false // not running yet: nothing can come from it
	}
	addr := *p
	if host == addr {
		return true
	}
	_, port, _ := net.SplitHostPort(addr)
	return host == net.JoinHostPort("localhost", port)
}

// RegistryAddr is the embedded registry's host:port, or "" without one.
func (s *Server) RegistryAddr() string {
	if s.registry == nil {
		return ""
	}
	return s.registry.Addr()
}

// StatusToken is the read token of /status/; empty when it is off.
func (s *Server) StatusToken() string { return s.statusToken }

// WebhookSecret is the token the webhook requires.
func (s *Server) WebhookSecret() string { return s.secret }

// Queue is the job queue.
func (s *Server) Queue() *queue.Queue { return s.queue }

// Store is the database.
func (s *Server) Store() service.Store { return s.store }

// Metrics are the server's metrics.
func (s *Server) Metrics() *service.Metrics { return s.metrics }

// Backfiller walks registries for images the events missed.
func (s *Server) Backfiller() *service.Backfiller { return s.backfill }

// Worker is the job handler.
func (s *Server) Worker() *service.Worker { return s.worker }

// Serve starts the server, runs the workers until ctx is cancelled and
// shuts everything down.
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	runErr := s.Run(ctx)
	return errors.Join(runErr, s.Close())
}

// OpenBackfiller connects to the queue and the database cfg names and
// returns a service.Backfiller on them, for a one-off `indexer backfill`. In
// all-in-one mode it finds the running server's NATS through the data
// directory. close releases the connections.
func OpenBackfiller(ctx context.Context, cfg config.Config, log *slog.Logger) (b *service.Backfiller, close func() error, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, metrics: service.NewMetrics(), dsn: cfg.DatabaseURL, natsURL: cfg.NATSURL, publishOnly: true}
	if cfg.UseEmbedded() {
		running, err := datadir.Dir(cfg.DataDir).Running()
		if err != nil {
			return nil, nil, fmt.Errorf("no --nats-url and --database-url, and %w", err)
		}
		if s.natsURL == "" {
			s.natsURL = running.NATSURL
		}
		if s.dsn == "" {
			s.dsn = running.DatabaseURL
		}
	}
	if s.natsURL == "" || s.dsn == "" {
		return nil, nil, fmt.Errorf("%w: backfill needs --nats-url and --database-url", config.ErrInvalid)
	}
	if err := s.connect(ctx); err != nil {
		s.Close()
		return nil, nil, err
	}
	if err := s.newWorker(); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s.backfill, s.Close, nil
}
