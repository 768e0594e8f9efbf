// Package index builds SOCI indexes for images stored in a registry. It is
// the registry-side counterpart of soci-snapshotter's soci package (v0.16.1):
// the same artifacts, byte for byte, built by streaming each layer from the
// registry once instead of copying it into a local content store.
package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media and artifact types of SOCI artifacts.
const (
	// SociIndexArtifactTypeV1 is the config media type of a v1 SOCI index,
	// bound to its image through the manifest's subject (referrers API).
	SociIndexArtifactTypeV1 = "application/vnd.amazon.soci.index.v1+json"
	// SociIndexArtifactTypeV2 is the config media type of a v2 SOCI index,
	// bound to its image through ImageAnnotationSociIndexDigest.
	SociIndexArtifactTypeV2 = "application/vnd.amazon.soci.index.v2+json"
	// SociLayerMediaType is the descriptor media type of a zTOC.
	SociLayerMediaType = "application/octet-stream"
	// SociPrefetchMediaType is the media type of a prefetch artifact.
	SociPrefetchMediaType = "application/vnd.amazon.soci.prefetch.v1+json"
)

// Annotations written by the builder.
const (
	// IndexAnnotationImageLayerMediaType on a zTOC descriptor: the media type
	// of the layer it indexes (informational).
	IndexAnnotationImageLayerMediaType = "com.amazon.soci.image-layer-mediaType"
	// IndexAnnotationImageLayerDigest on a zTOC descriptor: the digest of the
	// layer it indexes. The snapshotter maps layers to zTOCs with it.
	IndexAnnotationImageLayerDigest = "com.amazon.soci.image-layer-digest"
	// IndexAnnotationBuildToolIdentifier on the index manifest.
	IndexAnnotationBuildToolIdentifier = "com.amazon.soci.build-tool-identifier"
	// IndexAnnotationDisableXAttrs on a zTOC descriptor whose layer has no
	// extended attributes (xattr optimization).
	IndexAnnotationDisableXAttrs = "com.amazon.soci.disable-xattrs"
	// IndexAnnotationSpanSize on a zTOC descriptor: the span size it was built with.
	IndexAnnotationSpanSize = "com.amazon.soci.span-size"
	// ImageAnnotationSociIndexDigest on a v2 image manifest: the digest of its
	// SOCI index.
	ImageAnnotationSociIndexDigest = "com.amazon.soci.index-digest"
	// IndexAnnotationImageManifestDigest on a v2 SOCI index descriptor in an
	// OCI index: the digest of the image manifest it belongs to.
	IndexAnnotationImageManifestDigest = "com.amazon.soci.image-manifest-digest"
)

// emptyJSONConfig is the config blob of every SOCI index: the two bytes "{}".
var emptyJSONConfig = []byte("{}")

// emptyJSONConfigDigest is the digest of emptyJSONConfig.
const emptyJSONConfigDigest = digest.Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")

var (
	// ErrEmptyIndex is returned when no layer produced a zTOC; such an index
	// is never written. The message is soci's.
	ErrEmptyIndex = errors.New("no ztocs created, all layers either skipped or produced errors")
	// ErrUnknownIndexVersion is returned when decoding a manifest whose
	// config media type is not a SOCI index artifact type.
	ErrUnknownIndexVersion = errors.New("unknown index version")
	// ErrNotLayerMediaType is returned when an image manifest lists a
	// descriptor that is neither a layer nor a prefetch artifact. It fails
	// the whole build, as in soci.
	ErrNotLayerMediaType = errors.New("not a layer mediaType")
)

// IndexVersion is a SOCI index manifest version. Versions combine as flags
// where a set of versions is asked for (WithIndexVersion).
type IndexVersion uint8

const (
	// V1 indexes carry a subject and are found through the referrers API.
	V1 IndexVersion = 1 << iota
	// V2 indexes are bound to rewritten image manifests in a new OCI index
	// (soci convert). soci-snapshotter reads only v2 by default.
	V2
	// Both builds a v1 and a v2 index from the same zTOCs.
	Both = V1 | V2
)

// ArtifactType is the config media type of an index of version v.
func (v IndexVersion) ArtifactType() string {
	switch v {
	case V1:
		return SociIndexArtifactTypeV1
	case V2:
		return SociIndexArtifactTypeV2
	}
	return ""
}

// String returns "v1", "v2" or "both".
func (v IndexVersion) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	case Both:
		return "both"
	}
	return fmt.Sprintf("IndexVersion(%d)", uint8(v))
}

