package compat

import (
	"bytes"
	"testing"

	"github.com/awslabs/soci-snapshotter/soci"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// TestIndexCanonicalJSON is docs/format.md 10.H, first half: the snapshotter
// decodes a fetched SOCI index and stores soci.MarshalIndex of it under the
// original digest, so our JSON must survive that re-encoding byte for byte.
// It must also equal what soci's own constructor and encoder write for the
// same content. Digest equality of whole built indexes is
// TestIndexBuildDigests (index_build_test.go).
func TestIndexCanonicalJSON(t *testing.T) {
	layerDigest := digest.FromString("layer one")
	ztocDesc := func(name string, extra map[string]string) ocispec.Descriptor {
		annotations := map[string]string{
			index.IndexAnnotationImageLayerDigest:    digest.FromString(name).String(),
			index.IndexAnnotationImageLayerMediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
			index.IndexAnnotationSpanSize:            "4194304",
		}
		for k, v := range extra {
			annotations[k] = v
		}
		return ocispec.Descriptor{
			MediaType:   index.SociLayerMediaType,
			Digest:      digest.FromString("ztoc of " + name),
			Size:        67896,
			Annotations: annotations,
		}
	}
	blobs := []ocispec.Descriptor{
		ztocDesc("layer one", map[string]string{index.IndexAnnotationDisableXAttrs: "true"}),
		ztocDesc("layer three", nil),
		{
			MediaType:   index.SociPrefetchMediaType,
			Digest:      digest.FromString("prefetch"),
			Size:        64,
			Annotations: map[string]string{index.IndexAnnotationImageLayerDigest: layerDigest.String()},
		},
	}
	subject := &ocispec.Descriptor{
		MediaType: "application/vnd.docker.distribution.manifest.v2+json",
		Digest:    digest.FromString("image manifest"),
		Size:      427,
	}
	annotations := map[string]string{
		index.IndexAnnotationBuildToolIdentifier: sociBuildTool,
		// encoding/json escapes <, > and & in HTML style; so must we.
		"org.example.note": "a <b> & c",
	}

	for _, tc := range []struct {
		name    string
		ours    index.IndexVersion
		soci    soci.IndexVersion
		subject *ocispec.Descriptor
	}{
		{"v1", index.V1, soci.V1, subject},
		{"v2", index.V2, soci.V2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := index.MarshalIndex(index.NewIndex(tc.ours, blobs, tc.subject, annotations))
			if err != nil {
				t.Fatalf("index.MarshalIndex: %v", err)
			}

			var decoded soci.Index
			if err := soci.UnmarshalIndex(ours, &decoded); err != nil {
				t.Fatalf("soci.UnmarshalIndex(ours): %v", err)
			}
			again, err := soci.MarshalIndex(&decoded)
			if err != nil {
				t.Fatalf("soci.MarshalIndex: %v", err)
			}
			if !bytes.Equal(again, ours) {
				t.Errorf("soci re-encodes our index differently; the snapshotter would refuse to store it\nours: %s\nsoci: %s",
					ours, again)
			}

			sociBytes, err := soci.MarshalIndex(soci.NewIndex(tc.soci, blobs, tc.subject, annotations))
			if err != nil {
				t.Fatalf("soci.MarshalIndex(soci.NewIndex): %v", err)
			}
			if !bytes.Equal(sociBytes, ours) {
				t.Errorf("index JSON differs from soci's for the same content\nours: %s\nsoci: %s", ours, sociBytes)
			}

			var back index.Index
			if err := index.UnmarshalIndex(sociBytes, &back); err != nil {
				t.Fatalf("index.UnmarshalIndex(soci's): %v", err)
			}
			if roundTrip, err := index.MarshalIndex(&back); err != nil || !bytes.Equal(roundTrip, sociBytes) {
				t.Errorf("index.MarshalIndex(index.UnmarshalIndex(soci's)) = %s, %v; want soci's bytes", roundTrip, err)
			}
		})
	}
}
