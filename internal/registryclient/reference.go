package registryclient

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// ImageReference is a parsed "host[:port]/name[:tag][@digest]".
type ImageReference struct {
	Registry   string // host[:port]
	Repository string // name
	Tag        string // may be empty
	Digest     digest.Digest
}

// ParseImageReference parses an image reference. Unlike oras-go's parser it
// keeps the tag when a digest is given too, because a v2 SOCI index is
// tagged after the image's tag while the digest names the image.
func ParseImageReference(s string) (ImageReference, error) {
	rest, dgst, hasDigest := strings.Cut(s, "@")
	var ref ImageReference
	if hasDigest {
		d, err := digest.Parse(dgst)
		if err != nil {
			return ImageReference{}, fmt.Errorf("reference %q: %w", s, err)
		}
		ref.Digest = d
	}
	// A tag follows the last ':' after the last '/'; a ':' before it is a port.
	if slash := strings.LastIndexByte(rest, '/'); slash >= 0 {
		if colon := strings.LastIndexByte(rest[slash:], ':'); colon >= 0 {
			ref.Tag = rest[slash+colon+1:]
			rest = rest[:slash+colon]
		}
	}
	parsed, err := registry.ParseReference(rest)
	if err != nil {
		return ImageReference{}, fmt.Errorf("reference %q: %w", s, err)
	}
	if parsed.Reference != "" {
		return ImageReference{}, fmt.Errorf("reference %q: malformed", s)
	}
	ref.Registry, ref.Repository = parsed.Registry, parsed.Repository
	if ref.Tag == "" && ref.Digest == "" {
		return ImageReference{}, fmt.Errorf("reference %q: needs a tag or a digest", s)
	}
	if ref.Tag != "" {
		check := registry.Reference{Registry: ref.Registry, Repository: ref.Repository, Reference: ref.Tag}
		if err := check.ValidateReferenceAsTag(); err != nil {
			return ImageReference{}, fmt.Errorf("reference %q: %w", s, err)
		}
	}
	return ref, nil
}

// RepositoryName is "host[:port]/name", what Client.Repository takes.
func (r ImageReference) RepositoryName() string { return r.Registry + "/" + r.Repository }

// Reference is what the repository resolves: the digest, the tag, or
// "tag@digest" when both are known.
func (r ImageReference) Reference() string {
	switch {
	case r.Tag != "" && r.Digest != "":
		return r.Tag + "@" + r.Digest.String()
	case r.Digest != "":
		return r.Digest.String()
	}
	return r.Tag
}

// String is the reference in its usual form.
func (r ImageReference) String() string {
	s := r.RepositoryName()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}
