package compat

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/awslabs/soci-snapshotter/soci"
	"github.com/awslabs/soci-snapshotter/soci/store"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// Media types of Docker schema 2 images, as soci and containerd spell them.
const (
	dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerTar  = "application/vnd.docker.image.rootfs.diff.tar"
	dockerConfig    = "application/vnd.docker.container.image.v1+json"
	dockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
)

// indexSpanSize is small enough that the test layers have several spans.
const indexSpanSize = 64 << 10

// TestIndexBuildDigests is docs/format.md 10.H, second half: the same image
// indexed by soci's IndexBuilder (Build for v1, Convert for v2) and by
// pkg/index gives the same digests for the v1 SOCI index manifest and for
// the v2 OCI index (which pins the rewritten image manifest and the v2 SOCI
// index). Single-manifest images with OCI and Docker media types, one gzip
// and one uncompressed tar layer, with and without the xattr optimization.
// Both builders run with their default build tool identifier.
func TestIndexBuildDigests(t *testing.T) {
	for _, docker := range []bool{false, true} {
		for _, xattr := range []bool{false, true} {
			name := "oci"
			if docker {
				name = "docker"
			}
			if xattr {
				name += "/xattr"
			}
			t.Run(name, func(t *testing.T) { checkSingleManifestIndexes(t, docker, xattr) })
		}
	}
}

func checkSingleManifestIndexes(t *testing.T, docker, xattr bool) {
	gzMT, tarMT, cfgMT, manMT := ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	if docker {
		gzMT, tarMT, cfgMT, manMT = dockerLayerGzip, dockerLayerTar, dockerConfig, dockerManifest
	}
	l1, l2 := newImageBlob(gzMT, testLayer(t, 1, 6, true)), newImageBlob(tarMT, testLayer(t, 2, 3, false))
	cfg := newImageBlob(cfgMT, mustJSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("a"), digest.FromString("b")}},
	}))
	man := newImageBlob(manMT, mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manMT,
		Config:    cfg.desc,
		Layers:    []ocispec.Descriptor{l1.desc, l2.desc},
	}))
	blobs := []imageBlob{l1, l2, cfg}
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}

	sociOpts := []soci.BuilderOption{soci.WithSpanSize(indexSpanSize)}
	ourOpts := []index.BuildOption{index.WithSpanSize(indexSpanSize)}
	if xattr {
		sociOpts = append(sociOpts, soci.WithOptimizations([]soci.Optimization{soci.XAttrOptimization}))
		ourOpts = append(ourOpts, index.WithOptimizations(index.XAttrOptimization))
	}
	sb := newSociBuilder(t, append(blobs, man), sociOpts...)
	img := images.Image{Name: "example/app:1", Target: man.desc}
	sociV1, err := sb.Build(t.Context(), img, soci.WithPlatform(amd64))
	if err != nil {
		t.Fatalf("soci Build: %v", err)
	}
	sociV2, err := sb.Convert(t.Context(), img)
	if err != nil {
		t.Fatalf("soci Convert: %v", err)
	}

	res := buildWithOurIndexBuilder(t, blobs, man, ourOpts...)
	v1 := findResult(t, res, index.V1, amd64)
	v2 := findResult(t, res, index.V2, amd64)
	if xattr {
		for _, b := range v1.Index.Blobs {
			if b.MediaType == index.SociLayerMediaType && b.Annotations[index.IndexAnnotationDisableXAttrs] != "true" {
				t.Errorf("zTOC of layer %s: no %s annotation", b.Annotations[index.IndexAnnotationImageLayerDigest],
					index.IndexAnnotationDisableXAttrs)
			}
		}
	}
	compareV1(t, sociV1, v1)
	if diff := compareV2(t, sb, sociV2, res, v2); diff != "" {
		t.Error(diff)
	}
}

// TestIndexBuildDigestsMultiPlatform is 10.H for an OCI image index of two
// platforms, linux/amd64 and linux/arm64/v8 (the variant as docker buildx
// writes it): a v1 index per platform, and one v2 OCI index for all. The
// platforms are chosen as soci's CLI does: --all-platforms passes the
// image index's descriptors as they are (images.Platforms), --platform
// parses with platforms.Parse (which keeps an explicit "v8" and adds none).
// Ours gets the same choices through index.ParsePlatform and WithPlatform.

func TestIndexBuildDigestsMultiPlatform(t *testing.T) {
	for _, tc := range []struct {
		name      string
		platforms []string // nil: all platforms
	}{
		{"all-platforms", nil},
		{"platform=linux/amd64,linux/arm64", []string{"linux/amd64", "linux/arm64"}},
		{"platform=linux/arm64/v8", []string{"linux/arm64/v8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff, _, _ := checkMultiPlatformIndexes(t, tc.platforms); diff != "" {
				t.Error(diff)
			}
		})
	}
}

