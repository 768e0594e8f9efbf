package index

import (
	"archive/tar"
	stdgzip "compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
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
// downloading its layers from the same embedded registry, and with
// downloading and gunzipping them (Go's compress/gzip): the least any
// builder that reads the files must do. All use the same layer concurrency.
// SOCI_BENCH_IMAGE_MB changes the image size.
//
//	go test ./pkg/index -run '^$' -bench BuildVsDownload -benchtime 3x
func BenchmarkBuildVsDownload(b *testing.B) {
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
	b.Logf("image: %d layers, %.1f MB compressed", len(layers), float64(total)/1e6)

	b.Run("loopback", func(b *testing.B) {
		benchBuildVsDownload(b, reg, layers, manifest, nil)
	})
	// A registry link slower than decompression, as most are: the builder
	// streams, so decompression overlaps the transfer.
	const linkMBps = 100
	b.Run(fmt.Sprintf("link=%dMBps", linkMBps), func(b *testing.B) {
		benchBuildVsDownload(b, reg, layers, manifest, &throttledTransport{base: http.DefaultTransport, bytesPerSec: linkMBps << 20})
	})
}

func benchBuildVsDownload(b *testing.B, reg *registry.Registry, layers []ocispec.Descriptor, manifest ocispec.Descriptor, transport http.RoundTripper) {
	ctx := context.Background()
	concurrency := defaultBuildConfig().layerConcurrency
	var total int64
	for _, l := range layers {
		total += l.Size
	}

	// fetchAll reads every layer through consume, like the builder: with
	// the same concurrency, from a fresh client.
	fetchAll := func(consume func(io.Reader) error) time.Duration {
		start := time.Now()
		fresh := openRepo(b, reg, "bench/usr", transport)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(concurrency)
		for _, l := range layers {
			g.Go(func() error {
				rc, err := fresh.Fetch(gctx, l)
				if err != nil {
					return err
				}
				defer rc.Close()
				return consume(rc)
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	discard := func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	gunzip := func(r io.Reader) error {
		zr, err := stdgzip.NewReader(r)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, zr)
		return err
	}

	// CPU time of the process (builder and embedded registry) per phase:
	// unlike wall time, it hardly changes when other processes load the
	// machine.
	var download, decompress, build time.Duration
	var downloadCPU, buildCPU time.Duration
	for b.Loop() {
		cpu := processCPU()
		download += fetchAll(discard)
		downloadCPU += processCPU() - cpu
		decompress += fetchAll(gunzip)

		cpu = processCPU()
		start := time.Now()
		builder, err := NewIndexBuilder(openRepo(b, reg, "bench/usr", transport), WithLayerConcurrency(concurrency), WithMinLayerSize(0))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := builder.Build(ctx, manifest.Digest.String()); err != nil {
			b.Fatal(err)
		}
		build += time.Since(start)
		buildCPU += processCPU() - cpu
	}
	n := float64(b.N)
	b.ReportMetric(download.Seconds()/n, "download-s/op")
	b.ReportMetric(build.Seconds()/n, "build-s/op")
	b.ReportMetric(decompress.Seconds()/n, "gunzip-s/op")
	b.ReportMetric(build.Seconds()/download.Seconds(), "build/download")
	b.ReportMetric(build.Seconds()/decompress.Seconds(), "build/gunzip")
	b.ReportMetric(downloadCPU.Seconds()/n, "download-cpu-s/op")
	b.ReportMetric(buildCPU.Seconds()/n, "build-cpu-s/op")
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

// throttledTransport limits the bytes per second of all response bodies
// together, like a shared network link.
type throttledTransport struct {
	base        http.RoundTripper
	bytesPerSec int64
	mu          sync.Mutex
	next        time.Time // when the link is free again
}

func (t *throttledTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &throttledBody{ReadCloser: resp.Body, link: t}
	return resp, nil
}

// wait books n bytes on the link and sleeps until they have passed. Short
// waits are left to accumulate: sleeps shorter than a few milliseconds
// overshoot and would slow the link down.
func (t *throttledTransport) wait(n int) {
	t.mu.Lock()
	now := time.Now()
	if t.next.Before(now) {
		t.next = now
	}
	t.next = t.next.Add(time.Duration(int64(n) * int64(time.Second) / t.bytesPerSec))
	ahead := t.next.Sub(now)
	t.mu.Unlock()
	if ahead > 5*time.Millisecond {
		time.Sleep(ahead)
	}
}

type throttledBody struct {
	io.ReadCloser
	link *throttledTransport
}

func (b *throttledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.link.wait(n)
	}
	return n, err
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
