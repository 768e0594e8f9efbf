package index

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

// BenchmarkBuildVsDownload compares, in one run, building the SOCI index of
// an image of about 300 MB of gzip layers made from /usr files with only
// downloading its layers from the same embedded registry. Both use the
// same layer concurrency. SOCI_BENCH_IMAGE_MB changes the image size.
//
//	go test ./pkg/index -run '^$' -bench BuildVsDownload -benchtime 3x
func BenchmarkBuildVsDownload(b *testing.B) {
	ctx := context.Background()
	imageMB := 300
	if s := os.Getenv("SOCI_BENCH_IMAGE_MB"); s != "" {
		imageMB, _ = strconv.Atoi(s)
	}
	const layerCount = 5
	reg := startRegistry(b, registry.Options{RootDir: b.TempDir()})
	repo := openRepo(b, reg, "bench/usr", nil)
	layers := pushUsrLayers(b, repo, layerCount, int64(imageMB)<<20/layerCount)
	var total int64
	for _, l := range layers {
		total += l.Size
	}
	manifest := pushImage(b, repo, imageSpec{pushedLayers: layers})
	concurrency := defaultBuildConfig().layerConcurrency
	b.Logf("image: %d layers, %.1f MB compressed", len(layers), float64(total)/1e6)

	var download, build time.Duration
	for b.Loop() {
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(concurrency)
		for _, l := range layers {
			g.Go(func() error {
				rc, err := repo.Fetch(gctx, l)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.Copy(io.Discard, rc)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		download += time.Since(start)

		start = time.Now()
		builder, err := NewIndexBuilder(openRepo(b, reg, "bench/usr", nil), WithLayerConcurrency(concurrency))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := builder.Build(ctx, manifest.Digest.String()); err != nil {
			b.Fatal(err)
		}
		build += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(download.Seconds()/n, "download-s/op")
	b.ReportMetric(build.Seconds()/n, "build-s/op")
	b.ReportMetric(build.Seconds()/download.Seconds(), "build/download")
	b.ReportMetric(float64(total)/1e6, "image-MB")
}

// pushUsrLayers pushes layerCount gzip layers of files under /usr, each
// closed once its compressed size reaches layerSize. Layers are written to
// a temporary file first, to push them with a known digest.
func pushUsrLayers(b *testing.B, repo *remote.Repository, layerCount int, layerSize int64) []ocispec.Descriptor {
	b.Helper()
	files := make(chan string)
	go func() {
		defer close(files)
		_ = filepath.WalkDir("/usr", func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable directories are left out
			}
			files <- path
			return nil
		})
	}()
	defer func() {
		for range files { // let the walker finish
		}
	}()

	var out []ocispec.Descriptor
	for range layerCount {
		f, err := os.CreateTemp(b.TempDir(), "layer")
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		counter := &countingWriter{w: io.MultiWriter(f, h)}
		zw, _ := gzip.NewWriterLevel(counter, gzip.DefaultCompression)
		tw := tar.NewWriter(zw)
		for counter.n < layerSize {
			path, ok := <-files
			if !ok {
				break
			}
			addUsrFile(tw, path)
		}
		if err := tw.Close(); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
		desc := ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)),
			Size:      counter.n,
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		if err := repo.Push(context.Background(), desc, f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		out = append(out, desc)
	}
	return out
}

// addUsrFile adds one file, directory or symlink; anything unreadable or
// special is left out.
func addUsrFile(tw *tar.Writer, path string) {
	info, err := os.Lstat(path)
	if err != nil {
		return
	}
	var link string
	switch {
	case info.Mode().IsRegular(), info.IsDir():
	case info.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(path); err != nil {
			return
		}
	default:
		return
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return
	}
	hdr.Name = path[1:]
	if !info.Mode().IsRegular() {
		_ = tw.WriteHeader(hdr)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) != hdr.Size {
		return
	}
	if tw.WriteHeader(hdr) == nil {
		_, _ = tw.Write(data)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
