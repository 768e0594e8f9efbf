package index

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestMarshalIndexCanonicalJSON(t *testing.T) {
	ztocDigest := digest.FromString("ztoc")
	layerDigest := digest.FromString("layer")
	subjectDigest := digest.FromString("manifest")
	blobs := []ocispec.Descriptor{{
		MediaType: SociLayerMediaType,
		Digest:    ztocDigest,
		Size:      67896,
		Annotations: map[string]string{
			IndexAnnotationImageLayerDigest:    layerDigest.String(),
			IndexAnnotationImageLayerMediaType: mediaTypeDockerLayerGzip,
			IndexAnnotationSpanSize:            "4194304",
			IndexAnnotationDisableXAttrs:       "true",
		},
	}}
	subject := &ocispec.Descriptor{MediaType: mediaTypeDockerManifest, Digest: subjectDigest, Size: 427}
	idx := NewIndex(V1, blobs, subject, map[string]string{IndexAnnotationBuildToolIdentifier: "AWS SOCI CLI v0.2"})

	got, err := MarshalIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	// The v1 shape of docs/format.md 6.2, one line, keys in ocispec order,
	// disable-xattrs sorted first among the descriptor annotations.
	want := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.amazon.soci.index.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
		`"layers":[{"mediaType":"application/octet-stream","digest":"` + ztocDigest.String() + `","size":67896,` +
		`"annotations":{"com.amazon.soci.disable-xattrs":"true","com.amazon.soci.image-layer-digest":"` + layerDigest.String() + `",` +
		`"com.amazon.soci.image-layer-mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","com.amazon.soci.span-size":"4194304"}}],` +
		`"subject":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"` + subjectDigest.String() + `","size":427},` +
		`"annotations":{"com.amazon.soci.build-tool-identifier":"AWS SOCI CLI v0.2"}}`
	if string(got) != want {
		t.Fatalf("MarshalIndex:\n got %s\nwant %s", got, want)
	}

	// Decoding and encoding again must give the same bytes: the snapshotter
	// stores a fetched index under its digest after re-marshalling it.
	var decoded Index
	if err := UnmarshalIndex(got, &decoded); err != nil {
		t.Fatal(err)
	}
	again, err := MarshalIndex(&decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Fatalf("re-marshal differs:\n%s\n%s", again, got)
	}
	var streamed Index
	if err := DecodeIndex(bytes.NewReader(got), &streamed); err != nil {
		t.Fatal(err)
	}
	if v, _ := streamed.Version(); v != V1 || streamed.Subject == nil || streamed.Subject.Digest != subjectDigest {
		t.Fatalf("DecodeIndex: version %v subject %v", v, streamed.Subject)
	}
}

func TestMarshalIndexV2HasNoSubject(t *testing.T) {
	subject := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("m"), Size: 1}
	idx := NewIndex(V2, []ocispec.Descriptor{{MediaType: SociLayerMediaType, Digest: digest.FromString("z"), Size: 3}}, subject, nil)
	b, err := MarshalIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, `"subject"`) || strings.Contains(s, `"annotations"`) || !strings.Contains(s, `"mediaType":"application/vnd.amazon.soci.index.v2+json"`) {
		t.Fatalf("v2 index: %s", s)
	}
}

func TestMarshalIndexEmptyLayersNotNull(t *testing.T) {
	b, err := MarshalIndex(NewIndex(V2, nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"layers":[]`) {
		t.Fatalf("layers must be an empty array: %s", b)
	}
}

func TestUnmarshalIndexRejectsOtherArtifacts(t *testing.T) {
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	var idx Index
	if err := UnmarshalIndex([]byte(manifest), &idx); !errors.Is(err, ErrUnknownIndexVersion) {
		t.Fatalf("err = %v, want ErrUnknownIndexVersion", err)
	}
	if err := UnmarshalIndex([]byte("{"), &idx); err == nil {
		t.Fatal("truncated JSON decoded")
	}
	if _, err := MarshalIndex(&Index{ArtifactType: "x"}); !errors.Is(err, ErrUnknownIndexVersion) {
		t.Fatalf("MarshalIndex of unknown version: %v", err)
	}
}

func TestParseOptimization(t *testing.T) {
	if o, err := ParseOptimization("xattr"); err != nil || o != XAttrOptimization {
		t.Fatalf("xattr: %v %v", o, err)
	}
	if _, err := ParseOptimization("speed"); err == nil {
		t.Fatal("unknown optimization accepted")
	}
}

func TestParseIndexVersion(t *testing.T) {
	for s, want := range map[string]IndexVersion{"v1": V1, "v2": V2, "both": Both} {
		if v, err := ParseIndexVersion(s); err != nil || v != want {
			t.Errorf("%s: %v %v", s, v, err)
		}
	}
	if _, err := ParseIndexVersion("v3"); err == nil {
		t.Error("v3 accepted")
	}
}

func TestBuildOptionsAreValidated(t *testing.T) {
	bad := map[string][]BuildOption{
		"negative span":        {WithSpanSize(-1)},
		"negative min size":    {WithMinLayerSize(-1)},
		"zero concurrency":     {WithLayerConcurrency(0)},
		"no version":           {WithIndexVersion(0)},
		"unknown version":      {WithIndexVersion(8)},
		"template without tag": {WithV2TagTemplate("soci")},
		"unknown optimization": {WithOptimizations("speed")},
		"platforms and all":    {WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}), WithAllPlatforms()},
	}
	for name, opts := range bad {
		if _, err := NewIndexBuilder(nil, opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewIndexBuilder(nil, WithIndexVersion(Both), WithSpanSize(0)); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}
