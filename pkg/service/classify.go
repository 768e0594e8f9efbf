package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Manifest and config media types the workers tell apart.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// referrersTag matches the tags of the referrers tag schema
// (<alg>-<hex>), which oras-go maintains next to our v1 indexes.
var referrersTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}$|^sha512-[0-9a-f]{128}$`)

// IsReferrersTag reports whether tag is a referrers-tag-schema tag.
func IsReferrersTag(tag string) bool { return referrersTag.MatchString(tag) }

// manifestKind is what a worker learned from a manifest's content.
type manifestKind struct {
	// skip is why the manifest is not an image to index; empty if it is one.
	skip string
	// own is true when the manifest is one of our artifacts; such jobs leave
	// no record.
	own bool
	// isIndex is true for image indexes and manifest lists.
	isIndex bool
}

// classifyManifest tells images to index from our own artifacts and from
// what is no container image (signatures, attestations, Helm charts).
func classifyManifest(mediaType string, body []byte) manifestKind {
	var m struct {
		MediaType    string               `json:"mediaType"`
		ArtifactType string               `json:"artifactType"`
		Config       ocispec.Descriptor   `json:"config"`
		Subject      *ocispec.Descriptor  `json:"subject"`
		Manifests    []ocispec.Descriptor `json:"manifests"`
		Annotations  map[string]string    `json:"annotations"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return manifestKind{skip: "manifest is not JSON: " + err.Error()}
	}
	if mediaType == "" {
		mediaType = m.MediaType
	}
	switch mediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		sociDescriptors := 0
		for _, d := range m.Manifests {
			if d.ArtifactType == index.SociIndexArtifactTypeV2 {
				sociDescriptors++
			}
		}
		switch {
		case sociDescriptors > 0:
			return manifestKind{skip: "SOCI-enabled image index (v2)", own: true, isIndex: true}
		case len(m.Manifests) == 0:
			return manifestKind{skip: "empty image index", isIndex: true}
		case allArtifacts(m.Manifests):
			return manifestKind{skip: "referrers index", own: true, isIndex: true}
		}
		return manifestKind{isIndex: true}
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		switch {
		case m.Config.MediaType == index.SociIndexArtifactTypeV1 || m.Config.MediaType == index.SociIndexArtifactTypeV2:
			return manifestKind{skip: "SOCI index manifest", own: true}
		case m.Annotations[index.ImageAnnotationSociIndexDigest] != "":
			return manifestKind{skip: "image manifest already bound to a SOCI index (v2)", own: true}
		case m.Subject != nil:
			return manifestKind{skip: "artifact referring to another manifest (" + m.Config.MediaType + ")"}
		case m.ArtifactType != "":
			return manifestKind{skip: "artifact " + m.ArtifactType}
		case m.Config.MediaType != ocispec.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig:
			return manifestKind{skip: "not a container image (config " + m.Config.MediaType + ")"}
		}
		return manifestKind{}
	}
	return manifestKind{skip: "unsupported manifest media type " + mediaType}
}

// allArtifacts reports whether every descriptor names an artifact type, as
// in a referrers index.
func allArtifacts(ds []ocispec.Descriptor) bool {
	for _, d := range ds {
		if d.ArtifactType == "" {
			return false
		}
	}
	return true
}

// ErrManifestGone is wrapped when the manifest of a job no longer exists.
var ErrManifestGone = errors.New("manifest not found in the registry")

// isTransient reports whether a failed job may succeed if tried again:
// registry 5xx, 429 and 408 answers, network errors and timeouts, and
// database or queue unavailability. Everything else (404, 4xx, corrupt
// layers, digest mismatches, unsupported formats) is permanent.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
			resp.StatusCode == http.StatusRequestTimeout
	}
	if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, ErrManifestGone) {
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.Is(err, queue.ErrUnavailable),
		errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return db.IsTransient(err)
}