// ParseIndexVersion parses "v1", "v2" or "both".
func ParseIndexVersion(s string) (IndexVersion, error) {
	switch s {
	case "v1", "V1", "1":
		return V1, nil
	case "v2", "V2", "2":
		return V2, nil
	case "both":
		return Both, nil
	}
	return 0, fmt.Errorf("soci index version %q: want v1, v2 or both", s)
}

// Index is a SOCI index: the zTOC descriptors of one image manifest. On the
// wire it is an OCI image manifest whose config media type is ArtifactType.
type Index struct {
	// MediaType is the media type of the manifest the index is written as:
	// always ocispec.MediaTypeImageManifest.
	MediaType string
	// ArtifactType is SociIndexArtifactTypeV1 or SociIndexArtifactTypeV2.
	ArtifactType string
	// Blobs are the zTOC descriptors in image layer order, followed by any
	// prefetch descriptors.
	Blobs []ocispec.Descriptor
	// Subject is the image manifest a v1 index refers to; nil for v2.
	Subject *ocispec.Descriptor
	// Annotations of the index manifest.
	Annotations map[string]string
}

// NewIndex returns an index of version v (V1 or V2) over blobs. subject is
// kept for V1 only.
func NewIndex(v IndexVersion, blobs []ocispec.Descriptor, subject *ocispec.Descriptor, annotations map[string]string) *Index {
	if v != V1 {
		subject = nil
	}
	return &Index{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: v.ArtifactType(),
		Blobs:        blobs,
		Subject:      subject,
		Annotations:  annotations,
	}
}

// Version reports the version of the index from its artifact type.
func (i *Index) Version() (IndexVersion, error) {
	switch i.ArtifactType {
	case SociIndexArtifactTypeV1:
		return V1, nil
	case SociIndexArtifactTypeV2:
		return V2, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownIndexVersion, i.ArtifactType)
}

// manifest is the OCI manifest the index is serialized as. Using
// ocispec.Manifest fixes the key order and omission rules the snapshotter
// re-creates when it stores a fetched index (docs/format.md 6.1).
func (i *Index) manifest() ocispec.Manifest {
	layers := i.Blobs
	if layers == nil {
		layers = []ocispec.Descriptor{} // "layers" is never null
	}
	return ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: i.ArtifactType,
			Digest:    emptyJSONConfigDigest,
			Size:      int64(len(emptyJSONConfig)),
		},
		Layers:      layers,
		Subject:     i.Subject,
		Annotations: i.Annotations,
	}
}

// MarshalIndex returns the canonical JSON of an index: exactly what Go's
// encoding/json writes for the equivalent ocispec.Manifest, which is what
// soci-snapshotter writes and re-creates.
func MarshalIndex(i *Index) ([]byte, error) {
	if _, err := i.Version(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(i.manifest())
	if err != nil {
		return nil, fmt.Errorf("marshal soci index: %w", err)
	}
	return b, nil
}

// UnmarshalIndex decodes a SOCI index manifest into i.
func UnmarshalIndex(b []byte, i *Index) error {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("unmarshal soci index: %w", err)
	}
	return fromManifest(&m, i)
}

// DecodeIndex reads a SOCI index manifest from r into i.
func DecodeIndex(r io.Reader, i *Index) error {
	var m ocispec.Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return fmt.Errorf("decode soci index: %w", err)
	}
	return fromManifest(&m, i)
}

func fromManifest(m *ocispec.Manifest, i *Index) error {
	switch m.Config.MediaType {
	case SociIndexArtifactTypeV1, SociIndexArtifactTypeV2:
	default:
		return fmt.Errorf("%w: config media type %q", ErrUnknownIndexVersion, m.Config.MediaType)
	}
	*i = Index{
		MediaType:    m.MediaType,
		ArtifactType: m.Config.MediaType,
		Blobs:        m.Layers,
		Subject:      m.Subject,
		Annotations:  m.Annotations,
	}
	return nil
}

// descriptorOf returns the descriptor of a manifest of the given media type
// with content b.
func descriptorOf(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// encodeIndex returns the canonical bytes of an index and their descriptor.
func encodeIndex(i *Index) ([]byte, ocispec.Descriptor, error) {
	b, err := MarshalIndex(i)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return b, descriptorOf(ocispec.MediaTypeImageManifest, b), nil
}
