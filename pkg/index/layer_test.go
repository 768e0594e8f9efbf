package index

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

func TestBuildErrEmptyIndex(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/empty", nil)
	layers := mixedLayers(t, 50, false)
	// Only the small layer and the zstd layer: nothing to index.
	manifest := pushImage(t, repo, imageSpec{layers: []testLayer{layers[2], layers[3]}})

	b, _ := NewIndexBuilder(repo, WithIndexVersion(Both), WithMinLayerSize(testMinLayerSize))
	_, err := b.Build(ctx, "tag@"+manifest.Digest.String())
	if !errors.Is(err, ErrEmptyIndex) {
		t.Fatalf("err = %v, want ErrEmptyIndex", err)
	}
	if err.Error() != "no ztocs created, all layers either skipped or produced errors" {
		t.Fatalf("message %q is not soci's", err)
	}
	if refs := listReferrers(t, repo, manifest); len(refs) != 0 {
		t.Fatalf("referrers %v", refs)
	}
	if _, err := repo.Resolve(ctx, "tag-soci"); err == nil {
		t.Fatal("v2 tag pushed for an empty index")
	}
	// The default minimum size (10 MiB) skips even the big test layers.
	b, _ = NewIndexBuilder(repo)
	manifest = pushImage(t, repo, imageSpec{layers: layers[:2]})
	if _, err := b.Build(ctx, manifest.Digest.String()); !errors.Is(err, ErrEmptyIndex) {
		t.Fatalf("default min layer size: %v", err)
	}
}

func TestBuildRefusesNonLayerMediaType(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/notlayer", nil)
	layers := mixedLayers(t, 60, false)
	odd := testLayer{mediaType: "application/vnd.example.data.v1", data: layers[0].data}
	manifest := pushImage(t, repo, imageSpec{layers: []testLayer{layers[1], odd}})

	b, _ := NewIndexBuilder(repo, WithMinLayerSize(0))
	if _, err := b.Build(ctx, manifest.Digest.String()); !errors.Is(err, ErrNotLayerMediaType) {
		t.Fatalf("err = %v, want ErrNotLayerMediaType", err)
	}
	if refs := listReferrers(t, repo, manifest); len(refs) != 0 {
		t.Fatalf("referrers %v", refs)
	}
}

// TestBuildRefusesCorruptBlob serves layers whose stored bytes no longer
// match their digest: the registry's files are changed on disk after the
// push, keeping their length.
func TestBuildRefusesCorruptBlob(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	reg := startRegistry(t, registry.Options{RootDir: root})
	repo := openRepo(t, reg, "app/corrupt", nil)
	layers := mixedLayers(t, 70, false)
	manifest := pushImage(t, repo, imageSpec{layers: layers[:2]})

	corrupt := func(l testLayer) {
		d := l.descriptor().Digest
		path := filepath.Join(root, "docker/registry/v2/blobs/sha256", d.Encoded()[:2], d.Encoded(), "data")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// A byte inside the last file's data: the tar stays valid.
		data[len(data)-2048] ^= 0xff
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(layers[1]) // the uncompressed layer

	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize))
	_, err := b.Build(ctx, manifest.Digest.String())
	var mismatch *ztoc.DigestMismatchError
	if !errors.Is(err, ztoc.ErrDigestMismatch) || !errors.As(err, &mismatch) || mismatch.Expected != layers[1].descriptor().Digest {
		t.Fatalf("err = %v, want a digest mismatch of %s", err, layers[1].descriptor().Digest)
	}
	if refs := listReferrers(t, repo, manifest); len(refs) != 0 {
		t.Fatalf("referrers %v", refs)
	}
}

func TestBuildXattrOptimization(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/xattr", nil)
	big := 70 << 10
	plain := makeTar(t, 1, []tarFile{{name: "a", size: big}, {name: "b", size: 10, pax: map[string]string{"LIBARCHIVE.xattr.user.x": "dg=="}}})
	withXattr := makeTar(t, 2, []tarFile{{name: "a", size: big, pax: map[string]string{"SCHILY.xattr.user.x": "1"}}})
	opaque := makeTar(t, 3, []tarFile{{name: "d/", isDir: true}, {name: "d/.wh..wh..opq", size: 0}, {name: "d/f", size: big}})
	mt := ocispec.MediaTypeImageLayer
	manifest := pushImage(t, repo, imageSpec{layers: []testLayer{{mt, plain}, {mt, withXattr}, {mt, opaque}}})

	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize), WithOptimizations(XAttrOptimization))
	res, err := b.Build(ctx, manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"true", "", ""}
	for i, blob := range res[0].Index.Blobs {
		if got := blob.Annotations[IndexAnnotationDisableXAttrs]; got != want[i] {
			t.Errorf("layer %d: disable-xattrs %q, want %q", i, got, want[i])
		}
	}
}

