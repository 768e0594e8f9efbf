package db

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// testStore runs the conformance suite: every Store method, against a fresh
// store from open for each subtest. Both backends must pass it unchanged.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s Store)
	}{
		{"WriteAndGetArtifact", testWriteAndGetArtifact},
		{"ArtifactNotFound", testArtifactNotFound},
		{"WriteArtifactEntries", testWriteArtifactEntries},
		{"Walk", testWalk},
		{"GetArtifactEntriesByImageDigest", testEntriesByImageDigest},
		{"RemoveArtifactEntryByIndexDigest", testRemoveIndex},
		{"FindReusableZtoc", testFindReusableZtoc},
		{"RemoveOldArtifacts", testRemoveOldArtifacts},
		{"ConcurrentUpserts", testConcurrentUpserts},
		{"ConstraintErrors", testConstraintErrors},
		{"JobLifecycle", testJobLifecycle},
		{"JobNotFound", testJobNotFound},
		{"ListJobs", testListJobs},
		{"RemoveImageKeepsSharedZtocs", testRemoveImage},
		{"IndexEntriesOf", testIndexEntriesOf},
		{"Reports", testReports},
		{"Lock", testLock},
		{"JobsPerTag", testJobsPerTag},
		{"AbandonedAttempt", testAbandonedAttempt},
		{"LockSession", testLockSession},
		{"Status", testStatus},
		{"Summaries", testSummaries},
		{"SummariesConcurrent", testSummariesConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, open(t))
		})
	}
}

var (
	repoA = index.Location{Registry: "reg.example:5000", Repository: "team/a"}
	repoB = index.Location{Registry: "reg.example:5000", Repository: "team/b"}
)

func indexEntry(name string, image string, locs ...index.Location) *index.ArtifactEntry {
	return &index.ArtifactEntry{
		Digest:              fakeDigest("index " + name),
		Size:                1234,
		Location:            image,
		OriginalDigest:      image,
		ImageDigest:         image,
		Platform:            "linux/amd64",
		Type:                index.ArtifactEntryTypeIndex,
		MediaType:           ociManifestMediaType,
		ArtifactType:        "application/vnd.amazon.soci.index.v1+json",
		CreatedAt:           time.Date(2026, 11, 27, 3, 4, 5, 123456789, time.UTC),
		BuildToolIdentifier: "soci-indexer test",
		Locations:           locs,
	}
}

func ztocEntry(layer string, span int64, builder string, locs ...index.Location) *index.ArtifactEntry {
	return &index.ArtifactEntry{
		Digest:              fakeDigest(fmt.Sprintf("ztoc %s %d %s", layer, span, builder)),
		Size:                4096,
		Location:            layer,
		OriginalDigest:      layer,
		Type:                index.ArtifactEntryTypeLayer,
		MediaType:           "application/octet-stream",
		CreatedAt:           time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC),
		SpanSize:            span,
		BuildToolIdentifier: "soci-indexer test",
		BuilderVersion:      builder,
		Locations:           locs,
	}
}

func mustWrite(t *testing.T, s Store, entries ...*index.ArtifactEntry) {
	t.Helper()
	for _, e := range entries {
		if err := s.WriteArtifactEntry(context.Background(), e); err != nil {
			t.Fatalf("WriteArtifactEntry(%s): %v", e.Digest, err)
		}
	}
}

func mustGet(t *testing.T, s Store, dgst string) *index.ArtifactEntry {
	t.Helper()
	e, err := s.GetArtifactEntry(context.Background(), dgst)
	if err != nil {
		t.Fatalf("GetArtifactEntry(%s): %v", dgst, err)
	}
	return e
}

// assertEntry compares everything but CreatedAt's sub-microsecond part,
// which Postgres does not keep.
func assertEntry(t *testing.T, got, want *index.ArtifactEntry) {
	t.Helper()
	w := *want
	w.CreatedAt = want.CreatedAt.Truncate(time.Microsecond)
	g := *got
	if !g.CreatedAt.Equal(w.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", g.CreatedAt, w.CreatedAt)
	}
	g.CreatedAt, w.CreatedAt = time.Time{}, time.Time{}
	sortLocations(g.Locations)
	sortLocations(w.Locations)
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Errorf("entry =\n%+v\nwant\n%+v", g, w)
	}
}

func sortLocations(locs []index.Location) {
	slices.SortFunc(locs, func(a, b index.Location) int {
		return cmp.Or(cmp.Compare(a.Registry, b.Registry), cmp.Compare(a.Repository, b.Repository))
	})
}

