// Package registryclient makes oras-go repositories for the registries
// soci-indexer reads images from and writes SOCI artifacts to: credentials
// from options or the Docker config file, TLS with an extra CA, plain HTTP,
// and retries of transient failures.
package registryclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// DefaultMaxRetries is how often a request that failed transiently (network
// error, 408, 429, 5xx) is retried.
const DefaultMaxRetries = 5

// ErrNoCredentials is returned when a registry answers 401 with a basic
// auth challenge and the client has no credentials for it. oras-go reports
// only that no basic credential was found; this says why.
var ErrNoCredentials = errors.New("registry requires credentials (401 Unauthorized) and none are configured")

// Options configure a Client. The zero value talks HTTPS anonymously, or
// with the credentials of the Docker config file when it has some; a
// registry on a loopback address that answers TLS with plain HTTP is
// talked to over HTTP, as Docker does for localhost.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS to every registry.
	PlainHTTP bool
	// PlainHTTPHost, when set, tells whether one registry host (host[:port])
	// is talked to over HTTP.
	PlainHTTPHost func(host string) bool
	// ReferrersGC lets a push of a v1 index delete the referrers-tag index
	// it supersedes (oras-go's default). Off by default: a registry with
	// deletes disabled would fail a good push; the service, which deletes
	// what it made anyway, turns it on.
	ReferrersGC bool
	// CAFile is a PEM file of CA certificates trusted besides the system's.
	CAFile string

	// Username and Password authenticate with basic auth, or with a bearer
	// token obtained from the registry's token service.
	Username, Password string
	// Token is a bearer access token sent to the registry as is.
	Token string
	// DockerConfig is the path of a Docker config.json to read credentials
	// from when neither Username nor Token is set. Empty means the default
	// ($DOCKER_CONFIG/config.json or ~/.docker/config.json).
	DockerConfig string
	// NoDockerConfig ignores the Docker config file.
	NoDockerConfig bool
	// Credential, when set, supplies the credentials per registry host and
	// takes the place of Token, Username, Password and DockerConfig.
	Credential auth.CredentialFunc

	// MaxRetries of a transiently failed request; 0 means
	// DefaultMaxRetries, a negative value none.
	MaxRetries int
	// Transport is the base HTTP transport (default: a clone of
	// http.DefaultTransport, with CAFile applied).
	Transport http.RoundTripper
	// UserAgent sent with every request.
	UserAgent string
}

// Client makes repositories that share one HTTP client and token cache.
type Client struct {
	auth          *auth.Client
	plainHTTP     bool
	plainHTTPHost func(string) bool
	referrersGC   bool
	loopback      *loopbackProbe
}

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	base := opts.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if opts.CAFile != "" {
			pool, err := certPool(opts.CAFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		base = t
	} else if opts.CAFile != "" {
		return nil, errors.New("registry client: CAFile cannot be combined with a custom Transport")
	}

	var transport http.RoundTripper = base
	if opts.MaxRetries >= 0 {
		maxRetries := opts.MaxRetries
		if maxRetries == 0 {
			maxRetries = DefaultMaxRetries
		}
		policy := &retry.GenericPolicy{
			Retryable: retry.DefaultPredicate,
			Backoff:   retry.DefaultBackoff,
			MinWait:   200 * time.Millisecond,
			MaxWait:   5 * time.Second,
			MaxRetry:  maxRetries,
		}
		transport = &retry.Transport{Base: base, Policy: func() retry.Policy { return policy }}
	}

	cred, err := credentialFunc(opts)
	if err != nil {
		return nil, err
	}
	ac := &auth.Client{
		Client:     &http.Client{Transport: transport},
		Cache:      auth.NewCache(),
		Credential: cred,
	}
	if opts.UserAgent != "" {
		ac.SetUserAgent(opts.UserAgent)
	}
	return &Client{auth: ac, plainHTTP: opts.PlainHTTP, plainHTTPHost: opts.PlainHTTPHost,
		referrersGC: opts.ReferrersGC, loopback: newLoopbackProbe()}, nil
}

// Repository returns the repository named by reference
// ("host[:port]/name", optionally with ":tag" or "@digest", which is ignored
// here). The repository is set up for registries without the referrers API:
// it does not delete superseded referrers indexes, so a registry with
// deletes disabled does not fail a good push.
func (c *Client) Repository(reference string) (*remote.Repository, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return c.repository(ctx, reference)
}

