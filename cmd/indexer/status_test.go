package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/status"
)

// TestStatusCommand runs the built binary: `indexer serve --data-dir` with
// its registry, `indexer demo push`, then `indexer status` until the image
// is lazy-loadable, and checks the exit codes 1 and 2.
func TestStatusCommand(t *testing.T) {
	bin := filepath.Join(testproc.Build(t, "./cmd/indexer"), "indexer")
	t.Run("all-in-one", func(t *testing.T) {
		testStatusCommand(t, bin, nil, func(dir string, _ datadir.Server) []string { return []string{"--data-dir", dir} })
	})
	// A deployment on Postgres, asked as from another machine: the server
	// URL and the token given, not found through the data dir.
	t.Run("postgres", func(t *testing.T) {
		dsn, _ := testpg.NewDatabase(t, "status_cli")
		const token = "status-token-of-the-test"
		testStatusCommand(t, bin, []string{"--embedded", "--database-url", dsn, "--status-token", token},
			func(_ string, rec datadir.Server) []string {
				return []string{"--server", rec.HTTP, "--status-token", token}
			})
	})
}

func testStatusCommand(t *testing.T, bin string, serveArgs []string, addr func(dir string, rec datadir.Server) []string) {
	dir, rec, env := startAllInOne(t, bin, serveArgs...)
	deadline := time.Now().Add(60 * time.Second)
	at := addr(dir, rec)
	run := func(args ...string) (string, int) { return testproc.Run(t, bin, env, args...) }
	ref := rec.Registry + "/demo/app:v1"
	if out, code := run("demo", "push", ref); code != 0 {
		t.Fatalf("demo push: %d %s", code, out)
	}
	for {
		out, code := run(append(append([]string{"status"}, at...), ref)...)
		if code == 0 {
			if !strings.Contains(out, "lazy-loadable: yes") || !strings.Contains(out, "soci index v2 linux/amd64: sha256:") {
				t.Errorf("human output:\n%s", out)
			}
			break
		}
		if code != 1 || time.Now().After(deadline) {
			t.Fatalf("status: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, code := run(append(append([]string{"status", "--json"}, at...), ref)...)
	var img status.Image
	if err := json.Unmarshal([]byte(out), &img); code != 0 || err != nil || !img.LazyLoadable {
		t.Errorf("--json: exit %d, %v\n%s", code, err, out)
	}
	if !slices.Equal(img.Platforms, []string{"linux/amd64"}) || len(img.Indexes) != 1 || img.Indexes[0].Version != "v2" ||
		img.Indexes[0].Platform != "linux/amd64" || img.Indexes[0].Digest == "" || img.Indexes[0].Manifest == "" {
		t.Errorf("--json: platforms %v, indexes %+v", img.Platforms, img.Indexes)
	}
	// An image the service does not index says so and why, with exit 1:
	// one layer of 1 MiB is below the 10 MiB minimum layer size.
	small := rec.Registry + "/demo/small:v1"
	if out, code := run("demo", "push", "--layers", "1", "--layer-size", "1048576", small); code != 0 {
		t.Fatalf("demo push: %d %s", code, out)
	}
	for {
		out, code := run(append(append([]string{"status"}, at...), small)...)
		if strings.Contains(out, "tag v1: skipped") {
			if code != 1 || !strings.Contains(out, "skipped: no layer gets a zTOC") || !strings.Contains(out, "lazy-loadable: no") {
				t.Errorf("skipped image: exit %d, want 1 with the reason\n%s", code, out)
			}
			break
		}
		if code != 1 || time.Now().After(deadline.Add(30*time.Second)) {
			t.Fatalf("status of the small image: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, code = run(append(append([]string{"status", "--json"}, at...), small)...)
	var skipped status.Image
	if err := json.Unmarshal([]byte(out), &skipped); code != 1 || err != nil || skipped.LazyLoadable || skipped.Indexed ||
		len(skipped.Tags) != 1 || skipped.Tags[0].State != "skipped" || !strings.Contains(skipped.Tags[0].SkipReason, "minimum layer size") {
		t.Errorf("--json of the skipped image: exit %d, %v\n%s", code, err, out)
	}
	if out, code := run(append(append([]string{"status"}, at...), rec.Registry+"/demo/none:v1")...); code != 1 {
		t.Errorf("unknown image: exit %d, want 1\n%s", code, out)
	}
	if out, code := run("status", "--server", rec.HTTP, "--status-token", "wrong", ref); code != 2 {
		t.Errorf("wrong token: exit %d, want 2\n%s", code, out)
	}
	if out, code := run("status", "--data-dir", dir, "no-registry"); code != 2 {
		t.Errorf("bad ref: exit %d, want 2\n%s", code, out)
	}
	if out, code := run("status", "--data-dir", t.TempDir(), ref); code != 2 {
		t.Errorf("no server: exit %d, want 2\n%s", code, out)
	}
}

// startAllInOne runs `indexer serve --data-dir` on loopback ports with
// serveArgs and waits until it has recorded itself in its data directory.
func startAllInOne(t *testing.T, bin string, serveArgs ...string) (dir string, rec datadir.Server, env []string) {
	t.Helper()
	dir = t.TempDir()
	env = testproc.BaseEnv(t)
	testproc.Start(t, "serve", bin, append([]string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0",
		"--registry-listen", "127.0.0.1:0"}, serveArgs...), env)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		if rec, err = datadir.Dir(dir).Running(); err == nil {
			return dir, rec, env
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never recorded itself: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
