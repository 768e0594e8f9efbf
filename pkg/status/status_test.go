package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// backends runs fn on a migrated SQLite database and on a new database of
// the machine's PostgreSQL: the status service reads both the same way.
func backends(t *testing.T, fn func(t *testing.T, st db.Store)) {
	open := func(t *testing.T, dsn string) db.Store {
		ctx := context.Background()
		if _, err := db.Migrate(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		st, err := db.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	t.Run("sqlite", func(t *testing.T) {
		fn(t, open(t, "sqlite://"+filepath.Join(t.TempDir(), "indexer.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn, _ := testpg.NewDatabase(t, "status")
		fn(t, open(t, dsn))
	})
}

const (
	dgstA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dgstB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestParseRef(t *testing.T) {
	for in, want := range map[string]Ref{
		"reg:5000/a/b:v1":  {Registry: "reg:5000", Repository: "a/b", Tag: "v1"},
		"reg/a@" + dgstA:   {Registry: "reg", Repository: "a", Digest: dgstA},
		"reg/a:t@" + dgstA: {Registry: "reg", Repository: "a", Tag: "t", Digest: dgstA},
	} {
		got, err := ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "reg/a", "reg:5000/a", "reg/a@nodigest"} {
		if _, err := ParseRef(in); !errors.Is(err, ErrBadRef) {
			t.Errorf("ParseRef(%q) err = %v, want ErrBadRef", in, err)
		}
	}
}

func TestImageAndRepositories(t *testing.T) { backends(t, testImageAndRepositories) }

func testImageAndRepositories(t *testing.T, st db.Store) {
	ctx := context.Background()
	ok := db.JobKey{Registry: "reg", Repository: "app", Digest: dgstA, Tag: "v1"}
	bad := db.JobKey{Registry: "reg", Repository: "app", Digest: dgstB, Tag: "broken"}
	for _, k := range []db.JobKey{ok, bad} {
		if _, err := st.UpsertQueued(ctx, k, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Start(ctx, k, "w1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.WriteArtifactEntries(ctx, []*index.ArtifactEntry{{Digest: dgstB, Size: 4096, Location: dgstA,
		OriginalDigest: dgstA, Type: index.ArtifactEntryTypeLayer, MediaType: "application/octet-stream",
		CreatedAt: time.Now(), SpanSize: 1 << 22, BuildToolIdentifier: "test", BuilderVersion: "test",
		Locations: []index.Location{{Registry: "reg", Repository: "app"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordLayerUses(ctx, ok.Image(), []db.LayerUse{
		{LayerDigest: dgstA, LayerSize: 10 << 20, ZtocDigest: dgstB},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Succeed(ctx, ok, db.JobResult{OptionsHash: "h", IndexDigest: dgstB}); err != nil {
		t.Fatal(err)
	}
	if err := st.Fail(ctx, bad, errors.New("gzip: truncated"), true); err != nil {
		t.Fatal(err)
	}

	svc := New(st, nil)
	h := NewHandler(svc, "secret", nil)
	get := func(path, token string) (int, []byte) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	if code, _ := get("/status/api/v1/repositories", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := get("/status/api/v1/repositories", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}

	code, body := get("/status/api/v1/images?ref=reg/app:v1", "secret")
	if code != http.StatusOK {
		t.Fatalf("images: %d %s", code, body)
	}
	var img Image
	if err := json.Unmarshal(body, &img); err != nil {
		t.Fatal(err)
	}
	if !img.Indexed || !img.LazyLoadable || img.Digest != dgstA || img.ZtocsBuilt != 1 || len(img.Tags) != 1 ||
		img.Tags[0].IndexDigest != dgstB || img.Tags[0].State != "succeeded" {
		t.Errorf("indexed image: %s", body)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	for _, f := range []string{"registry", "repository", "digest", "known", "indexed", "lazy_loadable", "tags", "layers", "ztocs_built", "ztocs_reused"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("field %q missing in %s", f, body)
		}
	}

	code, body = get("/status/api/v1/images?ref=reg/app@"+dgstB, "secret")
	if err := json.Unmarshal(body, &img); code != http.StatusOK || err != nil {
		t.Fatalf("failed image: %d %s", code, body)
	}
	if img.Indexed || img.LazyLoadable || len(img.Tags) != 1 || img.Tags[0].State != "failed" || img.Tags[0].LastError == "" {
		t.Errorf("failed image: %s", body)
	}

	code, body = get("/status/api/v1/images?ref=reg/app:nope", "secret")
	if err := json.Unmarshal(body, &img); code != http.StatusOK || err != nil || img.Known || img.LazyLoadable {
		t.Errorf("unknown image: %d %s", code, body)
	}
	if code, _ := get("/status/api/v1/images?ref=bad", "secret"); code != http.StatusBadRequest {
		t.Errorf("bad ref: %d, want 400", code)
	}

	code, body = get("/status/api/v1/repositories", "secret")
	var repos struct{ Repositories []Repository }
	if err := json.Unmarshal(body, &repos); code != http.StatusOK || err != nil {
		t.Fatalf("repositories: %d %s", code, body)
	}
	if len(repos.Repositories) != 1 || repos.Repositories[0] != (Repository{Registry: "reg", Repository: "app", Images: 2, Indexed: 1, Failed: 1}) {
		t.Errorf("repositories: %s", body)
	}
}
