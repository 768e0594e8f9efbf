package demoimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

// checkLayer verifies the descriptor and diff ID against the file and
// returns the names in the tar.
func checkLayer(t *testing.T, l Layer) []string {
	t.Helper()
	f, err := os.Open(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	verifier := l.Descriptor.Digest.Verifier()
	st, _ := f.Stat()
	if st.Size() != l.Descriptor.Size {
		t.Errorf("size %d, descriptor says %d", st.Size(), l.Descriptor.Size)
	}
	gz, err := gzip.NewReader(io.TeeReader(f, verifier))
	if err != nil {
		t.Fatal(err)
	}
	diff := digest.Canonical.Digester()
	tr := tar.NewReader(io.TeeReader(gz, diff.Hash()))
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
	_, _ = io.Copy(io.Discard, tr)
	_, _ = io.Copy(io.Discard, gz)
	if !verifier.Verified() {
		t.Error("compressed digest does not match the descriptor")
	}
	if diff.Digest() != l.DiffID {
		t.Errorf("diff ID %s, tar digest %s", l.DiffID, diff.Digest())
	}
	return names
}

func TestRandomLayer(t *testing.T) {
	a, err := RandomLayer(1, 3<<20+5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if names := checkLayer(t, a); len(names) != 4 {
		t.Errorf("%d files, want 4", len(names))
	}
	if a.Descriptor.Size < 3<<20 {
		t.Errorf("compressed size %d: random data should not compress", a.Descriptor.Size)
	}
	b, err := RandomLayer(1, 3<<20+5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := RandomLayer(2, 3<<20+5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.Descriptor.Digest != b.Descriptor.Digest || a.Descriptor.Digest == c.Descriptor.Digest {
		t.Error("same seed must give the same layer, another seed another")
	}
}

func TestLayerFromDir(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.txt", "sub/b.txt"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("hello "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := LayerFromDir(context.Background(), dir, 1<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if names := checkLayer(t, l); len(names) != 2 {
		t.Errorf("files %v, want 2", names)
	}
	u, err := UniqueLayerFromDir(context.Background(), dir, 1<<20, t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if names := checkLayer(t, u); len(names) != 3 || names[0] != ".layer-id" || u.Descriptor.Digest == l.Descriptor.Digest {
		t.Errorf("unique layer: files %v, digest %s", names, u.Descriptor.Digest)
	}
	if _, err := LayerFromDir(context.Background(), t.TempDir(), 1<<20, t.TempDir()); !errors.Is(err, ErrNoFiles) {
		t.Errorf("empty dir: %v, want ErrNoFiles", err)
	}
}

func TestPush(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	l, err := RandomLayer(7, 1<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc, err := Push(ctx, store, "v1", []Layer{l}, WithAnnotations(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := store.Resolve(ctx, "v1")
	if err != nil || tagged.Digest != desc.Digest {
		t.Fatalf("tag v1: %v, %v", tagged.Digest, err)
	}
	body, err := content.FetchAll(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != l.Descriptor.Digest || m.Annotations["k"] != "v" {
		t.Errorf("manifest %+v", m)
	}
	cfgBody, err := content.FetchAll(ctx, store, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgBody, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != l.DiffID {
		t.Errorf("config diff IDs %v, want [%s]", cfg.RootFS.DiffIDs, l.DiffID)
	}
}

// TestTruncatedLayer: the descriptor matches the file, and the file is a
// gzip tar stream that ends before its end.
func TestTruncatedLayer(t *testing.T) {
	l, err := TruncatedLayer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != l.Descriptor.Size || digest.FromBytes(raw) != l.Descriptor.Digest {
		t.Fatalf("descriptor %v does not name the file (%d bytes)", l.Descriptor, len(raw))
	}
	f, _ := os.Open(l.Path)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		if _, err = tr.Next(); err != nil {
			break
		}
		if _, err = io.Copy(io.Discard, tr); err != nil {
			break
		}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the layer: %v, want an unexpected EOF", err)
	}
}
