package db

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// testStatus: the status reads of both backends, on one repository with an
// image indexed under two tags (one of which failed first), an image that
// failed, one skipped and one queued, and another repository.
func testStatus(t *testing.T, s Store) {
	ctx := context.Background()
	z1 := ztocEntry(fakeDigest("status layer 1"), 1<<22, "v1", repoA)
	z2 := ztocEntry(fakeDigest("status layer 2"), 1<<22, "v1", repoA)
	mustWrite(t, s, z1, z2)
	key := func(loc JobKey, name, tag string) JobKey {
		loc.Digest, loc.Tag = fakeDigest(name), tag
		return loc
	}
	a := JobKey{Registry: repoA.Registry, Repository: repoA.Repository}
	b := JobKey{Registry: repoB.Registry, Repository: repoB.Repository}
	run := func(k JobKey, end func(JobKey) error) {
		t.Helper()
		if _, err := s.Start(ctx, k, "w"); err != nil {
			t.Fatal(err)
		}
		if err := end(k); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(k JobKey) error { return s.Succeed(ctx, k, JobResult{}) }
	fail := func(k JobKey) error { return s.Fail(ctx, k, errors.New("corrupt layer"), true) }
	before := time.Now().Add(-time.Second)
	run(key(a, "good", "v1"), fail)
	run(key(a, "good", "v1"), ok)
	run(key(a, "good", "latest"), ok)
	run(key(a, "bad", "v1"), fail)
	run(key(a, "small", "v1"), func(k JobKey) error { return s.Skip(ctx, k, "no layer gets a zTOC") })
	if _, err := s.UpsertQueued(ctx, key(a, "waiting", "v1"), "test"); err != nil {
		t.Fatal(err)
	}
	run(key(b, "other", "v1"), ok)
	uses := []LayerUse{{fakeDigest("status layer 1"), 300, z1.Digest, false}, {fakeDigest("status layer 2"), 500, z2.Digest, true}}
	slices.SortFunc(uses, func(x, y LayerUse) int { return strings.Compare(x.LayerDigest, y.LayerDigest) })
	if err := s.RecordLayerUses(ctx, key(a, "good", ""), uses); err != nil {
		t.Fatal(err)
	}

	got, err := s.LayerUsesOf(ctx, key(a, "good", "v1"))
	if err != nil || !slices.Equal(got, uses) {
		t.Errorf("LayerUsesOf = %+v, %v; want %+v", got, err, uses)
	}
	if got, err := s.LayerUsesOf(ctx, key(b, "good", "")); err != nil || len(got) != 0 {
		t.Errorf("LayerUsesOf another repository = %+v, %v; want none", got, err)
	}

	cov, err := s.ImageCoverage(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []ImageCoverageRow{
		{Registry: repoA.Registry, Repository: repoA.Repository, Images: 4, Indexed: 1, Pending: 1, Failed: 1, Skipped: 1},
		{Registry: repoB.Registry, Repository: repoB.Repository, Images: 1, Indexed: 1},
	}
	if !slices.Equal(cov, want) {
		t.Errorf("ImageCoverage = %+v, want %+v", cov, want)
	}
	if cov, err := s.ImageCoverage(ctx, repoB.Registry, repoB.Repository); err != nil || !slices.Equal(cov, want[1:]) {
		t.Errorf("ImageCoverage(b) = %+v, %v; want %+v", cov, err, want[1:])
	}

	counts, err := s.FinishedPerInterval(ctx, before, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var total IntervalCount
	for _, c := range counts {
		if c.Start.After(time.Now()) || c.Start.Before(before.Truncate(time.Hour)) || c.Start.Unix()%3600 != 0 {
			t.Errorf("interval starting %s is not an hour around now", c.Start)
		}
		total.Finished += c.Finished
		total.Succeeded += c.Succeeded
		total.Failed += c.Failed
		total.Skipped += c.Skipped
	}
	if total != (IntervalCount{Finished: 6, Succeeded: 3, Failed: 2, Skipped: 1}) {
		t.Errorf("FinishedPerInterval totals %+v, want 6 finished: 3 succeeded, 2 failed, 1 skipped", total)
	}
	if later, err := s.FinishedPerInterval(ctx, time.Now().Add(time.Hour), time.Minute); err != nil || len(later) != 0 {
		t.Errorf("FinishedPerInterval from the future = %+v, %v; want none", later, err)
	}
}
