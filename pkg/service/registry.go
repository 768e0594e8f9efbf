package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// RepositoryFunc returns a client for one repository of a registry.
type RepositoryFunc func(ctx context.Context, registry, repository string) (*remote.Repository, error)

// RegistryOptions configure NewRepositoryFunc.
type RegistryOptions struct {
	// Credential answers the credentials of a registry host; nil means
	// anonymous.
	Credential auth.CredentialFunc
	// PlainHTTP tells whether a registry host is reached over plain HTTP;
	// nil means never.
	PlainHTTP func(host string) bool
	// CAFile is a PEM file of CAs trusted in addition to the system's.
	CAFile string
	// UserAgent sent with every request.
	UserAgent string
	// Transport replaces the base HTTP transport (default: a clone of
	// http.DefaultTransport with CAFile applied).
	Transport http.RoundTripper
}

// NewRepositoryFunc returns a RepositoryFunc whose clients share one HTTP
// transport with retries on 5xx/429 and network errors, and one token cache.
func NewRepositoryFunc(opts RegistryOptions) (RepositoryFunc, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	var transport http.RoundTripper = base
	if opts.Transport != nil {
		transport = opts.Transport
	}
	if opts.CAFile != "" {
		if opts.Transport != nil {
			return nil, fmt.Errorf("registry CA file cannot be combined with a custom transport")
		}
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("registry CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry CA file %s: no PEM certificate", opts.CAFile)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &auth.Client{
		Client:     &http.Client{Transport: retry.NewTransport(transport)},
		Cache:      auth.NewCache(),
		Credential: opts.Credential,
	}
	if opts.UserAgent != "" {
		client.SetUserAgent(opts.UserAgent)
	}
	return func(_ context.Context, registry, repository string) (*remote.Repository, error) {
		repo, err := remote.NewRepository(registry + "/" + repository)
		if err != nil {
			return nil, fmt.Errorf("repository %s/%s: %w", registry, repository, err)
		}
		repo.Client = client
		repo.PlainHTTP = opts.PlainHTTP != nil && opts.PlainHTTP(registry)
		return repo, nil
	}, nil
}
