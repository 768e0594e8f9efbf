package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// processDelete removes our artifacts for a deleted image: the v1 index
// manifests (oras-go drops them from the referrers tag index as it deletes
// them), the v2 SOCI-enabled image index with its tag and rewritten
// manifests, and the zTOC blobs no other image of the repository uses. The
// database forgets the image last, so a retry after a failed registry call
// finds the same artifacts again.
func (w *Worker) processDelete(ctx context.Context, log *slog.Logger, job queue.Job) (Outcome, error) {
	if IsReferrersTag(job.Tag) {
		return OutcomeSkipped, nil
	}
	repo, err := w.repos(ctx, job.Registry, job.Repository)
	if err != nil {
		return OutcomeFailed, err
	}
	entries, sociImages, err := w.indexEntriesOf(ctx, log, repo, job)
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("find the image's soci indexes: %w", err), false)
	}
	deleted := 0
	for _, e := range entries {
		n, err := w.deleteIndex(ctx, repo, job, e)
		deleted += n
		if err != nil {
			w.metrics.countDeleted(deleted)
			return w.transientOrFailed(err, false)
		}
	}
	removal, err := w.forget(ctx, job, sociImages)
	if err != nil {
		w.metrics.countDeleted(deleted)
		return w.transientOrFailed(fmt.Errorf("forget the image: %w", err), false)
	}
	// zTOCs no image of this repository uses any more leave it; the others
	// stay. A failure here only leaks a blob, so it does not fail the job.
	for _, z := range removal.Ztocs {
		dgst, err := digest.Parse(z)
		if err != nil {
			continue
		}
		err = repo.Blobs().Delete(ctx, ocispec.Descriptor{MediaType: index.SociLayerMediaType, Digest: dgst})
		switch {
		case err == nil:
			deleted++
		case !errors.Is(err, errdef.ErrNotFound):
			log.Warn("could not delete a zTOC blob no image uses", "ztoc", z, "error", err)
		}
	}
	w.metrics.countDeleted(deleted)
	if len(entries) == 0 && len(removal.Indexes) == 0 {
		log.Debug("deleted manifest had no soci index")
		return OutcomeSkipped, nil
	}
	log.Info("soci artifacts of the deleted image removed", "registry_objects_deleted", deleted,
		"indexes_forgotten", len(removal.Indexes), "ztocs_forgotten", len(removal.Ztocs))
	return OutcomeSucceeded, nil
}

// indexEntriesOf returns the recorded SOCI indexes built for a deleted
// image in its repository, and the digests of the v2 SOCI-enabled image
// indexes among them (other than the image itself).
//
// v1 indexes carry the image as ImageDigest and a single-platform image's
// v2 indexes carry it as Location. The v2 indexes of a multi-platform image
// carry neither: their Location is a platform manifest and their
// ImageDigest the SOCI-enabled image index, and the deleted image index
// that would name them cannot be read any more. They are found through
// the platform manifests of the image's v1 indexes (built with
// --index-version both) and through the image's v2 tag, read from its job.
func (w *Worker) indexEntriesOf(ctx context.Context, log *slog.Logger, repo *remote.Repository, job queue.Job) ([]*index.ArtifactEntry, []string, error) {
	entries, err := w.store.IndexEntriesOf(ctx, job.Registry, job.Repository, []string{job.Digest})
	if err != nil {
		return nil, nil, err
	}
	var related []string
	for _, e := range entries {
		if e.ArtifactType == index.SociIndexArtifactTypeV1 && e.Location != job.Digest {
			related = append(related, e.Location)
		}
	}
	sociImage, err := w.v2ImageByTag(ctx, log, repo, job)
	if err != nil {
		return nil, nil, err
	}
	if sociImage != "" {
		related = append(related, sociImage)
	}
	if len(related) > 0 {
		more, err := w.store.IndexEntriesOf(ctx, job.Registry, job.Repository, related)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, more...)
	}

	var (
		out        []*index.ArtifactEntry
		sociImages []string
		seenEntry  = map[string]bool{}
		seenImage  = map[string]bool{job.Digest: true}
	)
	for _, e := range entries {
		if seenEntry[e.Digest] {
			continue
		}
		seenEntry[e.Digest] = true
		out = append(out, e)
		if e.ArtifactType == index.SociIndexArtifactTypeV2 && !seenImage[e.ImageDigest] {
			seenImage[e.ImageDigest] = true
			sociImages = append(sociImages, e.ImageDigest)
		}
	}
	return out, sociImages, nil
}

