package index

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ManifestClass is what a manifest is to an indexer: the one decision of
// what gets a SOCI index and what is ours, shared by the webhook filter,
// the workers and garbage collection.
type ManifestClass int

const (
	// ClassImage is a single-platform container image manifest.
	ClassImage ManifestClass = iota
	// ClassImageIndex is an image index or manifest list of images.
	ClassImageIndex
	// ClassOwn is one of the artifacts an indexer writes: a SOCI index
	// manifest, a SOCI-enabled (v2) image index, or an image manifest
	// rewritten to carry its SOCI index digest.
	ClassOwn
	// ClassReferrersIndex is the index the referrers tag schema keeps
	// under a sha256-<hex> tag, listing the manifests that refer to one
	// subject (a registry client writes it beside our v1 indexes).
	ClassReferrersIndex
	// ClassNotImage is anything else that gets no SOCI index: signatures,
	// attestations and other artifacts, Helm charts, empty indexes,
	// unsupported media types. Classification.Reason says which.
	ClassNotImage
)

// Classification is what Classify decided, and why.
type Classification struct {
	Class ManifestClass
	// Reason is why the manifest gets no SOCI index; empty for images.
	Reason string
}

// Indexable reports whether the manifest is an image to index.
func (c Classification) Indexable() bool {
	return c.Class == ClassImage || c.Class == ClassImageIndex
}

// Ours reports whether the manifest is an indexer's own artifact or a
// referrers index: nothing to index and nothing to report.
func (c Classification) Ours() bool {
	return c.Class == ClassOwn || c.Class == ClassReferrersIndex
}

// ManifestInfo is what is known of a manifest: all of it when parsed from
// its content (ParseManifestInfo), or what a registry event tells (media
// type, config media type, the referenced descriptors, the tag).
type ManifestInfo struct {
	MediaType       string
	ArtifactType    string
	ConfigMediaType string
	// HasSubject is true when the manifest refers to another (subject).
	HasSubject bool
	// Descriptors are the layers of an image manifest, or the manifests of
	// an image index; events may list them partially or not at all.
	Descriptors []ocispec.Descriptor
	Annotations map[string]string
	// Tag is the tag the manifest was pushed under, if any.
	Tag string
}

