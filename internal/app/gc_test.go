package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/service"
)

// multiPlatformArtifacts is what indexing the multi-platform image "gone"
// (tag v1) put in the registry and the database, next to the
// single-platform image "kept" (tag v2) whose first layer is gone's amd64
// layer.
type multiPlatformArtifacts struct {
	registry, repository string
	gone                 ocispec.Descriptor   // the image index
	platforms            []ocispec.Descriptor // its platform manifests
	sociImage            ocispec.Descriptor   // v1-soci
	rewritten            []ocispec.Descriptor // the manifests v1-soci lists
	socis                []ocispec.Descriptor // v2 and v1 SOCI indexes
	sharedZtoc           ocispec.Descriptor   // kept uses it too
	onlyZtoc             ocispec.Descriptor   // only gone uses it
}

// pushSharingImages pushes gone and then kept, calling indexed after each
// push with the image, its tag and its platform manifests, so the caller
// can wait for (or run) its indexing.
func pushSharingImages(t *testing.T, registry, repository string, indexed func(img ocispec.Descriptor, tag string)) (gone, kept ocispec.Descriptor, platforms []ocispec.Descriptor) {
	t.Helper()
	seeds := testsupport.NewSeeds(3)
	gone, platforms = pushMultiPlatformSeeds(t, registry, repository, "v1", seeds[:2])
	indexed(gone, "v1")
	// A second layer of its own: a manifest equal to gone's amd64 one would
	// be that platform manifest, not another image.
	kept = testsupport.PushImageSeeds(t, registry, repository, "v2", []uint64{seeds[0], seeds[2]}, []int64{testsupport.LayerSize, testsupport.LayerSize})
	indexed(kept, "v2")
	return gone, kept, platforms
}

// recordArtifacts reads what indexing gone made and checks it is complete:
// a v2 index per platform, a v1 index per platform with index.Both, one
// zTOC shared with kept and one not.
func recordArtifacts(t *testing.T, repo *remote.Repository, store service.Store, registry, repository string, gone ocispec.Descriptor, platforms []ocispec.Descriptor, v index.IndexVersion) multiPlatformArtifacts {
	t.Helper()
	ctx := context.Background()
	a := multiPlatformArtifacts{registry: registry, repository: repository, gone: gone, platforms: platforms}
	var err error
	if a.sociImage, err = repo.Resolve(ctx, "v1-soci"); err != nil {
		t.Fatalf("no v2 index before the delete: %v", err)
	}
	var sociIndex ocispec.Index
	if err := fetchJSONTest(ctx, repo, a.sociImage, &sociIndex); err != nil {
		t.Fatal(err)
	}
	for _, m := range sociIndex.Manifests {
		if m.ArtifactType == index.SociIndexArtifactTypeV2 {
			a.socis = append(a.socis, m)
		} else {
			a.rewritten = append(a.rewritten, m)
		}
	}
	if len(a.socis) != 2 || len(a.rewritten) != 2 {
		t.Fatalf("v1-soci lists %d soci indexes and %d manifests, want 2 and 2", len(a.socis), len(a.rewritten))
	}
	if v&index.V1 != 0 {
		for _, p := range platforms {
			refs := testsupport.V1Indexes(t, registry, repository, p)
			if len(refs) != 1 {
				t.Fatalf("%d v1 indexes of %s, want 1", len(refs), p.Digest)
			}
			a.socis = append(a.socis, refs...)
		}
	}
	keptZtocs, err := testsupport.V2Index(ctx, repo, "v2-soci")
	if err != nil {
		t.Fatalf("no v2 index of the other image: %v", err)
	}
	shared := map[digest.Digest]bool{}
	for _, z := range testsupport.ZTOCs(t, repo, keptZtocs[0]) {
		shared[z.Digest] = true
	}
	for _, s := range a.socis[:2] {
		for _, z := range testsupport.ZTOCs(t, repo, s) {
			if shared[z.Digest] {
				a.sharedZtoc = z
			} else {
				a.onlyZtoc = z
			}
		}
	}
	if a.sharedZtoc.Digest == "" || a.onlyZtoc.Digest == "" {
		t.Fatalf("want one zTOC shared with the other image and one not, got shared %q, only %q",
			a.sharedZtoc.Digest, a.onlyZtoc.Digest)
	}
	for _, s := range a.socis {
		if _, err := store.GetArtifactEntry(ctx, s.Digest.String()); err != nil {
			t.Fatalf("soci index not recorded before the delete: %v", err)
		}
	}
	return a
}

