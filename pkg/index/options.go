package index

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// Defaults of the build options. Span size, minimum layer size and build
// tool identifier are soci's.
const (
	DefaultSpanSize            = ztoc.DefaultSpanSize
	DefaultMinLayerSize  int64 = 10 << 20
	DefaultV2TagTemplate       = "{tag}-soci"
	// DefaultBuilderVersion names the zTOC builder of this module. A zTOC
	// recorded with another builder version is never reused.
	DefaultBuilderVersion = "soci-indexer/ztoc-v1"
)

// BuildOption configures an IndexBuilder.
type BuildOption func(*buildConfig) error

type buildConfig struct {
	spanSize            int64
	minLayerSize        int64
	buildToolIdentifier string
	builderVersion      string
	platforms           []ocispec.Platform
	allPlatforms        bool
	optimizations       map[Optimization]bool
	artifactsDb         ArtifactsDb
	versions            IndexVersion
	v2TagTemplate       string
	layerConcurrency    int
	rangeFetch          rangeFetch
	progress            func(LayerProgress)
	locker              Locker
	logger              *slog.Logger
}

func defaultBuildConfig() buildConfig {
	return buildConfig{
		spanSize:            DefaultSpanSize,
		minLayerSize:        DefaultMinLayerSize,
		buildToolIdentifier: ztoc.DefaultBuildToolIdentifier,
		builderVersion:      DefaultBuilderVersion,
		optimizations:       map[Optimization]bool{},
		versions:            V1,
		v2TagTemplate:       DefaultV2TagTemplate,
		layerConcurrency:    max(2, runtime.GOMAXPROCS(0)),
		rangeFetch:          rangeFetch{min: DefaultRangeFetchMin, part: DefaultRangeFetchPart, conns: DefaultRangeFetchConns},
		logger:              slog.New(slog.DiscardHandler),
	}
}

// WithSpanSize sets the span size of the zTOCs (default 4 MiB). 0 is valid
// for gzip layers only.
func WithSpanSize(spanSize int64) BuildOption {
	return func(c *buildConfig) error {
		if spanSize < 0 {
			return fmt.Errorf("span size %d: must not be negative", spanSize)
		}
		c.spanSize = spanSize
		return nil
	}
}

// WithMinLayerSize sets the compressed size under which a layer gets no zTOC
// (default 10 MiB). A layer of exactly that size is indexed.
func WithMinLayerSize(minLayerSize int64) BuildOption {
	return func(c *buildConfig) error {
		if minLayerSize < 0 {
			return fmt.Errorf("min layer size %d: must not be negative", minLayerSize)
		}
		c.minLayerSize = minLayerSize
		return nil
	}
}

// WithBuildToolIdentifier sets the identifier written into zTOCs and into the
// index annotation (default soci's "AWS SOCI CLI v0.2").
func WithBuildToolIdentifier(id string) BuildOption {
	return func(c *buildConfig) error {
		c.buildToolIdentifier = id
		return nil
	}
}

// WithBuilderVersion sets the version recorded with built zTOCs; zTOCs are
// reused only when it matches.
func WithBuilderVersion(v string) BuildOption {
	return func(c *buildConfig) error {
		c.builderVersion = v
		return nil
	}
}

// WithPlatform adds a platform to index. It may be repeated. Without it,
// and without WithAllPlatforms, every platform of an image index is indexed.
// Platforms are matched after normalization, but p is kept as given: like
// soci convert, the SOCI index descriptor of a v2 image carries the platform
// it was built for (linux/arm64/v8 stays v8), which its digest depends on.
func WithPlatform(p ocispec.Platform) BuildOption {
	return func(c *buildConfig) error {
		for _, q := range c.platforms {
			if MatchPlatform(q, p) {
				return nil
			}
		}
		c.platforms = append(c.platforms, p)
		return nil
	}
}

// WithAllPlatforms indexes every platform of an image index except the
// unknown/unknown entries of attestations. It is the default.
func WithAllPlatforms() BuildOption {
	return func(c *buildConfig) error {
		c.allPlatforms = true
		return nil
	}
}

// WithOptimizations enables optimizations (see Optimization).
func WithOptimizations(opts ...Optimization) BuildOption {
	return func(c *buildConfig) error {
		for _, o := range opts {
			if _, err := ParseOptimization(string(o)); err != nil {
				return err
			}
			c.optimizations[o] = true
		}
		return nil
	}
}

// WithArtifactsDb records built artifacts in db and reuses the zTOCs it
// knows.
func WithArtifactsDb(db ArtifactsDb) BuildOption {
	return func(c *buildConfig) error {
		c.artifactsDb = db
		return nil
	}
}

// WithIndexVersion chooses the index versions to build: V1, V2 or Both
// (default V1, like soci's IndexBuilder.Build). V2 needs a tagged image; an
// image known only by digest gets a v1 index instead.
func WithIndexVersion(v IndexVersion) BuildOption {
	return func(c *buildConfig) error {
		if v == 0 || v&^Both != 0 {
			return fmt.Errorf("index version %d: want V1, V2 or Both", v)
		}
		c.versions = v
		return nil
	}
}

// WithV2TagTemplate sets the tag the v2 OCI index is pushed under; "{tag}"
// stands for the image's tag (default "{tag}-soci").
func WithV2TagTemplate(template string) BuildOption {
	return func(c *buildConfig) error {
		if !strings.Contains(template, "{tag}") {
			return errors.New("v2 tag template must contain {tag}")
		}
		c.v2TagTemplate = template
		return nil
	}
}

// WithLayerConcurrency bounds the layers processed at the same time
// (default GOMAXPROCS, at least 2).
func WithLayerConcurrency(n int) BuildOption {
	return func(c *buildConfig) error {
		if n < 1 {
			return fmt.Errorf("layer concurrency %d: must be at least 1", n)
		}
		c.layerConcurrency = n
		return nil
	}
}

// WithProgress reports the progress of every layer to fn. fn is called from
// several goroutines at once and must not block.
func WithProgress(fn func(LayerProgress)) BuildOption {
	return func(c *buildConfig) error {
		c.progress = fn
		return nil
	}
}

// WithLocker serialises the referrers update of each image through l. The
// default lock only covers the one IndexBuilder; builders in several
// goroutines or processes must share a Locker.
func WithLocker(l Locker) BuildOption {
	return func(c *buildConfig) error {
		c.locker = l
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) BuildOption {
	return func(c *buildConfig) error {
		if l != nil {
			c.logger = l
		}
		return nil
	}
}

// LayerState is the stage a layer is in.
type LayerState string

const (
	// LayerFetching: the layer is being streamed and its zTOC built.
	LayerFetching LayerState = "fetching"
	// LayerBuilt: the zTOC was built and pushed.
	LayerBuilt LayerState = "built"
	// LayerReused: a zTOC recorded in the artifacts DB was reused.
	LayerReused LayerState = "reused"
	// LayerSkipped: the layer gets no zTOC (small, zstd, ...).
	LayerSkipped LayerState = "skipped"
	// LayerFailed: building the zTOC failed.
	LayerFailed LayerState = "failed"
)

// LayerProgress is one progress report of a layer.
type LayerProgress struct {
	Platform  ocispec.Platform
	Layer     ocispec.Descriptor
	State     LayerState
	BytesRead int64 // compressed bytes read so far
	Total     int64 // the layer size
}