// checkMultiPlatformIndexes fails t on a v1 difference and returns the v2
// difference, if any, with both OCI indexes.
func checkMultiPlatformIndexes(t *testing.T, platformFlags []string) (diff string, ourJSON, sociJSON []byte) {
	platformImage := func(seed uint64, p ocispec.Platform) (blobs []imageBlob, man imageBlob) {
		l := newImageBlob(ocispec.MediaTypeImageLayerGzip, testLayer(t, seed, 4, true))
		cfg := newImageBlob(ocispec.MediaTypeImageConfig, mustJSON(t, ocispec.Image{Platform: p}))
		man = newImageBlob(ocispec.MediaTypeImageManifest, mustJSON(t, ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    cfg.desc,
			Layers:    []ocispec.Descriptor{l.desc},
		}))
		man.desc.Platform = &p
		return []imageBlob{l, cfg}, man
	}
	aBlobs, aMan := platformImage(10, ocispec.Platform{OS: "linux", Architecture: "amd64"})
	bBlobs, bMan := platformImage(20, ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	idx := newImageBlob(ocispec.MediaTypeImageIndex, mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{aMan.desc, bMan.desc},
	}))
	// The registry checks that an index's manifests exist, so they are
	// pushed with the other blobs before the index.
	blobs := append(append(append(aBlobs, aMan), bBlobs...), bMan)

	sb := newSociBuilder(t, append(blobs, idx))
	img := images.Image{Name: "example/multi:1", Target: idx.desc}
	var sociPlats []ocispec.Platform
	ourOpts := []index.BuildOption{index.WithAllPlatforms()}
	if platformFlags == nil {
		var err error
		if sociPlats, err = images.Platforms(t.Context(), sb.content, idx.desc); err != nil {
			t.Fatal(err)
		}
	} else {
		ourOpts = nil
		for _, f := range platformFlags {
			p, err := platforms.Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			sociPlats = append(sociPlats, p)
			ours, err := index.ParsePlatform(f)
			if err != nil {
				t.Fatalf("index.ParsePlatform(%q): %v", f, err)
			}
			ourOpts = append(ourOpts, index.WithPlatform(ours))
		}
	}
	var sociV1 []*soci.IndexWithMetadata
	for _, p := range sociPlats {
		r, err := sb.Build(t.Context(), img, soci.WithPlatform(p))
		if err != nil {
			t.Fatalf("soci Build(%s): %v", platforms.Format(p), err)
		}
		sociV1 = append(sociV1, r)
	}
	sociV2, err := sb.Convert(t.Context(), img, soci.ConvertWithPlatforms(sociPlats...))
	if err != nil {
		t.Fatalf("soci Convert: %v", err)
	}

	res := buildWithOurIndexBuilder(t, blobs, idx, ourOpts...)
	if want := 2 * len(sociPlats); len(res.res) != want {
		t.Errorf("our builder made %d indexes, want %d", len(res.res), want)
	}
	for i, p := range sociPlats {
		compareV1(t, sociV1[i], findResult(t, res, index.V1, p))
	}
	// Every platform's v2 result names the same OCI index.
	v2 := findResult(t, res, index.V2, sociPlats[0])
	if diff = compareV2(t, sb, sociV2, res, v2); diff != "" {
		ourJSON, sociJSON = []byte(res.fetch(t.Context(), v2.ImageDesc)), []byte(fetchFromSoci(t.Context(), sb, *sociV2))
	}
	return diff, ourJSON, sociJSON
}

// imageBlob is a blob of a test image with its descriptor.
type imageBlob struct {
	desc ocispec.Descriptor
	data []byte
}