// ParseManifestInfo reads the ManifestInfo of a manifest or image index;
// mediaType is the registry's (the content's own mediaType field when
// empty).
func ParseManifestInfo(mediaType string, body []byte, tag string) (ManifestInfo, error) {
	var m struct {
		MediaType    string               `json:"mediaType"`
		ArtifactType string               `json:"artifactType"`
		Config       *ocispec.Descriptor  `json:"config"`
		Subject      *ocispec.Descriptor  `json:"subject"`
		Layers       []ocispec.Descriptor `json:"layers"`
		Manifests    []ocispec.Descriptor `json:"manifests"`
		Annotations  map[string]string    `json:"annotations"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return ManifestInfo{}, fmt.Errorf("%w: manifest is not JSON: %w", ErrNotImage, err)
	}
	info := ManifestInfo{
		MediaType:    mediaType,
		ArtifactType: m.ArtifactType,
		HasSubject:   m.Subject != nil,
		Descriptors:  m.Layers,
		Annotations:  m.Annotations,
		Tag:          tag,
	}
	if info.MediaType == "" {
		info.MediaType = m.MediaType
	}
	if m.Config != nil {
		info.ConfigMediaType = m.Config.MediaType
	}
	if isImageIndex(info.MediaType) {
		info.Descriptors = m.Manifests
	}
	return info, nil
}

// referrersTag matches the tags of the referrers tag schema, <alg>-<hex>.
var referrersTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}$|^sha512-[0-9a-f]{128}$`)

// IsReferrersTag reports whether tag is a referrers-tag-schema tag.
func IsReferrersTag(tag string) bool { return referrersTag.MatchString(tag) }

// sociTypePrefix starts the SOCI index artifact types (v1 and v2), and
// sociAnnotationPrefix the annotations of SOCI indexes and their zTOCs.
const (
	sociTypePrefix       = "application/vnd.amazon.soci.index."
	sociAnnotationPrefix = "com.amazon.soci."
	mediaTypeEmptyJSON   = "application/vnd.oci.empty.v1+json"
	mediaTypeDockerCfg   = "application/vnd.docker.container.image.v1+json"
)

// Classify tells what info describes. An image index is a referrers index
// by what it is: pushed under a referrers tag, or listing (without any
// platform) only manifests that have a subject. An artifactType on the
// descriptors of an image index does not make it one: `crane index append`
// writes the config media type there on every platform manifest. The
// children are only read when the descriptors cannot tell: childHasSubject,
// when not nil, says whether the manifest a descriptor names has a subject;
// with nil such an index counts as an image index (what a webhook, which
// reads no registry, wants: the worker decides).
func Classify(info ManifestInfo, childHasSubject func(ocispec.Descriptor) (bool, error)) (Classification, error) {
	if reason := ownMarker(info); reason != "" {
		return Classification{Class: ClassOwn, Reason: reason}, nil
	}
	switch {
	case isImageIndex(info.MediaType):
		return classifyIndex(info, childHasSubject)
	case isImageManifest(info.MediaType):
		return classifyManifest(info), nil
	case IsReferrersTag(info.Tag):
		return Classification{Class: ClassReferrersIndex, Reason: "referrers tag " + info.Tag}, nil
	}
	return Classification{Class: ClassNotImage, Reason: "unsupported manifest media type " + quoteEmpty(info.MediaType)}, nil
}

// ownMarker says why info is a SOCI artifact, or "".
func ownMarker(info ManifestInfo) string {
	switch {
	case strings.HasPrefix(info.ConfigMediaType, sociTypePrefix), strings.HasPrefix(info.ArtifactType, sociTypePrefix):
		return "SOCI index manifest"
	case info.Annotations[ImageAnnotationSociIndexDigest] != "":
		return "image manifest bound to a SOCI index (v2)"
	}
	for _, d := range info.Descriptors {
		if d.ArtifactType == SociIndexArtifactTypeV2 && isImageIndex(info.MediaType) {
			return "SOCI-enabled image index (v2)"
		}
		if strings.HasPrefix(d.MediaType, sociTypePrefix) || strings.HasPrefix(d.ArtifactType, sociTypePrefix) {
			return "SOCI index manifest"
		}
		if d.MediaType != SociLayerMediaType && d.MediaType != mediaTypeEmptyJSON {
			continue
		}
		for k := range d.Annotations {
			if strings.HasPrefix(k, sociAnnotationPrefix) {
				return "SOCI index manifest (zTOC layers)"
			}
		}
	}
	return ""
}

func classifyIndex(info ManifestInfo, childHasSubject func(ocispec.Descriptor) (bool, error)) (Classification, error) {
	if IsReferrersTag(info.Tag) {
		return Classification{Class: ClassReferrersIndex, Reason: "referrers index (tag " + info.Tag + ")"}, nil
	}
	if len(info.Descriptors) == 0 {
		return Classification{Class: ClassNotImage, Reason: "empty image index"}, nil
	}
	images := 0
	for _, d := range info.Descriptors {
		if d.Platform != nil {
			// A referrers index names no platforms; an image index does.
			return Classification{Class: ClassImageIndex}, nil
		}
		if isImageManifest(d.MediaType) {
			images++
		}
	}
	if childHasSubject != nil {
		refs := 0
		for _, d := range info.Descriptors {
			ok, err := childHasSubject(d)
			if err != nil {
				return Classification{}, fmt.Errorf("read %s: %w", d.Digest, err)
			}
			if ok {
				refs++
			}
		}
		if refs == len(info.Descriptors) {
			return Classification{Class: ClassReferrersIndex, Reason: "referrers index (every manifest it lists has a subject)"}, nil
		}
	}
	if images == 0 {
		return Classification{Class: ClassNotImage, Reason: "image index lists no image manifest"}, nil
	}
	return Classification{Class: ClassImageIndex}, nil
}

func classifyManifest(info ManifestInfo) Classification {
	switch {
	case info.HasSubject:
		return Classification{Class: ClassNotImage, Reason: "artifact referring to another manifest (" + quoteEmpty(info.ConfigMediaType) + ")"}
	case info.ArtifactType != "":
		return Classification{Class: ClassNotImage, Reason: "artifact " + info.ArtifactType}
	case info.ConfigMediaType != "" && !isImageConfig(info.ConfigMediaType):
		return Classification{Class: ClassNotImage, Reason: "not a container image (config " + info.ConfigMediaType + ")"}
	}
	return Classification{Class: ClassImage}
}

// isImageConfig reports whether mediaType is an image config's.
func isImageConfig(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageConfig || mediaType == mediaTypeDockerCfg
}

// isImageDescriptor reports whether an image index entry names a platform
// image: an image manifest with a known platform and, if it has an
// artifactType, an image config's (as `crane index append` writes).
// Attestations (unknown/unknown), SOCI indexes and other artifacts are not.
func isImageDescriptor(d ocispec.Descriptor) bool {
	return d.Platform != nil && !isUnknownPlatform(d.Platform) && isImageManifest(d.MediaType) &&
		(d.ArtifactType == "" || isImageConfig(d.ArtifactType))
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
