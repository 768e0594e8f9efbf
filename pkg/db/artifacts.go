package db

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// ErrNotIndex is returned by RemoveArtifactEntryByIndexDigest for an
// artifact that is not a SOCI index (zTOCs are shared; they are never
// removed that way).
var ErrNotIndex = errors.New("artifact is not a SOCI index")

func checkEntry(e *index.ArtifactEntry) error {
	if e == nil || e.Digest == "" {
		return errors.New("db: artifact entry without a digest")
	}
	return nil
}

func splitLocations(locs []index.Location) (registries, repositories []string) {
	registries = make([]string, len(locs))
	repositories = make([]string, len(locs))
	for i, l := range locs {
		registries[i], repositories[i] = l.Registry, l.Repository
	}
	return registries, repositories
}

// notAnIndex explains why deleting an index removed nothing, given the
// artifact's type lookup.
func notAnIndex(t index.ArtifactEntryType, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("db: artifact of type %s: %w", t, ErrNotIndex)
}

// uniqueLayerUses keeps the first use of each layer: an image may list the
// same layer twice, and an upsert may touch a row only once.
func uniqueLayerUses(uses []LayerUse) []LayerUse {
	seen := make(map[string]bool, len(uses))
	out := make([]LayerUse, 0, len(uses))
	for _, u := range uses {
		if !seen[u.LayerDigest] {
			seen[u.LayerDigest] = true
			out = append(out, u)
		}
	}
	return out
}

func (r *Removal) sort() {
	slices.Sort(r.Indexes)
	slices.Sort(r.Ztocs)
	slices.Sort(r.Deleted)
}

type staleLocation struct {
	digest string
	loc    index.Location
}

// staleSet is what RemoveOldArtifacts deletes: the locations that no longer
// hold their artifact, and the artifacts none of whose locations do.
type staleSet struct {
	locations []staleLocation
	artifacts []string
}

func (s *staleSet) locationColumns() (digests, registries, repositories []string) {
	for _, l := range s.locations {
		digests = append(digests, l.digest)
		registries = append(registries, l.loc.Registry)
		repositories = append(repositories, l.loc.Repository)
	}
	return digests, registries, repositories
}

// findStale asks exists about every location of every artifact. As in soci,
// everything is collected before anything is deleted, and an error from
// exists deletes nothing.
func findStale(ctx context.Context, db index.ArtifactsDb, exists index.ExistsFunc) (*staleSet, error) {
	var stale staleSet
	err := db.Walk(ctx, func(e *index.ArtifactEntry) error {
		held := 0
		for _, loc := range e.Locations {
			ok, err := exists(ctx, e, loc)
			if err != nil {
				return fmt.Errorf("db: does %s/%s hold %s: %w", loc.Registry, loc.Repository, e.Digest, err)
			}
			if ok {
				held++
			} else {
				stale.locations = append(stale.locations, staleLocation{digest: e.Digest, loc: loc})
			}
		}
		if held == 0 {
			stale.artifacts = append(stale.artifacts, e.Digest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &stale, nil
}
