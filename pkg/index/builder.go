package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// Docker media types of manifests and manifest lists.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

var (
	// ErrPlatformNotFound is returned when an image has no manifest for a
	// requested platform.
	ErrPlatformNotFound = errors.New("no image manifest for platform")
	// ErrNotImage is returned for a manifest that is not a container image,
	// such as a SOCI index or another artifact: it gets no SOCI index.
	ErrNotImage = errors.New("not an image")
)

// Repository is what the builder needs from one registry repository. An
// oras-go *remote.Repository satisfies it; if it also implements
// registry.Mounter, zTOCs recorded in sibling repositories are mounted
// instead of rebuilt.
type Repository interface {
	content.ReadOnlyStorage
	content.Pusher
	content.Resolver
	registry.ReferencePusher
	registry.ReferrerLister
}

// referenceParser is implemented by *remote.Repository; it tells the builder
// which registry and repository it writes to.
type referenceParser interface {
	ParseReference(reference string) (registry.Reference, error)
}

// Image is an image to index: a manifest or an image index in the builder's
// repository, with the tag it was pushed under (empty when pushed by digest
// only; v2 indexes need it).
type Image struct {
	Descriptor ocispec.Descriptor
	Tag        string
}

// IndexWithMetadata is a SOCI index the builder pushed, with what it was
// built for.
type IndexWithMetadata struct {
	Index    *Index
	Desc     ocispec.Descriptor // the SOCI index manifest
	Version  IndexVersion
	Platform ocispec.Platform
	// ImageDesc is the image the index belongs to: the built image for v1,
	// the new OCI index for v2.
	ImageDesc ocispec.Descriptor
	// ManifestDesc is the platform manifest the index describes: the
	// original for v1 (the subject), the rewritten one for v2.
	ManifestDesc ocispec.Descriptor
	// Tag is the tag the v2 OCI index was pushed under.
	Tag       string
	Layers    []LayerResult
	CreatedAt time.Time
}

// IndexBuilder builds SOCI indexes for images in one repository and pushes
// them there. It is safe for concurrent use.
type IndexBuilder struct {
	repo     Repository
	cfg      buildConfig
	location Location
}

// NewIndexBuilder returns a builder writing to repo.
func NewIndexBuilder(repo Repository, opts ...BuildOption) (*IndexBuilder, error) {
	cfg := defaultBuildConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.platforms) > 0 && cfg.allPlatforms {
		return nil, errors.New("platforms and all platforms are exclusive")
	}
	if cfg.locker == nil {
		cfg.locker = NewLocalLocker()
	}
	b := &IndexBuilder{repo: repo, cfg: cfg}
	if p, ok := repo.(referenceParser); ok {
		// Any valid digest parses into the repository's own reference.
		if ref, err := p.ParseReference(emptyJSONConfigDigest.String()); err == nil {
			b.location = Location{Registry: ref.Registry, Repository: ref.Repository}
		}
	}
	return b, nil
}

// Build resolves reference in the builder's repository and builds its SOCI
// indexes. reference is a tag, a digest, or tag@digest: the digest names the
// image and the tag is used for the v2 tag.
func (b *IndexBuilder) Build(ctx context.Context, reference string) ([]IndexWithMetadata, error) {
	img, err := b.ResolveImage(ctx, reference)
	if err != nil {
		return nil, err
	}
	return b.BuildImage(ctx, img)
}

// ResolveImage resolves a tag, a digest or tag@digest to an Image.
func (b *IndexBuilder) ResolveImage(ctx context.Context, reference string) (Image, error) {
	tag, ref := "", reference
	if i := strings.LastIndexByte(reference, '@'); i >= 0 {
		tag, ref = reference[:i], reference[i+1:]
	} else if _, err := digest.Parse(reference); err != nil {
		tag = reference
	}
	desc, err := b.repo.Resolve(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("resolve %s: %w", reference, err)
	}
	return Image{Descriptor: desc, Tag: tag}, nil
}

// platformBuild is the work for one platform manifest of an image.
type platformBuild struct {
	manifest platformManifest
	layers   []LayerResult
	ztocs    []ocispec.Descriptor
}

