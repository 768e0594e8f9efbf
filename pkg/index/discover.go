package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// IndexDescriptorInfo is a SOCI index that exists for an image manifest.
type IndexDescriptorInfo struct {
	// Descriptor of the SOCI index manifest; ArtifactType tells its version.
	ocispec.Descriptor
	Version  IndexVersion
	Platform ocispec.Platform
	// Manifest is the digest of the image manifest the index belongs to.
	Manifest digest.Digest
}

// GetIndexDescriptorCollection lists the SOCI indexes of image for the
// given platforms (every platform when none is given), found the ways the
// snapshotter finds them: v2 through the index-digest annotation of each
// platform manifest, v1 through the manifest's referrers. For a v2 OCI index
// made by convert, its SOCI index descriptors are listed too.
func (b *IndexBuilder) GetIndexDescriptorCollection(ctx context.Context, image ocispec.Descriptor, platforms ...ocispec.Platform) ([]IndexDescriptorInfo, error) {
	lister := *b
	lister.cfg.platforms = nil
	for _, p := range platforms {
		lister.cfg.platforms = append(lister.cfg.platforms, NormalizePlatform(p))
	}
	manifests, err := lister.selectManifests(ctx, image)
	if err != nil {
		return nil, err
	}
	var out []IndexDescriptorInfo
	// One row per SOCI index and platform manifest: the platforms of an
	// image may have byte-identical SOCI indexes (the same layers), and
	// each is still a platform with its index.
	type seenKey struct{ index, manifest digest.Digest }
	seen := map[seenKey]bool{}
	add := func(info IndexDescriptorInfo) {
		if k := (seenKey{info.Digest, info.Manifest}); !seen[k] {
			seen[k] = true
			out = append(out, info)
		}
	}
	for _, pm := range manifests {
		if d, ok := pm.manifest.Annotations[ImageAnnotationSociIndexDigest]; ok {
			info, err := b.v2IndexInfo(ctx, d, pm)
			if err != nil {
				return nil, err
			}
			add(info)
		}
		subject := ocispec.Descriptor{MediaType: pm.desc.MediaType, Digest: pm.desc.Digest, Size: pm.desc.Size}
		refs, err := b.referrers(ctx, subject, SociIndexArtifactTypeV1)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			add(IndexDescriptorInfo{Descriptor: r, Version: V1, Platform: pm.platform, Manifest: pm.desc.Digest})
		}
	}
	return out, nil
}

// v2IndexInfo resolves the SOCI index a v2 manifest annotation names.
func (b *IndexBuilder) v2IndexInfo(ctx context.Context, annotation string, pm platformManifest) (IndexDescriptorInfo, error) {
	dgst, err := digest.Parse(annotation)
	if err != nil {
		return IndexDescriptorInfo{}, fmt.Errorf("manifest %s: annotation %s: %w", pm.desc.Digest, ImageAnnotationSociIndexDigest, err)
	}
	desc, err := b.repo.Resolve(ctx, dgst.String())
	if errors.Is(err, errdef.ErrNotFound) {
		return IndexDescriptorInfo{}, fmt.Errorf("manifest %s names soci index %s, which is missing: %w", pm.desc.Digest, dgst, err)
	}
	if err != nil {
		return IndexDescriptorInfo{}, fmt.Errorf("resolve soci index %s: %w", dgst, err)
	}
	desc.ArtifactType = SociIndexArtifactTypeV2
	return IndexDescriptorInfo{Descriptor: desc, Version: V2, Platform: pm.platform, Manifest: pm.desc.Digest}, nil
}
