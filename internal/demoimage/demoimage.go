// Package demoimage makes small multi-layer OCI images and pushes them: for
// `indexer demo push`, the service tests and the benchmarks. Layers are
// gzip-compressed tars written to temporary files, so their digests are
// known before the push and no layer is held in memory.
package demoimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
)

// Layer is a gzip tar layer stored in a temporary file.
type Layer struct {
	Path       string
	Descriptor ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar, for the image config.
	DiffID digest.Digest
}

// Remove deletes the layer's file.
func (l Layer) Remove() error { return os.Remove(l.Path) }

// ErrNoFiles is returned by LayerFromDir when dir holds no regular file.
var ErrNoFiles = errors.New("demoimage: no regular files")

// fixedTime keeps tar headers, and so layer digests, reproducible.
var fixedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// LayerFromDir tars and gzips the regular files under dir, in walk order,
// until about maxBytes of file content, into a file in tmpDir ("" for the
// system default). Unreadable files are skipped: the content is only a demo.
func LayerFromDir(ctx context.Context, dir string, maxBytes int64, tmpDir string) (Layer, error) {
	return UniqueLayerFromDir(ctx, dir, maxBytes, tmpDir, "")
}

// UniqueLayerFromDir is LayerFromDir with a first file naming id, so that
// each id gives another layer digest over the same files ("" adds none).
func UniqueLayerFromDir(ctx context.Context, dir string, maxBytes int64, tmpDir, id string) (Layer, error) {
	return writeLayer(tmpDir, func(tw *tar.Writer) error {
		if id != "" {
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: ".layer-id", Mode: 0o644, Size: int64(len(id)),
				ModTime: fixedTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, id); err != nil {
				return err
			}
		}
		var written int64
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil //nolint:nilerr // skip what cannot be read
			}
			if written >= maxBytes {
				return fs.SkipAll
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := addFile(tw, path)
			if err != nil {
				return err
			}
			written += n
			return nil
		})
		if err == nil && written == 0 {
			err = fmt.Errorf("%w under %s", ErrNoFiles, dir)
		}
		return err
	})
}

// addFile copies one file into tw, returning its size, or 0 when the file
// cannot be opened.
func addFile(tw *tar.Writer, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     filepath.ToSlash(filepath.Clean(path))[1:],
		Mode:     0o644,
		Size:     st.Size(),
		ModTime:  fixedTime,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	n, err := io.Copy(tw, io.LimitReader(f, st.Size()))
	if err != nil {
		return n, fmt.Errorf("demoimage: copy %s: %w", path, err)
	}
	if n < st.Size() { // the file shrank while being read: pad to the header's size
		if _, err := io.CopyN(tw, zeroReader{}, st.Size()-n); err != nil {
			return n, err
		}
	}
	return st.Size(), nil
}

// RandomLayer writes a layer of files filled with pseudo-random bytes drawn
// from seed: incompressible, so the compressed size is about size. Different
// seeds give different layers.
func RandomLayer(seed uint64, size int64, tmpDir string) (Layer, error) {
	const fileSize = 1 << 20
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return writeLayer(tmpDir, func(tw *tar.Writer) error {
		for i := 0; size > 0; i++ {
			n := min(int64(fileSize), size)
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/%d/file-%04d.bin", seed, i),
				Mode: 0o644, Size: n, ModTime: fixedTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.CopyN(tw, randReader{rng}, n); err != nil {
				return err
			}
			size -= n
		}
		return nil
	})
}

