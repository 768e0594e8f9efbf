package index

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

// multiPlatform is a pushed OCI index of linux/amd64 and linux/arm64/v8
// images and an attestation manifest.
type multiPlatform struct {
	index       ocispec.Descriptor
	amd64       ocispec.Descriptor
	arm64       ocispec.Descriptor
	attestation ocispec.Descriptor
}

func pushMultiPlatform(t testing.TB, repo *remote.Repository, tag string) multiPlatform {
	amd64 := pushImage(t, repo, imageSpec{layers: mixedLayers(t, 10, false)[:2]})
	arm64 := pushImage(t, repo, imageSpec{
		platform: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		layers:   mixedLayers(t, 20, false)[:3],
	})
	return pushMultiPlatformOf(t, repo, tag, amd64, arm64, ocispec.MediaTypeImageIndex)
}

// pushMultiPlatformOf pushes an image index of the two platform manifests
// and an attestation.
func pushMultiPlatformOf(t testing.TB, repo *remote.Repository, tag string, amd64, arm64 ocispec.Descriptor, indexMediaType string) multiPlatform {
	// An attestation: an in-toto config and no real layers.
	statement := []byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`)
	stmtDesc := descriptorOf("application/vnd.in-toto+json", statement)
	pushBlob(t, repo, stmtDesc, statement)
	att := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    descriptorOf("application/vnd.oci.empty.v1+json", []byte("{}")),
		Layers:    []ocispec.Descriptor{stmtDesc},
	}
	pushBlob(t, repo, att.Config, []byte("{}"))
	attRaw, _ := json.Marshal(att)
	attDesc := descriptorOf(ocispec.MediaTypeImageManifest, attRaw)
	pushBlob(t, repo, attDesc, attRaw)

	amd64.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	attDesc.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	attDesc.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd64.Digest.String()}
	idx := pushIndexOf(t, repo, indexMediaType, []ocispec.Descriptor{amd64, arm64, attDesc}, tag)
	return multiPlatform{index: idx, amd64: amd64, arm64: arm64, attestation: attDesc}
}

func TestBuildBothMultiPlatform(t *testing.T) {
	for _, deletes := range []bool{true, false} {
		t.Run(fmt.Sprintf("deletes=%v", deletes), func(t *testing.T) {
			testBuildBothMultiPlatform(t, registry.Options{DisableDeletes: !deletes})
		})
	}
}

func testBuildBothMultiPlatform(t *testing.T, opts registry.Options) {
	ctx := context.Background()
	reg := startRegistry(t, opts)
	repo := openRepo(t, reg, "app/multi", nil)
	img := pushMultiPlatform(t, repo, "1.0")

	db := newMemDb()
	b, err := NewIndexBuilder(repo, WithIndexVersion(Both), WithMinLayerSize(testMinLayerSize), WithArtifactsDb(db))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(ctx, "1.0")
	if err != nil {
		t.Fatal(err)
	}
	// v1 for amd64 and arm64, then v2 for both; the attestation is skipped.
	if len(res) != 4 {
		t.Fatalf("%d results, want 4", len(res))
	}
	wantOrder := []struct {
		v IndexVersion
		p string
	}{{V1, "linux/amd64"}, {V1, "linux/arm64/v8"}, {V2, "linux/amd64"}, {V2, "linux/arm64/v8"}} // as listed in the image index, as soci records them
	for i, w := range wantOrder {
		if res[i].Version != w.v || FormatPlatform(res[i].Platform) != w.p {
			t.Fatalf("result %d: %v %s, want %v %s", i, res[i].Version, FormatPlatform(res[i].Platform), w.v, w.p)
		}
	}

	// v1: referrers of the original platform manifests.
	for i, m := range []ocispec.Descriptor{img.amd64, img.arm64} {
		refs := listReferrers(t, repo, m)
		if len(refs) != 1 || refs[0].Digest != res[i].Desc.Digest {
			t.Fatalf("referrers of %s: %v", m.Digest, refs)
		}
	}
	// Both versions share the zTOCs.
	if fmt.Sprint(res[0].Index.Blobs) != fmt.Sprint(res[2].Index.Blobs) {
		t.Fatal("v1 and v2 indexes list different zTOCs")
	}

	// v2: the OCI index under the "-soci" tag.
	tagged, err := repo.Resolve(ctx, "1.0-soci")
	if err != nil {
		t.Fatal(err)
	}
	if tagged.Digest != res[2].ImageDesc.Digest || res[2].Tag != "1.0-soci" {
		t.Fatalf("tag points at %s, result says %s", tagged.Digest, res[2].ImageDesc.Digest)
	}
	var oci ocispec.Index
	fetchJSONT(t, repo, tagged, &oci)
	if oci.MediaType != ocispec.MediaTypeImageIndex || len(oci.Manifests) != 5 {
		t.Fatalf("oci index: %s with %d manifests", oci.MediaType, len(oci.Manifests))
	}
	if oci.Manifests[2].Digest != img.attestation.Digest {
		t.Errorf("attestation entry changed: %+v", oci.Manifests[2])
	}
	for i, r := range res[2:] {
		entry := oci.Manifests[i]
		sociEntry := oci.Manifests[3+i]
		// The rewritten manifest: OCI types, the index digest annotation,
		// and the index entry annotations replaced by the manifest's.
		var m ocispec.Manifest
		raw := fetchJSONT(t, repo, entry, &m)
		if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig ||
			m.Annotations[ImageAnnotationSociIndexDigest] != r.Desc.Digest.String() {
			t.Errorf("rewritten manifest %d: %s", i, raw)
		}
		if fmt.Sprint(entry.Annotations) != fmt.Sprint(m.Annotations) || entry.Digest != r.ManifestDesc.Digest {
			t.Errorf("index entry %d: %+v", i, entry)
		}
		wantSoci := ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			Digest:       r.Desc.Digest,
			Size:         r.Desc.Size,
			Annotations:  map[string]string{IndexAnnotationImageManifestDigest: entry.Digest.String()},
			Platform:     &r.Platform,
			ArtifactType: SociIndexArtifactTypeV2,
		}
		gotJSON, _ := json.Marshal(sociEntry)
		wantJSON, _ := json.Marshal(wantSoci)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("soci entry %d:\n got %s\nwant %s", i, gotJSON, wantJSON)
		}
		// The v2 index itself: no subject, v2 config type.
		var v2 Index
		idxRaw := fetchJSONT(t, repo, r.Desc, &json.RawMessage{})
		if err := UnmarshalIndex(idxRaw, &v2); err != nil || v2.Subject != nil || v2.ArtifactType != SociIndexArtifactTypeV2 {
			t.Errorf("v2 index %d: %s (%v)", i, idxRaw, err)
		}
		// The artifacts DB entry as soci records it after convert.
		e, err := db.GetArtifactEntry(ctx, r.Desc.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		original := []ocispec.Descriptor{img.amd64, img.arm64}[i]
		if e.OriginalDigest != entry.Digest.String() || e.ImageDigest != tagged.Digest.String() || e.Location != original.Digest.String() {
			t.Errorf("v2 db entry %+v", e)
		}
	}

	// The runtime's view: each platform's v1 and v2 indexes can be found.
	infos, err := b.GetIndexDescriptorCollection(ctx, img.index)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Version != V1 || infos[1].Version != V1 {
		t.Fatalf("collection of the original image: %+v", infos)
	}
	infos, err = b.GetIndexDescriptorCollection(ctx, tagged, ocispec.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Version != V2 || infos[0].Digest != res[3].Desc.Digest {
		t.Fatalf("collection of the v2 image for arm64: %+v", infos)
	}

	// Building again gives the same digests and adds no referrer.
	b2, _ := NewIndexBuilder(openRepo(t, reg, "app/multi", nil), WithIndexVersion(Both), WithMinLayerSize(testMinLayerSize))
	again, err := b2.Build(ctx, "1.0")
	if err != nil {
		t.Fatal(err)
	}
	for i := range res {
		if again[i].Desc.Digest != res[i].Desc.Digest || again[i].ImageDesc.Digest != res[i].ImageDesc.Digest {
			t.Errorf("result %d differs on the second build", i)
		}
	}
	for _, m := range []ocispec.Descriptor{img.amd64, img.arm64} {
		if n := len(listReferrers(t, repo, m)); n != 1 {
			t.Errorf("%d referrers after the second build", n)
		}
	}
}

func TestBuildSelectedPlatform(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/select", nil)
	img := pushMultiPlatform(t, repo, "v")

	b, err := NewIndexBuilder(repo, WithPlatform(ocispec.Platform{OS: "linux", Architecture: "aarch64"}),
		WithIndexVersion(V2), WithMinLayerSize(testMinLayerSize))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	// The platform is recorded as given, matched after normalization.
	if len(res) != 1 || FormatPlatform(res[0].Platform) != "linux/aarch64" || !MatchPlatform(res[0].Platform, ocispec.Platform{OS: "linux", Architecture: "arm64"}) {
		t.Fatalf("results %+v", res)
	}
	var oci ocispec.Index
	fetchJSONT(t, repo, res[0].ImageDesc, &oci)
	// amd64 was not selected: kept as is; arm64 rewritten; one SOCI entry.
	if len(oci.Manifests) != 4 || oci.Manifests[0].Digest != img.amd64.Digest || oci.Manifests[1].Digest == img.arm64.Digest ||
		oci.Manifests[3].ArtifactType != SociIndexArtifactTypeV2 {
		t.Fatalf("oci index %+v", oci.Manifests)
	}

	desc, err := b.GetImageManifestDescriptor(ctx, img.index, ocispec.Platform{OS: "linux", Architecture: "s390x"})
	if !errorsIs(err, ErrPlatformNotFound) {
		t.Fatalf("s390x: %v %v", desc, err)
	}
}

func TestBuildV2SingleDockerManifest(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/docker", nil)
	manifest := pushImage(t, repo, imageSpec{docker: true, layers: mixedLayers(t, 30, true)[:1]})
	tagImage(t, repo, manifest, "latest")

	b, _ := NewIndexBuilder(repo, WithIndexVersion(V2), WithMinLayerSize(testMinLayerSize), WithV2TagTemplate("soci-{tag}"))
	res, err := b.Build(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Tag != "soci-latest" {
		t.Fatalf("results %+v", res)
	}
	var oci ocispec.Index
	raw := fetchJSONT(t, repo, res[0].ImageDesc, &oci)
	// docs/format.md 6.3: the new index wraps the rewritten manifest with
	// the image's platform, then the SOCI index.
	m, s := res[0].ManifestDesc, res[0].Desc
	want := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + m.Digest.String() + `","size":` + fmt.Sprint(m.Size) + `,` +
		`"annotations":{"com.amazon.soci.index-digest":"` + s.Digest.String() + `"},"platform":{"architecture":"amd64","os":"linux"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + s.Digest.String() + `","size":` + fmt.Sprint(s.Size) + `,` +
		`"annotations":{"com.amazon.soci.image-manifest-digest":"` + m.Digest.String() + `"},"platform":{"architecture":"amd64","os":"linux"},` +
		`"artifactType":"application/vnd.amazon.soci.index.v2+json"}]}`
	if string(raw) != want {
		t.Fatalf("oci index:\n got %s\nwant %s", raw, want)
	}
	// The rewritten manifest keeps the Docker layer type.
	var rewritten ocispec.Manifest
	fetchJSONT(t, repo, m, &rewritten)
	if rewritten.Layers[0].MediaType != mediaTypeDockerLayerGzip || rewritten.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Fatalf("rewritten manifest %+v", rewritten)
	}
	// No v1 index was pushed.
	if refs := listReferrers(t, repo, manifest); len(refs) != 0 {
		t.Fatalf("v2-only build left referrers %v", refs)
	}
}

