package index

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// V2Tag returns the tag the v2 OCI index of an image tagged tag is pushed
// under.
func (b *IndexBuilder) V2Tag(tag string) string {
	return strings.ReplaceAll(b.cfg.v2TagTemplate, "{tag}", tag)
}

// convert makes the SOCI-enabled image of soci convert (docs/format.md 6.3):
// a v2 index per built platform, the platform manifests rewritten to carry
// the index digest, and an OCI index listing the rewritten manifests and
// then the SOCI indexes, pushed under the v2 tag.
//
// The rewritten manifests are those of the selected platforms, which is
// what soci rewrites when the image was pulled for those platforms; other
// entries (unselected platforms, attestations) are kept as they are.
func (b *IndexBuilder) convert(ctx context.Context, img Image, manifests []platformManifest, builds []platformBuild) ([]IndexWithMetadata, error) {
	target, err := b.targetIndex(ctx, img.Descriptor, builds)
	if err != nil {
		return nil, err
	}

	type built struct {
		pb       platformBuild
		idx      *Index
		desc     ocispec.Descriptor
		manifest ocispec.Descriptor // rewritten
	}
	all := make([]*built, len(builds))
	byManifest := make(map[digest.Digest]*built, len(builds))
	for i, pb := range builds {
		idx := b.newIndex(V2, pb)
		raw, desc, err := encodeIndex(idx)
		if err != nil {
			return nil, err
		}
		if err := b.pushIfMissing(ctx, desc, raw); err != nil {
			return nil, fmt.Errorf("push soci index %s: %w", desc.Digest, err)
		}
		all[i] = &built{pb: pb, idx: idx, desc: desc}
		byManifest[pb.manifest.desc.Digest] = all[i]
	}
	selected := make(map[digest.Digest]bool, len(manifests))
	for _, m := range manifests {
		selected[m.desc.Digest] = true
	}

	for i, entry := range target.Manifests {
		bt := byManifest[entry.Digest]
		if bt == nil && !selected[entry.Digest] {
			continue
		}
		var sociDigest digest.Digest
		if bt != nil {
			sociDigest = bt.desc.Digest
		}
		rewritten, err := b.rewriteManifest(ctx, entry, sociDigest)
		if err != nil {
			return nil, err
		}
		target.Manifests[i] = rewritten
		if bt != nil {
			bt.manifest = rewritten
		}
	}

	for _, bt := range all {
		if bt.manifest.Digest == "" {
			return nil, fmt.Errorf("manifest %s is not listed in image %s", bt.pb.manifest.desc.Digest, img.Descriptor.Digest)
		}
		platform := bt.pb.manifest.platform
		sociDesc := ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			Digest:       bt.desc.Digest,
			Size:         bt.desc.Size,
			Annotations:  map[string]string{IndexAnnotationImageManifestDigest: bt.manifest.Digest.String()},
			Platform:     &platform,
			ArtifactType: SociIndexArtifactTypeV2,
		}
		replaced := false
		for i, m := range target.Manifests {
			if m.ArtifactType == SociIndexArtifactTypeV2 && m.Platform != nil && MatchPlatform(*m.Platform, platform) {
				target.Manifests[i], replaced = sociDesc, true
				break
			}
		}
		if !replaced {
			target.Manifests = append(target.Manifests, sociDesc)
		}
	}

	raw, err := json.Marshal(target)
	if err != nil {
		return nil, fmt.Errorf("marshal oci index: %w", err)
	}
	indexDesc := descriptorOf(ocispec.MediaTypeImageIndex, raw)
	tag := b.V2Tag(img.Tag)
	if err := b.repo.PushReference(ctx, indexDesc, bytes.NewReader(raw), tag); err != nil {
		return nil, fmt.Errorf("push oci index as %s: %w", tag, err)
	}

	out := make([]IndexWithMetadata, 0, len(all))
	for _, bt := range all {
		res := IndexWithMetadata{
			Index:        bt.idx,
			Desc:         bt.desc,
			Version:      V2,
			Platform:     bt.pb.manifest.platform,
			ImageDesc:    indexDesc,
			ManifestDesc: bt.manifest,
			Tag:          tag,
			Layers:       bt.pb.layers,
			CreatedAt:    time.Now().UTC(),
		}
		// As soci records it after convert: the location stays the
		// original manifest.
		if err := b.recordIndex(ctx, res, bt.pb.manifest.desc.Digest); err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// targetIndex is the OCI index convert starts from: the image's own index
// re-serialized as OCI, or a new one around a single manifest.
func (b *IndexBuilder) targetIndex(ctx context.Context, image ocispec.Descriptor, builds []platformBuild) (ocispec.Index, error) {
	if isImageIndex(image.MediaType) {
		var idx ocispec.Index
		if _, err := fetchJSON(ctx, b.repo, image, &idx); err != nil {
			return ocispec.Index{}, err
		}
		idx.MediaType = ocispec.MediaTypeImageIndex
		return idx, nil
	}
	platform := builds[0].manifest.platform
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: image.MediaType,
			Digest:    image.Digest,
			Size:      image.Size,
			Platform:  &platform,
		}},
	}, nil
}

// rewriteManifest rewrites one image manifest as soci convert does: OCI
// manifest and config media types, the SOCI index digest annotation when
// there is an index, and the index entry's annotations replaced by the
// manifest's.
func (b *IndexBuilder) rewriteManifest(ctx context.Context, entry ocispec.Descriptor, sociIndex digest.Digest) (ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if _, err := fetchJSON(ctx, b.repo, entry, &m); err != nil {
		return ocispec.Descriptor{}, err
	}
	m.MediaType = ocispec.MediaTypeImageManifest
	m.Config.MediaType = ocispec.MediaTypeImageConfig
	if sociIndex != "" {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[ImageAnnotationSociIndexDigest] = sociIndex.String()
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("marshal manifest %s: %w", entry.Digest, err)
	}
	desc := descriptorOf(ocispec.MediaTypeImageManifest, raw)
	if err := b.pushIfMissing(ctx, desc, raw); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push rewritten manifest %s: %w", desc.Digest, err)
	}
	entry.MediaType = desc.MediaType
	entry.Digest = desc.Digest
	entry.Size = desc.Size
	entry.Annotations = m.Annotations
	return entry, nil
}