func testWriteAndGetArtifact(t *testing.T, s Store) {
	ctx := context.Background()
	image := fakeDigest("image")
	idx := indexEntry("1", image, repoA)
	mustWrite(t, s, idx)
	assertEntry(t, mustGet(t, s, idx.Digest), idx)

	typ, err := s.GetArtifactType(ctx, idx.Digest)
	if err != nil || typ != index.ArtifactEntryTypeIndex {
		t.Errorf("GetArtifactType = %q, %v; want soci_index", typ, err)
	}

	// A second write replaces the fields and adds, never removes, locations.
	updated := *idx
	updated.Size = 999
	updated.Platform = "linux/arm64"
	updated.Locations = []index.Location{repoB}
	mustWrite(t, s, &updated)
	want := updated
	want.Locations = []index.Location{repoA, repoB}
	assertEntry(t, mustGet(t, s, idx.Digest), &want)

	// Without a CreatedAt the store stamps the time of the write.
	before := time.Now().Add(-time.Second)
	stamped := ztocEntry(fakeDigest("layer"), 1<<22, "v1")
	stamped.CreatedAt = time.Time{}
	mustWrite(t, s, stamped)
	if got := mustGet(t, s, stamped.Digest); got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt = %v, want about now", got.CreatedAt)
	}
	if got := mustGet(t, s, stamped.Digest); len(got.Locations) != 0 {
		t.Errorf("Locations = %v, want none", got.Locations)
	}
}

func testArtifactNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	missing := fakeDigest("missing")
	if _, err := s.GetArtifactEntry(ctx, missing); !errors.Is(err, index.ErrArtifactNotFound) {
		t.Errorf("GetArtifactEntry: %v, want ErrArtifactNotFound", err)
	}
	if _, err := s.GetArtifactType(ctx, missing); !errors.Is(err, index.ErrArtifactNotFound) {
		t.Errorf("GetArtifactType: %v, want ErrArtifactNotFound", err)
	}
	if err := s.WriteArtifactEntry(ctx, &index.ArtifactEntry{}); err == nil {
		t.Error("WriteArtifactEntry without a digest: no error")
	}
}

func testWriteArtifactEntries(t *testing.T, s Store) {
	ctx := context.Background()
	first := ztocEntry(fakeDigest("layer 1"), 1<<22, "v1", repoA)
	second := ztocEntry(fakeDigest("layer 2"), 1<<22, "v1", repoA)
	again := *first
	again.Size = 7
	again.Locations = []index.Location{repoB}
	if err := s.WriteArtifactEntries(ctx, []*index.ArtifactEntry{first, second, &again}); err != nil {
		t.Fatalf("WriteArtifactEntries: %v", err)
	}
	want := again
	want.Locations = []index.Location{repoA, repoB}
	assertEntry(t, mustGet(t, s, first.Digest), &want)
	assertEntry(t, mustGet(t, s, second.Digest), second)
	if err := s.WriteArtifactEntries(ctx, nil); err != nil {
		t.Errorf("WriteArtifactEntries(nil): %v", err)
	}
}

func testWalk(t *testing.T, s Store) {
	ctx := context.Background()
	// More than a page, so Walk must page.
	n := walkPageSize + 37
	var entries []*index.ArtifactEntry
	for i := range n {
		entries = append(entries, ztocEntry(fakeDigest(fmt.Sprint("layer", i)), 1<<22, "v1", repoA))
	}
	if err := s.WriteArtifactEntries(ctx, entries); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err := s.Walk(ctx, func(e *index.ArtifactEntry) error {
		if seen[e.Digest] {
			t.Errorf("Walk visited %s twice", e.Digest)
		}
		seen[e.Digest] = true
		if len(e.Locations) != 1 {
			t.Errorf("%s: locations %v", e.Digest, e.Locations)
		}
		return nil
	})
	if err != nil || len(seen) != n {
		t.Fatalf("Walk visited %d entries, err %v; want %d", len(seen), err, n)
	}
	stop := errors.New("stop")
	visits := 0
	err = s.Walk(ctx, func(*index.ArtifactEntry) error {
		visits++
		return stop
	})
	if !errors.Is(err, stop) || visits != 1 {
		t.Errorf("Walk returned %v after %d visits, want the callback's error after 1", err, visits)
	}
}

func testEntriesByImageDigest(t *testing.T, s Store) {
	ctx := context.Background()
	image, other := fakeDigest("image"), fakeDigest("other image")
	amd, arm := indexEntry("amd64", image, repoA), indexEntry("arm64", image, repoA)
	prefetch := &index.ArtifactEntry{Digest: fakeDigest("prefetch"), Type: index.ArtifactEntryTypePrefetch,
		MediaType: "application/vnd.amazon.soci.prefetch.v1+json", ImageDigest: image}
	mustWrite(t, s, amd, arm, indexEntry("other", other, repoA), prefetch)

	got, err := s.GetArtifactEntriesByImageDigest(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{amd.Digest, arm.Digest}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("GetArtifactEntriesByImageDigest = %v, want %v", got, want)
	}
	if got, err := s.GetArtifactEntriesByImageDigest(ctx, fakeDigest("nothing")); err != nil || len(got) != 0 {
		t.Errorf("unknown image: %v, %v; want nothing", got, err)
	}
}

func testRemoveIndex(t *testing.T, s Store) {
	ctx := context.Background()
	idx := indexEntry("1", fakeDigest("image"), repoA)
	ztoc := ztocEntry(fakeDigest("layer"), 1<<22, "v1", repoA)
	mustWrite(t, s, idx, ztoc)

	if err := s.RemoveArtifactEntryByIndexDigest(ctx, idx.Digest); err != nil {
		t.Fatalf("RemoveArtifactEntryByIndexDigest: %v", err)
	}
	if _, err := s.GetArtifactEntry(ctx, idx.Digest); !errors.Is(err, index.ErrArtifactNotFound) {
		t.Errorf("index still there: %v", err)
	}
	if err := s.RemoveArtifactEntryByIndexDigest(ctx, ztoc.Digest); !errors.Is(err, ErrNotIndex) {
		t.Errorf("removing a zTOC: %v, want ErrNotIndex", err)
	}
	mustGet(t, s, ztoc.Digest)
	if err := s.RemoveArtifactEntryByIndexDigest(ctx, idx.Digest); !errors.Is(err, index.ErrArtifactNotFound) {
		t.Errorf("removing twice: %v, want ErrArtifactNotFound", err)
	}
}