func TestBuildUntaggedImageGetsV1Only(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	repo := openRepo(t, reg, "app/untagged", nil)
	manifest := pushImage(t, repo, imageSpec{layers: mixedLayers(t, 40, false)[:1]})

	b, _ := NewIndexBuilder(repo, WithIndexVersion(Both), WithMinLayerSize(testMinLayerSize))
	res, err := b.Build(ctx, manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Version != V1 {
		t.Fatalf("results %+v", res)
	}
	if refs := listReferrers(t, repo, manifest); len(refs) != 1 {
		t.Fatalf("referrers %v", refs)
	}

	// tag@digest builds from the digest and names the v2 tag.
	res, err = b.Build(ctx, "named@"+manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[1].Tag != "named-soci" {
		t.Fatalf("tag@digest results %+v", res)
	}
	if _, err := repo.Resolve(ctx, "named-soci"); err != nil {
		t.Fatal(err)
	}
}

func TestBuildDockerManifestList(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{DisableDeletes: true})
	repo := openRepo(t, reg, "app/dockerlist", nil)
	amd64 := pushImage(t, repo, imageSpec{docker: true, layers: mixedLayers(t, 140, true)[:2]})
	arm64 := pushImage(t, repo, imageSpec{docker: true, platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, layers: mixedLayers(t, 150, true)[:1]})
	img := pushMultiPlatformOf(t, repo, "2.0", amd64, arm64, mediaTypeDockerManifestList)

	b, _ := NewIndexBuilder(repo, WithIndexVersion(Both), WithMinLayerSize(testMinLayerSize))
	res, err := b.Build(ctx, "2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	// v1 subjects keep the Docker manifest media type.
	for i, m := range []ocispec.Descriptor{img.amd64, img.arm64} {
		if s := res[i].Index.Subject; s.MediaType != mediaTypeDockerManifest || s.Digest != m.Digest {
			t.Errorf("v1 subject %d: %+v", i, s)
		}
	}
	// The v2 image is an OCI index of OCI manifests.
	var oci ocispec.Index
	fetchJSONT(t, repo, res[2].ImageDesc, &oci)
	if oci.MediaType != ocispec.MediaTypeImageIndex || oci.Manifests[0].MediaType != ocispec.MediaTypeImageManifest ||
		oci.Manifests[1].MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("v2 index %+v", oci)
	}

	// Converting the converted image again replaces its SOCI descriptors
	// instead of appending: the result is the same index.
	b2, _ := NewIndexBuilder(repo, WithIndexVersion(V2), WithMinLayerSize(testMinLayerSize), WithV2TagTemplate("{tag}-again"))
	again, err := b2.Build(ctx, "2.0-soci")
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 2 || again[0].ImageDesc.Digest != res[2].ImageDesc.Digest {
		var second ocispec.Index
		fetchJSONT(t, repo, again[0].ImageDesc, &second)
		t.Fatalf("reconverted index differs:\n%+v\n%+v", second.Manifests, oci.Manifests)
	}
}
