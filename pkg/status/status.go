// Package status is a read-only view of the indexer's state: per image
// (indexed, tags, index digests, zTOCs built and reused, job state) and per
// repository (coverage), read from pkg/db and the queue's statistics.
package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Store is what the status service reads from the database.
type Store interface {
	db.StatusReader
	List(ctx context.Context, filter db.JobFilter) ([]*db.Job, error)
	IndexEntriesOf(ctx context.Context, registry, repository string, digests []string) ([]*index.ArtifactEntry, error)
	Failures(ctx context.Context, limit int) ([]db.FailureRow, error)
	UpsertQueued(ctx context.Context, key db.JobKey, source string) (*db.Job, error)
}

// QueueStats reads the queue's depth and dead letters; *queue.Queue is one.
type QueueStats interface {
	Stats(ctx context.Context) (queue.Stats, error)
}

// Service answers status questions. It writes nothing.
type Service struct {
	store Store
	queue QueueStats
}

// New returns a Service over store and, when q is not nil, the queue.
func New(store Store, q QueueStats) *Service { return &Service{store: store, queue: q} }

// ErrBadRef is returned for a reference that names no image.
var ErrBadRef = errors.New("status: bad image reference")

// Ref is a parsed image reference: registry/repository followed by :tag,
// @digest or both.
type Ref struct {
	Registry   string
	Repository string
	Tag        string
	Digest     string
}

// ParseRef parses registry/repository[:tag][@digest]; one of tag and
// digest is required.
func ParseRef(s string) (Ref, error) {
	var r Ref
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		r.Digest, rest = rest[i+1:], rest[:i]
		if !strings.Contains(r.Digest, ":") {
			return Ref{}, fmt.Errorf("%w: %q: digest %q", ErrBadRef, s, r.Digest)
		}
	}
	slash := strings.Index(rest, "/")
	if slash <= 0 {
		return Ref{}, fmt.Errorf("%w: %q: no registry/repository", ErrBadRef, s)
	}
	r.Registry, rest = rest[:slash], rest[slash+1:]
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		r.Tag, rest = rest[i+1:], rest[:i]
	}
	r.Repository = rest
	if r.Repository == "" || (r.Tag == "" && r.Digest == "") {
		return Ref{}, fmt.Errorf("%w: %q: want registry/repository:tag or @digest", ErrBadRef, s)
	}
	return r, nil
}

// Image is the status of one image (one digest) and its tags.
type Image struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Known is false when no job ever named the image.
	Known bool `json:"known"`
	// Indexed: at least one tag's job succeeded.
	Indexed bool `json:"indexed"`
	// LazyLoadable: indexed and at least one layer has a zTOC, so a SOCI
	// snapshotter can lazily load it.
	LazyLoadable bool  `json:"lazy_loadable"`
	Tags         []Tag `json:"tags"`
	// Platforms that have a SOCI index, sorted ("linux/amd64").
	Platforms   []string    `json:"platforms"`
	Indexes     []IndexInfo `json:"indexes"`
	Layers      []Layer     `json:"layers"`
	ZtocsBuilt  int         `json:"ztocs_built"`
	ZtocsReused int         `json:"ztocs_reused"`
}

// IndexInfo is one SOCI index of the image in this repository.
type IndexInfo struct {
	Digest string `json:"digest"`
	// Version is "v1" or "v2".
	Version  string `json:"version"`
	Platform string `json:"platform"`
	// Manifest is the digest of the image manifest the index is for: the
	// platform's manifest for v1; for v2, the manifest of the converted
	// image that binds the index (published under the v2 tag).
	Manifest string `json:"manifest"`
}

// Tag is one job: the image under one tag (or none).
type Tag struct {
	Tag         string `json:"tag"`
	State       string `json:"state"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"last_error,omitempty"`
	SkipReason  string `json:"skip_reason,omitempty"`
	IndexDigest string `json:"index_digest,omitempty"`
	OptionsHash string `json:"options_hash,omitempty"`
	Source      string `json:"source,omitempty"`
	QueuedAt    string `json:"queued_at,omitempty"`
	FinishedAt  string `json:"finished_at,omitempty"`
}

// Layer is one layer and the zTOC it got.
type Layer struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Ztoc   string `json:"ztoc"`
	Reused bool   `json:"reused"`
}

// Repository is one repository's images by state.
type Repository struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Images     int64  `json:"images"`
	Indexed    int64  `json:"indexed"`
	Pending    int64  `json:"pending"`
	Failed     int64  `json:"failed"`
	Skipped    int64  `json:"skipped"`
}