func newImageBlob(mediaType string, data []byte) imageBlob {
	return imageBlob{ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLayer is a tar of n files of 50 KiB, half random bytes so that they
// compress to about half, gzipped if gz.
func testLayer(t *testing.T, seed uint64, n int, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range n {
		data := make([]byte, 50<<10)
		for j := 0; j < len(data); j += 2 {
			data[j] = byte(rng.IntN(256))
		}
		hdr := &tar.Header{
			Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(len(data)),
			ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if !gz {
		return buf.Bytes()
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// sociArtifactsDB is soci's artifacts database for the whole test process:
// soci.NewDB opens one database per process (a sync.Once) and returns that
// one for every later path. TestMain removes its directory.
var sociArtifactsDB = sync.OnceValues(func() (*soci.ArtifactsDb, error) {
	dir, err := os.MkdirTemp("", "soci-artifacts-")
	if err != nil {
		return nil, err
	}
	sociArtifactsDir = dir
	return soci.NewDB(filepath.Join(dir, "artifacts.db"))
})

// sociArtifactsDir is the directory of sociArtifactsDB, removed by TestMain.
var sociArtifactsDir string

// sociBuilder is soci's IndexBuilder with the blob store it writes to.
type sociBuilder struct {
	*soci.IndexBuilder
	content content.Store
	blobs   store.Store
}

// newSociBuilder writes blobs to a fresh containerd content store and
// returns a soci IndexBuilder over it with a fresh SOCI blob store. zTOCs
// are always rebuilt: the artifacts database is shared by every test.
func newSociBuilder(t *testing.T, blobs []imageBlob, opts ...soci.BuilderOption) sociBuilder {
	t.Helper()
	ctx := t.Context()
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if err := content.WriteBlob(ctx, cs, b.desc.Digest.String(), bytes.NewReader(b.data), b.desc); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := store.NewSociStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sociArtifactsDB()
	if err != nil {
		t.Fatalf("soci artifacts db: %v", err)
	}
	opts = append([]soci.BuilderOption{
		soci.WithMinLayerSize(0), soci.WithArtifactsDb(db), soci.WithForceRecreateZtocs(true),
	}, opts...)
	sb, err := soci.NewIndexBuilder(cs, bs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return sociBuilder{sb, cs, bs}
}

// buildWithOurIndexBuilder pushes blobs and then root (tagged "1") to an
// embedded registry and runs pkg/index's builder on it for v1 and v2.
func buildWithOurIndexBuilder(t *testing.T, blobs []imageBlob, root imageBlob, opts ...index.BuildOption) ourBuild {
	t.Helper()
	ctx := t.Context()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	c, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(reg.Addr() + "/example/app")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if err := repo.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			t.Fatalf("push %s: %v", b.desc.MediaType, err)
		}
	}
	if err := repo.PushReference(ctx, root.desc, bytes.NewReader(root.data), "1"); err != nil {
		t.Fatalf("push %s: %v", root.desc.MediaType, err)
	}
	opts = append([]index.BuildOption{index.WithIndexVersion(index.Both), index.WithMinLayerSize(0)}, opts...)
	ib, err := index.NewIndexBuilder(repo, opts...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ib.Build(ctx, "1")
	if err != nil {
		t.Fatalf("index.IndexBuilder.Build: %v", err)
	}
	return ourBuild{res, repo}
}

// ourBuild is what pkg/index built, and the repository it pushed to.
type ourBuild struct {
	res  []index.IndexWithMetadata
	repo *remote.Repository
}

// fetch returns the blob desc from our registry, or why not.
func (b ourBuild) fetch(ctx context.Context, desc ocispec.Descriptor) string {
	raw, err := orascontent.FetchAll(ctx, b.repo, desc)
	if err != nil {
		return fmt.Sprintf("(fetch %s: %v)", desc.Digest, err)
	}
	return string(raw)
}

func findResult(t *testing.T, ours ourBuild, v index.IndexVersion, p ocispec.Platform) index.IndexWithMetadata {
	t.Helper()
	res := ours.res
	for _, r := range res {
		if r.Version == v && index.MatchPlatform(p, r.Platform) {
			return r
		}
	}
	t.Fatalf("no %v index for %s among %d results", v, index.FormatPlatform(p), len(res))
	return index.IndexWithMetadata{}
}

func compareV1(t *testing.T, want *soci.IndexWithMetadata, got index.IndexWithMetadata) {
	t.Helper()
	if want.Desc.Digest == got.Desc.Digest && want.Desc.Size == got.Desc.Size {
		return
	}
	sociJSON, _ := soci.MarshalIndex(want.Index)
	ourJSON, _ := index.MarshalIndex(got.Index)
	t.Errorf("v1 SOCI index for %s: ours %s (%d bytes), soci %s (%d bytes)\nours: %s\nsoci: %s",
		index.FormatPlatform(got.Platform), got.Desc.Digest, got.Desc.Size, want.Desc.Digest, want.Desc.Size, ourJSON, sociJSON)
}

// compareV2 compares the v2 OCI indexes (which pin the rewritten manifests
// and the v2 SOCI indexes); it returns a description of the difference,
// empty if there is none.
func compareV2(t *testing.T, sb sociBuilder, want *ocispec.Descriptor, ours ourBuild, got index.IndexWithMetadata) string {
	t.Helper()
	if want.Digest == got.ImageDesc.Digest && want.Size == got.ImageDesc.Size {
		return ""
	}
	return fmt.Sprintf("v2 OCI index: ours %s (%d bytes), soci %s (%d bytes)\nours: %s\nsoci: %s",
		got.ImageDesc.Digest, got.ImageDesc.Size, want.Digest, want.Size,
		ours.fetch(t.Context(), got.ImageDesc), fetchFromSoci(t.Context(), sb, *want))
}

// fetchFromSoci returns the blob desc from soci's blob store, or why not.
func fetchFromSoci(ctx context.Context, sb sociBuilder, desc ocispec.Descriptor) string {
	rc, err := sb.blobs.Fetch(ctx, desc)
	if err != nil {
		return fmt.Sprintf("(fetch %s: %v)", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", desc.Digest, err)
	}
	return string(b)
}
