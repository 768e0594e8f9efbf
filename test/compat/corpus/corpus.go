// Package corpus generates the layer blobs of the SOCI compatibility suite
// (docs/format.md section 10.A) at test time: tar archives written by Go's
// archive/tar, by GNU tar and from real files of the machine, compressed by
// Go's compress/gzip, gzip, pigz and by hand, plus damaged layers that every
// builder must refuse.
package corpus

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Compression algorithm names, as soci's ztoc.WithCompression takes them.
const (
	Gzip         = "gzip"
	Uncompressed = "uncompressed"
	// Unknown is what containerd reports for Docker diff.tar layers; soci
	// treats it as uncompressed.
	Unknown = "unknown"
)

// Layer is one generated layer blob.
type Layer struct {
	// Name identifies the layer: "<archive>/<compression variant>".
	Name string
	// Path is the layer blob.
	Path string
	// TarPath is the uncompressed archive the blob was made from: the
	// source of truth for file contents.
	TarPath string
	// Compression is the algorithm to pass to soci (Gzip, Uncompressed or
	// Unknown).
	Compression string
	// Refused marks damaged or unsupported layers: every builder must fail.
	Refused bool
	// ManyEntries marks the layer with more than 100k entries, where tests
	// sample files instead of extracting each one separately.
	ManyEntries bool
	// SkipReason is set when a system tool needed to make the layer is not
	// installed; Path is then empty.
	SkipReason string
}

// archiveSpec describes one uncompressed tar of the corpus.
type archiveSpec struct {
	name  string
	write func(ctx context.Context, dir, path string) error
	tools []string
}

// variantSpec describes one way of turning an archive into a layer blob.
type variantSpec struct {
	archive     string
	name        string
	compress    compressor
	compression string
	refused     bool
	tools       []string
	// damagedFrom names an earlier variant of the same archive whose blob
	// is copied through damage instead of compressing the archive again.
	damagedFrom string
	damage      func([]byte) []byte
}

// ManySmallFiles is the entry count of the metadata-heavy layer.
const ManySmallFiles = 100_500

func archives() []archiveSpec {
	return []archiveSpec{
		{name: "features", write: writeArchive(func(src *dataSource) []tarEntry { return featureEntries(src) })},
		{name: "many-small", write: writeArchive(func(src *dataSource) []tarEntry {
			return manySmallEntries(src, ManySmallFiles)
		})},
		{name: "global-header", write: writeArchive(globalHeaderEntries)},
		{name: "v7-typeflags", write: writeWith(writeRegATar)},
		{name: "no-eof-blocks", write: writeWith(writeNoEOFTar)},
		{name: "gnu-tar", tools: []string{"tar"}, write: func(ctx context.Context, dir, path string) error {
			return writeGNUTreeTar(ctx, filepath.Join(dir, "gnu-tree"), path, newDataSource(7))
		}},
		{name: "usr-doc", write: writeTree("/usr/share/doc", 6<<20)},
		{name: "usr-lib", write: writeTree("/usr/lib/x86_64-linux-gnu", 8<<20)},
	}
}

