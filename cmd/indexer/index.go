package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// registryFlags are the settings that say how to reach a registry, under
// serve's names (internal/config): --plain-http, --plain-http-registry,
// --registry-ca-file, --registry-auth HOST=USER:PASSWORD, --docker-config.
type registryFlags struct {
	cfg    config.Config
	loader *config.Loader
}

// registrySettings are the flags of registryFlags.
var registrySettings = []string{config.FlagPlainHTTP, "plain-http-registry", config.FlagRegistryCAFile,
	config.FlagRegistryAuth, config.FlagDockerConfig}

func (f *registryFlags) register(cmd *cobra.Command, more ...string) {
	f.loader = config.RegisterOnly(cmd.Flags(), &f.cfg, os.LookupEnv, false, append(more, registrySettings...)...)
}

// load resolves the settings from the environment once flags are parsed.
func (f *registryFlags) load() error {
	if err := f.loader.Resolve(); err != nil {
		return err
	}
	_, err := f.cfg.Credentials()
	return err
}

func newIndexCmd() *cobra.Command {
	var (
		reg           registryFlags
		platforms     []string
		allPlatforms  bool
		optimizations []string
		asJSON        bool
	)
	cmd := &cobra.Command{
		Use:   "index REF",
		Short: "Build the SOCI indexes of an image in a registry",
		Long: `Build the SOCI indexes of an image and push them to its repository.

REF is host[:port]/name:tag, host[:port]/name@digest or host[:port]/name:tag@digest.
v1 indexes are attached to each platform manifest as referrers. v2 indexes
(the default: what soci-snapshotter reads by default) are published as a new
OCI index tagged after the image's tag ("{tag}-soci"); an image given only by
digest gets v1 indexes instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := reg.load(); err != nil {
				return err
			}
			c := reg.cfg
			v, err := index.ParseIndexVersion(c.IndexVersion)
			if err != nil {
				return fmt.Errorf("--index-version: %w", err)
			}
			if err := ztoc.CheckSpanSize(c.SpanSize); err != nil {
				return fmt.Errorf("--span-size: %w", err)
			}
			if c.MinLayerSize < 0 {
				return fmt.Errorf("--min-layer-size %d: want >= 0", c.MinLayerSize)
			}
			tagTemplate := c.V2TagTemplate
			if tagTemplate == "" {
				tagTemplate = index.DefaultV2TagTemplate
			}
			opts := []index.BuildOption{
				index.WithIndexVersion(v),
				index.WithSpanSize(c.SpanSize),
				index.WithMinLayerSize(c.MinLayerSize),
				index.WithV2TagTemplate(tagTemplate),
				index.WithLogger(slog.Default()),
			}
			if cmd.Flags().Changed(config.FlagLayerConc) || c.LayerConcurrency != 2 {
				if c.LayerConcurrency < 1 {
					return fmt.Errorf("--layer-concurrency %d: want at least 1", c.LayerConcurrency)
				}
				opts = append(opts, index.WithLayerConcurrency(c.LayerConcurrency))
			}
			if c.RangeFetchConns < 1 {
				return fmt.Errorf("--%s %d: want at least 1 (1: one ordinary GET)", config.FlagRangeFetch, c.RangeFetchConns)
			}
			opts = append(opts, index.WithRangeFetch(index.DefaultRangeFetchMin, index.DefaultRangeFetchPart, c.RangeFetchConns))
			var wanted []ocispec.Platform
			for _, p := range platforms {
				spec, err := index.ParsePlatform(p)
				if err != nil {
					return err
				}
				wanted = append(wanted, spec)
				opts = append(opts, index.WithPlatform(spec))
			}
			if allPlatforms {
				opts = append(opts, index.WithAllPlatforms())
			}
			for _, o := range optimizations {
				opt, err := index.ParseOptimization(o)
				if err != nil {
					return err
				}
				opts = append(opts, index.WithOptimizations(opt))
			}
			stderr := cmd.ErrOrStderr()
			if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				opts = append(opts, index.WithProgress(newProgressPrinter(stderr).report))
			}
			if dsn := c.DatabaseURL; dsn != "" {
				// The database records what is built, lends its zTOCs for
				// reuse and serialises referrers updates with the service.
				store, err := db.Open(cmd.Context(), dsn, db.WithLogger(slog.Default()))
				if err != nil {
					return err
				}
				defer store.Close()
				opts = append(opts, index.WithArtifactsDb(store), index.WithLocker(store))
			}
			return runIndex(cmd.Context(), cmd.OutOrStdout(), &reg, args[0], opts, wanted, asJSON)
		},
	}
	reg.register(cmd, config.FlagDatabaseURL, config.FlagIndexVersion, config.FlagV2TagTemplate,
		config.FlagSpanSize, config.FlagMinLayerSize, config.FlagLayerConc, config.FlagRangeFetch)
	fl := cmd.Flags()
	fl.StringArrayVar(&platforms, "platform", nil, "platform to index, os/arch[/variant] (repeatable; default: all)")
	fl.BoolVar(&allPlatforms, "all-platforms", false, "index every platform (the default)")
	fl.StringSliceVar(&optimizations, "optimizations", nil, "optimizations to enable: xattr")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(newIndexLsCmd())
	return cmd
}

func runIndex(ctx context.Context, out io.Writer, reg *registryFlags, reference string, opts []index.BuildOption,
	wanted []ocispec.Platform, asJSON bool) error {
	ref, err := registryclient.ParseImageReference(reference)
	if err != nil {
		return err
	}
	repo, err := reg.openRepository(ref)
	if err != nil {
		return err
	}
	b, err := index.NewIndexBuilder(repo, opts...)
	if err != nil {
		return err
	}
	if len(wanted) > 0 {
		if err := checkSinglePlatform(ctx, b, repo, ref.Reference(), wanted, reference); err != nil {
			return err
		}
	}
	results, err := b.Build(ctx, ref.Reference())
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(out, buildReport(results))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tPLATFORM\tSOCI INDEX\tMANIFEST\tZTOCS\tTAG")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Version, index.FormatPlatform(r.Platform), r.Desc.Digest,
			r.ManifestDesc.Digest, layerSummary(r.Layers), dash(r.Tag))
	}
	return tw.Flush()
}

// checkSinglePlatform refuses --platform on a single-platform image whose
// config names none of the wanted platforms: the builder indexes such an
// image whatever --platform says. (On an image index the builder refuses
// a platform it does not list.)
func checkSinglePlatform(ctx context.Context, b *index.IndexBuilder, repo index.Repository, reference string, wanted []ocispec.Platform, imageRef string) error {
	img, err := b.ResolveImage(ctx, reference)
	if err != nil {
		return err
	}
	desc := img.Descriptor
	if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		return nil
	}
	have := desc.Platform
	if have == nil {
		raw, err := content.FetchAll(ctx, repo, desc)
		if err != nil {
			return err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		raw, err = content.FetchAll(ctx, repo, m.Config)
		if err != nil {
			return err
		}
		var cfg ocispec.Image
		if json.Unmarshal(raw, &cfg) != nil || cfg.OS == "" {
			return nil // no platform to compare with
		}
		have = &cfg.Platform
	}
	var names []string
	for _, w := range wanted {
		if index.MatchPlatform(w, *have) {
			return nil
		}
		names = append(names, index.FormatPlatform(w))
	}
	return fmt.Errorf("%w: --platform %s matches nothing in %s, a single-platform image for %s", index.ErrPlatformNotFound, strings.Join(names, ", "), imageRef, index.FormatPlatform(*have))
}

// openRepository opens the repository of an image reference.
func (f *registryFlags) openRepository(ref registryclient.ImageReference) (index.Repository, error) {
	opts, err := f.cfg.RegistryClientOptions()
	if err != nil {
		return nil, err
	}
	client, err := registryclient.New(opts)
	if err != nil {
		return nil, err
	}
	return client.Repository(ref.RepositoryName())
}

func newIndexLsCmd() *cobra.Command {
	var (
		reg    registryFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "ls REF",
		Short: "List the SOCI indexes of an image",
		Long: `List the SOCI indexes of an image: v1 indexes among the referrers of each
platform manifest, v2 indexes named by the manifests' annotations. For a tagged
image, the v2 image under "{tag}-soci" is looked at too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := reg.load(); err != nil {
				return err
			}
			return runIndexLs(cmd.Context(), cmd.OutOrStdout(), &reg, args[0], asJSON)
		},
	}
	reg.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func runIndexLs(ctx context.Context, out io.Writer, reg *registryFlags, reference string, asJSON bool) error {
	ref, err := registryclient.ParseImageReference(reference)
	if err != nil {
		return err
	}
	repo, err := reg.openRepository(ref)
	if err != nil {
		return err
	}
	b, err := index.NewIndexBuilder(repo)
	if err != nil {
		return err
	}
	img, err := b.ResolveImage(ctx, ref.Reference())
	if err != nil {
		return err
	}
	infos, err := b.GetIndexDescriptorCollection(ctx, img.Descriptor)
	if err != nil {
		return err
	}
	if img.Tag != "" {
		v2, err := repo.Resolve(ctx, b.V2Tag(img.Tag))
		switch {
		case errors.Is(err, errdef.ErrNotFound):
		case err != nil:
			return err
		default:
			more, err := b.GetIndexDescriptorCollection(ctx, v2)
			if err != nil {
				return err
			}
			infos = append(infos, more...)
		}
	}
	if asJSON {
		list := make([]indexListing, 0, len(infos))
		for _, i := range infos {
			list = append(list, indexListing{Version: i.Version.String(), Platform: index.FormatPlatform(i.Platform),
				Digest: i.Digest.String(), Size: i.Size, Manifest: i.Manifest.String()})
		}
		return writeJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tPLATFORM\tSOCI INDEX\tSIZE\tMANIFEST")
	for _, i := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", i.Version, index.FormatPlatform(i.Platform), i.Digest, i.Size, i.Manifest)
	}
	return tw.Flush()
}

