package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

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
	entries, err := w.indexEntriesOf(ctx, job.Registry, job.Repository, job.Digest)
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
	removal, err := w.store.RemoveImage(ctx, job.Registry, job.Repository, job.Digest)
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

// indexEntriesOf returns the recorded SOCI indexes built for an image in one
// repository: v1 indexes carry the image as ImageDigest, v2 ones as
// Location (their ImageDigest is the SOCI-enabled image index).
func (w *Worker) indexEntriesOf(ctx context.Context, registry, repository, imageDigest string) ([]*index.ArtifactEntry, error) {
	loc := index.Location{Registry: registry, Repository: repository}
	var out []*index.ArtifactEntry
	err := w.store.Walk(ctx, func(e *index.ArtifactEntry) error {
		if e.Type != index.ArtifactEntryTypeIndex || (e.ImageDigest != imageDigest && e.Location != imageDigest) {
			return nil
		}
		for _, l := range e.Locations {
			if l == loc {
				out = append(out, e)
				break
			}
		}
		return nil
	})
	return out, err
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
