package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

const testMinLayerSize = 64 << 10

// mixedLayers returns, in this order: a gzip layer and an uncompressed tar
// layer above the test minimum size, a small gzip layer under it, and a
// zstd layer above it.
func mixedLayers(t testing.TB, seed uint64, docker bool) []testLayer {
	gz, tarMT, zstdMT := ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerZstd
	if docker {
		gz, tarMT, zstdMT = mediaTypeDockerLayerGzip, mediaTypeDockerLayer, mediaTypeDockerLayerZstd
	}
	return []testLayer{
		{gz, gzipBytes(t, simpleTar(t, seed, 8, 40<<10))},
		{tarMT, simpleTar(t, seed+1, 3, 30<<10)},
		{gz, gzipBytes(t, simpleTar(t, seed+2, 1, 100))},
		{zstdMT, zstdBytes(t, simpleTar(t, seed+3, 8, 40<<10))},
	}
}

func TestBuildV1SingleManifest(t *testing.T) {
	for _, deletes := range []bool{true, false} {
		for _, docker := range []bool{true, false} {
			t.Run(fmt.Sprintf("deletes=%v/docker=%v", deletes, docker), func(t *testing.T) {
				testBuildV1SingleManifest(t, registry.Options{DisableDeletes: !deletes}, docker)
			})
		}
	}
}

func testBuildV1SingleManifest(t *testing.T, opts registry.Options, docker bool) {
	ctx := context.Background()
	reg := startRegistry(t, opts)
	repo := openRepo(t, reg, "app/single", nil)
	layers := mixedLayers(t, 1, docker)
	if len(layers[2].data) >= testMinLayerSize || len(layers[0].data) < testMinLayerSize || len(layers[3].data) < testMinLayerSize {
		t.Fatalf("fixture sizes: %d %d %d", len(layers[0].data), len(layers[2].data), len(layers[3].data))
	}
	manifest := pushImage(t, repo, imageSpec{docker: docker, layers: layers})
	tagImage(t, repo, manifest, "v1")

	db := newMemDb()
	b, err := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize), WithSpanSize(16<<10), WithArtifactsDb(db))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Version != V1 {
		t.Fatalf("got %d results", len(res))
	}
	got := res[0]

	// Layers: gzip and tar indexed in order; small and zstd skipped.
	if len(got.Index.Blobs) != 2 {
		t.Fatalf("index has %d zTOCs, want 2", len(got.Index.Blobs))
	}
	wantStates := []LayerState{LayerBuilt, LayerBuilt, LayerSkipped, LayerSkipped}
	for i, l := range got.Layers {
		if l.State != wantStates[i] {
			t.Errorf("layer %d: state %s, want %s (%s)", i, l.State, wantStates[i], l.Reason)
		}
	}
	wantFiles := []int{9, 4}
	for i, blob := range got.Index.Blobs {
		layer := layers[i].descriptor()
		want := map[string]string{
			IndexAnnotationImageLayerDigest:    layer.Digest.String(),
			IndexAnnotationImageLayerMediaType: layer.MediaType,
			IndexAnnotationSpanSize:            strconv.Itoa(16 << 10),
		}
		if blob.MediaType != SociLayerMediaType || fmt.Sprint(blob.Annotations) != fmt.Sprint(want) {
			t.Errorf("zTOC %d: %s %v", i, blob.MediaType, blob.Annotations)
		}
		data, err := content.FetchAll(ctx, repo, blob)
		if err != nil {
			t.Fatalf("zTOC %d not in the repository: %v", i, err)
		}
		z, err := ztoc.Unmarshal(data)
		if err != nil {
			t.Fatal(err)
		}
		wantCompression := ztoc.Gzip
		if i == 1 {
			wantCompression = ztoc.Uncompressed
		}
		if z.CompressionAlgorithm != wantCompression || z.CompressedArchiveSize != layer.Size || len(z.FileMetadata) != wantFiles[i] {
			t.Errorf("zTOC %d: %s, size %d, %d files", i, z.CompressionAlgorithm, z.CompressedArchiveSize, len(z.FileMetadata))
		}
	}

	// The pushed manifest is the canonical JSON, with the subject as soci
	// writes it.
	var pushed Index
	raw := fetchJSONT(t, repo, got.Desc, &json.RawMessage{})
	if err := UnmarshalIndex(raw, &pushed); err != nil {
		t.Fatal(err)
	}
	canonical, _ := MarshalIndex(&pushed)
	if string(canonical) != string(raw) {
		t.Fatalf("pushed index is not canonical:\n%s\n%s", raw, canonical)
	}
	wantSubject := ocispec.Descriptor{MediaType: manifest.MediaType, Digest: manifest.Digest, Size: manifest.Size}
	if pushed.Subject == nil || fmt.Sprint(*pushed.Subject) != fmt.Sprint(wantSubject) {
		t.Fatalf("subject %+v, want %+v", pushed.Subject, wantSubject)
	}
	if pushed.Annotations[IndexAnnotationBuildToolIdentifier] != ztoc.DefaultBuildToolIdentifier {
		t.Fatalf("annotations %v", pushed.Annotations)
	}
	if ok, _ := repo.Exists(ctx, descriptorOf(SociIndexArtifactTypeV1, emptyJSONConfig)); !ok {
		t.Fatal("config blob {} not pushed")
	}

	refs := listReferrers(t, repo, manifest)
	if len(refs) != 1 || refs[0].Digest != got.Desc.Digest || refs[0].ArtifactType != SociIndexArtifactTypeV1 {
		t.Fatalf("referrers %v, want the index %s", refs, got.Desc.Digest)
	}

	// The artifacts DB records the index and both zTOCs.
	if n := len(db.entriesOfType(ArtifactEntryTypeLayer)); n != 2 {
		t.Errorf("%d zTOC entries", n)
	}
	entry, err := db.GetArtifactEntry(ctx, got.Desc.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if entry.Location != manifest.Digest.String() || entry.ImageDigest != manifest.Digest.String() ||
		entry.Platform != "linux/amd64" || entry.ArtifactType != SociIndexArtifactTypeV1 ||
		len(entry.Locations) != 1 || entry.Locations[0].Repository != "app/single" {
		t.Errorf("index entry %+v", entry)
	}

	// Indexing again, with a fresh client, changes nothing.
	b2, _ := NewIndexBuilder(openRepo(t, reg, "app/single", nil), WithMinLayerSize(testMinLayerSize), WithSpanSize(16<<10))
	res2, err := b2.Build(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].Desc.Digest != got.Desc.Digest {
		t.Fatalf("second build: %s, first %s", res2[0].Desc.Digest, got.Desc.Digest)
	}
	if refs := listReferrers(t, repo, manifest); len(refs) != 1 {
		t.Fatalf("after second build: %d referrers", len(refs))
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
