// Package registry runs a CNCF distribution v3 registry inside this process:
// for tests, and for the all-in-one mode. It uses distribution's own HTTP
// handler on a listener we own, so it changes no process globals beyond the
// logrus level (distribution logs through logrus).
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // registers "htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"    // registers "token"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers "filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"   // registers "inmemory"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
)

// Notification is one notification endpoint of the registry.
type Notification struct {
	URL     string
	Headers http.Header
	// Timeout, Threshold and Backoff tune distribution's retrying sink; zero
	// values take short defaults fit for tests.
	Timeout   time.Duration
	Threshold int
	Backoff   time.Duration
	// IgnoreActions are dropped by the registry before sending
	// (default: pull and mount).
	IgnoreActions []string
	// IgnoreMediaTypes are dropped too (e.g. application/octet-stream for
	// blob events). Default: none.
	IgnoreMediaTypes []string
}

// Options configure a Registry.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port).
	Addr string
	// RootDir keeps the registry's data on disk; empty means in memory.
	RootDir string
	// DisableDeletes turns off manifest and blob deletes (distribution's own
	// default). Deletes are enabled unless this is set.
	DisableDeletes bool
	// Notifications are the endpoints events are sent to.
	Notifications []Notification
	// Log receives distribution's logs; nil discards them.
	Log io.Writer
	// Htpasswd, when not empty, makes the registry require basic auth with
	// these users (user name to password), as a registry configured with
	// an htpasswd file does.
	Htpasswd map[string]string
	// TokenAuth, when set, makes the registry require bearer tokens from
	// a token service, as Docker Hub, Harbor and most private registries
	// do. It cannot be combined with Htpasswd.
	TokenAuth *TokenAuth
}

// TokenAuth configures distribution's "token" access controller: a
// client without a token is sent to Realm, and tokens must be JWTs issued
// by Issuer for Service, signed by a key of the JWKS file.
type TokenAuth struct {
	Realm   string // URL of the token service
	Service string // the registry's name in tokens ("aud")
	Issuer  string // the token service's name in tokens ("iss")
	// JWKSFile is a JSON Web Key Set of the keys tokens may be signed
	// with; a token names its key by "kid".
	JWKSFile string
}

// htpasswdRealm is the realm the registry names in its basic auth
// challenges.
const htpasswdRealm = "soci-indexer-embedded"

// Registry is a running embedded registry.
type Registry struct {
	app    *handlers.App
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
	// authDir holds the htpasswd file, removed on Close.
	authDir string
}

// Start starts a registry and returns once it accepts connections.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Log == nil {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.PanicLevel)
	} else {
		logrus.SetOutput(opts.Log)
		logrus.SetLevel(logrus.WarnLevel)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: listen on %s: %w", opts.Addr, err)
	}
	cfg := config(opts, ln.Addr().String())
	var authDir string
	if len(opts.Htpasswd) > 0 && opts.TokenAuth != nil {
		ln.Close()
		return nil, errors.New("embedded registry: Htpasswd and TokenAuth cannot be combined")
	}
	if t := opts.TokenAuth; t != nil {
		cfg.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm":   t.Realm,
			"service": t.Service,
			"issuer":  t.Issuer,
			"jwks":    t.JWKSFile,
		}}
	}
	if len(opts.Htpasswd) > 0 {
		if authDir, err = writeHtpasswd(opts.Htpasswd); err != nil {
			ln.Close()
			return nil, err
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{
			"realm": htpasswdRealm,
			"path":  filepath.Join(authDir, "htpasswd"),
		}}
	}

	appCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	app, err := newApp(appCtx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		removeDir(authDir)
		return nil, err
	}
	r := &Registry{
		app:     app,
		srv:     &http.Server{Handler: app, ReadHeaderTimeout: 30 * time.Second},
		ln:      ln,
		cancel:  cancel,
		done:    make(chan struct{}),
		authDir: authDir,
	}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// newApp turns distribution's panics on bad configuration into errors.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("embedded registry: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// writeHtpasswd writes users as a bcrypt htpasswd file (the only hash