func testFindReusableZtoc(t *testing.T, s Store) {
	ctx := context.Background()
	layer := fakeDigest("layer")
	want := ztocEntry(layer, 1<<22, "v1", repoA)
	mustWrite(t, s, want,
		ztocEntry(layer, 1<<20, "v1", repoA),               // other span size
		ztocEntry(layer, 1<<22, "v0", repoA),               // other builder
		ztocEntry(fakeDigest("other"), 1<<22, "v1", repoA)) // other layer
	// An index whose original digest is the layer must never be offered.
	mustWrite(t, s, &index.ArtifactEntry{Digest: fakeDigest("index"), Type: index.ArtifactEntryTypeIndex,
		OriginalDigest: layer, SpanSize: 1 << 22, BuilderVersion: "v1"})

	got, err := s.FindReusableZtoc(ctx, digest.Digest(layer), 1<<22, "v1")
	if err != nil {
		t.Fatalf("FindReusableZtoc: %v", err)
	}
	assertEntry(t, got, want)
	for _, q := range []struct {
		span    int64
		builder string
	}{{1 << 21, "v1"}, {1 << 22, "v2"}} {
		if _, err := s.FindReusableZtoc(ctx, digest.Digest(layer), q.span, q.builder); !errors.Is(err, index.ErrArtifactNotFound) {
			t.Errorf("FindReusableZtoc(span %d, %s): %v, want ErrArtifactNotFound", q.span, q.builder, err)
		}
	}
}

func testRemoveOldArtifacts(t *testing.T, s Store) {
	ctx := context.Background()
	both := ztocEntry(fakeDigest("held by both"), 1<<22, "v1", repoA, repoB)
	halfGone := ztocEntry(fakeDigest("held by a only"), 1<<22, "v1", repoA, repoB)
	gone := ztocEntry(fakeDigest("held nowhere"), 1<<22, "v1", repoA)
	mustWrite(t, s, both, halfGone, gone)

	// An error from exists removes nothing.
	failure := errors.New("registry down")
	err := s.RemoveOldArtifacts(ctx, func(context.Context, *index.ArtifactEntry, index.Location) (bool, error) {
		return false, failure
	})
	if !errors.Is(err, failure) {
		t.Fatalf("RemoveOldArtifacts: %v, want the exists error", err)
	}
	if got := mustGet(t, s, gone.Digest); len(got.Locations) != 1 {
		t.Fatalf("a failed RemoveOldArtifacts removed locations: %v", got.Locations)
	}

	var calls atomic.Int32
	err = s.RemoveOldArtifacts(ctx, func(_ context.Context, e *index.ArtifactEntry, loc index.Location) (bool, error) {
		calls.Add(1)
		switch e.Digest {
		case both.Digest:
			return true, nil
		case halfGone.Digest:
			return loc == repoA, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("RemoveOldArtifacts: %v", err)
	}
	if calls.Load() != 5 {
		t.Errorf("exists called %d times, want once per location (5)", calls.Load())
	}
	assertEntry(t, mustGet(t, s, both.Digest), both)
	wantHalf := *halfGone
	wantHalf.Locations = []index.Location{repoA}
	assertEntry(t, mustGet(t, s, halfGone.Digest), &wantHalf)
	if _, err := s.GetArtifactEntry(ctx, gone.Digest); !errors.Is(err, index.ErrArtifactNotFound) {
		t.Errorf("artifact held nowhere still there: %v", err)
	}
}

func testConcurrentUpserts(t *testing.T, s Store) {
	ctx := context.Background()
	ztoc := ztocEntry(fakeDigest("layer"), 1<<22, "v1")
	key := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("image")}
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, 3*writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := *ztoc
			e.Locations = []index.Location{{Registry: "reg", Repository: fmt.Sprint("repo", i)}, repoA}
			errs <- s.WriteArtifactEntry(ctx, &e)
			errs <- s.WriteArtifactEntries(ctx, []*index.ArtifactEntry{&e})
			_, err := s.UpsertQueued(ctx, key, "test")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent upsert: %v", err)
		}
	}
	if got := mustGet(t, s, ztoc.Digest); len(got.Locations) != writers+1 {
		t.Errorf("locations = %d, want %d: %v", len(got.Locations), writers+1, got.Locations)
	}
	jobs, err := s.List(ctx, JobFilter{})
	if err != nil || len(jobs) != 1 || jobs[0].Status != JobQueued {
		t.Errorf("jobs after concurrent upserts: %v, %v; want one queued", jobs, err)
	}
}