// v2ImageByTag returns the digest of the SOCI-enabled image index pushed
// under the v2 tag of the deleted image's tag, or "" when there is none or
// it may not be the deleted image's. Distribution drops the tags of a
// manifest deleted by digest: a tag that still resolves now names another
// image, and its v2 tag is that image's.
func (w *Worker) v2ImageByTag(ctx context.Context, log *slog.Logger, repo *remote.Repository, job queue.Job) (string, error) {
	rec, err := w.store.Get(ctx, db.JobKey{Registry: job.Registry, Repository: job.Repository, Digest: job.Digest})
	if errors.Is(err, db.ErrJobNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the image's job: %w", err)
	}
	if rec.Tag == "" || rec.Status != db.JobSucceeded {
		return "", nil
	}
	builder, err := index.NewIndexBuilder(repo, w.buildOpts...)
	if err != nil {
		return "", fmt.Errorf("index builder: %w", err)
	}
	v2Tag := builder.V2Tag(rec.Tag)
	if v2Tag == rec.Tag {
		return "", nil
	}
	_, err = repo.Manifests().Resolve(ctx, rec.Tag)
	switch {
	case err == nil:
		log.Info("image tag names another image now: its v2 index is kept", "image_tag", rec.Tag, "v2_tag", v2Tag)
		return "", nil
	case !errors.Is(err, errdef.ErrNotFound):
		return "", fmt.Errorf("resolve %s: %w", rec.Tag, err)
	}
	desc, err := repo.Manifests().Resolve(ctx, v2Tag)
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("resolve %s: %w", v2Tag, err)
	}
	return desc.Digest.String(), nil
}

// forget makes the database forget the deleted image and the SOCI-enabled
// image indexes built for it, the image last: its job holds the tag a
// retry needs to find the v2 index again.
func (w *Worker) forget(ctx context.Context, job queue.Job, sociImages []string) (*db.Removal, error) {
	var all db.Removal
	for _, d := range append(slices.Clip(sociImages), job.Digest) {
		r, err := w.store.RemoveImage(ctx, job.Registry, job.Repository, d)
		if err != nil {
			return nil, err
		}
		all.Indexes = append(all.Indexes, r.Indexes...)
		all.Ztocs = append(all.Ztocs, r.Ztocs...)
		all.Deleted = append(all.Deleted, r.Deleted...)
	}
	return &all, nil
}

// deleteIndex deletes one SOCI index and, for v2, the image index and
// rewritten manifests that bind it. Objects already gone count as deleted.
// It returns how many objects it deleted.
func (w *Worker) deleteIndex(ctx context.Context, repo *remote.Repository, job queue.Job, e *index.ArtifactEntry) (int, error) {
	var targets []string
	if e.ArtifactType == index.SociIndexArtifactTypeV2 {
		// The image index first: it names the others, and deleting it by
		// digest removes its tag.
		if e.ImageDigest != job.Digest {
			targets = append(targets, e.ImageDigest)
		}
		if e.OriginalDigest != job.Digest {
			targets = append(targets, e.OriginalDigest)
		}
	}
	targets = append(targets, e.Digest)

	if e.ArtifactType == index.SociIndexArtifactTypeV1 {
		// Deleting a v1 index rewrites its subject's referrers tag index:
		// hold the lock the builder holds for the same rewrite.
		unlock, err := w.store.Lock(ctx, job.Registry+"/"+job.Repository+"@"+e.OriginalDigest)
		if err != nil {
			return 0, fmt.Errorf("lock referrers of %s: %w", e.OriginalDigest, err)
		}
		defer unlock()
	}
	deleted := 0
	for _, t := range targets {
		dgst, err := digest.Parse(t)
		if err != nil {
			continue
		}
		desc, err := repo.Manifests().Resolve(ctx, dgst.String())
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return deleted, fmt.Errorf("resolve %s: %w", dgst, err)
		}
		if err := repo.Manifests().Delete(ctx, desc); err != nil && !errors.Is(err, errdef.ErrNotFound) {
			return deleted, fmt.Errorf("delete %s: %w", dgst, err)
		}
		deleted++
	}
	return deleted, nil
}
