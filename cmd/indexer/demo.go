package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Helpers to try the service",
	}
	cmd.AddCommand(newDemoPushCmd())
	return cmd
}

func newDemoPushCmd() *cobra.Command {
	var (
		from      []string
		layers    int
		layerSize int64
		maxBytes  int64
		plainHTTP bool
	)
	cmd := &cobra.Command{
		Use:   "push REGISTRY/REPOSITORY:TAG",
		Short: "Build a small multi-layer image and push it",
		Long: `push builds an image and pushes it with oras-go: one layer per --from
directory (its files, up to --max-layer-bytes), or, without --from, --layers
layers of generated data of --layer-size bytes each: big enough for a zTOC
(the default minimum layer size is 10 MiB). Loopback registries are reached
over plain HTTP.`,
		Example: `  indexer demo push 127.0.0.1:5000/demo/app:v1
  indexer demo push 127.0.0.1:5000/demo/docs:v1 --from /usr/share/doc --from /usr/share/locale`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateDemoSizes(cmd, len(from) > 0, layers, layerSize, maxBytes); err != nil {
				return err
			}
			ref, err := registry.ParseReference(args[0])
			if err != nil {
				return err
			}
			if ref.Reference == "" || strings.HasPrefix(ref.Reference, "sha256:") {
				return fmt.Errorf("%s: want REGISTRY/REPOSITORY:TAG", args[0])
			}
			client, err := registryclient.New(registryclient.Options{
				PlainHTTP: plainHTTP,
			})
			if err != nil {
				return err
			}
			repo, err := client.Repository(ref.Registry + "/" + ref.Repository)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var built []demoimage.Layer
			defer func() {
				for _, l := range built {
					_ = l.Remove()
				}
			}()
			if len(from) > 0 {
				for _, dir := range from {
					l, err := demoimage.LayerFromDir(ctx, dir, maxBytes, "")
					if err != nil {
						return err
					}
					built = append(built, l)
				}
			} else {
				for i := range layers {
					l, err := demoimage.RandomLayer(uint64(i+1), layerSize, "")
					if err != nil {
						return err
					}
					built = append(built, l)
				}
			}
			desc, err := demoimage.Push(ctx, repo, ref.Reference, built)
			if err != nil {
				return err
			}
			for _, l := range built {
				fmt.Fprintf(cmd.OutOrStdout(), "layer %s %d bytes\n", l.Descriptor.Digest, l.Descriptor.Size)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s@%s\n", args[0], desc.Digest)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&from, "from", nil, "directory whose files make one layer (repeatable)")
	cmd.Flags().IntVar(&layers, "layers", 2, "number of generated layers (without --from)")
	cmd.Flags().Int64Var(&layerSize, "layer-size", 12<<20, "bytes per generated layer")
	cmd.Flags().Int64Var(&maxBytes, "max-layer-bytes", 64<<20, "file bytes per --from layer, at most")
	cmd.Flags().BoolVar(&plainHTTP, "plain-http", false, "use plain HTTP (automatic for a loopback registry that speaks it)")
	return cmd
}

// Bounds of a generated demo image: at least one layer of at least one
// byte, and no more than a demo needs.
const (
	maxDemoLayers    = 128
	maxDemoLayerSize = 16 << 30
)

// validateDemoSizes refuses sizes that make no image, or no sense: a zero
// or negative count or size, or generator sizes given with --from.
func validateDemoSizes(cmd *cobra.Command, fromDirs bool, layers int, layerSize, maxBytes int64) error {
	switch {
	case fromDirs && (cmd.Flags().Changed("layers") || cmd.Flags().Changed("layer-size")):
		return fmt.Errorf("--layers and --layer-size size generated layers; with --from each directory is one layer (bound it with --max-layer-bytes)")
	case fromDirs && maxBytes < 1:
		return fmt.Errorf("--max-layer-bytes %d: want at least 1 byte", maxBytes)
	case !fromDirs && (layers < 1 || layers > maxDemoLayers):
		return fmt.Errorf("--layers %d: want 1 to %d layers", layers, maxDemoLayers)
	case !fromDirs && (layerSize < 1 || layerSize > maxDemoLayerSize):
		return fmt.Errorf("--layer-size %d: want 1 byte to %d bytes (16 GiB)", layerSize, int64(maxDemoLayerSize))
	}
	return nil
}
