package index

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLocalLocker(t *testing.T) {
	ctx := context.Background()
	l := NewLocalLocker()
	unlock, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free.
	unlockB, err := l.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()

	// The held key blocks until ctx is done.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held key: %v", err)
	}

	// And is handed over once released.
	// The waiter's acquisition is the event checked: it must come after
	// the release, whenever it comes.
	var released atomic.Bool
	got := make(chan bool)
	go func() {
		u, err := l.Lock(ctx, "a")
		if err == nil {
			u()
		}
		got <- err == nil && released.Load()
	}()
	released.Store(true)
	unlock()
	unlock() // a second call is harmless
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("lock acquired while held")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lock not handed over")
	}
}