// goneProblem returns what is left of gone's artifacts, or nil when all
// of them are gone and the other image's are whole.
func (a multiPlatformArtifacts) goneProblem(ctx context.Context, repo *remote.Repository, store service.Store) error {
	if _, err := repo.Resolve(ctx, "v1-soci"); err == nil {
		return errors.New("tag v1-soci still in the registry")
	}
	for what, descs := range map[string][]ocispec.Descriptor{
		"soci-enabled image index": {a.sociImage},
		"rewritten manifest":       a.rewritten,
		"soci index":               a.socis,
	} {
		for _, d := range descs {
			if ok, err := repo.Exists(ctx, d); ok || err != nil {
				return fmt.Errorf("%s %s still in the registry (%v)", what, d.Digest, err)
			}
		}
	}
	for _, p := range a.platforms {
		if _, err := repo.Resolve(ctx, "sha256-"+p.Digest.Encoded()); err == nil {
			return fmt.Errorf("referrers tag of %s still in the registry", p.Digest)
		}
	}
	if ok, err := repo.Blobs().Exists(ctx, a.onlyZtoc); ok || err != nil {
		return fmt.Errorf("zTOC only the deleted image used still in the registry (%v)", err)
	}
	for _, d := range append([]ocispec.Descriptor{a.onlyZtoc}, a.socis...) {
		if _, err := store.GetArtifactEntry(ctx, d.Digest.String()); !errors.Is(err, index.ErrArtifactNotFound) {
			return fmt.Errorf("%s still recorded (%v)", d.Digest, err)
		}
	}
	left, err := store.IndexEntriesOf(ctx, a.registry, a.repository,
		[]string{a.gone.Digest.String(), a.sociImage.Digest.String(), a.platforms[0].Digest.String(), a.platforms[1].Digest.String()})
	if err != nil || len(left) != 0 {
		return fmt.Errorf("%d soci indexes of the deleted image still recorded (%v)", len(left), err)
	}
	if left, err := store.List(ctx, db.JobFilter{Registry: a.registry, Repository: a.repository, Digest: a.gone.Digest.String()}); err != nil || len(left) != 0 {
		return fmt.Errorf("job of the deleted image: %v, want not found", err)
	}

	// The other image keeps its v2 index and the zTOC it shares.
	if _, err := testsupport.V2Index(ctx, repo, "v2-soci"); err != nil {
		return fmt.Errorf("the other image's v2 index went too: %w", err)
	}
	if ok, err := repo.Blobs().Exists(ctx, a.sharedZtoc); !ok || err != nil {
		return fmt.Errorf("zTOC shared with the other image was deleted (%v)", err)
	}
	if _, err := store.GetArtifactEntry(ctx, a.sharedZtoc.Digest.String()); err != nil {
		return fmt.Errorf("zTOC shared with the other image is no longer recorded: %w", err)
	}
	return nil
}

