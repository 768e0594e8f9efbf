package db

import (
	"context"
	"errors"
	"sync"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// LockSession holds the locks of one unit of work, a job: the image's lock,
// then the referrers locks its build takes. On Postgres all of them live on
// one connection of the lock pool, so a job that holds a lock never waits
// for a second connection to take the next: whatever the number of workers
// and the size of the lock pool, jobs that hold locks can always go on, and
// the others wait for a connection holding nothing. It is an index.Locker.
type LockSession interface {
	index.Locker
	// Close releases every lock the session still holds, and the session.
	Close()
}

var (
	errLockSessionClosed = errors.New("lock session closed")
	errStoreClosed       = errors.New("store closed")
)

// lockAlone takes one lock on a session of its own, given back on unlock.
func lockAlone(ctx context.Context, s interface {
	LockSession(context.Context) (LockSession, error)
}, key string) (func(), error) {
	sess, err := s.LockSession(ctx)
	if err != nil {
		return nil, err
	}
	unlock, err := sess.Lock(ctx, key)
	if err != nil {
		sess.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			unlock()
			sess.Close()
		})
	}, nil
}

// localLockSession is a LockSession of in-process locks.
type localLockSession struct {
	locks *keyedMutex
	mu    sync.Mutex
	held  map[*func()]struct{}
	done  bool
}

func (l *localLockSession) Lock(ctx context.Context, key string) (func(), error) {
	unlock, err := l.locks.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		unlock()
		return nil, errLockSessionClosed
	}
	if l.held == nil {
		l.held = map[*func()]struct{}{}
	}
	h := &unlock
	l.held[h] = struct{}{}
	return func() {
		l.mu.Lock()
		_, ok := l.held[h]
		delete(l.held, h)
		l.mu.Unlock()
		if ok {
			unlock()
		}
	}, nil
}

func (l *localLockSession) Close() {
	l.mu.Lock()
	held := l.held
	l.held, l.done = nil, true
	l.mu.Unlock()
	for h := range held {
		(*h)()
	}
}
