package index

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrArtifactNotFound is returned by an ArtifactsDb when no entry has the
// requested digest.
var ErrArtifactNotFound = errors.New("soci artifact not found")

// ArtifactEntryType says what kind of SOCI artifact an ArtifactEntry records.
type ArtifactEntryType string

const (
	// ArtifactEntryTypeIndex is a SOCI index manifest (v1 or v2).
	ArtifactEntryTypeIndex ArtifactEntryType = "soci_index"
	// ArtifactEntryTypeLayer is a zTOC built for one image layer.
	ArtifactEntryTypeLayer ArtifactEntryType = "soci_layer"
	// ArtifactEntryTypePrefetch is a prefetch artifact.
	ArtifactEntryTypePrefetch ArtifactEntryType = "soci_prefetch"
)

// Location is a repository that holds a copy of an artifact's blob or
// manifest. One zTOC reused by images in many repositories is one artifact
// with several locations.
type Location struct {
	Registry   string // host[:port], e.g. "registry.example:5000"
	Repository string // e.g. "library/app"
}

// ArtifactEntry is the record of one SOCI artifact. The fields up to SpanSize
// mean what they mean in soci-snapshotter's artifacts DB (docs/format.md 7.8);
// the rest are what a registry-side service needs.
type ArtifactEntry struct {
	// Digest of the artifact itself (index manifest, zTOC blob).
	Digest string
	// Size of the artifact in bytes.
	Size int64
	// Location: for an index, the image manifest digest; for a zTOC, the
	// layer digest (as in soci).
	Location string
	// OriginalDigest: for an index, the platform manifest digest; for a zTOC
	// or prefetch artifact, the layer digest.
	OriginalDigest string
	// ImageDigest: for an index, the digest of the image it was built for (the
	// image index digest for multi-platform images; for v2, the new OCI index).
	ImageDigest string
	// Platform in containerd's format, e.g. "linux/amd64".
	Platform string
	Type     ArtifactEntryType
	// MediaType of the artifact: OCI manifest for indexes,
	// application/octet-stream for zTOCs.
	MediaType string
	// ArtifactType: the index config media type (v1 or v2); empty otherwise.
	ArtifactType string
	CreatedAt    time.Time
	// SpanSize the zTOC was built with (0 for indexes).
	SpanSize int64

	// BuildToolIdentifier written into the artifact.
	BuildToolIdentifier string
	// BuilderVersion identifies the code that built a zTOC; zTOCs are reused
	// only when it matches.
	BuilderVersion string
	// Locations where this artifact is stored. WriteArtifactEntry adds the
	// locations it is given (it never removes one); reads return them all.
	Locations []Location
}

// ArtifactsDb records the SOCI artifacts that were built. It follows
// soci-snapshotter's ArtifactsDb, with a context on every call and a
// registry in place of the local content store.
type ArtifactsDb interface {
	// WriteArtifactEntry inserts or replaces the entry with entry.Digest and
	// adds entry.Locations to the artifact's locations.
	WriteArtifactEntry(ctx context.Context, entry *ArtifactEntry) error
	// GetArtifactEntry returns the entry with that digest, or an error
	// wrapping ErrArtifactNotFound.
	GetArtifactEntry(ctx context.Context, dgst string) (*ArtifactEntry, error)
	// GetArtifactType returns the type of the entry with that digest.
	GetArtifactType(ctx context.Context, dgst string) (ArtifactEntryType, error)
	// Walk calls f for every entry; an error from f stops the walk and is
	// returned.
	Walk(ctx context.Context, f func(*ArtifactEntry) error) error
	// GetArtifactEntriesByImageDigest returns the digests of the index
	// entries (media type OCI manifest) whose ImageDigest is imageDigest.
	GetArtifactEntriesByImageDigest(ctx context.Context, imageDigest string) ([]string, error)
	// RemoveArtifactEntryByIndexDigest removes the index entry with that
	// digest. zTOC entries are kept: other indexes may use them.
	RemoveArtifactEntryByIndexDigest(ctx context.Context, dgst string) error
	// RemoveOldArtifacts removes every entry none of whose locations still
	// holds it, as told by exists. It is soci's RemoveOldArtifacts with the
	// registry in place of the local content store.
	RemoveOldArtifacts(ctx context.Context, exists ExistsFunc) error
	// FindReusableZtoc returns the zTOC entry built for layerDigest with the
	// same span size and builder version, or an error wrapping
	// ErrArtifactNotFound.
	FindReusableZtoc(ctx context.Context, layerDigest digest.Digest, spanSize int64, builderVersion string) (*ArtifactEntry, error)
}

// ExistsFunc tells whether the artifact described by entry is still stored at
// loc.
type ExistsFunc func(ctx context.Context, entry *ArtifactEntry, loc Location) (bool, error)

// Locker serialises work on one key across goroutines, processes and
// machines (a Postgres advisory lock in the service). The builder takes it
// around the read-modify-write of an image's referrers.
type Locker interface {
	// Lock blocks until the lock on key is held or ctx is done. The returned
	// function releases it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}