func testConstraintErrors(t *testing.T, s Store) {
	ctx := context.Background()
	bad := ztocEntry(fakeDigest("layer"), 1<<22, "v1")
	bad.Type = "soci_bogus"
	err := s.WriteArtifactEntry(ctx, bad)
	var ce *ConstraintError
	if !errors.As(err, &ce) || ce.Kind != "check" || ce.Constraint != "artifacts_type_check" {
		t.Errorf("bad type: %v, want a check ConstraintError on artifacts_type_check", err)
	}
	if errors.Is(err, ErrConflict) || IsTransient(err) {
		t.Errorf("check violation reported as a conflict or transient: %v", err)
	}
	if err := s.WriteArtifactEntries(ctx, []*index.ArtifactEntry{bad}); !errors.As(err, &ce) {
		t.Errorf("batched bad type: %v, want a ConstraintError", err)
	}

	key := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("image")}
	err = s.RecordLayerUses(ctx, key, []LayerUse{{LayerDigest: fakeDigest("layer"), ZtocDigest: fakeDigest("no such ztoc")}})
	if !errors.As(err, &ce) || ce.Kind != "foreign key" {
		t.Errorf("use of an unknown zTOC: %v, want a foreign key ConstraintError", err)
	}
}

func testJobLifecycle(t *testing.T, s Store) {
	ctx := context.Background()
	key := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("image"), Tag: "v1"}

	job, err := s.UpsertQueued(ctx, key, "distribution")
	if err != nil {
		t.Fatal(err)
	}
	if job.JobKey != key || job.Status != JobQueued || job.Tag != "v1" || job.Source != "distribution" ||
		job.Attempts != 0 || job.QueuedAt.IsZero() || !job.StartedAt.IsZero() {
		t.Errorf("queued job = %+v", job)
	}

	mustStart := func(worker string, want int) {
		t.Helper()
		attempt, err := s.Start(ctx, key, worker)
		if err != nil || attempt != want {
			t.Fatalf("Start = %d, %v; want attempt %d", attempt, err, want)
		}
		if job := mustGetJob(t, s, key); job.Status != JobRunning || job.Worker != worker || job.StartedAt.IsZero() {
			t.Errorf("started job = %+v", job)
		}
	}

	mustStart("w1", 1)
	if err := s.Fail(ctx, key, errors.New("registry said 503"), false); err != nil {
		t.Fatal(err)
	}
	job = mustGetJob(t, s, key)
	if job.Status != JobQueued || job.LastError != "registry said 503" || job.Attempts != 1 {
		t.Errorf("after a transient failure: %+v", job)
	}

	mustStart("w2", 2)
	if err := s.Fail(ctx, key, errors.New("manifest unknown"), true); err != nil {
		t.Fatal(err)
	}
	job = mustGetJob(t, s, key)
	if job.Status != JobFailed || job.LastError != "manifest unknown" || job.FinishedAt.IsZero() {
		t.Errorf("after a permanent failure: %+v", job)
	}

	// A new event for a failed image queues it again.
	if job, err = s.UpsertQueued(ctx, key, ""); err != nil || job.Status != JobQueued || job.Tag != "v1" ||
		job.Source != "distribution" {
		t.Errorf("requeue of a failed job = %+v, %v", job, err)
	}

	mustStart("w1", 3)
	if err := s.Succeed(ctx, key, JobResult{BytesRead: 12345, OptionsHash: "opts-1", IndexDigest: fakeDigest("v2 index")}); err != nil {
		t.Fatal(err)
	}
	job = mustGetJob(t, s, key)
	if job.Status != JobSucceeded || job.BytesRead != 12345 || job.LastError != "" || job.Attempts != 3 ||
		job.FinishedAt.Before(job.StartedAt) || job.IndexDigest != fakeDigest("v2 index") {
		t.Errorf("succeeded job = %+v", job)
	}
	for hash, want := range map[string]bool{"opts-1": true, "opts-2": false} {
		if got, err := s.IsIndexed(ctx, key, hash); err != nil || got != want {
			t.Errorf("IsIndexed(%s) = %v, %v; want %v", hash, got, err, want)
		}
	}

	// A new event for an indexed image keeps it indexed.
	if job, err = s.UpsertQueued(ctx, key, "harbor"); err != nil || job.Status != JobSucceeded ||
		job.Tag != "v1" || job.Source != "harbor" {
		t.Errorf("event for a succeeded job = %+v, %v", job, err)
	}
	// Another tag of the same image is another job, not indexed yet.
	latest := key
	latest.Tag = "latest"
	if job, err = s.UpsertQueued(ctx, latest, "harbor"); err != nil || job.Status != JobQueued || job.Tag != "latest" {
		t.Errorf("event for another tag = %+v, %v", job, err)
	}
	if got, err := s.IsIndexed(ctx, latest, "opts-1"); err != nil || got {
		t.Errorf("IsIndexed(another tag) = %v, %v; want false", got, err)
	}

	attempts, err := s.Attempts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range attempts {
		got = append(got, fmt.Sprintf("%d %s %s %q %d", a.Attempt, a.Worker, a.Status, a.Error, a.BytesRead))
		if a.FinishedAt.IsZero() || a.FinishedAt.Before(a.StartedAt) {
			t.Errorf("attempt %d: started %v finished %v", a.Attempt, a.StartedAt, a.FinishedAt)
		}
	}
	want := []string{
		`1 w1 failed "registry said 503" 0`,
		`2 w2 failed "manifest unknown" 0`,
		`3 w1 succeeded "" 12345`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("attempts =\n%q\nwant\n%q", got, want)
	}

	// Skip, on a job Start created.
	other := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("our own index")}
	if attempt, err := s.Start(ctx, other, "w1"); err != nil || attempt != 1 {
		t.Fatalf("Start of an unknown job = %d, %v", attempt, err)
	}
	if err := s.Skip(ctx, other, "SOCI artifact"); err != nil {
		t.Fatal(err)
	}
	if job := mustGetJob(t, s, other); job.Status != JobSkipped || job.SkipReason != "SOCI artifact" {
		t.Errorf("skipped job = %+v", job)
	}
	if got, err := s.IsIndexed(ctx, other, ""); err != nil || got {
		t.Errorf("IsIndexed(skipped) = %v, %v; want false", got, err)
	}
}

