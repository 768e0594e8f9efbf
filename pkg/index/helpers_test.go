package index

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
)

// startRegistry runs a distribution registry for one test.
func startRegistry(t testing.TB, opts registry.Options) *registry.Registry {
	t.Helper()
	reg, err := registry.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

// openRepo returns a fresh client repository, as a separate worker would
// have. transport may be nil.
func openRepo(t testing.TB, reg *registry.Registry, name string, transport http.RoundTripper) *remote.Repository {
	t.Helper()
	c, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(reg.Addr() + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// testLayer is a layer blob with its media type.
type testLayer struct {
	mediaType string
	data      []byte
}

func (l testLayer) descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: l.mediaType, Digest: digest.FromBytes(l.data), Size: int64(len(l.data))}
}

// tarFile is one entry of a generated tar.
type tarFile struct {
	name  string
	size  int
	pax   map[string]string
	isDir bool
}

// makeTar writes a tar of files whose contents are pseudo-random (seeded)
// and half compressible, so gzip layers have a realistic ratio.
func makeTar(t testing.TB, seed uint64, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(seed, seed))
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, ModTime: mtime, PAXRecords: f.pax, Format: tar.FormatPAX}
		if f.isDir {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(f.size)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if f.isDir {
			continue
		}
		data := make([]byte, f.size)
		for i := range data {
			if i%2 == 0 {
				data[i] = byte(rng.IntN(256))
			} else {
				data[i] = 'a' + byte(i%7)
			}
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// simpleTar is a tar of a directory and n files of size bytes each.
func simpleTar(t testing.TB, seed uint64, n, size int) []byte {
	files := []tarFile{{name: "dir/", isDir: true}}
	for i := range n {
		files = append(files, tarFile{name: fmt.Sprintf("dir/file-%d", i), size: size})
	}
	return makeTar(t, seed, files)
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageSpec describes a single-platform image to push.
type imageSpec struct {
	docker   bool // Docker media types instead of OCI
	platform ocispec.Platform
	layers   []testLayer
	// pushedLayers are already in the repository; they follow layers.
	pushedLayers []ocispec.Descriptor
}

// pushBlob pushes b unless present.
func pushBlob(t testing.TB, repo *remote.Repository, desc ocispec.Descriptor, b []byte) {
	t.Helper()
	ctx := context.Background()
	if ok, err := repo.Exists(ctx, desc); err != nil {
		t.Fatal(err)
	} else if ok {
		return
	}
	if err := repo.Push(ctx, desc, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// pushImage pushes the layers, config and manifest of spec and returns the
// manifest descriptor (without platform).
func pushImage(t testing.TB, repo *remote.Repository, spec imageSpec) ocispec.Descriptor {
	t.Helper()
	p := spec.platform
	if p.OS == "" {
		p = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	}
	config := ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers"}}
	var layers []ocispec.Descriptor
	for _, l := range spec.layers {
		desc := l.descriptor()
		pushBlob(t, repo, desc, l.data)
		layers = append(layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, desc.Digest)
	}
	for _, desc := range spec.pushedLayers {
		layers = append(layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, desc.Digest)
	}
	configJSON, _ := json.Marshal(config)
	configMT, manifestMT := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	if spec.docker {
		configMT, manifestMT = "application/vnd.docker.container.image.v1+json", mediaTypeDockerManifest
	}
	configDesc := descriptorOf(configMT, configJSON)
	pushBlob(t, repo, configDesc, configJSON)
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestMT,
		Config:    configDesc,
		Layers:    layers,
	}
	raw, _ := json.Marshal(manifest)
	desc := descriptorOf(manifestMT, raw)
	if err := repo.Push(context.Background(), desc, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return desc
}

// pushIndex pushes an image index of manifests (each with its platform) and
// tags it.
func pushIndex(t testing.TB, repo *remote.Repository, manifests []ocispec.Descriptor, tag string) ocispec.Descriptor {
	t.Helper()
	return pushIndexOf(t, repo, ocispec.MediaTypeImageIndex, manifests, tag)
}

// pushIndexOf pushes an image index or Docker manifest list.
func pushIndexOf(t testing.TB, repo *remote.Repository, mediaType string, manifests []ocispec.Descriptor, tag string) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mediaType,
		Manifests: manifests,
	}
	raw, _ := json.Marshal(idx)
	desc := descriptorOf(mediaType, raw)
	if err := repo.PushReference(context.Background(), desc, bytes.NewReader(raw), tag); err != nil {
		t.Fatal(err)
	}
	return desc
}

func tagImage(t testing.TB, repo *remote.Repository, desc ocispec.Descriptor, tag string) {
	t.Helper()
	if err := repo.Tag(context.Background(), desc, tag); err != nil {
		t.Fatal(err)
	}
}

// fetchJSONT fetches and decodes desc, failing the test on error.
func fetchJSONT(t testing.TB, repo *remote.Repository, desc ocispec.Descriptor, v any) []byte {
	t.Helper()
	raw, err := fetchJSON(context.Background(), repo, desc, v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// listReferrers lists the v1 SOCI referrers of subject.
func listReferrers(t testing.TB, repo *remote.Repository, subject ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	var out []ocispec.Descriptor
	err := repo.Referrers(context.Background(), subject, SociIndexArtifactTypeV1, func(p []ocispec.Descriptor) error {
		out = append(out, p...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// blobCounter counts the bytes of blob GET responses per digest.
type blobCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	read map[digest.Digest]int64
	gets map[digest.Digest]int
}

func newBlobCounter() *blobCounter {
	return &blobCounter{base: http.DefaultTransport, read: map[digest.Digest]int64{}, gets: map[digest.Digest]int{}}
}

func (c *blobCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet {
		return resp, err
	}
	_, after, ok := strings.Cut(req.URL.Path, "/blobs/")
	if !ok {
		return resp, nil
	}
	d := digest.Digest(after)
	c.mu.Lock()
	c.gets[d]++
	c.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, add: func(n int) {
		c.mu.Lock()
		c.read[d] += int64(n)
		c.mu.Unlock()
	}}
	return resp, nil
}

func (c *blobCounter) bytesRead(d digest.Digest) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read[d]
}

func (c *blobCounter) getCount(d digest.Digest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[d]
}

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.add(n)
	return n, err
}
