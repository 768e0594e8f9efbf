package queue_test

import (
	"errors"
	"testing"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// TestJobKeyNamesDigestTagAndAction: the same digest under two tags is two
// jobs; the same digest, tag and action is one.
func TestJobKeyNamesDigestTagAndAction(t *testing.T) {
	a := job(1)
	b := a
	b.Tag = "latest"
	if a.Key() == b.Key() {
		t.Fatalf("two tags of one digest share the key %s", a.Key())
	}
	again := a
	again.EventID, again.Source = "other-event", "harbor"
	if again.Key() != a.Key() {
		t.Fatalf("the same digest, tag and action: %s != %s", again.Key(), a.Key())
	}
	del := a
	del.Action = queue.ActionDelete
	if del.Key() == a.Key() {
		t.Fatalf("push and delete share the key %s", a.Key())
	}
	untagged := a
	untagged.Tag = ""
	if untagged.Key() == a.Key() {
		t.Fatal("a push by digest shares the key of a push by tag")
	}
}

// TestTagDeleteNeedsNoDigest: a registry's tag delete names no digest; a
// push always needs one.
func TestTagDeleteNeedsNoDigest(t *testing.T) {
	j := job(2)
	j.Digest, j.Action = "", queue.ActionDelete
	if err := j.Validate(); err != nil {
		t.Fatalf("tag delete without digest: %v", err)
	}
	j.Tag = ""
	if err := j.Validate(); !errors.Is(err, queue.ErrInvalidJob) {
		t.Fatalf("delete with neither tag nor digest: %v", err)
	}
	j = job(3)
	j.Digest = ""
	if err := j.Validate(); !errors.Is(err, queue.ErrInvalidJob) {
		t.Fatalf("push without digest: %v", err)
	}
}
