package index

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
)

// memDb is an in-memory ArtifactsDb for tests.
type memDb struct {
	mu      sync.Mutex
	entries map[string]ArtifactEntry
}

func newMemDb() *memDb { return &memDb{entries: map[string]ArtifactEntry{}} }

func (m *memDb) WriteArtifactEntry(_ context.Context, e *ArtifactEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	locations := m.entries[e.Digest].Locations
	for _, l := range e.Locations {
		if !slices.Contains(locations, l) {
			locations = append(locations, l)
		}
	}
	stored := *e
	stored.Locations = locations
	m.entries[e.Digest] = stored
	return nil
}

func (m *memDb) GetArtifactEntry(_ context.Context, dgst string) (*ArtifactEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[dgst]
	if !ok {
		return nil, fmt.Errorf("%s: %w", dgst, ErrArtifactNotFound)
	}
	return &e, nil
}

func (m *memDb) GetArtifactType(ctx context.Context, dgst string) (ArtifactEntryType, error) {
	e, err := m.GetArtifactEntry(ctx, dgst)
	if err != nil {
		return "", err
	}
	return e.Type, nil
}

func (m *memDb) Walk(_ context.Context, f func(*ArtifactEntry) error) error {
	m.mu.Lock()
	entries := make([]ArtifactEntry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	for i := range entries {
		if err := f(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memDb) GetArtifactEntriesByImageDigest(_ context.Context, imageDigest string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for d, e := range m.entries {
		if e.Type == ArtifactEntryTypeIndex && e.ImageDigest == imageDigest {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memDb) RemoveArtifactEntryByIndexDigest(_ context.Context, dgst string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[dgst]; ok && e.Type == ArtifactEntryTypeIndex {
		delete(m.entries, dgst)
	}
	return nil
}

func (m *memDb) RemoveOldArtifacts(ctx context.Context, exists ExistsFunc) error {
	var gone []string
	err := m.Walk(ctx, func(e *ArtifactEntry) error {
		for _, loc := range e.Locations {
			ok, err := exists(ctx, e, loc)
			if err != nil || ok {
				return err
			}
		}
		gone = append(gone, e.Digest)
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range gone {
		delete(m.entries, d)
	}
	return nil
}

func (m *memDb) FindReusableZtoc(_ context.Context, layer digest.Digest, spanSize int64, builderVersion string) (*ArtifactEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if e.Type == ArtifactEntryTypeLayer && e.OriginalDigest == layer.String() &&
			e.SpanSize == spanSize && e.BuilderVersion == builderVersion {
			return &e, nil
		}
	}
	return nil, fmt.Errorf("ztoc for %s: %w", layer, ErrArtifactNotFound)
}

func (m *memDb) entriesOfType(t ArtifactEntryType) []ArtifactEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ArtifactEntry
	for _, e := range m.entries {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}
