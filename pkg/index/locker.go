package index

import (
	"context"
	"sync"
)

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
