package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	embeddednats "github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// testLayerSize keeps layers small; tests set the minimum layer size below it.
const testLayerSize = 512 << 10

// testConfig is an all-in-one configuration on free ports and a temporary
// data directory, with a minimum layer size that small test layers pass.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	var cfg config.Config
	fs := newFlagSet()
	loader := config.Register(fs, &cfg, func(string) (string, bool) { return "", false })
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := loader.Load(); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.MinLayerSize = 0
	cfg.SpanSize = 128 << 10
	cfg.AckWait = 5 * time.Second
	cfg.RetryBackoff = 200 * time.Millisecond
	cfg.RetryMax = time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.DockerConfig = filepath.Join(t.TempDir(), "none.json")
	return cfg
}

// testLogger logs to the test's output when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// uniqueName returns a name no other test run uses, for streams and
// databases on shared servers.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s_%d_%s", prefix, os.Getpid(), hex.EncodeToString(b))
}

// machineNATS returns the URL of the machine's NATS server, failing the test
// when it is not running (CI starts it: scripts/ensure-services).
func machineNATS(t *testing.T) string {
	t.Helper()
	const url = "nats://127.0.0.1:4222"
	conn, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
	if err != nil {
		t.Fatalf("NATS with JetStream is needed at %s (scripts/ensure-services starts it): %v", url, err)
	}
	conn.Close()
	return url
}

// useMachineNATS points cfg at the machine's NATS server with a stream of
// its own, deleted when the test ends.
func useMachineNATS(t *testing.T, cfg *config.Config) {
	t.Helper()
	cfg.NATSURL = machineNATS(t)
	name := uniqueName("SVC")
	cfg.Stream = name
	cfg.Subject = strings.ToLower(name)
	cfg.Consumer = "workers"
	t.Cleanup(func() {
		nc, err := nats.Connect(cfg.NATSURL)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
		_ = js.DeleteStream(ctx, name+"_DLQ")
	})
}

// newEmbeddedNATS starts a NATS server for one test.
func newEmbeddedNATS(t *testing.T) *embeddednats.Server {
	t.Helper()
	ns, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// newTestQueue opens the job queue of cfg on a connection of its own.
func newTestQueue(t *testing.T, cfg config.Config) (*queue.Queue, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.New(context.Background(), js, cfg.QueueConfig())
	if err != nil {
		t.Fatal(err)
	}
	return q, nc
}

// newSQLite opens a SQLite store in a temporary directory.
func newSQLite(t *testing.T) Store {
	t.Helper()
	return openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "indexer.db"))
}

// openStore opens the store dsn names until the test ends.
func openStore(t *testing.T, dsn string) Store {
	t.Helper()
	store, err := db.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// startRegistry starts a registry; notifyURL may be empty for none.
func startRegistry(t *testing.T, notifyURL, secret string) *embeddedregistry.Registry {
	t.Helper()
	opts := embeddedregistry.Options{}
	if notifyURL != "" {
		opts.Notifications = []embeddedregistry.Notification{{
			URL:              notifyURL,
			Headers:          map[string][]string{"Authorization": {"Bearer " + secret}},
			IgnoreMediaTypes: []string{"application/octet-stream"},
		}}
	}
	reg, err := embeddedregistry.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// plainRepos reaches every registry over plain HTTP.
// repositoryFunc builds the workers' repositories as `indexer serve` does.
func repositoryFunc(opts registryclient.Options) (RepositoryFunc, error) {
	c, err := registryclient.New(opts)
	if err != nil {
		return nil, err
	}
	return c.RepositoryOf, nil
}

func plainRepos(t *testing.T) RepositoryFunc {
	t.Helper()
	repos, err := repositoryFunc(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	return repos
}

var seedCounter atomic.Uint64

// pushImage pushes an image of the given layer sizes (fresh random
// content) to registry/repository:tag.
func pushImage(t *testing.T, registry, repository, tag string, layerSizes ...int64) ocispec.Descriptor {
	t.Helper()
	return pushImageSeeds(t, registry, repository, tag, newSeeds(len(layerSizes)), layerSizes)
}

// newSeeds returns n layer seeds no other call returns.
func newSeeds(n int) []uint64 {
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(time.Now().UnixNano()) + seedCounter.Add(1)
	}
	return seeds
}

// pushImageSeeds pushes an image whose layers are drawn from seeds: the
// same seeds give the same layers.
func pushImageSeeds(t *testing.T, registry, repository, tag string, seeds []uint64, layerSizes []int64) ocispec.Descriptor {
	t.Helper()
	repo, err := plainRepos(t)(context.Background(), registry, repository)
	if err != nil {
		t.Fatal(err)
	}
	var layers []demoimage.Layer
	for i, size := range layerSizes {
		l, err := demoimage.RandomLayer(seeds[i], size, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	desc, err := demoimage.Push(context.Background(), repo, tag, layers)
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
}

// waitJob waits until the job of an image has one of the given statuses.
func waitJob(t *testing.T, store Store, key db.JobKey, timeout time.Duration, statuses ...db.JobStatus) *db.Job {
	t.Helper()
	var job *db.Job
	waitFor(t, timeout, "job "+key.String()+" to be "+fmt.Sprint(statuses), func() (bool, error) {
		j, err := store.Get(context.Background(), key)
		if err != nil {
			return false, err
		}
		job = j
		for _, s := range statuses {
			if j.Status == s {
				return true, nil
			}
		}
		return false, fmt.Errorf("status %s (%s%s)", j.Status, j.LastError, j.SkipReason)
	})
	return job
}

// v1Indexes lists the v1 SOCI indexes referring to a manifest.
func v1Indexes(t *testing.T, registry, repository string, subject ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	repo, err := plainRepos(t)(context.Background(), registry, repository)
	if err != nil {
		t.Fatal(err)
	}
	var out []ocispec.Descriptor
	err = repo.Referrers(context.Background(), subject, index.SociIndexArtifactTypeV1, func(refs []ocispec.Descriptor) error {
		out = append(out, refs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// v2Index fetches the SOCI-enabled image index under tag and returns its
// SOCI index descriptors, or an error when the tag does not exist.
func v2Index(ctx context.Context, repo *remote.Repository, tag string) ([]ocispec.Descriptor, error) {
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		return nil, err
	}
	body, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if m.ArtifactType == index.SociIndexArtifactTypeV2 {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no soci index in " + tag)
	}
	return out, nil
}

func newFlagSet() *pflag.FlagSet { return pflag.NewFlagSet("test", pflag.ContinueOnError) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