func mustGetJob(t *testing.T, s Store, key JobKey) *Job {
	t.Helper()
	job, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return job
}

func testJobNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	key := JobKey{Registry: "reg", Repository: "nothing", Digest: fakeDigest("nothing")}
	for name, err := range map[string]error{
		"Succeed": s.Succeed(ctx, key, JobResult{}),
		"Skip":    s.Skip(ctx, key, "x"),
		"Fail":    s.Fail(ctx, key, errors.New("x"), true),
	} {
		if !errors.Is(err, ErrJobNotFound) {
			t.Errorf("%s: %v, want ErrJobNotFound", name, err)
		}
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Get: %v, want ErrJobNotFound", err)
	}
	if _, err := s.Attempts(ctx, key); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Attempts: %v, want ErrJobNotFound", err)
	}
	if ok, err := s.IsIndexed(ctx, key, ""); ok || err != nil {
		t.Errorf("IsIndexed = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.UpsertQueued(ctx, JobKey{Registry: "reg", Repository: "repo"}, "test"); !errors.Is(err, ErrInvalidJobKey) {
		t.Errorf("UpsertQueued without a digest: %v, want ErrInvalidJobKey", err)
	}
	if _, err := s.Start(ctx, JobKey{Repository: "repo", Digest: key.Digest}, "w"); !errors.Is(err, ErrInvalidJobKey) {
		t.Errorf("Start without a registry: %v, want ErrInvalidJobKey", err)
	}
}

func testListJobs(t *testing.T, s Store) {
	ctx := context.Background()
	for i, loc := range []index.Location{repoA, repoA, repoB} {
		key := JobKey{Registry: loc.Registry, Repository: loc.Repository, Digest: fakeDigest(fmt.Sprint("image", i))}
		if _, err := s.UpsertQueued(ctx, key, "test"); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := s.Start(ctx, key, "w"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		filter JobFilter
		want   int
	}{
		{JobFilter{}, 3},
		{JobFilter{Limit: 2}, 2},
		{JobFilter{Repository: repoA.Repository}, 2},
		{JobFilter{Registry: repoA.Registry, Repository: repoB.Repository}, 1},
		{JobFilter{Status: JobRunning}, 1},
		{JobFilter{Status: JobQueued, Repository: repoA.Repository}, 1},
		{JobFilter{Registry: "elsewhere"}, 0},
	} {
		jobs, err := s.List(ctx, tc.filter)
		if err != nil || len(jobs) != tc.want {
			t.Errorf("List(%+v) = %d jobs, %v; want %d", tc.filter, len(jobs), err, tc.want)
		}
		for _, j := range jobs {
			if tc.filter.Status != "" && j.Status != tc.filter.Status {
				t.Errorf("List(%+v) returned a %s job", tc.filter, j.Status)
			}
		}
	}
}

// testRemoveImage: images 1 and 2 in repository A share zTOC z1, image 1
// alone uses z2, and image 3 in repository B uses z1 too.
func testRemoveImage(t *testing.T, s Store) {
	ctx := context.Background()
	img1, img2, img3 := fakeDigest("image 1"), fakeDigest("image 2"), fakeDigest("image 3")
	layer1, layer2 := fakeDigest("layer 1"), fakeDigest("layer 2")
	z1 := ztocEntry(layer1, 1<<22, "v1", repoA, repoB)
	z2 := ztocEntry(layer2, 1<<22, "v1", repoA)
	idx1, idx2, idx3 := indexEntry("1", img1, repoA), indexEntry("2", img2, repoA), indexEntry("3", img3, repoB)
	mustWrite(t, s, z1, z2, idx1, idx2, idx3)
	keys := map[string]JobKey{}
	for img, loc := range map[string]index.Location{img1: repoA, img2: repoA, img3: repoB} {
		key := JobKey{Registry: loc.Registry, Repository: loc.Repository, Digest: img}
		keys[img] = key
		if _, err := s.Start(ctx, key, "w"); err != nil {
			t.Fatal(err)
		}
		uses := []LayerUse{{LayerDigest: layer1, LayerSize: 100 << 20, ZtocDigest: z1.Digest, Reused: img != img1}}
		if img == img1 {
			uses = append(uses, LayerUse{LayerDigest: layer2, LayerSize: 50 << 20, ZtocDigest: z2.Digest})
		}
		if err := s.RecordLayerUses(ctx, key, uses); err != nil {
			t.Fatal(err)
		}
		if err := s.Succeed(ctx, key, JobResult{}); err != nil {
			t.Fatal(err)
		}
	}

	removal, err := s.RemoveImage(ctx, repoA.Registry, repoA.Repository, img1)
	if err != nil {
		t.Fatal(err)
	}
	want := Removal{Indexes: []string{idx1.Digest}, Ztocs: []string{z2.Digest}, Deleted: sorted(idx1.Digest, z2.Digest)}
	if fmt.Sprint(*removal) != fmt.Sprint(want) {
		t.Errorf("RemoveImage(1) = %+v, want %+v", *removal, want)
	}
	assertEntry(t, mustGet(t, s, z1.Digest), z1) // still used by images 2 and 3
	if _, err := s.Get(ctx, keys[img1]); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("job of the removed image: %v, want ErrJobNotFound", err)
	}

	removal, err = s.RemoveImage(ctx, repoA.Registry, repoA.Repository, img2)
	if err != nil {
		t.Fatal(err)
	}
	want = Removal{Indexes: []string{idx2.Digest}, Ztocs: []string{z1.Digest}, Deleted: []string{idx2.Digest}}
	if fmt.Sprint(*removal) != fmt.Sprint(want) {
		t.Errorf("RemoveImage(2) = %+v, want %+v", *removal, want)
	}
	wantZ1 := *z1
	wantZ1.Locations = []index.Location{repoB}
	assertEntry(t, mustGet(t, s, z1.Digest), &wantZ1)
	mustGet(t, s, idx3.Digest)

	// Removing an image nobody recorded removes nothing.
	removal, err = s.RemoveImage(ctx, repoA.Registry, repoA.Repository, fakeDigest("unknown"))
	if err != nil || len(removal.Indexes)+len(removal.Ztocs)+len(removal.Deleted) != 0 {
		t.Errorf("RemoveImage(unknown) = %+v, %v; want nothing removed", removal, err)
	}
}