func TestBuildReportsProgress(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/progress", nil)
	layers := mixedLayers(t, 80, false)
	manifest := pushImage(t, repo, imageSpec{layers: layers})

	var mu sync.Mutex
	last := map[string]LayerProgress{}
	fetched := map[string]int64{}
	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize), WithLayerConcurrency(1), WithProgress(func(p LayerProgress) {
		mu.Lock()
		defer mu.Unlock()
		last[p.Layer.Digest.String()] = p
		if p.State == LayerFetching {
			fetched[p.Layer.Digest.String()] = p.BytesRead
		}
	}))
	if _, err := b.Build(ctx, manifest.Digest.String()); err != nil {
		t.Fatal(err)
	}
	want := []LayerState{LayerBuilt, LayerBuilt, LayerSkipped, LayerSkipped}
	for i, l := range layers {
		d := l.descriptor()
		p := last[d.Digest.String()]
		if p.State != want[i] || p.Total != d.Size {
			t.Errorf("layer %d: last report %+v", i, p)
		}
		if want[i] == LayerBuilt && fetched[d.Digest.String()] != d.Size {
			t.Errorf("layer %d: read %d of %d bytes", i, fetched[d.Digest.String()], d.Size)
		}
	}
}

func TestBuildRefusesSociIndex(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/self", nil)
	manifest := pushImage(t, repo, imageSpec{layers: mixedLayers(t, 130, false)[:1]})
	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize))
	res, err := b.Build(ctx, manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	// Indexing the SOCI index itself, as a webhook for our own push would.
	if _, err := b.Build(ctx, res[0].Desc.Digest.String()); !errors.Is(err, ErrNotImage) {
		t.Fatalf("err = %v, want ErrNotImage", err)
	}
}

// TestBuildSkipsSparseLayer: a layer with a GNU sparse file in PAX form
// (written by GNU tar at test time) gets no zTOC, with the reason in its
// result; the image is indexed with its other layers.
func TestBuildSkipsSparseLayer(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/sparse", nil)
	tarPath, err := exec.LookPath("tar")
	if err != nil {
		t.Fatalf("GNU tar is needed: %v", err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), simpleTar(t, 7, 1, testMinLayerSize), 0o644); err != nil {
		t.Fatal(err)
	}
	run("truncate", "-s", "8M", "sparse")
	run("dd", "if=big", "of=sparse", "bs=4096", "seek=300", "count=4", "conv=notrunc")
	run(tarPath, "--sparse", "--format=pax", "-cf", "layer.tar", "big", "sparse")
	sparse, err := os.ReadFile(filepath.Join(dir, "layer.tar"))
	if err != nil {
		t.Fatal(err)
	}
	layers := mixedLayers(t, 140, false)
	mt := ocispec.MediaTypeImageLayerGzip
	manifest := pushImage(t, repo, imageSpec{layers: []testLayer{layers[0], {mt, gzipBytes(t, sparse)}}})

	var mu sync.Mutex
	states := map[string]LayerState{}
	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize), WithProgress(func(p LayerProgress) {
		mu.Lock()
		defer mu.Unlock()
		states[p.Layer.Digest.String()] = p.State
	}))
	res, err := b.Build(ctx, manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res[0].Index.Blobs); n != 1 {
		t.Fatalf("%d zTOCs in the index, want 1", n)
	}
	ls := res[0].Layers
	if len(ls) != 2 || ls[0].State != LayerBuilt || ls[1].State != LayerSkipped || ls[1].Ztoc != nil {
		t.Fatalf("layer results %+v", ls)
	}
	if !strings.Contains(ls[1].Reason, "sparse") || !strings.Contains(ls[1].Reason, ztoc.ErrUnservableLayer.Error()) {
		t.Fatalf("reason %q does not say why", ls[1].Reason)
	}
	if got := states[ls[1].Layer.Digest.String()]; got != LayerSkipped {
		t.Fatalf("last progress of the sparse layer: %q", got)
	}
}
