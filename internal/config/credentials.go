package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/soci-indexer/soci-indexer/internal/registryclient"
)

// Credentials returns the credential store for registries: the
// --registry-auth entries first, then the Docker config file (with its
// credential helpers). A missing Docker config file is not an error.
func (c *Config) Credentials() (credentials.Store, error) {
	static := credentials.NewMemoryStore()
	for _, entry := range c.RegistryAuth {
		host, cred, err := parseRegistryAuth(entry)
		if err != nil {
			return nil, err
		}
		if err := static.Put(context.Background(), host, cred); err != nil {
			return nil, fmt.Errorf("%w: registry auth for %s: %w", ErrInvalid, host, err)
		}
	}
	path := c.DockerConfig
	if path == "" {
		path = defaultDockerConfig()
	}
	if path == "" {
		return static, nil
	}
	docker, err := credentials.NewStore(path, credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: docker config %s: %w", ErrInvalid, path, err)
	}
	return credentials.NewStoreWithFallbacks(static, docker), nil
}

// CredentialFunc is Credentials in the form oras-go's auth.Client takes.
func (c *Config) CredentialFunc() (auth.CredentialFunc, error) {
	store, err := c.Credentials()
	if err != nil {
		return nil, err
	}
	return credentials.Credential(store), nil
}

// UsesPlainHTTP tells whether registry host (host[:port]) is reached over
// plain HTTP.
func (c *Config) UsesPlainHTTP(host string) bool {
	if c.PlainHTTP {
		return true
	}
	for _, h := range c.PlainHTTPRegistries {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// parseRegistryAuth parses HOST=USER:PASSWORD. The password may contain
// ':' and '='; a USER of "<token>" makes PASSWORD a registry bearer token,
// as in the Docker config file.
func parseRegistryAuth(entry string) (string, auth.Credential, error) {
	host, userPass, ok := strings.Cut(entry, "=")
	if !ok || host == "" {
		return "", auth.EmptyCredential, fmt.Errorf("%w: registry auth %q: want HOST=USER:PASSWORD", ErrInvalid, redact(entry))
	}
	user, pass, ok := strings.Cut(userPass, ":")
	if !ok || user == "" {
		return "", auth.EmptyCredential, fmt.Errorf("%w: registry auth for %s: want HOST=USER:PASSWORD", ErrInvalid, host)
	}
	if user == "<token>" {
		return host, auth.Credential{RefreshToken: pass}, nil
	}
	return host, auth.Credential{Username: user, Password: pass}, nil
}

// redact keeps the host of a malformed entry for the error message and
// drops what may be a password.
func redact(entry string) string {
	host, _, _ := strings.Cut(entry, "=")
	return host + "=…"
}

// defaultDockerConfig is $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json, or "" when neither exists.
func defaultDockerConfig() string {
	var candidates []string
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "config.json"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// RegistryClientOptions are the options of the one registry client the CLI
// and the service use (internal/registryclient): credentials per host from
// --registry-auth and the Docker config (auths, credHelpers, credsStore),
// the CA file, and plain HTTP per host.
func (c *Config) RegistryClientOptions() (registryclient.Options, error) {
	cred, err := c.CredentialFunc()
	if err != nil {
		return registryclient.Options{}, err
	}
	return registryclient.Options{
		PlainHTTPHost: c.UsesPlainHTTP,
		CAFile:        c.RegistryCAFile,
		Credential:    cred,
		UserAgent:     "soci-indexer",
	}, nil
}
