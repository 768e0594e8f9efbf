// Package testsupport holds the helpers the indexing server's tests share:
// those of pkg/service (internal tests, package service) and those of
// internal/app, which assembles the server from pkg/service. It is for
// tests only.
//
// It must not import pkg/service or internal/app: pkg/service's internal
// tests import it, and a package that imported pkg/service would make an
// import cycle. What a helper would need from pkg/service it takes or
// returns as a plain type instead: a db.Store (service.Store is an alias of
// it) and a RepositoryFunc that is assignable to service.RepositoryFunc.
package testsupport

import (
	"bytes"
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
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"
	"oras.land/oras-go/v2"
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

// LayerSize keeps layers small; tests set the minimum layer size below it.
const LayerSize = 512 << 10

// DefaultConfig is the configuration `indexer serve` has with no flags and
// no environment.
func DefaultConfig(tb testing.TB) config.Config {
	tb.Helper()
	var cfg config.Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	loader := config.Register(fs, &cfg, func(string) (string, bool) { return "", false })
	if err := fs.Parse(nil); err != nil {
		tb.Fatal(err)
	}
	if err := loader.Load(); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// Config is an all-in-one configuration on free ports and a temporary
// data directory, with a minimum layer size that small test layers pass.
func Config(tb testing.TB) config.Config {
	tb.Helper()
	cfg := DefaultConfig(tb)
	cfg.DataDir = tb.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.MinLayerSize = 0
	cfg.SpanSize = 128 << 10
	cfg.AckWait = 5 * time.Second
	cfg.RetryBackoff = 200 * time.Millisecond
	cfg.RetryMax = time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.DockerConfig = filepath.Join(tb.TempDir(), "none.json")
	return cfg
}

// Logger logs to the test's output when -v is given.
func Logger(tb testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// UniqueName returns a name no other test run uses, for streams and
// databases on shared servers.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s_%d_%s", prefix, os.Getpid(), hex.EncodeToString(b))
}

// MachineNATS returns the URL of the machine's NATS server, failing the test
// when it is not running (CI starts it: scripts/ensure-services).
func MachineNATS(tb testing.TB) string {
	tb.Helper()
	const url = "nats://127.0.0.1:4222"
	conn, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
	if err != nil {
		tb.Fatalf("NATS with JetStream is needed at %s (scripts/ensure-services starts it): %v", url, err)
	}
	conn.Close()
	return url
}

// DeleteStreams deletes streams a test made on the NATS server at url. Any
// error but a stream that is not there fails the test.
func DeleteStreams(tb testing.TB, url string, names ...string) {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Errorf("delete streams: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Errorf("delete streams: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range names {
		if err := js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			tb.Errorf("delete stream %s: %v", n, err)
		}
	}
}

// UseMachineNATS points cfg at the machine's NATS server with a stream of
// its own, deleted when the test ends.
func UseMachineNATS(tb testing.TB, cfg *config.Config) {
	tb.Helper()
	cfg.NATSURL = MachineNATS(tb)
	name := UniqueName("SVC")
	cfg.Stream = name
	cfg.Subject = strings.ToLower(name)
	cfg.Consumer = "workers"
	tb.Cleanup(func() { DeleteStreams(tb, cfg.NATSURL, name, name+"_DLQ") })
}

// NewEmbeddedNATS starts a NATS server for one test.
func NewEmbeddedNATS(tb testing.TB) *embeddednats.Server {
	tb.Helper()
	ns, err := embeddednats.Start(embeddednats.Options{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// NewQueue opens the job queue of cfg on a connection of its own.
func NewQueue(tb testing.TB, cfg config.Config) (*queue.Queue, *nats.Conn) {
	tb.Helper()
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := queue.New(context.Background(), js, cfg.QueueConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return q, nc
}

// NewSQLite opens a SQLite store in a temporary directory.
func NewSQLite(tb testing.TB) db.Store {
	tb.Helper()
	return OpenStore(tb, "sqlite://"+filepath.Join(tb.TempDir(), "indexer.db"))
}

// OpenStore opens the store dsn names until the test ends.
func OpenStore(tb testing.TB, dsn string) db.Store {
	tb.Helper()
	store, err := db.Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return store
}

// StartRegistry starts a registry; notifyURL may be empty for none.
func StartRegistry(tb testing.TB, notifyURL, secret string) *embeddedregistry.Registry {
	tb.Helper()
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
		tb.Fatal(err)
	}
	tb.Cleanup(func() { reg.Close() })
	return reg
}

// RepositoryFunc returns a client for one repository of a registry. It is
// an alias of an unnamed type, so a value of it is assignable to
// service.RepositoryFunc.
type RepositoryFunc = func(ctx context.Context, registry, repository string) (*remote.Repository, error)

// Repositories builds the workers' repositories as `indexer serve` does.
func Repositories(opts registryclient.Options) (RepositoryFunc, error) {
	c, err := registryclient.New(opts)
	if err != nil {
		return nil, err
	}
	return c.RepositoryOf, nil
}

// PlainRepos reaches every registry over plain HTTP.
func PlainRepos(tb testing.TB) RepositoryFunc {
	tb.Helper()
	repos, err := Repositories(registryclient.Options{NoDockerConfig: true, ReferrersGC: true, PlainHTTPHost: func(string) bool { return true }})
	if err != nil {
		tb.Fatal(err)
	}
	return repos
}

var seedCounter atomic.Uint64

// PushImage pushes an image of the given layer sizes (fresh random
// content) to registry/repository:tag.
func PushImage(tb testing.TB, registry, repository, tag string, layerSizes ...int64) ocispec.Descriptor {
	tb.Helper()
	return PushImageSeeds(tb, registry, repository, tag, NewSeeds(len(layerSizes)), layerSizes)
}

// NewSeeds returns n layer seeds no other call returns.
func NewSeeds(n int) []uint64 {
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(time.Now().UnixNano()) + seedCounter.Add(1)
	}
	return seeds
}

// PushImageSeeds pushes an image whose layers are drawn from seeds: the
// same seeds give the same layers.
func PushImageSeeds(tb testing.TB, registry, repository, tag string, seeds []uint64, layerSizes []int64) ocispec.Descriptor {
	tb.Helper()
	repo, err := PlainRepos(tb)(context.Background(), registry, repository)
	if err != nil {
		tb.Fatal(err)
	}
	var layers []demoimage.Layer
	for i, size := range layerSizes {
		l, err := demoimage.RandomLayer(seeds[i], size, tb.TempDir())
		if err != nil {
			tb.Fatal(err)
		}
		layers = append(layers, l)
	}
	desc, err := demoimage.Push(context.Background(), repo, tag, layers)
	if err != nil {
		tb.Fatal(err)
	}
	return desc
}

// PushCorruptImage pushes an image whose only layer claims to be gzip but
// is not.
func PushCorruptImage(tb testing.TB, registry, repository, tag string) ocispec.Descriptor {
	tb.Helper()
	ctx := context.Background()
	repo, err := PlainRepos(tb)(ctx, registry, repository)
	if err != nil {
		tb.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("this is not gzip "), 64<<10)
	layer := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, garbage)
	if err := repo.Push(ctx, layer, bytes.NewReader(garbage)); err != nil {
		tb.Fatal(err)
	}
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	configDesc, err := oras.PushBytes(ctx, repo, ocispec.MediaTypeImageConfig, config)
	if err != nil {
		tb.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: configDesc, Layers: []ocispec.Descriptor{layer}}
	body, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	desc, err := oras.TagBytes(ctx, repo, ocispec.MediaTypeImageManifest, body, tag)
	if err != nil {
		tb.Fatal(err)
	}
	return desc
}

// PushTruncatedGzipImage pushes an image whose one layer is a valid gzip
// stream cut in the middle (demoimage.TruncatedLayer): the registry holds
// every byte its descriptor names, and the content is still corrupt.
func PushTruncatedGzipImage(tb testing.TB, registry, repository, tag string) ocispec.Descriptor {
	tb.Helper()
	repo, err := PlainRepos(tb)(context.Background(), registry, repository)
	if err != nil {
		tb.Fatal(err)
	}
	layer, err := demoimage.TruncatedLayer(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	desc, err := demoimage.Push(context.Background(), repo, tag, []demoimage.Layer{layer})
	if err != nil {
		tb.Fatal(err)
	}
	return desc
}

// PushJob is the queue job a registry's push event of desc makes.
func PushJob(registry, repository, tag string, desc ocispec.Descriptor) queue.Job {
	return queue.Job{Source: "test", Registry: registry, Repository: repository, Digest: desc.Digest.String(),
		Tag: tag, MediaType: desc.MediaType, Action: queue.ActionPush, ReceivedAt: time.Now()}
}

// WorkerBuild is what the test workers build with: spans of spanSize, no
// minimum layer size, and the options identity that names them (see
// service.WithBuildOptions and service.WithOptionsIdentity).
func WorkerBuild(spanSize int64) (opts []index.BuildOption, identity string) {
	return []index.BuildOption{index.WithSpanSize(spanSize), index.WithMinLayerSize(0)},
		"span=" + digest.FromString(string(rune(spanSize))).Encoded()[:8]
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	tb.Helper()
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
	tb.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
}

// JobGetter reads job records: a db.Store (and so a service.Store).
type JobGetter interface {
	Get(ctx context.Context, key db.JobKey) (*db.Job, error)
}

// WaitJob waits until the job of an image has one of the given statuses.
func WaitJob(tb testing.TB, store JobGetter, key db.JobKey, timeout time.Duration, statuses ...db.JobStatus) *db.Job {
	tb.Helper()
	var job *db.Job
	WaitFor(tb, timeout, "job "+key.String()+" to be "+fmt.Sprint(statuses), func() (bool, error) {
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

// V1Indexes lists the v1 SOCI indexes referring to a manifest.
func V1Indexes(tb testing.TB, registry, repository string, subject ocispec.Descriptor) []ocispec.Descriptor {
	tb.Helper()
	repo, err := PlainRepos(tb)(context.Background(), registry, repository)
	if err != nil {
		tb.Fatal(err)
	}
	var out []ocispec.Descriptor
	err = repo.Referrers(context.Background(), subject, index.SociIndexArtifactTypeV1, func(refs []ocispec.Descriptor) error {
		out = append(out, refs...)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// V2Index fetches the SOCI-enabled image index under tag and returns its
// SOCI index descriptors, or an error when the tag does not exist.
func V2Index(ctx context.Context, repo *remote.Repository, tag string) ([]ocispec.Descriptor, error) {
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

// ZTOCs returns the zTOC descriptors of an index, in layer order.
func ZTOCs(tb testing.TB, repo content.Fetcher, idx ocispec.Descriptor) []ocispec.Descriptor {
	tb.Helper()
	body, err := content.FetchAll(context.Background(), repo, idx)
	if err != nil {
		tb.Fatal(err)
	}
	var i index.Index
	if err := index.UnmarshalIndex(body, &i); err != nil {
		tb.Fatal(err)
	}
	return i.Blobs
}
