package registryclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// TestBasicAuthRegistry pushes and indexes through a registry that
// requires basic auth (htpasswd): the right credentials, given as options
// or in a Docker config file, get in; none or wrong ones fail with 401.
func TestBasicAuthRegistry(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{Htpasswd: map[string]string{"alice": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	dockerConfig := func(user, password string) string {
		return dockerConfigFor(t, reg.Addr(), user, password)
	}
	helperDir := credentialHelper(t, "sitest", reg.Addr(), "alice", "s3cret")
	t.Setenv("PATH", helperDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	credentialHelper(t, "sibad", reg.Addr(), "alice", "guess", helperDir)
	good := map[string]Options{
		"flags":         {Username: "alice", Password: "s3cret"},
		"docker config": {DockerConfig: dockerConfig("alice", "s3cret")},
		// As ECR, GCR and ACR users log in: a helper program per registry,
		// or one for every registry.
		"docker config with credHelpers": {DockerConfig: writeDockerConfig(t, `{"credHelpers":{"`+reg.Addr()+`":"sitest"}}`)},
		"docker config with credsStore":  {DockerConfig: writeDockerConfig(t, `{"credsStore":"sitest"}`)},
	}
	// Each bad client with the user the registry must be said to refuse.
	bad := map[string]struct {
		opts Options
		user string
	}{
		"no credentials":            {Options{NoDockerConfig: true}, ""},
		"docker config, other host": {Options{DockerConfig: dockerConfigFor(t, "elsewhere.example:5000", "alice", "s3cret")}, ""},
		"wrong password":            {Options{Username: "alice", Password: "guess"}, "alice"},
		"docker config, wrong user": {Options{DockerConfig: dockerConfig("bob", "s3cret")}, "bob"},
		"credential helper, wrong":  {Options{DockerConfig: writeDockerConfig(t, `{"credHelpers":{"`+reg.Addr()+`":"sibad"}}`)}, "alice"},
	}

	var seed uint64
	for name, opts := range good {
		t.Run(name, func(t *testing.T) {
			seed++
			opts.PlainHTTP = true
			c, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			repo, err := c.Repository(reg.Addr() + "/auth/app")
			if err != nil {
				t.Fatal(err)
			}
			layer, err := demoimage.RandomLayer(seed, 256<<10, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tag := strings.ReplaceAll(name, " ", "-")
			if _, err := demoimage.Push(ctx, repo, tag, []demoimage.Layer{layer}); err != nil {
				t.Fatalf("push with credentials: %v", err)
			}
			builder, err := index.NewIndexBuilder(repo, index.WithMinLayerSize(0), index.WithSpanSize(64<<10),
				index.WithIndexVersion(index.Both))
			if err != nil {
				t.Fatal(err)
			}
			results, err := builder.Build(ctx, tag)
			if err != nil {
				t.Fatalf("index with credentials: %v", err)
			}
			if len(results) != 2 {
				t.Fatalf("%d soci indexes, want a v1 and a v2 one", len(results))
			}
			if _, err := repo.Resolve(ctx, builder.V2Tag(tag)); err != nil {
				t.Errorf("v2 tag %s: %v", builder.V2Tag(tag), err)
			}
		})
	}

	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			opts := tc.opts
			opts.PlainHTTP = true
			c, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			repo, err := c.Repository(reg.Addr() + "/auth/app")
			if err != nil {
				t.Fatal(err)
			}
			layer, err := demoimage.RandomLayer(100, 64<<10, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, err = demoimage.Push(ctx, repo, "denied", []demoimage.Layer{layer})
			assertUnauthorized(t, "push", err, reg.Addr(), tc.user)

			// The images the good clients pushed cannot be indexed either.
			builder, err := index.NewIndexBuilder(repo, index.WithMinLayerSize(0))
			if err != nil {
				t.Fatal(err)
			}
			_, err = builder.Build(ctx, "flags")
			assertUnauthorized(t, "index", err, reg.Addr(), tc.user)
		})
	}
}

// dockerConfigFor writes a Docker config file with credentials for host.
func dockerConfigFor(t *testing.T, host, user, password string) string {
	t.Helper()
	encoded := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return writeDockerConfig(t, `{"auths":{"`+host+`":{"auth":"`+encoded+`"}}}`)
}

func writeDockerConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// credentialHelper writes docker-credential-NAME, a credential helper
// program speaking Docker's helper protocol ("get" reads a server URL on
// stdin and answers JSON), that knows one user for host. It goes into dir
// (a new one when none is given), which is returned for PATH.
func credentialHelper(t *testing.T, name, host, user, secret string, dir ...string) string {
	t.Helper()
	d := t.TempDir()
	if len(dir) > 0 {
		d = dir[0]
	}
	script := `#!/bin/sh
[ "$1" = get ] || { echo "unsupported: $1" >&2; exit 1; }
read -r server
case "$server" in
` + host + `|http://` + host + `|https://` + host + `)
	printf '{"ServerURL":"%s","Username":"` + user + `","Secret":"` + secret + `"}\n' "$server" ;;
*)
	echo "credentials not found in native keychain"; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(d, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// assertUnauthorized checks that err is the registry's 401 or
// ErrNoCredentials (no credentials at all), and that its text says 401 and
// names the registry and, when credentials were sent, the user refused.
func assertUnauthorized(t *testing.T, what string, err error, registry, user string) {
	t.Helper()
	var (
		resp    *errcode.ErrorResponse
		refused *RefusedError
	)
	switch {
	case user == "" && errors.Is(err, ErrNoCredentials):
	case errors.As(err, &refused) && errors.As(err, &resp) && resp.StatusCode == http.StatusUnauthorized:
		if refused.Registry != registry || refused.User != user {
			t.Errorf("%s: refused %q by %s, want %q by %s", what, refused.User, refused.Registry, user, registry)
		}
		if user != "" && !strings.Contains(err.Error(), fmt.Sprintf("user %q", user)) {
			t.Errorf("%s: error %q does not name user %q", what, err, user)
		}
	default:
		t.Fatalf("%s: got %v, want a 401 from the registry, said to refuse %q", what, err, user)
	}
	if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), registry) {
		t.Errorf("%s: error %q does not name the 401 and the registry %s", what, err, registry)
	}
}
