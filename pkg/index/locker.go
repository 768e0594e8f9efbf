package index

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// The lock keys name what a lock guards by repository and digest, never
// by registry host: one registry reached under two host names (two DNS
// names, a proxy, a load balancer) is one set of objects, and writers
// through either name must exclude each other. Two registries that share
// a repository name and a digest only wait for each other needlessly.

// ReferrersLockKey names the lock on the referrers of subject in
// repository: the read-modify-write of its sha256-<hex> fallback tag,
// which the builder (v1 indexes) and garbage collection (deleting them) do.
func ReferrersLockKey(repository string, subject digest.Digest) string {
	return "referrers:" + repository + "@" + subject.String()
}

// ImageLockKey names the lock a worker holds while it works on the image
// repository@image (any tag), so duplicate and concurrent jobs of one
// image wait for each other.
func ImageLockKey(repository string, image digest.Digest) string {
	return "image:" + repository + "@" + image.String()
}

// LocalLocker is a Locker for the goroutines of one process: builders that
// share one LocalLocker never update the same image's referrers at the same
// time. Several processes need a distributed Locker instead.
type LocalLocker struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

// NewLocalLocker returns an empty LocalLocker.
func NewLocalLocker() *LocalLocker {
	return &LocalLocker{locks: make(map[string]chan struct{})}
}

// Lock blocks until key is free or ctx is done.
func (l *LocalLocker) Lock(ctx context.Context, key string) (func(), error) {
	for {
		l.mu.Lock()
		held, busy := l.locks[key]
		if !busy {
			released := make(chan struct{})
			l.locks[key] = released
			l.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					delete(l.locks, key)
					l.mu.Unlock()
					close(released)
				})
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
