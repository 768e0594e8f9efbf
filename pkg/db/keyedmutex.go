package db

import (
	"context"
	"sync"
)

// keyedMutex is a mutex per key, taken with a context. Entries live only
// while someone holds or waits for the key.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	held chan struct{} // has one token while the key is locked
	refs int           // holders and waiters
}

func newKeyedMutex() *keyedMutex {
	return &keyedMutex{locks: make(map[string]*keyLock)}
}

func (m *keyedMutex) Lock(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	l := m.locks[key]
	if l == nil {
		l = &keyLock{held: make(chan struct{}, 1)}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()

	select {
	case l.held <- struct{}{}:
	case <-ctx.Done():
		m.release(key, l)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.held
			m.release(key, l)
		})
	}, nil
}

func (m *keyedMutex) release(key string, l *keyLock) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(m.locks, key)
	}
}
