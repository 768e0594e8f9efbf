package snapshotter_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// entry is one file, directory or symlink of a generated layer.
type entry struct {
	name string
	mode int64
	data []byte
	link string // symlink target
	dir  bool
}

// layer is a generated layer: its entries (the originals the lazy mount is
// compared with) and its blob.
type layer struct {
	root    string // the one top-level directory all entries live under
	entries []entry
	blob    []byte
	diffID  digest.Digest
	desc    ocispec.Descriptor
}

// bigLayer makes a layer well above the service's --min-layer-size, so it
// gets a zTOC: random (incompressible) and text (compressible) files that
// cross several spans, an executable, an empty file, a symlink and an empty
// directory, all under root/.
func bigLayer(rng *rand.Rand, root string, gz bool) layer {
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 2<<20; i++ {
		fmt.Fprintf(&text, "%s line %d: %x\n", root, i, rng.Uint64()%1000)
	}
	entries := []entry{
		{name: root + "/", dir: true, mode: 0o755},
		{name: root + "/bin/", dir: true, mode: 0o755},
		{name: root + "/bin/tool", mode: 0o755, data: random(300 << 10)},
		{name: root + "/data/", dir: true, mode: 0o755},
		{name: root + "/data/big.bin", mode: 0o644, data: random(3<<20 + 12345)},
		{name: root + "/data/text.txt", mode: 0o644, data: text.Bytes()},
		{name: root + "/data/empty", mode: 0o600},
		{name: root + "/small.txt", mode: 0o644, data: []byte("hello from " + root + "\n")},
		{name: root + "/link", link: "data/text.txt"},
		{name: root + "/emptydir/", dir: true, mode: 0o700},
	}
	return makeLayer(root, entries, gz)
}

// smallLayer is below --min-layer-size: no zTOC, soci fetches it whole.
func smallLayer(root string) layer {
	return makeLayer(root, []entry{
		{name: root + "/", dir: true, mode: 0o755},
		{name: root + "/config.txt", mode: 0o644, data: bytes.Repeat([]byte(root+" config\n"), 1000)},
	}, true)
}

func makeLayer(root string, entries []entry, gz bool) layer {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		must(tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write(e.data)
			must(err)
		}
	}
	must(tw.Close())
	l := layer{root: root, entries: entries, diffID: digest.FromBytes(raw.Bytes())}
	mediaType := ocispec.MediaTypeImageLayer
	l.blob = raw.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, err := zw.Write(raw.Bytes())
		must(err)
		must(zw.Close())
		l.blob, mediaType = z.Bytes(), ocispec.MediaTypeImageLayerGzip
	}
	l.desc = ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(l.blob), Size: int64(len(l.blob))}
	return l
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// image is one platform's manifest and its layers.
type image struct {
	platform ocispec.Platform
	layers   []layer
	manifest ocispec.Descriptor
}

func pushBlob(ctx context.Context, repo *remote.Repository, mediaType string, b []byte) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := repo.Push(ctx, desc, bytes.NewReader(b)); err != nil && !strings.Contains(err.Error(), "already exists") {
		return desc, fmt.Errorf("push %s: %w", mediaType, err)
	}
	return desc, nil
}

// pushImage pushes the layers, a config and the manifest of img, under tag
// (untagged when tag is empty).
func pushImage(ctx context.Context, repo *remote.Repository, img *image, tag string) error {
	cfg := ocispec.Image{Platform: img.platform, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, l := range img.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		if err := repo.Push(ctx, l.desc, bytes.NewReader(l.blob)); err != nil {
			return fmt.Errorf("push layer %s: %w", l.root, err)
		}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDesc, err := pushBlob(ctx, repo, ocispec.MediaTypeImageConfig, cfgJSON)
	if err != nil {
		return err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc}
	for _, l := range img.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return err
	}
	img.manifest = ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(mJSON), Size: int64(len(mJSON))}
	if tag == "" {
		tag = img.manifest.Digest.String()
	}
	return repo.PushReference(ctx, img.manifest, bytes.NewReader(mJSON), tag)
}

// pushIndex pushes an OCI image index of the (already pushed) images under tag.
func pushIndex(ctx context.Context, repo *remote.Repository, tag string, imgs []*image) (ocispec.Descriptor, error) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range imgs {
		d := img.manifest
		p := img.platform
		d.Platform = &p
		idx.Manifests = append(idx.Manifests, d)
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: idx.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	return desc, repo.PushReference(ctx, desc, bytes.NewReader(b), tag)
}