// RepositoryOf returns repository of registry (host[:port]); it is what
// the service's workers take (pkg/service.RepositoryFunc).
func (c *Client) RepositoryOf(ctx context.Context, registry, repository string) (*remote.Repository, error) {
	return c.repository(ctx, registry+"/"+repository)
}

func (c *Client) repository(ctx context.Context, reference string) (*remote.Repository, error) {
	repo, err := remote.NewRepository(reference)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", reference, err)
	}
	repo.Client = explainedAuth{c.auth}
	repo.PlainHTTP = c.usesPlainHTTP(ctx, repo.Reference.Registry)
	repo.SkipReferrersGC = !c.referrersGC
	return repo, nil
}

// usesPlainHTTP: as configured, else plain HTTP for a loopback registry
// that answers a TLS handshake with plain HTTP.
func (c *Client) usesPlainHTTP(ctx context.Context, host string) bool {
	if c.plainHTTP || (c.plainHTTPHost != nil && c.plainHTTPHost(host)) {
		return true
	}
	return c.loopback.plainHTTP(ctx, host)
}

// RefusedError is a registry's final 401 Unauthorized, after the client
// answered its challenge: it says which registry refused which user, which
// the registry's own error ("response status code 401: unauthorized")
// does not. It unwraps to the *errcode.ErrorResponse.
type RefusedError struct {
	Registry string
	// User is the username sent; empty for anonymous access, "(token)" for
	// a bearer token given as such.
	User string
	Err  error
}

func (e *RefusedError) Error() string {
	who := "anonymous access (no credentials configured for it)"
	if e.User != "" {
		who = fmt.Sprintf("user %q", e.User)
	}
	return fmt.Sprintf("registry %s refused %s: %v", e.Registry, who, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// explainedAuth is the auth client with a missing basic credential
// reported as ErrNoCredentials and a refused one as a RefusedError.
type explainedAuth struct{ *auth.Client }

func (c explainedAuth) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.Client.Do(req)
	var errResp *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return nil, fmt.Errorf("%w for %s: %w", ErrNoCredentials, req.URL.Host, err)
	case err != nil && errors.As(err, &errResp) && errResp.StatusCode == http.StatusUnauthorized:
		// The token service refused the credentials.
		return nil, &RefusedError{Registry: req.URL.Host, User: c.user(req), Err: err}
	case err == nil && resp.StatusCode == http.StatusUnauthorized:
		defer resp.Body.Close()
		return nil, &RefusedError{Registry: req.URL.Host, User: c.user(req), Err: errorResponse(resp)}
	}
	return resp, err
}

// user names the credential the client sent to the request's registry.
func (c explainedAuth) user(req *http.Request) string {
	if c.Credential == nil {
		return ""
	}
	cred, err := c.Credential(req.Context(), req.URL.Host)
	switch {
	case err != nil:
		return ""
	case cred.Username != "":
		return cred.Username
	case cred.AccessToken != "" || cred.RefreshToken != "":
		return "(token)"
	}
	return ""
}

// errorResponse reads a registry's error answer as oras-go reports it.
func errorResponse(resp *http.Response) *errcode.ErrorResponse {
	e := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct {
		Errors errcode.Errors `json:"errors"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil {
		e.Errors = body.Errors
	}
	return e
}

// credentialFunc picks the credentials: a token, then a username and
// password, then the Docker config file, then none. Explicit credentials are
// sent to whichever registry the client talks to, as a client serves one
// registry.
func credentialFunc(opts Options) (auth.CredentialFunc, error) {
	switch {
	case opts.Credential != nil:
		return opts.Credential, nil
	case opts.Token != "":
		cred := auth.Credential{AccessToken: opts.Token}
		return func(context.Context, string) (auth.Credential, error) { return cred, nil }, nil
	case opts.Username != "" || opts.Password != "":
		cred := auth.Credential{Username: opts.Username, Password: opts.Password}
		return func(context.Context, string) (auth.Credential, error) { return cred, nil }, nil
	case opts.NoDockerConfig:
		return nil, nil
	}
	var (
		store credentials.Store
		err   error
	)
	if opts.DockerConfig != "" {
		store, err = credentials.NewStore(opts.DockerConfig, credentials.StoreOptions{})
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("registry client: docker config: %w", err)
	}
	return credentials.Credential(store), nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("registry client: CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("registry client: CA file %s: no PEM certificate", file)
	}
	return pool, nil
}
