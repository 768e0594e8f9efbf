package index

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"

	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// LayerResult is what the builder did with one layer.
type LayerResult struct {
	Layer ocispec.Descriptor
	// Ztoc is the zTOC descriptor (with its annotations); nil when skipped.
	Ztoc  *ocispec.Descriptor
	State LayerState // LayerBuilt, LayerReused or LayerSkipped
	// Reason a layer was skipped.
	Reason string
}

// Layer media types, as containerd names them.
const (
	mediaTypeDockerLayer            = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	mediaTypeDockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeDockerLayerZstd        = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

// isLayerMediaType follows containerd's images.IsLayerType: every OCI layer
// type and the Docker rootfs types, whatever their "+suffix".
func isLayerMediaType(mediaType string) bool {
	if strings.HasPrefix(mediaType, "application/vnd.oci.image.layer.") {
		return true
	}
	base, _, _ := strings.Cut(mediaType, "+")
	switch base {
	case mediaTypeDockerLayer, mediaTypeDockerLayerGzip, mediaTypeDockerLayerForeign,
		mediaTypeDockerLayerForeignGzip, mediaTypeDockerLayerZstd:
		return true
	}
	return false
}

// layerCompression maps a layer media type to the zTOC compression; ok is
// false for formats soci does not index (zstd, wrapped types such as
// +encrypted).
func layerCompression(mediaType string) (c ztoc.Compression, ok bool) {
	base, ext, wrapped := strings.Cut(mediaType, "+")
	switch base {
	case mediaTypeDockerLayer, mediaTypeDockerLayerForeign:
		// containerd reports "unknown"; soci reads it as a plain tar.
		return ztoc.Uncompressed, !wrapped
	case mediaTypeDockerLayerGzip, mediaTypeDockerLayerForeignGzip:
		return ztoc.Gzip, !wrapped
	//lint:ignore SA1019 deprecated for new images, still found in existing ones
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerNonDistributable:
		switch ext {
		case "":
			return ztoc.Uncompressed, !wrapped
		case "gzip":
			return ztoc.Gzip, true
		}
	}
	return "", false
}

// buildZtocs makes the zTOCs of every layer of pm, at most
// layerConcurrency at a time. Layers in done were handled for another
// platform of the image. Results are in layer order.
func (b *IndexBuilder) buildZtocs(ctx context.Context, pm platformManifest, done map[digest.Digest]LayerResult) ([]LayerResult, error) {
	results := make([]LayerResult, len(pm.manifest.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.layerConcurrency)
	for i, layer := range pm.manifest.Layers {
		if res, ok := done[layer.Digest]; ok && res.Layer.MediaType == layer.MediaType && res.Layer.Size == layer.Size {
			results[i] = res
			continue
		}
		g.Go(func() error {
			res, err := b.buildLayer(gctx, pm.platform, layer)
			if err != nil {
				b.report(pm.platform, layer, LayerFailed, 0)
				return fmt.Errorf("layer %s: %w", layer.Digest, err)
			}
			results[i] = res
			var read int64
			if res.State == LayerBuilt {
				read = layer.Size
			}
			b.report(pm.platform, layer, res.State, read)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return results, nil
}

func (b *IndexBuilder) report(p ocispec.Platform, layer ocispec.Descriptor, state LayerState, read int64) {
	if b.cfg.progress != nil {
		b.cfg.progress(LayerProgress{Platform: p, Layer: layer, State: state, BytesRead: read, Total: layer.Size})
	}
}

// buildLayer applies soci's layer selection rules (docs/format.md 7.2) and
// then reuses or builds the layer's zTOC.
func (b *IndexBuilder) buildLayer(ctx context.Context, p ocispec.Platform, layer ocispec.Descriptor) (LayerResult, error) {
	log := b.cfg.logger.With("layer", layer.Digest, "mediaType", layer.MediaType)
	skip := func(reason string) (LayerResult, error) {
		log.Info("ztoc skipped", "reason", reason)
		return LayerResult{Layer: layer, State: LayerSkipped, Reason: reason}, nil
	}
	if layer.MediaType == SociPrefetchMediaType {
		return skip("prefetch artifact")
	}
	if !isLayerMediaType(layer.MediaType) {
		return LayerResult{}, fmt.Errorf("%w: %s", ErrNotLayerMediaType, layer.MediaType)
	}
	if layer.Size < b.cfg.minLayerSize {
		return skip(fmt.Sprintf("size %d is less than min layer size %d", layer.Size, b.cfg.minLayerSize))
	}
	compression, ok := layerCompression(layer.MediaType)
	if !ok {
		return skip("unsupported format " + layer.MediaType)
	}

	if desc, ok, err := b.reuseZtoc(ctx, layer); err != nil {
		return LayerResult{}, err
	} else if ok {
		log.Info("ztoc reused", "ztoc", desc.Digest)
		return LayerResult{Layer: layer, Ztoc: &desc, State: LayerReused}, nil
	}

	desc, err := b.buildAndPushZtoc(ctx, p, layer, compression)
	if errors.Is(err, ztoc.ErrUnservableLayer) {
		// No zTOC reader could serve it: the image is indexed without it.
		return skip(err.Error())
	}
	if err != nil {
		return LayerResult{}, err
	}
	log.Info("ztoc built", "ztoc", desc.Digest, "size", desc.Size)
	return LayerResult{Layer: layer, Ztoc: &desc, State: LayerBuilt}, nil
}

// buildAndPushZtoc streams the layer from the registry once, building its
// zTOC and verifying its digest on the way, then pushes the zTOC.
func (b *IndexBuilder) buildAndPushZtoc(ctx context.Context, p ocispec.Platform, layer ocispec.Descriptor, compression ztoc.Compression) (ocispec.Descriptor, error) {
	rc, err := b.fetchLayer(ctx, layer)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("fetch layer: %w", err)
	}
	defer rc.Close()
	meter := &fetchMeter{r: rc}
	var r io.Reader = meter
	if b.cfg.progress != nil {
		r = &progressReader{r: meter, report: func(n int64) { b.report(p, layer, LayerFetching, n) }}
	}
	res, err := ztoc.Build(ctx, r,
		ztoc.WithSpanSize(b.cfg.spanSize),
		ztoc.WithBuildToolIdentifier(b.cfg.buildToolIdentifier),
		ztoc.WithCompression(compression),
		ztoc.WithExpectedDigest(layer.Digest),
	)
	if err != nil {
		// ztoc.Build's errors say "build ztoc" already.
		return ocispec.Descriptor{}, classifyLayerError(ctx, err, meter, layer)
	}
	if res.LayerSize != layer.Size {
		return ocispec.Descriptor{}, classifyLayerError(ctx,
			fmt.Errorf("%w: layer is %d bytes, its descriptor says %d", ztoc.ErrDigestMismatch, res.LayerSize, layer.Size),
			meter, layer)
	}
	data, err := ztoc.Marshal(res.Ztoc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("marshal ztoc: %w", err)
	}
	// Nothing is pushed that the reader, which applies soci's rules, refuses.
	if _, err := ztoc.Unmarshal(data); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: the built ztoc does not read back: %w", ztoc.ErrUnservableLayer, err)
	}
	desc := b.ztocDescriptor(layer, digest.FromBytes(data), int64(len(data)), b.disableXattrs(res.Ztoc))
	if err := b.pushIfMissing(ctx, desc, data); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push ztoc: %w", err)
	}
	if err := b.recordZtoc(ctx, layer, desc); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// ztocDescriptor is the descriptor of a zTOC in an index, with soci's
// annotations.
func (b *IndexBuilder) ztocDescriptor(layer ocispec.Descriptor, dgst digest.Digest, size int64, disableXattrs bool) ocispec.Descriptor {
	annotations := map[string]string{
		IndexAnnotationImageLayerDigest:    layer.Digest.String(),
		IndexAnnotationImageLayerMediaType: layer.MediaType,
		IndexAnnotationSpanSize:            strconv.FormatInt(b.cfg.spanSize, 10),
	}
	if disableXattrs {
		annotations[IndexAnnotationDisableXAttrs] = "true"
	}
	return ocispec.Descriptor{MediaType: SociLayerMediaType, Digest: dgst, Size: size, Annotations: annotations}
}

// disableXattrs applies soci's xattr optimization rule: a layer qualifies
// when no entry has a SCHILY.xattr record and none is an opaque whiteout.
func (b *IndexBuilder) disableXattrs(z *ztoc.Ztoc) bool {
	if !b.cfg.optimizations[XAttrOptimization] {
		return false
	}
	for _, f := range z.FileMetadata {
		if strings.HasSuffix(f.Name, ".wh..wh..opq") {
			return false
		}
		for key := range f.PAXHeaders {
			if strings.HasPrefix(key, "SCHILY.xattr.") {
				return false
			}
		}
	}
	return true
}

// reuseZtoc returns the zTOC the artifacts DB knows for layer, once its blob
// is in the builder's repository: already there, or mounted from another
// repository of the same registry that holds it. ok is false when there is
// nothing to reuse and the zTOC must be built.
func (b *IndexBuilder) reuseZtoc(ctx context.Context, layer ocispec.Descriptor) (ocispec.Descriptor, bool, error) {
	if b.cfg.artifactsDb == nil {
		return ocispec.Descriptor{}, false, nil
	}
	entry, err := b.cfg.artifactsDb.FindReusableZtoc(ctx, layer.Digest, b.cfg.spanSize, b.cfg.builderVersion)
	if errors.Is(err, ErrArtifactNotFound) {
		return ocispec.Descriptor{}, false, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("look up reusable ztoc: %w", err)
	}
	if entry.BuildToolIdentifier != "" && entry.BuildToolIdentifier != b.cfg.buildToolIdentifier {
		return ocispec.Descriptor{}, false, nil
	}
	dgst, err := digest.Parse(entry.Digest)
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("artifacts db entry %q: %w", entry.Digest, err)
	}
	blob := ocispec.Descriptor{MediaType: SociLayerMediaType, Digest: dgst, Size: entry.Size}
	if !b.ensureBlob(ctx, blob, entry.Locations) {
		b.cfg.logger.Info("recorded ztoc is gone, rebuilding", "layer", layer.Digest, "ztoc", dgst)
		return ocispec.Descriptor{}, false, nil
	}
	disable := false
	if b.cfg.optimizations[XAttrOptimization] {
		// The rule needs the TOC; the zTOC is small next to its layer.
		z, err := b.fetchZtoc(ctx, blob)
		if err != nil {
			return ocispec.Descriptor{}, false, err
		}
		disable = b.disableXattrs(z)
	}
	desc := b.ztocDescriptor(layer, dgst, entry.Size, disable)
	if err := b.recordZtoc(ctx, layer, desc); err != nil {
		return ocispec.Descriptor{}, false, err
	}
	return desc, true, nil
}

// ensureBlob makes blob present in the builder's repository, mounting it
// from one of locations if needed. It reports whether the blob is there.
func (b *IndexBuilder) ensureBlob(ctx context.Context, blob ocispec.Descriptor, locations []Location) bool {
	log := b.cfg.logger.With("blob", blob.Digest)
	if ok, err := b.repo.Exists(ctx, blob); err == nil && ok {
		return true
	} else if err != nil {
		log.Warn("checking blob", "error", err)
	}
	mounter, ok := b.repo.(registry.Mounter)
	if !ok {
		return false
	}
	for _, loc := range locations {
		if loc.Registry != b.location.Registry || loc.Repository == b.location.Repository {
			continue
		}
		// With a nil getContent, the client falls back to copying the blob
		// from loc when the registry does not mount.
		if err := mounter.Mount(ctx, blob, loc.Repository, nil); err != nil {
			log.Info("mount failed", "from", loc.Repository, "error", err)
			continue
		}
		return true
	}
	return false
}

func (b *IndexBuilder) fetchZtoc(ctx context.Context, blob ocispec.Descriptor) (*ztoc.Ztoc, error) {
	data, err := content.FetchAll(ctx, b.repo, blob)
	if err != nil {
		return nil, fmt.Errorf("fetch ztoc %s: %w", blob.Digest, err)
	}
	z, err := ztoc.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("ztoc %s: %w", blob.Digest, err)
	}
	return z, nil
}

// recordZtoc writes the artifacts DB entry of a zTOC (docs/format.md 7.8)
// with the builder's repository as a location.
func (b *IndexBuilder) recordZtoc(ctx context.Context, layer, desc ocispec.Descriptor) error {
	if b.cfg.artifactsDb == nil {
		return nil
	}
	entry := &ArtifactEntry{
		Digest:              desc.Digest.String(),
		Size:                desc.Size,
		Location:            layer.Digest.String(),
		OriginalDigest:      layer.Digest.String(),
		Type:                ArtifactEntryTypeLayer,
		MediaType:           SociLayerMediaType,
		CreatedAt:           time.Now().UTC(),
		SpanSize:            b.cfg.spanSize,
		BuildToolIdentifier: b.cfg.buildToolIdentifier,
		BuilderVersion:      b.cfg.builderVersion,
		Locations:           b.locations(),
	}
	if err := b.cfg.artifactsDb.WriteArtifactEntry(ctx, entry); err != nil {
		return fmt.Errorf("record ztoc %s: %w", desc.Digest, err)
	}
	return nil
}

// Layer failures, as callers decide on them.
var (
	// ErrCorruptLayer is wrapped when every byte of a layer arrived (as
	// many as its descriptor says) and it still is not the layer its media
	// type says: invalid or truncated gzip, bad tar, digest mismatch. The
	// registry holds it so; trying again cannot help.
	ErrCorruptLayer = errors.New("corrupt layer")
	// ErrLayerShortRead is wrapped when the registry's answer for a layer
	// ended before the descriptor's size or broke off: a transfer problem,
	// which a new try may not have.
	ErrLayerShortRead = errors.New("layer transfer cut short")
)

// fetchMeter counts the bytes of a layer download and keeps its first read
// error other than EOF. A short HTTP body reads as io.ErrUnexpectedEOF, which
// the zTOC builder takes for the end of the blob; the meter still knows.
type fetchMeter struct {
	r   io.Reader
	n   int64
	err error
}

func (m *fetchMeter) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	m.n += int64(n)
	if err != nil && err != io.EOF && m.err == nil {
		m.err = err
	}
	return n, err
}

