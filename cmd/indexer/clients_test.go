package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/testenv"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/status"
)

// TestRealClientPushes pushes to the all-in-one server with the clients
// users push with, run as programs (scripts/ensure-clients installs them):
// crane appends a layer to an empty image, skopeo copies that image to
// another repository as OCI, and oras pushes a file artifact. The images
// are indexed (the copy reusing the first image's zTOC, its layer being the
// same blob); the artifact is skipped, and `indexer status` says why.
func TestRealClientPushes(t *testing.T) {
	crane := testenv.RequireTool(t, "crane")
	oras := testenv.RequireTool(t, "oras")
	skopeo := testenv.RequireTool(t, "skopeo")
	bin := filepath.Join(testproc.Build(t, "./cmd/indexer"), "indexer")
	// Small layers get zTOCs too, so that the test pushes little.
	dir, rec, env := startAllInOne(t, bin, "--min-layer-size", "0")
	reg := rec.Registry

	client := func(prog string, args ...string) {
		t.Helper()
		if out, code := testproc.Run(t, prog, env, args...); code != 0 {
			t.Fatalf("%s %s: exit %d\n%s", filepath.Base(prog), strings.Join(args, " "), code, out)
		}
	}
	client(crane, "append", "--insecure", "-f", writeLayerTar(t, 4<<20), "-t", reg+"/crane/app:v1")
	client(skopeo, "copy", "--insecure-policy", "--src-tls-verify=false", "--dest-tls-verify=false",
		"--format", "oci", "docker://"+reg+"/crane/app:v1", "docker://"+reg+"/skopeo/app:v1")
	notes := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notes, []byte("release notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	client(oras, "push", "--plain-http", "--disable-path-validation", reg+"/oras/notes:v1", notes+":text/plain")

	// waitDone asks `indexer status --json` until the tag's job has ended.
	waitDone := func(ref string) (status.Image, int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			out, code := testproc.Run(t, bin, env, "status", "--json", "--data-dir", dir, ref)
			var img status.Image
			if err := json.Unmarshal([]byte(out), &img); err != nil && code != 1 {
				t.Fatalf("status %s: exit %d, %v\n%s", ref, code, err, out)
			}
			if len(img.Tags) == 1 {
				switch img.Tags[0].State {
				case "succeeded", "failed", "skipped":
					return img, code
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %s: no finished job after 90 s: exit %d\n%s", ref, code, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	img, code := waitDone(reg + "/crane/app:v1")
	if code != 0 || !img.LazyLoadable || img.ZtocsBuilt != 1 {
		t.Errorf("crane's image: exit %d, %+v", code, img)
	}
	img, code = waitDone(reg + "/skopeo/app:v1")
	if code != 0 || !img.LazyLoadable || img.ZtocsBuilt != 0 || img.ZtocsReused != 1 {
		t.Errorf("skopeo's copy: exit %d, want lazy-loadable with the zTOC reused, not built: %+v", code, img)
	}
	img, code = waitDone(reg + "/oras/notes:v1")
	if code != 1 || img.LazyLoadable || img.Tags[0].State != "skipped" || !strings.Contains(img.Tags[0].SkipReason, "artifact") {
		t.Errorf("oras's artifact: exit %d, want skipped as an artifact: %+v", code, img)
	}
	out, code := testproc.Run(t, bin, env, "status", "--data-dir", dir, reg+"/oras/notes:v1")
	if code != 1 || !strings.Contains(out, "skipped: ") {
		t.Errorf("human status of the artifact: exit %d\n%s", code, out)
	}
}

// writeLayerTar writes an uncompressed tar of files of pseudo-random text
// (compressible, as real files are) adding up to about size bytes, as
// `crane append -f` takes a layer.
func writeLayerTar(t *testing.T, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("layer index span checkpoint registry manifest digest snapshot lazy pull mount blob")
	for i := 0; size > 0; i++ {
		var b strings.Builder
		for b.Len() < 256<<10 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(" \n"[rng.IntN(2)])
		}
		body := b.String()
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/file-%03d.txt", i), Mode: 0o644,
			Size: int64(len(body)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		size -= len(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
