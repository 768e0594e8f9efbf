package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// processDelete removes our artifacts for a deleted image or tag.
//
// A digest delete removes everything of the image: the v1 index manifests
// (oras-go drops them from the referrers tag index as it deletes them), the
// v2 SOCI-enabled image index (deleting it by digest drops every v2 tag of
// the image) with its rewritten manifests, the zTOC blobs no other image of
// the repository uses, and the jobs of every tag. The database forgets the
// image last, so a retry after a failed registry call finds the same
// artifacts again. A tag delete (no digest) removes that tag's v2 tag and
// its job, and nothing else: the image and its other tags keep their
// indexes.
func (w *Worker) processDelete(ctx context.Context, log *slog.Logger, job queue.Job) (Outcome, error) {
	if index.IsReferrersTag(job.Tag) {
		log.Info("job skipped: our own artifact", "reason", "referrers tag")
		return OutcomeSkipped, nil
	}
	if !w.registryAllowed(job.Registry) {
		return OutcomeFailed, fmt.Errorf("%w: %s", ErrRegistryNotAllowed, job.Registry)
	}
	repo, err := w.repos(ctx, job.Registry, job.Repository)
	if err != nil {
		return OutcomeFailed, err
	}
	locks, err := w.store.LockSession(ctx)
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("lock session: %w", err), false)
	}
	defer locks.Close()
	if job.Digest == "" {
		return w.deleteTag(ctx, log, repo, job)
	}
	// Not while a worker indexes the same image.
	unlock, err := locks.Lock(ctx, index.ImageLockKey(job.Repository, digest.Digest(job.Digest)))
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("wait for another worker on this image: %w", err), false)
	}
	defer unlock()
	entries, sociImages, err := w.indexEntriesOf(ctx, log, repo, job)
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("find the image's soci indexes: %w", err), false)
	}
	deleted := 0
	for _, e := range entries {
		n, err := w.deleteIndex(ctx, repo, locks, job, e)
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
// --index-version both) and through the v2 index digests its jobs recorded.
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
	v2Images, err := w.v2ImagesOf(ctx, log, repo, job)
	if err != nil {
		return nil, nil, err
	}
	related = append(related, v2Images...)
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

// v2ImagesOf returns the SOCI-enabled image indexes built for the deleted
// image: those its jobs recorded, and for a job recorded before the v2
// index digest was (an older schema), the one its v2 tag names, unless
// that may not be the deleted image's. Distribution drops the tags of a
// manifest deleted by digest: a tag that still resolves now names another
// image, and its v2 tag is that image's.
func (w *Worker) v2ImagesOf(ctx context.Context, log *slog.Logger, repo *remote.Repository, job queue.Job) ([]string, error) {
	recs, err := w.store.List(ctx, db.JobFilter{Registry: job.Registry, Repository: job.Repository, Digest: job.Digest,
		Limit: maxTagsPerImage})
	if err != nil {
		return nil, fmt.Errorf("read the image's jobs: %w", err)
	}
	var out []string
	for _, rec := range recs {
		if rec.IndexDigest != "" {
			out = append(out, rec.IndexDigest)
			continue
		}
		if rec.Tag == "" || rec.Status != db.JobSucceeded {
			continue
		}
		d, err := w.v2ImageByTag(ctx, log, repo, rec.Tag)
		if err != nil {
			return nil, err
		}
		if d != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// maxTagsPerImage bounds the jobs read for one image or tag.
const maxTagsPerImage = 10000

// v2ImageByTag returns the digest of the SOCI-enabled image index pushed
// under the v2 tag of tag, or "" when there is none or tag names an image
// again.
func (w *Worker) v2ImageByTag(ctx context.Context, log *slog.Logger, repo *remote.Repository, tag string) (string, error) {
	builder, err := index.NewIndexBuilder(repo, w.buildOpts...)
	if err != nil {
		return "", fmt.Errorf("index builder: %w", err)
	}
	v2Tag := builder.V2Tag(tag)
	if v2Tag == tag {
		return "", nil
	}
	_, err = repo.Manifests().Resolve(ctx, tag)
	switch {
	case err == nil:
		log.Info("image tag names another image now: its v2 index is kept", "image_tag", tag, "v2_tag", v2Tag)
		return "", nil
	case !errors.Is(err, errdef.ErrNotFound):
		return "", fmt.Errorf("resolve %s: %w", tag, err)
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

// deleteTag handles a tag delete: the tag's v2 tag goes (the tag alone:
// the SOCI-enabled image index it names may be the image's other tags'
// too) and the database forgets the tag's jobs. When the tag names an
// image again (pushed anew since), that image's v2 tag and job stay.
func (w *Worker) deleteTag(ctx context.Context, log *slog.Logger, repo *remote.Repository, job queue.Job) (Outcome, error) {
	recs, err := w.store.List(ctx, db.JobFilter{Registry: job.Registry, Repository: job.Repository, Tag: job.Tag,
		Limit: maxTagsPerImage})
	if err != nil {
		return w.transientOrFailed(fmt.Errorf("read the tag's jobs: %w", err), false)
	}
	if len(recs) == 0 {
		log.Info("deleted tag had no soci index")
		return OutcomeSkipped, nil
	}
	current := ""
	desc, err := repo.Manifests().Resolve(ctx, job.Tag)
	switch {
	case err == nil:
		current = desc.Digest.String()
	case !errors.Is(err, errdef.ErrNotFound):
		return w.transientOrFailed(fmt.Errorf("resolve %s: %w", job.Tag, err), false)
	}
	builder, err := index.NewIndexBuilder(repo, w.buildOpts...)
	if err != nil {
		return OutcomeFailed, fmt.Errorf("index builder: %w", err)
	}
	v2Tag := builder.V2Tag(job.Tag)
	deleted := 0
	if current == "" && v2Tag != job.Tag {
		n, err := w.untag(ctx, repo, job, v2Tag, recs)
		deleted += n
		if err != nil {
			w.metrics.countDeleted(deleted)
			return w.transientOrFailed(err, false)
		}
	}
	forgotten := 0
	for _, rec := range recs {
		if rec.Digest == current {
			continue
		}
		if err := w.store.RemoveJob(ctx, rec.JobKey); err != nil && !errors.Is(err, db.ErrJobNotFound) {
			w.metrics.countDeleted(deleted)
			return w.transientOrFailed(fmt.Errorf("forget the tag: %w", err), false)
		}
		forgotten++
	}
	w.metrics.countDeleted(deleted)
	if current != "" {
		log.Info("deleted tag names an image again: its v2 tag is kept", "digest", current, "v2_tag", v2Tag)
	}
	log.Info("soci index tag of the deleted tag removed", "v2_tag", v2Tag, "registry_objects_deleted", deleted,
		"jobs_forgotten", forgotten)
	return OutcomeSucceeded, nil
}

// untag deletes v2Tag, by tag. A registry that cannot delete a tag alone
// gets the manifest deleted by digest when no other tag's job shares it;
// otherwise the job fails for good with the reason.
func (w *Worker) untag(ctx context.Context, repo *remote.Repository, job queue.Job, v2Tag string, recs []*db.Job) (int, error) {
	desc, err := repo.Manifests().Resolve(ctx, v2Tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("resolve %s: %w", v2Tag, err)
	}
	status, err := deleteTagReference(ctx, repo, v2Tag)
	switch {
	case err != nil:
		return 0, fmt.Errorf("delete tag %s: %w", v2Tag, err)
	case status == http.StatusAccepted || status == http.StatusOK || status == http.StatusNoContent:
		return 1, nil
	case status == http.StatusNotFound:
		return 0, nil
	case status >= 500:
		return 0, &errcode.ErrorResponse{Method: http.MethodDelete, StatusCode: status}
	}
	// No tag delete here: delete by digest if no other tag uses it.
	shared, err := w.store.List(ctx, db.JobFilter{Registry: job.Registry, Repository: job.Repository,
		Status: db.JobSucceeded, Limit: maxTagsPerImage})
	if err != nil {
		return 0, fmt.Errorf("find other tags of %s: %w", desc.Digest, err)
	}
	for _, rec := range shared {
		if rec.IndexDigest == desc.Digest.String() && rec.Tag != job.Tag {
			return 0, queue.Permanent(fmt.Errorf("registry cannot delete tag %s (HTTP %d) and its image index %s is tag %s's too",
				v2Tag, status, desc.Digest, rec.Tag))
		}
	}
	if err := repo.Manifests().Delete(ctx, desc); err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return 0, fmt.Errorf("delete %s: %w", desc.Digest, err)
	}
	return 1, nil
}

// deleteTagReference sends DELETE /v2/<repository>/manifests/<tag> and
// returns the status: oras-go deletes by digest only.
func deleteTagReference(ctx context.Context, repo *remote.Repository, tag string) (int, error) {
	scheme := "https"
	if repo.PlainHTTP {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: repo.Reference.Registry, Path: "/v2/" + repo.Reference.Repository + "/manifests/" + tag}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := repo.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
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
func (w *Worker) deleteIndex(ctx context.Context, repo *remote.Repository, locks index.Locker, job queue.Job, e *index.ArtifactEntry) (int, error) {
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
		unlock, err := locks.Lock(ctx, index.ReferrersLockKey(job.Repository, digest.Digest(e.OriginalDigest)))
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
