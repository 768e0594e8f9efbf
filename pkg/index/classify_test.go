package index

import (
	"errors"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestClassify(t *testing.T) {
	const (
		ociManifest = "application/vnd.oci.image.manifest.v1+json"
		ociIndex    = "application/vnd.oci.image.index.v1+json"
		imageConfig = `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2}`
		amd64       = `"platform":{"os":"linux","architecture":"amd64"}`
		arm64       = `"platform":{"os":"linux","architecture":"arm64"}`
	)
	refsTag := "sha256-71aa0000000000000000000000000000000000000000000000000000000000ff"
	tests := []struct {
		name      string
		mediaType string
		body      string
		tag       string
		want      ManifestClass
	}{
		{"image", ociManifest, `{` + imageConfig + `,"layers":[]}`, "v1", ClassImage},
		{"docker image", mediaTypeDockerManifest,
			`{"config":{"mediaType":"application/vnd.docker.container.image.v1+json"},"layers":[]}`, "v1", ClassImage},
		{"soci v1 index", ociManifest,
			`{"config":{"mediaType":"` + SociIndexArtifactTypeV1 + `"},"subject":{"digest":"sha256:bb"}}`, "", ClassOwn},
		{"soci v2 index", ociManifest, `{"config":{"mediaType":"` + SociIndexArtifactTypeV2 + `"}}`, "", ClassOwn},
		{"soci index by its ztoc layers", ociManifest, `{"config":{"mediaType":"application/vnd.oci.empty.v1+json"},` +
			`"layers":[{"mediaType":"application/octet-stream","annotations":{"com.amazon.soci.image-layer-digest":"sha256:1"}}]}`,
			"", ClassOwn},
		{"rewritten v2 manifest", ociManifest,
			`{` + imageConfig + `,"annotations":{"com.amazon.soci.index-digest":"sha256:cc"}}`, "", ClassOwn},
		{"signature", ociManifest,
			`{"config":{"mediaType":"application/vnd.oci.empty.v1+json"},"subject":{"digest":"sha256:bb"}}`, "", ClassNotImage},
		{"helm chart", ociManifest, `{"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json"}}`, "1.0", ClassNotImage},
		{"artifact", ociManifest, `{"artifactType":"application/x-sbom",` + imageConfig + `}`, "", ClassNotImage},
		{"image index", ociIndex, `{"manifests":[{"mediaType":"` + ociManifest + `","digest":"sha256:a",` + amd64 + `}]}`,
			"v1", ClassImageIndex},
		// crane index append: the config media type as artifactType on
		// every platform manifest descriptor.
		{"crane index append", ociIndex, `{"manifests":[` +
			`{"mediaType":"` + ociManifest + `","artifactType":"application/vnd.oci.image.config.v1+json","digest":"sha256:a",` + amd64 + `},` +
			`{"mediaType":"` + ociManifest + `","artifactType":"application/vnd.oci.image.config.v1+json","digest":"sha256:b",` + arm64 + `}]}`,
			"v1", ClassImageIndex},
		{"soci-enabled index", ociIndex,
			`{"manifests":[{"digest":"sha256:a",` + amd64 + `},{"digest":"sha256:b","artifactType":"` + SociIndexArtifactTypeV2 + `",` + amd64 + `}]}`,
			"v1-soci", ClassOwn},
		{"referrers index by tag", ociIndex, `{"manifests":[{"mediaType":"` + ociManifest + `","digest":"sha256:a","artifactType":"application/x-sig"}]}`,
			refsTag, ClassReferrersIndex},
		{"referrers index listing our v1 index", ociIndex,
			`{"manifests":[{"mediaType":"` + ociManifest + `","digest":"sha256:a","artifactType":"` + SociIndexArtifactTypeV1 + `"}]}`,
			"", ClassOwn},
		{"empty index", ociIndex, `{"manifests":[]}`, "v1", ClassNotImage},
		{"media type from body", "", `{"mediaType":"` + ociManifest + `",` + imageConfig + `}`, "v1", ClassImage},
		{"not json", ociManifest, `{`, "", ClassNotImage},
		{"schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{}`, "", ClassNotImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseManifestInfo(tt.mediaType, []byte(tt.body), tt.tag)
			var got Classification
			if err != nil {
				if !errors.Is(err, ErrNotImage) {
					t.Fatalf("ParseManifestInfo: %v", err)
				}
				got = Classification{Class: ClassNotImage, Reason: err.Error()}
			} else if got, err = Classify(info, nil); err != nil {
				t.Fatal(err)
			}
			if got.Class != tt.want {
				t.Errorf("Classify = %+v, want class %d", got, tt.want)
			}
			if (got.Reason == "") != got.Indexable() {
				t.Errorf("reason %q for class %d", got.Reason, got.Class)
			}
		})
	}
}

// TestClassifyReferrersIndexByContent: an index without platforms whose
// manifests all have a subject is a referrers index; the same shape whose
// manifests have none is not.
func TestClassifyReferrersIndexByContent(t *testing.T) {
	info := ManifestInfo{MediaType: ocispec.MediaTypeImageIndex, Descriptors: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:1", ArtifactType: "application/x-sig"},
		{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:2", ArtifactType: "application/x-sbom"},
	}}
	for hasSubject, want := range map[bool]ManifestClass{true: ClassReferrersIndex, false: ClassImageIndex} {
		asked := 0
		got, err := Classify(info, func(ocispec.Descriptor) (bool, error) { asked++; return hasSubject, nil })
		if err != nil || got.Class != want || asked != 2 {
			t.Errorf("children with subject %v: %+v, %v (asked %d); want class %d", hasSubject, got, err, asked, want)
		}
	}
	// With platforms, the children are not read.
	info.Descriptors[0].Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	got, err := Classify(info, func(ocispec.Descriptor) (bool, error) { t.Error("child read"); return true, nil })
	if err != nil || got.Class != ClassImageIndex {
		t.Errorf("index with a platform = %+v, %v", got, err)
	}
}

func TestIsReferrersTag(t *testing.T) {
	hex := "71aa0000000000000000000000000000000000000000000000000000000000ff"
	for tag, want := range map[string]bool{
		"sha256-" + hex:        true,
		"sha256-" + hex + "-x": false,
		"v1":                   false,
		"v1-soci":              false,
		"sha256-abc":           false,
	} {
		if got := IsReferrersTag(tag); got != want {
			t.Errorf("IsReferrersTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestLockKeysIgnoreTheHost(t *testing.T) {
	const d = "sha256:71aa0000000000000000000000000000000000000000000000000000000000ff"
	if ReferrersLockKey("team/app", d) == ReferrersLockKey("team/other", d) {
		t.Error("two repositories share a referrers lock")
	}
	if ReferrersLockKey("team/app", d) == ImageLockKey("team/app", d) {
		t.Error("the image lock and the referrers lock of one digest are one lock")
	}
}
