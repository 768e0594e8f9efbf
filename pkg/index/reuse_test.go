package index

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

func TestZtocReuseAcrossRepositories(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	layers := mixedLayers(t, 90, false)
	shared, own := layers[0], testLayer{layers[0].mediaType, gzipBytes(t, simpleTar(t, 91, 4, 40<<10))}
	sharedDesc := shared.descriptor()

	db := newMemDb()
	repoA := openRepo(t, reg, "team/a", nil)
	imgA := pushImage(t, repoA, imageSpec{layers: []testLayer{shared}})
	bA, _ := NewIndexBuilder(repoA, WithMinLayerSize(testMinLayerSize), WithArtifactsDb(db))
	resA, err := bA.Build(ctx, imgA.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	ztocA := resA[0].Index.Blobs[0]

	// Image B in another repository shares the layer: its zTOC is mounted,
	// and not one byte of the shared layer is fetched.
	counter := newBlobCounter()
	repoB := openRepo(t, reg, "team/b", counter)
	imgB := pushImage(t, repoB, imageSpec{layers: []testLayer{shared, own}})
	bB, _ := NewIndexBuilder(repoB, WithMinLayerSize(testMinLayerSize), WithArtifactsDb(db), WithOptimizations(XAttrOptimization))
	resB, err := bB.Build(ctx, imgB.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if n := counter.getCount(sharedDesc.Digest); n != 0 {
		t.Fatalf("shared layer fetched %d times (%d bytes)", n, counter.bytesRead(sharedDesc.Digest))
	}
	if counter.bytesRead(own.descriptor().Digest) != own.descriptor().Size {
		t.Fatalf("own layer: read %d bytes", counter.bytesRead(own.descriptor().Digest))
	}
	got := resB[0].Layers[0]
	if got.State != LayerReused || got.Ztoc.Digest != ztocA.Digest {
		t.Fatalf("shared layer: %s, zTOC %v, want reuse of %s", got.State, got.Ztoc, ztocA.Digest)
	}
	// The reused zTOC was read to apply the xattr rule.
	if got.Ztoc.Annotations[IndexAnnotationDisableXAttrs] != "true" {
		t.Errorf("reused zTOC annotations %v", got.Ztoc.Annotations)
	}
	if ok, err := repoB.Exists(ctx, *got.Ztoc); err != nil || !ok {
		t.Fatalf("zTOC not in team/b: %v %v", ok, err)
	}
	entry, _ := db.GetArtifactEntry(ctx, ztocA.Digest.String())
	if len(entry.Locations) != 2 || !slices.Contains(entry.Locations, Location{Registry: reg.Addr(), Repository: "team/b"}) {
		t.Fatalf("locations %v", entry.Locations)
	}

	// Once the zTOC is gone from every location, it is rebuilt.
	for _, r := range []string{"team/a", "team/b"} {
		if err := openRepo(t, reg, r, nil).Blobs().Delete(ctx, *got.Ztoc); err != nil {
			t.Fatal(err)
		}
	}
	counter = newBlobCounter()
	repoC := openRepo(t, reg, "team/c", counter)
	imgC := pushImage(t, repoC, imageSpec{layers: []testLayer{shared}})
	bC, _ := NewIndexBuilder(repoC, WithMinLayerSize(testMinLayerSize), WithArtifactsDb(db))
	resC, err := bC.Build(ctx, imgC.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if resC[0].Layers[0].State != LayerBuilt || counter.bytesRead(sharedDesc.Digest) != sharedDesc.Size {
		t.Fatalf("gone zTOC: state %s, read %d bytes", resC[0].Layers[0].State, counter.bytesRead(sharedDesc.Digest))
	}
	if resC[0].Index.Blobs[0].Digest != ztocA.Digest {
		t.Fatal("rebuilt zTOC differs: builds are not reproducible")
	}

	// A different builder version never reuses.
	counter = newBlobCounter()
	bD, _ := NewIndexBuilder(openRepo(t, reg, "team/c", counter), WithMinLayerSize(testMinLayerSize),
		WithArtifactsDb(db), WithBuilderVersion("other"))
	if _, err := bD.Build(ctx, imgC.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if counter.getCount(sharedDesc.Digest) == 0 {
		t.Fatal("zTOC of another builder version reused")
	}
}

// TestConcurrentBuildersKeepEveryReferrer runs eight workers, each with its
// own client and builder, that attach different indexes to one image at the
// same time on a registry without the referrers API and with deletes
// disabled.
func TestConcurrentBuildersKeepEveryReferrer(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{DisableDeletes: true})
	setup := openRepo(t, reg, "app/race", nil)
	manifest := pushImage(t, setup, imageSpec{layers: mixedLayers(t, 100, false)[:1]})

	locker := NewLocalLocker()
	const workers = 8
	digests := make([]string, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := NewIndexBuilder(openRepo(t, reg, "app/race", nil), WithLocker(locker),
				WithMinLayerSize(testMinLayerSize), WithBuildToolIdentifier(fmt.Sprintf("worker-%d", i)))
			if err != nil {
				errs <- err
				return
			}
			res, err := b.Build(ctx, manifest.Digest.String())
			if err != nil {
				errs <- err
				return
			}
			digests[i] = res[0].Desc.Digest.String()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	refs := listReferrers(t, setup, manifest)
	var listed []string
	for _, r := range refs {
		listed = append(listed, r.Digest.String())
	}
	slices.Sort(listed)
	slices.Sort(digests)
	if distinct := slices.Compact(slices.Clone(digests)); len(distinct) != workers {
		t.Fatalf("workers built %d distinct indexes, want %d", len(distinct), workers)
	}
	if !slices.Equal(listed, digests) {
		t.Fatalf("referrers\n%v\nwant\n%v", listed, digests)
	}
}

// TestReferrersGCFailureIsNotFatal pushes a second index to an image on a
// registry with deletes disabled, through a client that does try to delete
// the superseded referrers index: the 405 must not fail the build.
func TestReferrersGCFailureIsNotFatal(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{DisableDeletes: true})
	setup := openRepo(t, reg, "app/gc", nil)
	manifest := pushImage(t, setup, imageSpec{layers: mixedLayers(t, 110, false)[:1]})

	var digests []string
	for i := range 2 {
		repo := openRepo(t, reg, "app/gc", nil)
		repo.SkipReferrersGC = false
		b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize), WithBuildToolIdentifier(fmt.Sprintf("tool-%d", i)))
		res, err := b.Build(ctx, manifest.Digest.String())
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		digests = append(digests, res[0].Desc.Digest.String())
	}
	var listed []string
	for _, r := range listReferrers(t, setup, manifest) {
		listed = append(listed, r.Digest.String())
	}
	slices.Sort(listed)
	slices.Sort(digests)
	if !slices.Equal(listed, digests) {
		t.Fatalf("referrers %v, want %v", listed, digests)
	}
}

func TestLayerSharedByPlatformsIsReadOnce(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	counter := newBlobCounter()
	repo := openRepo(t, reg, "app/shared", counter)
	shared := mixedLayers(t, 120, false)[0]
	amd64 := pushImage(t, repo, imageSpec{layers: []testLayer{shared}})
	arm64 := pushImage(t, repo, imageSpec{platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, layers: []testLayer{shared}})
	amd64.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	img := pushIndex(t, repo, []ocispec.Descriptor{amd64, arm64}, "multi")

	b, _ := NewIndexBuilder(repo, WithMinLayerSize(testMinLayerSize))
	res, err := b.Build(ctx, "multi@"+img.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Index.Blobs[0].Digest != res[1].Index.Blobs[0].Digest {
		t.Fatalf("results %+v", res)
	}
	if n := counter.getCount(shared.descriptor().Digest); n != 1 {
		t.Fatalf("shared layer fetched %d times", n)
	}
}