// indexListing is one line of "index ls --json".
type indexListing struct {
	Version  string `json:"version"`
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Manifest string `json:"manifest"`
}

// builtIndex is one entry of "index --json".
type builtIndex struct {
	Version  string       `json:"version"`
	Platform string       `json:"platform"`
	Digest   string       `json:"digest"`
	Size     int64        `json:"size"`
	Manifest string       `json:"manifest"`
	Image    string       `json:"image"`
	Tag      string       `json:"tag,omitempty"`
	Layers   []builtLayer `json:"layers"`
}

type builtLayer struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	State     string `json:"state"`
	Ztoc      string `json:"ztoc,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func buildReport(results []index.IndexWithMetadata) []builtIndex {
	out := make([]builtIndex, 0, len(results))
	for _, r := range results {
		bi := builtIndex{
			Version: r.Version.String(), Platform: index.FormatPlatform(r.Platform),
			Digest: r.Desc.Digest.String(), Size: r.Desc.Size,
			Manifest: r.ManifestDesc.Digest.String(), Image: r.ImageDesc.Digest.String(), Tag: r.Tag,
		}
		for _, l := range r.Layers {
			bl := builtLayer{Digest: l.Layer.Digest.String(), MediaType: l.Layer.MediaType, Size: l.Layer.Size,
				State: string(l.State), Reason: l.Reason}
			if l.Ztoc != nil {
				bl.Ztoc = l.Ztoc.Digest.String()
			}
			bi.Layers = append(bi.Layers, bl)
		}
		out = append(out, bi)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// layerSummary counts layers by outcome, e.g. "2 built, 1 skipped".
func layerSummary(layers []index.LayerResult) string {
	counts := map[index.LayerState]int{}
	for _, l := range layers {
		counts[l.State]++
	}
	var parts []string
	for _, s := range []index.LayerState{index.LayerBuilt, index.LayerReused, index.LayerSkipped} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// progressPrinter writes one line when a layer starts, at every quarter of
// its bytes, and when it ends.
type progressPrinter struct {
	mu      sync.Mutex
	w       io.Writer
	quarter map[string]int64
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, quarter: map[string]int64{}}
}

func (p *progressPrinter) report(lp index.LayerProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := lp.Layer.Digest.Encoded()
	if len(id) > 12 {
		id = id[:12]
	}
	key := lp.Layer.Digest.String()
	switch lp.State {
	case index.LayerFetching:
		q := int64(0)
		if lp.Total > 0 {
			q = lp.BytesRead * 4 / lp.Total
		}
		if prev, seen := p.quarter[key]; seen && q <= prev {
			return
		}
		p.quarter[key] = q
		fmt.Fprintf(p.w, "%s %-12s %s %3d%% of %s\n", id, platformOf(lp), lp.State, q*25, humanBytes(lp.Total))
	default:
		fmt.Fprintf(p.w, "%s %-12s %s\n", id, platformOf(lp), lp.State)
	}
}

func platformOf(lp index.LayerProgress) string {
	if lp.Platform.OS == "" {
		return ""
	}
	return index.FormatPlatform(lp.Platform)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