// Queue is the queue's depth and dead letters.
type Queue struct {
	Messages    uint64 `json:"messages"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	DeadLetters uint64 `json:"dead_letters"`
}

const timeFormat = "2006-01-02T15:04:05Z07:00"

// Image returns the status of the image ref names. A tag alone is
// resolved through the jobs: the digest its latest job named.
func (s *Service) Image(ctx context.Context, ref Ref) (*Image, error) {
	digest := ref.Digest
	if digest == "" {
		jobs, err := s.store.List(ctx, db.JobFilter{Registry: ref.Registry, Repository: ref.Repository, Tag: ref.Tag, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("status: jobs of %s/%s:%s: %w", ref.Registry, ref.Repository, ref.Tag, err)
		}
		if len(jobs) == 0 {
			return &Image{Registry: ref.Registry, Repository: ref.Repository, Tags: []Tag{}, Platforms: []string{},
				Indexes: []IndexInfo{}, Layers: []Layer{}}, nil
		}
		digest = jobs[0].Digest
	}
	img := &Image{Registry: ref.Registry, Repository: ref.Repository, Digest: digest, Tags: []Tag{}, Platforms: []string{},
		Indexes: []IndexInfo{}, Layers: []Layer{}}
	jobs, err := s.store.List(ctx, db.JobFilter{Registry: ref.Registry, Repository: ref.Repository, Digest: digest, Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("status: jobs of %s: %w", digest, err)
	}
	for _, j := range jobs {
		img.Known = true
		t := Tag{Tag: j.Tag, State: string(j.Status), Attempts: j.Attempts, LastError: j.LastError,
			SkipReason: j.SkipReason, IndexDigest: j.IndexDigest, OptionsHash: j.OptionsHash, Source: j.Source}
		if !j.QueuedAt.IsZero() {
			t.QueuedAt = j.QueuedAt.UTC().Format(timeFormat)
		}
		if !j.FinishedAt.IsZero() {
			t.FinishedAt = j.FinishedAt.UTC().Format(timeFormat)
		}
		if j.Status == db.JobSucceeded {
			img.Indexed = true
		}
		img.Tags = append(img.Tags, t)
	}
	if err := s.addIndexes(ctx, img); err != nil {
		return nil, err
	}
	uses, err := s.store.LayerUsesOf(ctx, db.JobKey{Registry: ref.Registry, Repository: ref.Repository, Digest: digest})
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	for _, u := range uses {
		img.Layers = append(img.Layers, Layer{Digest: u.LayerDigest, Size: u.LayerSize, Ztoc: u.ZtocDigest, Reused: u.Reused})
		if u.ZtocDigest == "" {
			continue
		}
		if u.Reused {
			img.ZtocsReused++
		} else {
			img.ZtocsBuilt++
		}
	}
	img.LazyLoadable = img.Indexed && img.ZtocsBuilt+img.ZtocsReused > 0
	return img, nil
}

// addIndexes fills in the image's SOCI indexes: those built for its
// digest (v1, and v2 by the manifest they index) and those its tags'
// jobs published.
func (s *Service) addIndexes(ctx context.Context, img *Image) error {
	digests := []string{img.Digest}
	for _, t := range img.Tags {
		if t.IndexDigest != "" && !slices.Contains(digests, t.IndexDigest) {
			digests = append(digests, t.IndexDigest)
		}
	}
	entries, err := s.store.IndexEntriesOf(ctx, img.Registry, img.Repository, digests)
	if err != nil {
		return fmt.Errorf("status: indexes of %s: %w", img.Digest, err)
	}
	for _, e := range entries {
		info := IndexInfo{Digest: e.Digest, Platform: e.Platform, Manifest: e.OriginalDigest}
		switch e.ArtifactType {
		case index.SociIndexArtifactTypeV1:
			info.Version = "v1"
		case index.SociIndexArtifactTypeV2:
			info.Version = "v2"
		default:
			info.Version = e.ArtifactType
		}
		img.Indexes = append(img.Indexes, info)
		if e.Platform != "" && !slices.Contains(img.Platforms, e.Platform) {
			img.Platforms = append(img.Platforms, e.Platform)
		}
	}
	slices.Sort(img.Platforms)
	return nil
}

// Repositories returns the coverage of every repository, or of the one
// named when registry and repository are set.
func (s *Service) Repositories(ctx context.Context, registry, repository string) ([]Repository, error) {
	rows, err := s.store.ImageCoverage(ctx, registry, repository)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	out := make([]Repository, 0, len(rows))
	for _, r := range rows {
		out = append(out, Repository{Registry: r.Registry, Repository: r.Repository, Images: r.Images,
			Indexed: r.Indexed, Pending: r.Pending, Failed: r.Failed, Skipped: r.Skipped})
	}
	return out, nil
}

// Queue returns the queue's depth; nil without a queue.
func (s *Service) Queue(ctx context.Context) (*Queue, error) {
	if s.queue == nil {
		return nil, nil
	}
	st, err := s.queue.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: queue: %w", err)
	}
	return &Queue{Messages: st.Messages, Pending: st.Pending, AckPending: st.AckPending, DeadLetters: st.DeadLetters}, nil
}