// distribution accepts) into a new temporary directory and returns the
// directory.
func writeHtpasswd(users map[string]string) (string, error) {
	names := make([]string, 0, len(users))
	for name := range users {
		if name == "" || strings.ContainsAny(name, ":\n") {
			return "", fmt.Errorf("embedded registry: htpasswd user %q: empty or contains ':' or a newline", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		// The lowest cost: distribution verifies the hash on every request,
		// and these are local test and demo users, not stored secrets.
		hash, err := bcrypt.GenerateFromPassword([]byte(users[name]), bcrypt.MinCost)
		if err != nil {
			return "", fmt.Errorf("embedded registry: htpasswd user %q: %w", name, err)
		}
		fmt.Fprintf(&b, "%s:%s\n", name, hash)
	}
	dir, err := os.MkdirTemp("", "embedded-registry-auth-")
	if err != nil {
		return "", fmt.Errorf("embedded registry: htpasswd: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(b.String()), 0o600); err != nil {
		removeDir(dir)
		return "", fmt.Errorf("embedded registry: htpasswd: %w", err)
	}
	return dir, nil
}

func removeDir(dir string) {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

func config(opts Options, addr string) *configuration.Configuration {
	storage := configuration.Storage{
		"delete":      configuration.Parameters{"enabled": !opts.DisableDeletes},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	if opts.RootDir != "" {
		storage["filesystem"] = configuration.Parameters{"rootdirectory": opts.RootDir}
	} else {
		storage["inmemory"] = configuration.Parameters{}
	}
	cfg := &configuration.Configuration{Storage: storage}
	cfg.HTTP.Addr = addr
	cfg.HTTP.Secret = "soci-indexer-embedded"
	// The catalog default (1000) applies only to parsed YAML; without it
	// /v2/_catalog is always empty, and backfill walks the catalog.
	cfg.Catalog.MaxEntries = 1000
	cfg.Notifications.EventConfig.IncludeReferences = true
	for i, n := range opts.Notifications {
		ep := configuration.Endpoint{
			Name:      fmt.Sprintf("endpoint-%d", i),
			URL:       n.URL,
			Headers:   n.Headers,
			Timeout:   n.Timeout,
			Threshold: n.Threshold,
			Backoff:   n.Backoff,
			Ignore: configuration.Ignore{
				Actions:    n.IgnoreActions,
				MediaTypes: n.IgnoreMediaTypes,
			},
		}
		if ep.Timeout == 0 {
			ep.Timeout = 5 * time.Second
		}
		if ep.Threshold == 0 {
			ep.Threshold = 3
		}
		if ep.Backoff == 0 {
			ep.Backoff = 200 * time.Millisecond
		}
		if ep.Ignore.Actions == nil {
			ep.Ignore.Actions = []string{"pull", "mount"}
		}
		cfg.Notifications.Endpoints = append(cfg.Notifications.Endpoints, ep)
	}
	return cfg
}

// Addr is the registry's host:port, e.g. "127.0.0.1:41234".
func (r *Registry) Addr() string { return r.ln.Addr().String() }

// URL is the registry's base URL, e.g. "http://127.0.0.1:41234".
func (r *Registry) URL() string { return "http://" + r.Addr() }

// Handler is the registry's HTTP handler, to serve it on another mux.
func (r *Registry) Handler() http.Handler { return r.app }

// Close stops serving. Notification sinks of distribution keep retrying
// undelivered events in the background until the process exits; that is
// distribution's behaviour and harmless in tests.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	<-r.done
	r.cancel()
	if aerr := r.app.Shutdown(); aerr != nil {
		err = errors.Join(err, aerr)
	}
	removeDir(r.authDir)
	return err
}