// TestDeleteMultiPlatformRemovesArtifacts: deleting a multi-platform image
// removes its v2 SOCI-enabled image index, tag and rewritten manifests, the
// v2 (and v1) SOCI indexes of every platform and the zTOCs only it used,
// from the registry and the database, on both database backends. The zTOC
// another image uses stays.
func TestDeleteMultiPlatformRemovesArtifacts(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, v := range []index.IndexVersion{index.V2, index.Both} {
			t.Run(backend+"/"+v.String(), func(t *testing.T) {
				var store service.Store
				if backend == "postgres" {
					dsn, _ := testpg.NewDatabase(t, "svc")
					store = testsupport.OpenStore(t, dsn)
				} else {
					store = testsupport.NewSQLite(t)
				}
				reg := testsupport.StartRegistry(t, "", "")
				ctx := context.Background()
				const repository = "gc/multi"
				w := newTestWorker(t, store, 128<<10, v)
				// Only the image index's job runs: the platform manifests'
				// own jobs would give them indexes of their own with Both.
				gone, _, platforms := pushSharingImages(t, reg.Addr(), repository, func(img ocispec.Descriptor, tag string) {
					if err := w.Process(ctx, testsupport.PushJob(reg.Addr(), repository, tag, img), false); err != nil {
						t.Fatal(err)
					}
				})
				repo, err := testsupport.PlainRepos(t)(ctx, reg.Addr(), repository)
				if err != nil {
					t.Fatal(err)
				}
				before := recordArtifacts(t, repo, store, reg.Addr(), repository, gone, platforms, v)

				// The registry deletes the image index, and sends the event.
				if err := repo.Manifests().Delete(ctx, gone); err != nil {
					t.Fatal(err)
				}
				del := queue.Job{Source: "test", Registry: reg.Addr(), Repository: repository,
					Digest: gone.Digest.String(), MediaType: gone.MediaType, Action: queue.ActionDelete}
				if err := w.Process(ctx, del, false); err != nil {
					t.Fatal(err)
				}
				if err := before.goneProblem(ctx, repo, store); err != nil {
					t.Error(err)
				}
				// A redelivered delete finds nothing left and still succeeds.
				if err := w.Process(ctx, del, false); err != nil {
					t.Errorf("second delete: %v", err)
				}
			})
		}
	}
}

// TestDeleteEventRemovesMultiPlatformArtifacts: the same through the
// registry's delete notification, the webhook, NATS and the workers: the
// all-in-one server (embedded NATS, SQLite) and separate services (the
// machine's NATS, Postgres).
func TestDeleteEventRemovesMultiPlatformArtifacts(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			cfg := testsupport.Config(t)
			cfg.RegistryListen = "127.0.0.1:0"
			cfg.IndexVersion = "v2"
			if backend == "postgres" {
				testsupport.UseMachineNATS(t, &cfg)
				cfg.DatabaseURL, _ = testpg.NewDatabase(t, "svc")
				cfg.Webhook = true
				cfg.WebhookSecret = "test-secret"
			}
			s := startServer(t, cfg)
			ctx := context.Background()
			const repository = "gc/events"
			gone, _, platforms := pushSharingImages(t, s.RegistryAddr(), repository, func(img ocispec.Descriptor, tag string) {
				key := db.JobKey{Registry: s.RegistryAddr(), Repository: repository, Digest: img.Digest.String(), Tag: tag}
				testsupport.WaitJob(t, s.Store(), key, 30*time.Second, db.JobSucceeded)
			})
			repo, err := testsupport.PlainRepos(t)(ctx, s.RegistryAddr(), repository)
			if err != nil {
				t.Fatal(err)
			}
			before := recordArtifacts(t, repo, s.Store(), s.RegistryAddr(), repository, gone, platforms, index.V2)

			if err := repo.Manifests().Delete(ctx, gone); err != nil {
				t.Fatal(err)
			}
			testsupport.WaitFor(t, 30*time.Second, "the deleted image's artifacts to go", func() (bool, error) {
				err := before.goneProblem(ctx, repo, s.Store())
				return err == nil, err
			})
		})
	}
}

// fetchJSONTest fetches desc from repo and decodes it into v.
func fetchJSONTest(ctx context.Context, repo content.Fetcher, desc ocispec.Descriptor, v any) error {
	body, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}
