package db

import (
	"context"
	"fmt"
	"time"
)

// StatusReader is what the status API and page (pkg/status) read besides
// jobs and reports: per image, per repository and over time.
type StatusReader interface {
	// LayerUsesOf returns the layers of the image (image.Tag is ignored)
	// with the zTOC each got, built or reused, ordered by layer digest.
	LayerUsesOf(ctx context.Context, image JobKey) ([]LayerUse, error)
	// ImageCoverage counts the images (digests, whatever their tags) of
	// every repository, or of the one named (registry and repository both
	// set), by their best state: an image with one indexed tag is indexed.
	ImageCoverage(ctx context.Context, registry, repository string) ([]ImageCoverageRow, error)
	// FinishedPerInterval counts the attempts finished since since, per
	// interval (whole seconds, at least one), oldest first; intervals
	// without a finished attempt are left out.
	FinishedPerInterval(ctx context.Context, since time.Time, interval time.Duration) ([]IntervalCount, error)
}

// ImageCoverageRow is one repository's images by state. Each image counts
// once, in the first of indexed, pending, failed, skipped that one of its
// tags' jobs is in.
type ImageCoverageRow struct {
	Registry   string
	Repository string
	Images     int64
	Indexed    int64
	Pending    int64
	Failed     int64
	Skipped    int64
}

// IntervalCount is the attempts finished in [Start, Start+interval).
type IntervalCount struct {
	Start     time.Time
	Finished  int64
	Succeeded int64
	Skipped   int64
	Failed    int64
}

func (r sqlReader) LayerUsesOf(ctx context.Context, image JobKey) ([]LayerUse, error) {
	uses, err := queryAll(ctx, r.query, func(row rowScanner) (LayerUse, error) {
		var u LayerUse
		err := row.Scan(&u.LayerDigest, &u.LayerSize, &u.ZtocDigest, &u.Reused)
		return u, err
	}, `SELECT layer_digest, layer_size, ztoc_digest, reused FROM layer_uses
		WHERE registry = $1 AND repository = $2 AND image_digest = $3 ORDER BY layer_digest`,
		image.Registry, image.Repository, image.Digest)
	if err != nil {
		return nil, fmt.Errorf("db: layers of %s: %w", image.Image(), err)
	}
	return uses, nil
}

// imageCoverageQuery reads summary_image_coverage, which triggers keep as
// the images' best states change (migration 00006): each image counts in
// the first of 1 indexed, 2 pending, 3 failed, 4 skipped that one of its
// tags' jobs is in. The same SQL on both backends.
const imageCoverageQuery = `SELECT registry, repository, images, indexed, pending, failed, skipped
	FROM summary_image_coverage WHERE ($1 = '' OR registry = $1) AND ($2 = '' OR repository = $2)
	ORDER BY registry, repository`

func (r sqlReader) ImageCoverage(ctx context.Context, registry, repository string) ([]ImageCoverageRow, error) {
	rows, err := queryAll(ctx, r.query, func(row rowScanner) (ImageCoverageRow, error) {
		var c ImageCoverageRow
		err := row.Scan(&c.Registry, &c.Repository, &c.Images, &c.Indexed, &c.Pending, &c.Failed, &c.Skipped)
		return c, err
	}, imageCoverageQuery, registry, repository)
	if err != nil {
		return nil, fmt.Errorf("db: image coverage: %w", err)
	}
	return rows, nil
}

func (r sqlReader) FinishedPerInterval(ctx context.Context, since time.Time, interval time.Duration) ([]IntervalCount, error) {
	step := max(int64(interval/time.Second), 1)
	finished := r.epochSQL("finished_at")
	// Abandoned attempts did not finish: their worker died. The range on
	// finished_at itself lets job_attempts_finished_idx find the recent
	// attempts (the status page asks for the last hour) without a scan of
	// them all; the one on its epoch keeps the whole-second bound.
	q := `SELECT ` + finished + ` / $1 AS bucket, count(*),
			count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'skipped'),
			count(*) FILTER (WHERE status = 'failed')
		FROM job_attempts
		WHERE finished_at >= $3 AND status <> 'abandoned' AND ` + finished + ` >= $2
		GROUP BY 1 ORDER BY 1`
	rows, err := queryAll(ctx, r.query, func(row rowScanner) (IntervalCount, error) {
		var (
			c      IntervalCount
			bucket int64
		)
		err := row.Scan(&bucket, &c.Finished, &c.Succeeded, &c.Skipped, &c.Failed)
		c.Start = time.Unix(bucket*step, 0).UTC()
		return c, err
	}, q, step, since.Unix(), r.timeArg(since.Truncate(time.Second)))
	if err != nil {
		return nil, fmt.Errorf("db: attempts finished per %s: %w", interval, err)
	}
	return rows, nil
}
