package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerGzip     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// dockerCopy pushes the Docker (schema 2) form of an OCI image manifest, as
// a registry holds the images skopeo copies from Docker Hub.
func dockerCopy(t *testing.T, ctx context.Context, repo oras.Target, oci ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	body, err := content.FetchAll(ctx, repo, oci)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m.MediaType = mediaTypeDockerManifest
	m.Config.MediaType = mediaTypeDockerConfig
	for i := range m.Layers {
		m.Layers[i].MediaType = mediaTypeDockerGzip
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.PushBytes(ctx, repo, mediaTypeDockerManifest, raw)
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

// TestToolShapedImageIndexesAreIndexed: multi-platform images whose index
// is written the way crane index append (artifactType on every manifest
// descriptor), skopeo copy --all (a Docker manifest list of Docker
// manifests, pushed children first, variant on arm64) and oras cp (an OCI
// index with annotations, copied as is) write them all get a SOCI index per
// platform.
func TestToolShapedImageIndexesAreIndexed(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	store := testsupport.NewSQLite(t)
	w := newTestWorker(t, store, 128<<10, index.V2)
	ctx := context.Background()
	const repository = "shapes/app"
	repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), repository)
	if err != nil {
		t.Fatal(err)
	}
	platforms := []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	shapes := map[string]func() (string, []byte){
		"crane": func() (string, []byte) {
			var ms []ocispec.Descriptor
			for i, p := range platforms {
				d := testsupport.PushImage(t, reg.Addr(), repository, "", testsupport.LayerSize)
				d.ArtifactType = ocispec.MediaTypeImageConfig
				d.Platform = &platforms[i]
				_ = p
				ms = append(ms, d)
			}
			raw, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageIndex, Manifests: ms})
			return ocispec.MediaTypeImageIndex, raw
		},
		"skopeo": func() (string, []byte) {
			var ms []ocispec.Descriptor
			for i := range platforms {
				d := dockerCopy(t, ctx, repo, testsupport.PushImage(t, reg.Addr(), repository, "", testsupport.LayerSize))
				d.Platform = &platforms[i]
				ms = append(ms, d)
			}
			raw, _ := json.Marshal(struct {
				SchemaVersion int                  `json:"schemaVersion"`
				MediaType     string               `json:"mediaType"`
				Manifests     []ocispec.Descriptor `json:"manifests"`
			}{2, mediaTypeDockerList, ms})
			return mediaTypeDockerList, raw
		},
		"oras": func() (string, []byte) {
			var ms []ocispec.Descriptor
			for i := range platforms {
				d := testsupport.PushImage(t, reg.Addr(), repository, "", testsupport.LayerSize)
				d.Platform = &platforms[i]
				d.Annotations = map[string]string{ocispec.AnnotationCreated: "2026-12-01T00:00:00Z"}
				ms = append(ms, d)
			}
			raw, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageIndex, Manifests: ms,
				Annotations: map[string]string{ocispec.AnnotationCreated: "2026-12-01T00:00:00Z",
					ocispec.AnnotationRefName: "v1"}})
			return ocispec.MediaTypeImageIndex, raw
		},
	}
	for name, shape := range shapes {
		t.Run(name, func(t *testing.T) {
			mediaType, raw := shape()
			img, err := oras.TagBytes(ctx, repo, mediaType, raw, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), repository, name, img), false); err != nil {
				t.Fatal(err)
			}
			job, err := store.Get(ctx, tagKey(reg.Addr(), repository, img, name))
			if err != nil || job.Status != db.JobSucceeded {
				t.Fatalf("job %+v, %v; want succeeded", job, err)
			}
			socis, err := testsupport.V2Index(ctx, repo, name+"-soci")
			if err != nil || len(socis) != len(platforms) {
				t.Fatalf("%s-soci: %d SOCI indexes, %v; want one per platform", name, len(socis), err)
			}
		})
	}
}

// TestManyWorkersFewLockConnections: 32 workers in both mode (image lock
// and referrers locks) on 16 images, each pushed under two tags, on a lock
// pool of 4 connections, all finish.
func TestManyWorkersFewLockConnections(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	dsn, _ := testpg.NewDatabase(t, "svc")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, err := db.Open(ctx, dsn, db.WithMaxLockConns(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w := NewWorker(testsupport.PlainRepos(t), store,
		WithBuildOptions(index.WithSpanSize(128<<10), index.WithMinLayerSize(0)),
		WithIndexVersion(index.V1|index.V2), WithLogger(testsupport.Logger(t)), WithLockWait(2*time.Minute))
	const images, workers = 16, 32
	jobs := make(chan queue.Job, 2*images)
	var keys []db.JobKey
	for i := range images {
		img := testsupport.PushImage(t, reg.Addr(), "many/app", fmt.Sprint("a", i), 64<<10)
		repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), "many/app")
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Tag(ctx, img, fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
		for _, tag := range []string{fmt.Sprint("a", i), fmt.Sprint("b", i)} {
			jobs <- testsupport.PushJob(reg.Addr(), "many/app", tag, img)
			keys = append(keys, tagKey(reg.Addr(), "many/app", img, tag))
		}
	}
	close(jobs)
	var wg sync.WaitGroup
	errs := make(chan error, 2*images)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := w.Process(ctx, j, false); err != nil {
					errs <- fmt.Errorf("%s: %w", j.Key(), err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, key := range keys {
		if job, err := store.Get(ctx, key); err != nil || job.Status != db.JobSucceeded {
			t.Errorf("job %s: %+v, %v", key, job, err)
		}
	}
}

// TestTwoHostNamesLoseNoReferrer: two v1 builders with different options
// reach one registry as 127.0.0.1:PORT and as localhost:PORT, through two
// stores (two processes' lock sessions) on one Postgres; over 50 images,
// every image lists both v1 indexes among its referrers.
func TestTwoHostNamesLoseNoReferrer(t *testing.T) {
	reg := testsupport.StartRegistry(t, "", "")
	dsn, _ := testpg.NewDatabase(t, "svc")
	ctx := context.Background()
	stores := []Store{testsupport.OpenStore(t, dsn), testsupport.OpenStore(t, dsn)}
	_, port, err := splitHostPort(reg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{reg.Addr(), "localhost:" + port}
	const runs = 50
	for run := range runs {
		img := testsupport.PushImage(t, reg.Addr(), "hosts/app", "", 32<<10)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, host := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = func() error {
					repo, err := testsupport.PlainRepos(t)(ctx, host, "hosts/app")
					if err != nil {
						return err
					}
					repo.SkipReferrersGC = true
					b, err := index.NewIndexBuilder(repo, index.WithIndexVersion(index.V1), index.WithMinLayerSize(0),
						index.WithSpanSize(int64(64<<10)<<i), index.WithLocker(stores[i]))
					if err != nil {
						return err
					}
					_, err = b.BuildImage(ctx, index.Image{Descriptor: img})
					return err
				}()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if refs := testsupport.V1Indexes(t, reg.Addr(), "hosts/app", img); len(refs) != 2 {
			t.Fatalf("run %d: %d v1 indexes among the referrers, want 2 (a referrer was lost)", run, len(refs))
		}
	}
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }
