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
		{"tag delete (no digest): a job", tagDelete, ""},
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

// TestReferrersTagsAreDropped: the referrers tag schema, as pkg/index
// defines it, decides the drop.
func TestReferrersTagsAreDropped(t *testing.T) {
	f, err := NewFilter(FilterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for tag, want := range map[string]bool{
		"sha256-" + hex:                true,
		"sha256-" + hex[:63]:           false,
		"sha256-" + hex + "0":          false,
		"sha256-" + "ABCDEF" + hex[6:]: false,
		"sha512-" + hex + hex:          true,
		"latest":                       false,
	} {
		e := Event{Job: queue.Job{Registry: "r", Repository: "a", Digest: "sha256:1", Tag: tag, Action: queue.ActionPush}}
		if got := f.Drop(e) == DropReferrers; got != want {
			t.Errorf("Drop(tag %q) = %q, want referrers drop %v", tag, f.Drop(e), want)
		}
	}
}

// TestAllowedRegistries: with an allow-list, events for other hosts are
// refused (case-insensitively matched); without one every host passes.
func TestAllowedRegistries(t *testing.T) {
	f, err := NewFilter(FilterConfig{AllowedRegistries: []string{"Registry.Example:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(host string) Event {
		return Event{Job: queue.Job{Registry: host, Repository: "a", Digest: "sha256:1", Tag: "v1", Action: queue.ActionPush}}
	}
	if got := f.Drop(ev("registry.example:5000")); got != "" {
		t.Errorf("allowed host: %q", got)
	}
	for _, host := range []string{"evil.example:5000", "registry.example", "127.0.0.1:5000"} {
		if got := f.Drop(ev(host)); got != DropRegistry {
			t.Errorf("host %s: %q, want %q", host, got, DropRegistry)
		}
	}
	open, err := NewFilter(FilterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := open.Drop(ev("evil.example:5000")); got != "" {
		t.Errorf("no allow-list: %q", got)
	}
}

// TestTagDeleteIsAJob: a tag delete without a digest becomes a job; a push
// without a digest does not.
func TestTagDeleteIsAJob(t *testing.T) {
	f, err := NewFilter(FilterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	del := Event{Job: queue.Job{Registry: "r", Repository: "a", Tag: "v1", Action: queue.ActionDelete}}
	if got := f.Drop(del); got != "" {
		t.Errorf("tag delete: %q, want kept", got)
	}
	del.Job.Tag = "v1-soci"
	if got := f.Drop(del); got != DropOwnTag {
		t.Errorf("delete of our v2 tag: %q, want %q", got, DropOwnTag)
	}
	push := Event{Job: queue.Job{Registry: "r", Repository: "a", Tag: "v1", Action: queue.ActionPush}}
	if got := f.Drop(push); got != DropNoDigest {
		t.Errorf("push without digest: %q", got)
	}
}