// TruncatedLayer writes a corrupt layer: a gzip tar of compressible files
// cut in the middle of its deflate stream. Its descriptor names every byte
// of the file, so a registry takes it and the digest matches; reading it
// fails with an unexpected EOF. Tests use it for a layer that cannot be
// indexed.
func TruncatedLayer(tmpDir string) (Layer, error) {
	whole, err := writeLayer(tmpDir, func(tw *tar.Writer) error {
		for i := range 8 {
			data := bytes.Repeat(fmt.Appendf(nil, "file %d ", i), 32<<10)
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o644,
				Size: int64(len(data)), ModTime: fixedTime}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Layer{}, err
	}
	size := whole.Descriptor.Size / 2
	if err := os.Truncate(whole.Path, size); err != nil {
		whole.Remove()
		return Layer{}, fmt.Errorf("demoimage: truncate layer: %w", err)
	}
	f, err := os.Open(whole.Path)
	if err != nil {
		whole.Remove()
		return Layer{}, fmt.Errorf("demoimage: %w", err)
	}
	defer f.Close()
	d, err := digest.Canonical.FromReader(f)
	if err != nil {
		whole.Remove()
		return Layer{}, fmt.Errorf("demoimage: %w", err)
	}
	// The DiffID stays the whole tar's: no complete uncompressed tar exists.
	whole.Descriptor.Digest, whole.Descriptor.Size = d, size
	return whole, nil
}

func writeLayer(tmpDir string, fill func(*tar.Writer) error) (Layer, error) {
	f, err := os.CreateTemp(tmpDir, "demo-layer-*.tar.gz")
	if err != nil {
		return Layer{}, fmt.Errorf("demoimage: %w", err)
	}
	layer, err := func() (Layer, error) {
		compressed := digest.Canonical.Digester()
		uncompressed := digest.Canonical.Digester()
		counter := &countingWriter{w: io.MultiWriter(f, compressed.Hash())}
		gz := gzip.NewWriter(counter)
		tw := tar.NewWriter(io.MultiWriter(gz, uncompressed.Hash()))
		if err := fill(tw); err != nil {
			return Layer{}, err
		}
		if err := tw.Close(); err != nil {
			return Layer{}, err
		}
		if err := gz.Close(); err != nil {
			return Layer{}, err
		}
		return Layer{
			Path: f.Name(),
			Descriptor: ocispec.Descriptor{
				MediaType: ocispec.MediaTypeImageLayerGzip,
				Digest:    compressed.Digest(),
				Size:      counter.n,
			},
			DiffID: uncompressed.Digest(),
		}, nil
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return Layer{}, fmt.Errorf("demoimage: write layer: %w", err)
	}
	return layer, nil
}

// PushOption configures Push.
type PushOption func(*ocispec.Manifest)

// WithAnnotations sets the manifest's annotations: the same layers with
// other annotations make another image.
func WithAnnotations(a map[string]string) PushOption {
	return func(m *ocispec.Manifest) { m.Annotations = a }
}

// Push pushes the layers, an image config and the manifest to target, tags
// the manifest with tag when it is not empty, and returns the manifest's
// descriptor.
func Push(ctx context.Context, target oras.Target, tag string, layers []Layer, opts ...PushOption) (ocispec.Descriptor, error) {
	config := ocispec.Image{
		Created:  &fixedTime,
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Layers:    []ocispec.Descriptor{},
	}
	for _, l := range layers {
		if err := pushFile(ctx, target, l); err != nil {
			return ocispec.Descriptor{}, err
		}
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.DiffID)
		manifest.Layers = append(manifest.Layers, l.Descriptor)
	}
	for _, o := range opts {
		o(&manifest)
	}
	configBytes, err := json.Marshal(config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("demoimage: %w", err)
	}
	manifest.Config = content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, configBytes)
	if err := pushBytes(ctx, target, manifest.Config, configBytes); err != nil {
		return ocispec.Descriptor{}, err
	}
	manifestBytes, err := json.Marshal(manifest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("demoimage: %w", err)
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifestBytes)
	if tag == "" {
		err = pushBytes(ctx, target, desc, manifestBytes)
	} else {
		desc, err = oras.TagBytes(ctx, target, desc.MediaType, manifestBytes, tag)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("demoimage: push manifest: %w", err)
	}
	return desc, nil
}

func pushBytes(ctx context.Context, target oras.Target, desc ocispec.Descriptor, b []byte) error {
	return pushReader(ctx, target, desc, bytes.NewReader(b))
}

func pushFile(ctx context.Context, target oras.Target, l Layer) error {
	f, err := os.Open(l.Path)
	if err != nil {
		return fmt.Errorf("demoimage: %w", err)
	}
	defer f.Close()
	return pushReader(ctx, target, l.Descriptor, f)
}

func pushReader(ctx context.Context, target oras.Target, desc ocispec.Descriptor, r io.Reader) error {
	exists, err := target.Exists(ctx, desc)
	if err == nil && exists {
		return nil
	}
	if err := target.Push(ctx, desc, r); err != nil {
		return fmt.Errorf("demoimage: push %s: %w", desc.Digest, err)
	}
	return nil
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

type randReader struct{ rng *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	n := len(p) &^ 7
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.rng.Uint64())
	}
	for i := n; i < len(p); i++ {
		p[i] = byte(r.rng.Uint32())
	}
	return len(p), nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
