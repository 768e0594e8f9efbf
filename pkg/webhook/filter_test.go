package webhook

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

func push(repo, tag string) Event {
	return Event{Job: queue.Job{Registry: "r", Repository: repo, Digest: "sha256:01", Tag: tag, Action: queue.ActionPush,
		MediaType: ocispec.MediaTypeImageManifest}}
}

func TestFilterDrop(t *testing.T) {
	f, err := NewFilter(FilterConfig{
		IncludeRepositories: []string{"team/**", "solo"},
		ExcludeRepositories: []string{"team/private/*"},
		ExcludeTags:         []string{"*-rc?"},
	})
	if err != nil {
		t.Fatal(err)
	}
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	sociLayer := ocispec.Descriptor{MediaType: "application/octet-stream",
		Annotations: map[string]string{"com.amazon.soci.image-layer-digest": "sha256:02"}}
	pull := push("team/app", "v1")
	pull.Job.Action = ""
	pull.SourceAction = "pull"
	blob := push("team/app", "")
	blob.Blob = true
	tagDelete := push("team/app", "v1")
	tagDelete.Job.Action, tagDelete.Job.Digest = queue.ActionDelete, ""
	sociV1 := push("team/app", "")
	sociV1.References = []ocispec.Descriptor{{MediaType: "application/vnd.amazon.soci.index.v1+json"}, sociLayer}
	sociEmpty := push("team/app", "")
	sociEmpty.References = []ocispec.Descriptor{{MediaType: "application/vnd.oci.empty.v1+json"}, sociLayer}
	sociZot := push("team/app", "")
	sociZot.ConfigMediaType = "application/vnd.amazon.soci.index.v2+json"
	v2Index := push("team/app", "")
	v2Index.References = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.amazon.soci.index.v2+json"}}

	for _, tc := range []struct {
		name string
		ev   Event
		want string
	}{
		{"tagged push", push("team/app", "v1"), ""},
		{"nested repository", push("team/a/b/c", "v1"), ""},
		{"push by digest", push("solo", ""), ""},
		{"pull", pull, DropAction},
		{"blob", blob, DropBlob},
		{"tag delete", tagDelete, DropNoDigest},
		{"soci v1 index", sociV1, DropOwnArtifact},
		{"soci index with empty config", sociEmpty, DropOwnArtifact},
		{"soci v2 index (zot manifest)", sociZot, DropOwnArtifact},
		{"soci v2 image index", v2Index, DropOwnArtifact},
		{"referrers tag", push("team/app", "sha256-"+hex), DropReferrers},
		{"own v2 tag", push("team/app", "v1-soci"), DropOwnTag},
		{"repository not included", push("other/app", "v1"), DropRepository},
		{"one segment only for *", push("solo/x", "v1"), DropRepository},
		{"repository excluded", push("team/private/app", "v1"), DropRepository},
		{"tag excluded", push("team/app", "v2-rc1"), DropTag},
	} {
		if got := f.Drop(tc.ev); got != tc.want {
			t.Errorf("%s: Drop = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFilterIncludeTags(t *testing.T) {
	f, err := NewFilter(FilterConfig{IncludeTags: []string{"v*"}, OwnTags: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Drop(push("a", "latest")); got != DropTag {
		t.Errorf("latest: %q, want %q", got, DropTag)
	}
	if got := f.Drop(push("a", "")); got != "" {
		t.Errorf("by digest: %q, want kept", got)
	}
	if got := f.Drop(push("a", "v1-soci")); got != "" {
		t.Errorf("v1-soci with OwnTags empty: %q, want kept", got)
	}
}

func TestIsReferrersTag(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for tag, want := range map[string]bool{
		"sha256-" + hex:                true,
		"sha256-" + hex[:63]:           false,
		"sha256-" + hex + "0":          false,
		"sha256-" + "ABCDEF" + hex[6:]: false,
		"sha512-" + hex + hex:          true,
		"latest":                       false,
	} {
		if got := isReferrersTag(tag); got != want {
			t.Errorf("isReferrersTag(%q) = %v, want %v", tag, got, want)
		}
	}
}