// testIndexEntriesOf: a v1 index found by image digest, a v2 one by
// location (its platform manifest), neither zTOCs nor indexes held only in
// another repository.
func testIndexEntriesOf(t *testing.T, s Store) {
	ctx := context.Background()
	img, platform := fakeDigest("image index"), fakeDigest("platform manifest")
	v1 := indexEntry("v1", platform, repoA)
	v1.ImageDigest = img
	v2 := indexEntry("v2", platform, repoA)
	v2.ImageDigest = fakeDigest("soci-enabled index")
	elsewhere := indexEntry("b", img, repoB)
	z := ztocEntry(img, 1<<22, "v1", repoA) // a zTOC whose Location matches
	mustWrite(t, s, v1, v2, elsewhere, z)

	digestsOf := func(entries []*index.ArtifactEntry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, e.Digest)
		}
		return out
	}
	for _, tc := range []struct {
		digests []string
		want    []string
	}{
		{[]string{img}, []string{v1.Digest}},
		{[]string{platform}, sorted(v1.Digest, v2.Digest)},
		{[]string{img, v2.ImageDigest}, sorted(v1.Digest, v2.Digest)},
		{[]string{fakeDigest("unknown")}, nil},
		{nil, nil},
	} {
		got, err := s.IndexEntriesOf(ctx, repoA.Registry, repoA.Repository, tc.digests)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(digestsOf(got), tc.want) {
			t.Errorf("IndexEntriesOf(%v) = %v, want %v", tc.digests, digestsOf(got), tc.want)
		}
	}
	got, err := s.IndexEntriesOf(ctx, repoA.Registry, repoA.Repository, []string{platform})
	if err != nil {
		t.Fatal(err)
	}
	assertEntry(t, got[1], v2)
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func testReports(t *testing.T, s Store) {
	ctx := context.Background()
	z1 := ztocEntry(fakeDigest("layer 1"), 1<<22, "v1", repoA)
	z2 := ztocEntry(fakeDigest("layer 2"), 1<<22, "v1", repoA)
	z2.Size = 8192
	mustWrite(t, s, z1, z2)
	job := func(loc index.Location, name string) JobKey {
		return JobKey{Registry: loc.Registry, Repository: loc.Repository, Digest: fakeDigest(name)}
	}
	// Repository A: one indexed (both layers built), one reusing layer 1,
	// one skipped, one failed, one queued. Repository B: one failed.
	steps := []struct {
		key  JobKey
		end  func(JobKey) error
		uses []LayerUse
	}{
		{job(repoA, "built"), func(k JobKey) error { return s.Succeed(ctx, k, JobResult{BytesRead: 1000}) },
			[]LayerUse{{fakeDigest("layer 1"), 300, z1.Digest, false}, {fakeDigest("layer 2"), 500, z2.Digest, false}}},
		{job(repoA, "reused"), func(k JobKey) error { return s.Succeed(ctx, k, JobResult{BytesRead: 10}) },
			[]LayerUse{{fakeDigest("layer 1"), 300, z1.Digest, true}}},
		{job(repoA, "skipped"), func(k JobKey) error { return s.Skip(ctx, k, "no layers to index") }, nil},
		{job(repoA, "failed"), func(k JobKey) error { return s.Fail(ctx, k, errors.New("bad gzip"), true) }, nil},
		{job(repoB, "failed"), func(k JobKey) error { return s.Fail(ctx, k, errors.New("401\nunauthorized"), true) }, nil},
	}
	for _, st := range steps {
		if _, err := s.Start(ctx, st.key, "w"); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordLayerUses(ctx, st.key, st.uses); err != nil {
			t.Fatal(err)
		}
		if err := st.end(st.key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpsertQueued(ctx, job(repoA, "queued"), "test"); err != nil {
		t.Fatal(err)
	}

	coverage, err := s.Coverage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCoverage := []CoverageRow{
		{repoA.Registry, repoA.Repository, 5, 2, 1, 1, 1},
		{repoB.Registry, repoB.Repository, 1, 0, 0, 1, 0},
	}
	if !slices.Equal(coverage, wantCoverage) {
		t.Errorf("Coverage = %+v, want %+v", coverage, wantCoverage)
	}

	failures, err := s.Failures(ctx, 10)
	if err != nil || len(failures) != 2 {
		t.Fatalf("Failures = %+v, %v; want 2 rows", failures, err)
	}
	errorsByRepo := map[string]string{}
	for _, f := range failures {
		errorsByRepo[f.Repository] = f.LastError
		if f.Attempts != 1 || f.FinishedAt.IsZero() || f.Worker != "w" {
			t.Errorf("failure row %+v", f)
		}
	}
	if errorsByRepo[repoA.Repository] != "bad gzip" || errorsByRepo[repoB.Repository] != "401\nunauthorized" {
		t.Errorf("failure errors = %q", errorsByRepo)
	}
	if one, err := s.Failures(ctx, 1); err != nil || len(one) != 1 {
		t.Errorf("Failures(limit 1) = %d rows, %v", len(one), err)
	}

	reuse, err := s.Reuse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantReuse := []ReuseRow{{repoA.Registry, repoA.Repository, 2, 1, 800, 300}}
	if !slices.Equal(reuse, wantReuse) {
		t.Errorf("Reuse = %+v, want %+v", reuse, wantReuse)
	}

	largest, err := s.Largest(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantLargest := []LargestRow{
		{fakeDigest("layer 2"), 500, z2.Digest, 8192, 1 << 22, 1},
		{fakeDigest("layer 1"), 300, z1.Digest, 4096, 1 << 22, 2},
	}
	if !slices.Equal(largest, wantLargest) {
		t.Errorf("Largest = %+v, want %+v", largest, wantLargest)
	}

	throughput, err := s.Throughput(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	if len(throughput) != 1 {
		t.Fatalf("Throughput = %+v, want one day", throughput)
	}
	got := throughput[0]
	if got.Day != today || got.Finished != 5 || got.Succeeded != 2 || got.Skipped != 1 || got.Failed != 2 ||
		got.BytesRead != 1010 || got.AvgSeconds < 0 || got.AvgSeconds > 60 {
		t.Errorf("Throughput = %+v, want today %s: 5 finished, 2 succeeded, 1 skipped, 2 failed, 1010 bytes", got, today)
	}
}

func testLock(t *testing.T, s Store) {
	testLockers(t, s, s)
}

// testLockers checks that a and b, two handles on the same lock space,
// exclude each other on one key and not across keys.
func testLockers(t *testing.T, a, b index.Locker) {
	ctx := context.Background()
	key := "reg.example:5000/team/a@" + fakeDigest("image")
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for i, l := range []index.Locker{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				unlock, err := l.Lock(ctx, key)
				if err != nil {
					t.Errorf("locker %d: %v", i, err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Errorf("%d times two holders were inside the lock together", overlaps.Load())
	}

	unlock, err := a.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// Held: the other handle waits until its context ends.
	waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(waitCtx, key); err == nil {
		t.Fatal("Lock succeeded while the key was held")
	}
	// Another key is free.
	unlockOther, err := b.Lock(ctx, key+"-other")
	if err != nil {
		t.Fatalf("lock on another key: %v", err)
	}
	unlockOther()
	unlock()
	unlock() // a second unlock is harmless
	unlock, err = b.Lock(ctx, key)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock()
}

// testJobsPerTag: each tag of an image is its own job; FindIndexed finds
// any tag's success with the same options, the one with a v2 index first;
// RemoveJob forgets one tag, RemoveImage every tag.
func testJobsPerTag(t *testing.T, s Store) {
	ctx := context.Background()
	image := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("tagged image")}
	tagged := func(tag string) JobKey { k := image; k.Tag = tag; return k }
	if _, err := s.FindIndexed(ctx, tagged("a"), "opts"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("FindIndexed before any job: %v, want ErrJobNotFound", err)
	}
	for _, tag := range []string{"", "a", "b"} {
		if _, err := s.Start(ctx, tagged(tag), "w"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Succeed(ctx, tagged(""), JobResult{OptionsHash: "opts"}); err != nil {
		t.Fatal(err)
	}
	if found, err := s.FindIndexed(ctx, tagged("c"), "opts"); err != nil || found.Tag != "" || found.IndexDigest != "" {
		t.Errorf("FindIndexed with only an untagged success = %+v, %v", found, err)
	}
	if err := s.Succeed(ctx, tagged("a"), JobResult{OptionsHash: "opts", IndexDigest: fakeDigest("v2 of a")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, tagged("b"), errors.New("broken"), true); err != nil {
		t.Fatal(err)
	}
	found, err := s.FindIndexed(ctx, tagged("c"), "opts")
	if err != nil || found.Tag != "a" || found.IndexDigest != fakeDigest("v2 of a") {
		t.Errorf("FindIndexed = %+v, %v; want tag a with its v2 index", found, err)
	}
	if _, err := s.FindIndexed(ctx, tagged("c"), "other opts"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("FindIndexed with other options: %v, want ErrJobNotFound", err)
	}
	for tag, want := range map[string]bool{"": true, "a": true, "b": false, "c": false} {
		if got, err := s.IsIndexed(ctx, tagged(tag), "opts"); err != nil || got != want {
			t.Errorf("IsIndexed(tag %q) = %v, %v; want %v", tag, got, err, want)
		}
	}
	byTag, err := s.List(ctx, JobFilter{Registry: image.Registry, Repository: image.Repository, Tag: "a"})
	if err != nil || len(byTag) != 1 || byTag[0].JobKey != tagged("a") {
		t.Errorf("List by tag = %+v, %v", byTag, err)
	}
	byDigest, err := s.List(ctx, JobFilter{Digest: image.Digest})
	if err != nil || len(byDigest) != 3 {
		t.Errorf("List by digest = %d jobs, %v; want 3", len(byDigest), err)
	}

	if err := s.RemoveJob(ctx, tagged("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveJob(ctx, tagged("a")); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("second RemoveJob: %v, want ErrJobNotFound", err)
	}
	if _, err := s.Get(ctx, tagged("a")); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Get of a removed tag: %v", err)
	}
	if _, err := s.Get(ctx, tagged("b")); err != nil {
		t.Errorf("another tag went with the removed one: %v", err)
	}
	if _, err := s.RemoveImage(ctx, image.Registry, image.Repository, image.Digest); err != nil {
		t.Fatal(err)
	}
	if left, err := s.List(ctx, JobFilter{Digest: image.Digest}); err != nil || len(left) != 0 {
		t.Errorf("jobs left after RemoveImage = %+v, %v", left, err)
	}
}

// testAbandonedAttempt: an attempt left running (its worker was killed) is
// closed as abandoned, with a reason, when the job starts again; the new
// attempt then finishes normally.
func testAbandonedAttempt(t *testing.T, s Store) {
	ctx := context.Background()
	key := JobKey{Registry: repoA.Registry, Repository: repoA.Repository, Digest: fakeDigest("killed"), Tag: "v1"}
	if _, err := s.Start(ctx, key, "killed-worker"); err != nil {
		t.Fatal(err)
	}
	if attempt, err := s.Start(ctx, key, "w2"); err != nil || attempt != 2 {
		t.Fatalf("restart = %d, %v", attempt, err)
	}
	if err := s.Succeed(ctx, key, JobResult{OptionsHash: "o"}); err != nil {
		t.Fatal(err)
	}
	attempts, err := s.Attempts(ctx, key)
	if err != nil || len(attempts) != 2 {
		t.Fatalf("attempts = %+v, %v", attempts, err)
	}
	if a := attempts[0]; a.Status != JobAbandoned || a.Worker != "killed-worker" || a.FinishedAt.IsZero() ||
		!strings.Contains(a.Error, "abandoned") {
		t.Errorf("cut-off attempt = %+v, want abandoned", a)
	}
	if a := attempts[1]; a.Status != JobSucceeded || a.Worker != "w2" {
		t.Errorf("second attempt = %+v", a)
	}
	rows, err := s.Throughput(ctx, 2)
	if err != nil || len(rows) != 1 || rows[0].Finished != 1 || rows[0].Succeeded != 1 {
		t.Errorf("throughput counts the abandoned attempt: %+v, %v", rows, err)
	}
}

// testLockSession: a session holds several keys at once; another session
// waits for a key until the holder releases it, and gets it then; Close
// releases what is still held.
func testLockSession(t *testing.T, s Store) {
	ctx := context.Background()
	a, err := s.LockSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	unlockJob, err := a.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	unlockRefs, err := a.Lock(ctx, "referrers")
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	got := make(chan bool)
	go func() {
		b, err := s.LockSession(ctx)
		if err != nil {
			t.Error(err)
			got <- false
			return
		}
		defer b.Close()
		unlock, err := b.Lock(ctx, "referrers")
		if err != nil {
			t.Error(err)
			got <- false
			return
		}
		got <- released.Load()
		unlock()
	}()
	// Whenever b gets the key, a must have let it go first.
	released.Store(true)
	unlockRefs()
	if !<-got {
		t.Error("a second session took a key the first still held")
	}
	unlockJob()
	// Close drops what the session still holds.
	if _, err := a.Lock(ctx, "held at close"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := a.Lock(ctx, "after close"); err == nil {
		t.Error("Lock on a closed session succeeded")
	}
	unlock, err := s.Lock(ctx, "held at close")
	if err != nil {
		t.Fatalf("key held by a closed session: %v", err)
	}
	unlock()
}