// BuildImage builds the SOCI indexes of img: one per selected platform and
// requested version. Platforms whose layers all get skipped are left out;
// when every platform is, the error is ErrEmptyIndex.
func (b *IndexBuilder) BuildImage(ctx context.Context, img Image) ([]IndexWithMetadata, error) {
	log := b.cfg.logger.With("image", img.Descriptor.Digest)
	manifests, err := b.selectManifests(ctx, img.Descriptor)
	if err != nil {
		return nil, err
	}
	var builds []platformBuild
	// Platforms may share layers; each is read once per build.
	done := map[digest.Digest]LayerResult{}
	for _, pm := range manifests {
		layers, err := b.buildZtocs(ctx, pm, done)
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", FormatPlatform(pm.platform), err)
		}
		var ztocs []ocispec.Descriptor
		for _, l := range layers {
			done[l.Layer.Digest] = l
			if l.Ztoc != nil {
				ztocs = append(ztocs, *l.Ztoc)
			}
		}
		if len(ztocs) == 0 {
			log.Info("no zTOC for any layer, platform skipped", "platform", FormatPlatform(pm.platform))
			continue
		}
		builds = append(builds, platformBuild{manifest: pm, layers: layers, ztocs: ztocs})
	}
	if len(builds) == 0 {
		return nil, ErrEmptyIndex
	}
	if err := b.pushIfMissing(ctx, descriptorOf(SociIndexArtifactTypeV1, emptyJSONConfig), emptyJSONConfig); err != nil {
		return nil, fmt.Errorf("push index config: %w", err)
	}

	versions := b.cfg.versions
	if versions&V2 != 0 && img.Tag == "" {
		log.Warn("image has no tag: building a v1 index instead of v2")
		versions = V1
	}
	var out []IndexWithMetadata
	if versions&V1 != 0 {
		for _, pb := range builds {
			res, err := b.pushV1(ctx, img, pb)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
		}
	}
	if versions&V2 != 0 {
		res, err := b.convert(ctx, img, manifests, builds)
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// newIndex returns the index of version v over the zTOCs of pb.
func (b *IndexBuilder) newIndex(v IndexVersion, pb platformBuild) *Index {
	subject := ocispec.Descriptor{
		MediaType: pb.manifest.desc.MediaType,
		Digest:    pb.manifest.desc.Digest,
		Size:      pb.manifest.desc.Size,
	}
	return NewIndex(v, pb.ztocs, &subject, map[string]string{
		IndexAnnotationBuildToolIdentifier: b.cfg.buildToolIdentifier,
	})
}

// pushIfMissing pushes a blob or manifest unless the repository has it.
func (b *IndexBuilder) pushIfMissing(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	ok, err := b.repo.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if err := b.repo.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return nil
}

// recordIndex writes the artifacts DB entry of a pushed index.
func (b *IndexBuilder) recordIndex(ctx context.Context, res IndexWithMetadata, location digest.Digest) error {
	if b.cfg.artifactsDb == nil {
		return nil
	}
	entry := &ArtifactEntry{
		Digest:              res.Desc.Digest.String(),
		Size:                res.Desc.Size,
		Location:            location.String(),
		OriginalDigest:      res.ManifestDesc.Digest.String(),
		ImageDigest:         res.ImageDesc.Digest.String(),
		Platform:            FormatPlatform(res.Platform),
		Type:                ArtifactEntryTypeIndex,
		MediaType:           ocispec.MediaTypeImageManifest,
		ArtifactType:        res.Index.ArtifactType,
		CreatedAt:           res.CreatedAt,
		BuildToolIdentifier: b.cfg.buildToolIdentifier,
		BuilderVersion:      b.cfg.builderVersion,
		Locations:           b.locations(),
	}
	if err := b.cfg.artifactsDb.WriteArtifactEntry(ctx, entry); err != nil {
		return fmt.Errorf("record soci index %s: %w", res.Desc.Digest, err)
	}
	return nil
}

func (b *IndexBuilder) locations() []Location {
	if b.location == (Location{}) {
		return nil
	}
	return []Location{b.location}
}

// fetchJSON fetches a manifest or blob, verifying size and digest, and
// decodes it into v. It returns the raw bytes.
func fetchJSON(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor, v any) ([]byte, error) {
	raw, err := content.FetchAll(ctx, f, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", desc.MediaType, desc.Digest, err)
	}
	return raw, nil
}
