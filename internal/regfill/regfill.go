// Package regfill fills a registry with many small repositories and tags,
// cheaply, for backfill tests and benchmarks: one config and one layer blob
// pushed once, mounted into every other repository (cross-repository
// mount: no blob bytes move), and one small manifest per tag, each with its
// own digest. It is for tests only.
package regfill

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"
)

// Options describe what Fill pushes.
type Options struct {
	// Registry is host:port, reached over plain HTTP.
	Registry string
	// Repositories named RepositoryName(Prefix, i), i from 0, each with
	// Tags tags "t0", "t1"...
	Repositories, Tags int
	Prefix             string
	// Concurrency repositories are filled at once (default 8).
	Concurrency int
	// Client sends the requests (default: remote's default client).
	Client remote.Client
}

// RepositoryName is the i-th repository: names sort as their numbers do.
func RepositoryName(prefix string, i int) string { return fmt.Sprintf("%s%06d/app", prefix, i) }

// Fill pushes the repositories and returns the number of manifests pushed.
func Fill(ctx context.Context, o Options) (int64, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	layer, err := tinyLayer()
	if err != nil {
		return 0, err
	}
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return 0, err
	}
	configDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}
	blobs := map[digest.Digest][]byte{layerDesc.Digest: layer, configDesc.Digest: config}
	repo := func(i int) (*remote.Repository, error) {
		r, err := remote.NewRepository(o.Registry + "/" + RepositoryName(o.Prefix, i))
		if err != nil {
			return nil, err
		}
		r.PlainHTTP = true
		if o.Client != nil {
			r.Client = o.Client
		}
		return r, nil
	}
	var pushed atomic.Int64
	fill := func(ctx context.Context, i int) error {
		r, err := repo(i)
		if err != nil {
			return err
		}
		for _, d := range []ocispec.Descriptor{layerDesc, configDesc} {
			if i == 0 {
				err = r.Push(ctx, d, bytes.NewReader(blobs[d.Digest]))
			} else {
				err = r.Mount(ctx, d, RepositoryName(o.Prefix, 0), func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(blobs[d.Digest])), nil
				})
			}
			if err != nil {
				return fmt.Errorf("blob %s into %s: %w", d.Digest, r.Reference.Repository, err)
			}
		}
		for t := range o.Tags {
			tag := fmt.Sprintf("t%d", t)
			m, err := json.Marshal(ocispec.Manifest{
				Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
				Config: configDesc, Layers: []ocispec.Descriptor{layerDesc},
				Annotations: map[string]string{"org.example.image": r.Reference.Repository + ":" + tag},
			})
			if err != nil {
				return err
			}
			desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
			if err := r.PushReference(ctx, desc, bytes.NewReader(m), tag); err != nil {
				return fmt.Errorf("manifest %s:%s: %w", r.Reference.Repository, tag, err)
			}
			pushed.Add(1)
		}
		return nil
	}
	if o.Repositories == 0 {
		return 0, nil
	}
	if err := fill(ctx, 0); err != nil { // the source of every mount first
		return pushed.Load(), err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i := 1; i < o.Repositories; i++ {
		g.Go(func() error { return fill(gctx, i) })
	}
	err = g.Wait()
	return pushed.Load(), err
}

// tinyLayer is a gzip tar of one small file.
func tinyLayer() ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("hello from regfill\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(body); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
