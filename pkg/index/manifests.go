package index

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// platformManifest is an image manifest of one platform.
type platformManifest struct {
	desc     ocispec.Descriptor // as listed in the image index, or the image itself
	platform ocispec.Platform
	manifest ocispec.Manifest
	raw      []byte
}

func isImageIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == mediaTypeDockerManifestList
}

func isImageManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == mediaTypeDockerManifest
}

// GetImageManifestDescriptor returns the manifest of image for platform. For
// an image index, it is the first child whose platform matches; a child
// without a platform is an error. A single manifest is returned as it is,
// unless its descriptor names another platform.
func (b *IndexBuilder) GetImageManifestDescriptor(ctx context.Context, image ocispec.Descriptor, platform ocispec.Platform) (ocispec.Descriptor, error) {
	switch {
	case isImageIndex(image.MediaType):
		var idx ocispec.Index
		if _, err := fetchJSON(ctx, b.repo, image, &idx); err != nil {
			return ocispec.Descriptor{}, err
		}
		for _, m := range idx.Manifests {
			if m.Platform == nil {
				return ocispec.Descriptor{}, fmt.Errorf("manifest %s should have proper platform", m.Digest)
			}
			if MatchPlatform(platform, *m.Platform) {
				return m, nil
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("%w: %s", ErrPlatformNotFound, FormatPlatform(platform))
	case isImageManifest(image.MediaType):
		if image.Platform != nil && !MatchPlatform(platform, *image.Platform) {
			return ocispec.Descriptor{}, fmt.Errorf("%w: %s (the image is %s)", ErrPlatformNotFound, FormatPlatform(platform), FormatPlatform(*image.Platform))
		}
		return image, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w: %s has media type %q", ErrNotImage, image.Digest, image.MediaType)
}

// selectManifests returns the platform manifests to index: the requested
// platforms, or every platform of an image index but attestations.
func (b *IndexBuilder) selectManifests(ctx context.Context, image ocispec.Descriptor) ([]platformManifest, error) {
	var descs []ocispec.Descriptor
	// requested[i] is the platform asked for descs[i], kept as given (soci
	// records the platform it was asked to build, not the listed one).
	var requested []*ocispec.Platform
	switch {
	case isImageManifest(image.MediaType):
		descs = []ocispec.Descriptor{image}
	case isImageIndex(image.MediaType) && len(b.cfg.platforms) > 0:
		for _, p := range b.cfg.platforms {
			d, err := b.GetImageManifestDescriptor(ctx, image, p)
			if err != nil {
				return nil, err
			}
			descs = append(descs, d)
			requested = append(requested, &p)
		}
	case isImageIndex(image.MediaType):
		var idx ocispec.Index
		if _, err := fetchJSON(ctx, b.repo, image, &idx); err != nil {
			return nil, err
		}
		var seen []ocispec.Platform
	children:
		for _, m := range idx.Manifests {
			// Attestations and artifacts (such as the SOCI indexes of a
			// converted image) are not images; an artifactType that is an
			// image config's (crane index append) is still an image.
			if !isImageDescriptor(m) {
				continue
			}
			// The first manifest of a platform wins, as in platform matching.
			for _, p := range seen {
				if MatchPlatform(p, *m.Platform) {
					continue children
				}
			}
			seen = append(seen, *m.Platform)
			descs = append(descs, m)
		}
	default:
		return nil, fmt.Errorf("%w: %s has media type %q", ErrNotImage, image.Digest, image.MediaType)
	}

	out := make([]platformManifest, 0, len(descs))
	for i, d := range descs {
		pm := platformManifest{desc: d}
		raw, err := fetchJSON(ctx, b.repo, d, &pm.manifest)
		if err != nil {
			return nil, err
		}
		pm.raw = raw
		if at := pm.manifest.Config.MediaType; at == SociIndexArtifactTypeV1 || at == SociIndexArtifactTypeV2 || pm.manifest.ArtifactType != "" {
			return nil, fmt.Errorf("%w: %s is an artifact (%s)", ErrNotImage, d.Digest, at)
		}
		switch {
		case i < len(requested):
			pm.platform = *requested[i]
		case d.Platform != nil:
			pm.platform = *d.Platform
		default:
			if pm.platform, err = b.configPlatform(ctx, pm.manifest.Config); err != nil {
				return nil, err
			}
		}
		out = append(out, pm)
	}
	return out, nil
}

// configPlatform reads the platform of a single-manifest image from its
// config, as containerd does: OS and architecture, normalized.
func (b *IndexBuilder) configPlatform(ctx context.Context, config ocispec.Descriptor) (ocispec.Platform, error) {
	var img ocispec.Image
	if _, err := fetchJSON(ctx, b.repo, config, &img); err != nil {
		return ocispec.Platform{}, fmt.Errorf("image config: %w", err)
	}
	return NormalizePlatform(ocispec.Platform{OS: img.OS, Architecture: img.Architecture}), nil
}