func variants() []variantSpec {
	gz := func(archive, name string, c compressor, tools ...string) variantSpec {
		return variantSpec{archive: archive, name: name, compress: c, compression: Gzip, tools: tools}
	}
	plain := func(archive, name, compression string) variantSpec {
		return variantSpec{archive: archive, name: name, compress: copyFile, compression: compression}
	}
	refuse := func(v variantSpec) variantSpec {
		v.refused = true
		return v
	}
	damagedGzip := func(name string, edit func([]byte) []byte) variantSpec {
		return variantSpec{archive: "features", name: name, compression: Gzip, refused: true,
			damagedFrom: "go-default", damage: edit}
	}
	goDefault := goGzip(gzip.DefaultCompression, gzip.Header{})
	return []variantSpec{
		gz("features", "go-best-speed", goGzip(gzip.BestSpeed, gzip.Header{})),
		gz("features", "go-default", goDefault),
		gz("features", "go-stored", goGzip(gzip.NoCompression, gzip.Header{})),
		// The level does not matter for the header and member layouts below;
		// BestSpeed keeps corpus generation fast.
		gz("features", "go-header-extras", goGzip(gzip.BestSpeed, headerWithExtras())),
		gz("features", "handmade-fhcrc", handmadeFHCRC),
		gz("features", "gzip-n", external("gzip", "-n", "-c"), "gzip"),
		gz("features", "gzip-fname", external("gzip", "-c"), "gzip"),
		gz("features", "gzip-9", external("gzip", "-9", "-n", "-c"), "gzip"),
		gz("features", "pigz", external("pigz", "-n", "-c"), "pigz"),
		gz("features", "pigz-independent", external("pigz", "-n", "-i", "-b", "128", "-c"), "pigz"),
		gz("features", "members-3", members(gzip.DefaultCompression, 0.31, 0.77)),
		gz("features", "members-empty-first", members(gzip.BestSpeed, 0, 0.5)),
		gz("features", "members-empty-middle", members(gzip.BestSpeed, 0.4, 0.4)),
		gz("features", "flush-before-data", goGzipFlushEvery(0)),
		gz("features", "flush-every-100k", goGzipFlushEvery(100_000)),
		plain("features", "oci-tar", Uncompressed),
		gz("many-small", "go-default", goDefault),
		gz("v7-typeflags", "go-default", goDefault),
		gz("no-eof-blocks", "go-default", goDefault),
		plain("no-eof-blocks", "oci-tar", Uncompressed),
		gz("gnu-tar", "gzip-fname", external("gzip", "-c"), "gzip"),
		plain("gnu-tar", "oci-tar", Uncompressed),
		gz("usr-doc", "go-default", goDefault),
		plain("usr-doc", "docker-diff-tar", Unknown),
		gz("usr-lib", "gzip-6", external("gzip", "-6", "-n", "-c"), "gzip"),
		gz("usr-lib", "pigz-independent", external("pigz", "-n", "-i", "-c"), "pigz"),

		refuse(gz("global-header", "go-default", goDefault)),
		refuse(plain("global-header", "oci-tar", Uncompressed)),
		damagedGzip("trailing-zeros", appendBytes(make([]byte, 1024))),
		damagedGzip("trailing-garbage", appendBytes([]byte("not a gzip member\n"))),
		damagedGzip("truncated-half", truncateTo(0.5)),
		damagedGzip("truncated-trailer", dropLast(4)),
		damagedGzip("bad-crc32", flipTrailerByte(0)),
		damagedGzip("bad-isize", flipTrailerByte(5)),
		{archive: "features", name: "tar-truncated", compression: Uncompressed, refused: true,
			damagedFrom: "oci-tar", damage: truncateTo(0.5)},
	}
}

// Generate writes every corpus layer under dir and returns them in a fixed
// order. Layers that need a missing system tool are returned with
// SkipReason set.
func Generate(ctx context.Context, dir string) ([]Layer, error) {
	tarPaths := make(map[string]string)
	missing := make(map[string]string) // archive name -> reason
	for _, a := range archives() {
		if reason := missingTools(a.tools); reason != "" {
			missing[a.name] = reason
			continue
		}
		path := filepath.Join(dir, a.name+".tar")
		if err := a.write(ctx, dir, path); err != nil {
			return nil, fmt.Errorf("archive %s: %w", a.name, err)
		}
		tarPaths[a.name] = path
	}

	var layers []Layer
	for _, v := range variants() {
		layer := Layer{
			Name:        v.archive + "/" + v.name,
			TarPath:     tarPaths[v.archive],
			Compression: v.compression,
			Refused:     v.refused,
			ManyEntries: v.archive == "many-small",
		}
		if reason := missing[v.archive]; reason != "" {
			layer.SkipReason = reason
		} else if reason := missingTools(v.tools); reason != "" {
			layer.SkipReason = reason
		}
		if layer.SkipReason == "" {
			layer.Path = layerPath(dir, v.archive, v.name)
			var err error
			if v.damagedFrom != "" {
				err = damage(layer.Path, layerPath(dir, v.archive, v.damagedFrom), v.damage)
			} else {
				err = v.compress(ctx, layer.Path, layer.TarPath)
			}
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", layer.Name, err)
			}
		}
		layers = append(layers, layer)
	}
	return layers, nil
}

func layerPath(dir, archive, variant string) string {
	return filepath.Join(dir, archive+"."+variant+".layer")
}

func missingTools(tools []string) string {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	return ""
}

func writeArchive(entries func(*dataSource) []tarEntry) func(context.Context, string, string) error {
	return writeWith(func(w io.Writer, src *dataSource) error { return writeEntries(w, entries(src)) })
}

// writeWith runs write into a new file with a fresh, fixed-seed data source.
func writeWith(write func(io.Writer, *dataSource) error) func(context.Context, string, string) error {
	return func(_ context.Context, _, path string) (err error) {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create archive: %w", err)
		}
		defer func() { err = errors.Join(err, f.Close()) }()
		return write(f, newDataSource(42))
	}
}

func writeTree(root string, limit int64) func(context.Context, string, string) error {
	return func(ctx context.Context, _, path string) (err error) {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create archive: %w", err)
		}
		defer func() { err = errors.Join(err, f.Close()) }()
		if _, err := WriteTreeTar(ctx, f, []string{root}, limit); err != nil {
			return err
		}
		return nil
	}
}