// classifyLayerError tells a corrupt layer from one that did not arrive
// whole. A decode error may come before the end of the download, so the
// rest is read first (only on this failure path): when every byte of the
// descriptor's size came, the bytes are what the registry has, and the
// layer is corrupt; when fewer came, or the read broke, the transfer was
// cut short. Other errors are returned as they are.
func classifyLayerError(ctx context.Context, err error, m *fetchMeter, layer ocispec.Descriptor) error {
	if ctx.Err() != nil || !errors.Is(err, ztoc.ErrCorruptLayer) && !errors.Is(err, ztoc.ErrDigestMismatch) {
		return err
	}
	if m.err == nil {
		// At most one byte past the descriptor's size tells "too long".
		if _, derr := io.Copy(io.Discard, io.LimitReader(m, max(layer.Size-m.n, 0)+1)); derr != nil && m.err == nil {
			m.err = derr
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if m.err != nil || m.n < layer.Size {
		cause := m.err
		if cause == nil {
			cause = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: %d of %d bytes arrived: %w", ErrLayerShortRead, m.n, layer.Size, cause)
	}
	// The caller names the layer.
	return fmt.Errorf("%w: %w", ErrCorruptLayer, err)
}

// progressReader reports the bytes read so far, at most every
// progressStep bytes and at EOF.
type progressReader struct {
	r        io.Reader
	report   func(int64)
	read     int64
	reported int64
}

const progressStep = 1 << 20

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read += int64(n)
	total := p.read
	if total-p.reported >= progressStep || (err == io.EOF && total != p.reported) {
		p.reported = total
		p.report(total)
	}
	return n, err
}
