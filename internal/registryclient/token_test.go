package registryclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// tokenService is a token service as the Docker registry token spec
// describes it (GET realm?service=&scope= with basic auth, answered with
// a signed JWT), for one user. It grants what each scope asks for on
// repositories under allowedPrefix and nothing elsewhere.
type tokenService struct {
	t             *testing.T
	key           *ecdsa.PrivateKey
	user, pass    string
	service       string
	issuer        string
	allowedPrefix string
	issued        atomic.Int32
}

const tokenKeyID = "soci-indexer-test-key"

func startTokenService(t *testing.T, user, pass, allowedPrefix string) (*tokenService, *httptest.Server) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tokenService{t: t, key: key, user: user, pass: pass, service: "registry.test",
		issuer: "token-service.test", allowedPrefix: allowedPrefix}
	srv := httptest.NewServer(ts)
	t.Cleanup(srv.Close)
	return ts, srv
}

// jwksFile writes the service's public key as a JWKS file for the registry.
func (ts *tokenService) jwksFile() string {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &ts.key.PublicKey, KeyID: tokenKeyID, Algorithm: string(jose.ES256), Use: "sig",
	}}}
	b, err := json.Marshal(set)
	if err != nil {
		ts.t.Fatal(err)
	}
	path := filepath.Join(ts.t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		ts.t.Fatal(err)
	}
	return path
}

// access is one entry of a token's "access" claim.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (ts *tokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != ts.user || pass != ts.pass {
		w.Header().Set("WWW-Authenticate", `Basic realm="token-service"`)
		http.Error(w, `{"details":"bad credentials"}`, http.StatusUnauthorized)
		return
	}
	if got := r.URL.Query().Get("service"); got != ts.service {
		http.Error(w, "unknown service "+got, http.StatusBadRequest)
		return
	}
	var grants []access
	for _, scope := range r.URL.Query()["scope"] {
		for _, s := range strings.Split(scope, " ") {
			// repository:NAME:ACTIONS; NAME may hold a port's colon only
			// with a registry host, which scopes do not carry.
			parts := strings.Split(s, ":")
			if len(parts) != 3 || parts[0] != "repository" || !strings.HasPrefix(parts[1], ts.allowedPrefix) {
				continue
			}
			grants = append(grants, access{Type: parts[0], Name: parts[1], Actions: strings.Split(parts[2], ",")})
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ts.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), tokenKeyID))
	if err != nil {
		ts.t.Error(err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := time.Now()
	claims := struct {
		jwt.Claims
		Access []access `json:"access"`
	}{
		Claims: jwt.Claims{
			Issuer: ts.issuer, Subject: user, Audience: jwt.Audience{ts.service},
			Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
			IssuedAt: jwt.NewNumericDate(now), ID: now.Format(time.RFC3339Nano),
		},
		Access: grants,
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		ts.t.Error(err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ts.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires_in": 300, "issued_at": now.Format(time.RFC3339)})
}

// TestBearerTokenRegistry pushes and indexes through a registry that
// requires bearer tokens from a token service (distribution's "token"
// auth, as Docker Hub and Harbor use): the client fetches a token with
// its credentials for each scope and the build succeeds; wrong
// credentials, and a repository the token service does not grant, fail
// with 401.
func TestBearerTokenRegistry(t *testing.T) {
	ctx := context.Background()
	ts, tokenSrv := startTokenService(t, "alice", "s3cret", "granted/")
	reg, err := registry.Start(ctx, registry.Options{TokenAuth: &registry.TokenAuth{
		Realm: tokenSrv.URL + "/token", Service: ts.service, Issuer: ts.issuer, JWKSFile: ts.jwksFile(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	newRepo := func(t *testing.T, opts Options, name string) *remote.Repository {
		t.Helper()
		opts.PlainHTTP = true
		c, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := c.Repository(reg.Addr() + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return repo
	}
	layer, err := demoimage.RandomLayer(7, 256<<10, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	good := newRepo(t, Options{Username: "alice", Password: "s3cret"}, "granted/app")
	if _, err := demoimage.Push(ctx, good, "v1", []demoimage.Layer{layer}); err != nil {
		t.Fatalf("push with a token: %v", err)
	}
	builder, err := index.NewIndexBuilder(good, index.WithMinLayerSize(0), index.WithSpanSize(64<<10),
		index.WithIndexVersion(index.Both))
	if err != nil {
		t.Fatal(err)
	}
	results, err := builder.Build(ctx, "v1")
	if err != nil {
		t.Fatalf("index with a token: %v", err)
	}
	if len(results) != 2 {
		t.Fatalf("%d soci indexes, want a v1 and a v2 one", len(results))
	}
	if _, err := good.Resolve(ctx, builder.V2Tag("v1")); err != nil {
		t.Errorf("v2 tag: %v", err)
	}
	if ts.issued.Load() == 0 {
		t.Error("the token service issued no token; the registry did not ask for one")
	}

	// Wrong credentials get no token; a repository outside the grant gets
	// a token without access. Both end in the registry's 401.
	wrong := newRepo(t, Options{Username: "alice", Password: "guess"}, "granted/app")
	_, err = wrong.Resolve(ctx, "v1")
	assertUnauthorized(t, "resolve with wrong credentials", err, reg.Addr(), "alice")
	denied := newRepo(t, Options{Username: "alice", Password: "s3cret"}, "other/app")
	_, err = demoimage.Push(ctx, denied, "v1", []demoimage.Layer{layer})
	assertUnauthorized(t, "push outside the grant", err, reg.Addr(), "alice")

	// A token given as is (Options.Token) is sent as the bearer token.
	direct := newRepo(t, Options{Token: "not-a-jwt"}, "granted/app")
	_, err = direct.Resolve(ctx, "v1")
	assertUnauthorized(t, "resolve with a bad token", err, reg.Addr(), "(token)")
}
