package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// ErrReferrerNotListed is returned when a pushed v1 index still is not
// among its image's referrers after repeated repairs.
var ErrReferrerNotListed = errors.New("soci index not listed in the image's referrers")

// referrerPushAttempts bounds the push-and-verify rounds of a v1 index.
const referrerPushAttempts = 3

// pushV1 pushes the v1 index of pb, whose subject is its platform manifest.
//
// On registries without the referrers API the client keeps the referrers
// list in a fallback tag through a read-modify-write, which loses entries
// when two writers race. So the update runs under the per-image lock, and
// the listing is read back afterwards: pushing the same manifest again makes
// the client add it again, which repairs an entry lost to a writer that does
// not take our lock.
func (b *IndexBuilder) pushV1(ctx context.Context, img Image, pb platformBuild) (IndexWithMetadata, error) {
	idx := b.newIndex(V1, pb)
	raw, desc, err := encodeIndex(idx)
	if err != nil {
		return IndexWithMetadata{}, err
	}
	subject := *idx.Subject
	log := b.cfg.logger.With("manifest", subject.Digest, "index", desc.Digest)

	unlock, err := b.cfg.locker.Lock(ctx, b.lockKey(subject.Digest))
	if err != nil {
		return IndexWithMetadata{}, fmt.Errorf("lock %s: %w", subject.Digest, err)
	}
	defer unlock()

	for attempt := 0; ; attempt++ {
		listed, err := b.hasReferrer(ctx, subject, desc.Digest)
		if err != nil {
			return IndexWithMetadata{}, err
		}
		if listed {
			break
		}
		if attempt == referrerPushAttempts {
			return IndexWithMetadata{}, fmt.Errorf("%w: %s after %d pushes", ErrReferrerNotListed, desc.Digest, attempt)
		}
		if attempt > 0 {
			log.Warn("soci index missing from referrers, pushing again", "attempt", attempt+1)
		}
		if err := b.repo.Push(ctx, desc, bytes.NewReader(raw)); err != nil {
			// The new referrers list is in place; only the old one could not
			// be deleted (a registry with deletes disabled).
			var rerr *remote.ReferrersError
			if !errors.As(err, &rerr) || !rerr.IsReferrersIndexDelete() {
				return IndexWithMetadata{}, fmt.Errorf("push soci index %s: %w", desc.Digest, err)
			}
			log.Debug("old referrers index not deleted", "error", err)
		}
	}

	res := IndexWithMetadata{
		Index:        idx,
		Desc:         desc,
		Version:      V1,
		Platform:     pb.manifest.platform,
		ImageDesc:    img.Descriptor,
		ManifestDesc: subject,
		Layers:       pb.layers,
		CreatedAt:    time.Now().UTC(),
	}
	if err := b.recordIndex(ctx, res, subject.Digest); err != nil {
		return IndexWithMetadata{}, err
	}
	return res, nil
}

// hasReferrer reports whether the referrers of subject list dgst.
func (b *IndexBuilder) hasReferrer(ctx context.Context, subject ocispec.Descriptor, dgst digest.Digest) (bool, error) {
	refs, err := b.referrers(ctx, subject, SociIndexArtifactTypeV1)
	if err != nil {
		return false, err
	}
	for _, r := range refs {
		if r.Digest == dgst {
			return true, nil
		}
	}
	return false, nil
}

func (b *IndexBuilder) referrers(ctx context.Context, subject ocispec.Descriptor, artifactType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	err := b.repo.Referrers(ctx, subject, artifactType, func(page []ocispec.Descriptor) error {
		out = append(out, page...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s: %w", subject.Digest, err)
	}
	return out, nil
}

// lockKey names the referrers list of one image manifest.
func (b *IndexBuilder) lockKey(subject digest.Digest) string {
	return ReferrersLockKey(b.location.Repository, subject)
}
