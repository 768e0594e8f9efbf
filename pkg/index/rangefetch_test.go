package index

import (
	"context"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

// stripRange drops the Range header, as a registry that ignores Range
// would: the answer is the whole blob with 200.
type stripRange struct{ base http.RoundTripper }

func (s stripRange) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Del("Range")
	return s.base.RoundTrip(req)
}

// TestRangeFetch builds a layer's zTOC from parallel Range GETs of the
// embedded registry: the same zTOC as from one GET, every byte read once,
// in several requests; a registry that ignores Range gets one GET.
func TestRangeFetch(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t, registry.Options{})
	layer := testLayer{ocispec.MediaTypeImageLayerGzip, gzipBytes(t, simpleTar(t, 9, 6, 150<<10))}
	d := layer.descriptor()
	setup := openRepo(t, reg, "app/ranges", nil)
	manifest := pushImage(t, setup, imageSpec{layers: []testLayer{layer}})
	part := int64(64 << 10)
	if d.Size < 4*part {
		t.Fatalf("layer of %d bytes is too small for the test", d.Size)
	}

	build := func(transport http.RoundTripper, opts ...BuildOption) *ocispec.Descriptor {
		t.Helper()
		repo := openRepo(t, reg, "app/ranges", transport)
		b, err := NewIndexBuilder(repo, append([]BuildOption{WithMinLayerSize(0)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.Build(ctx, manifest.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Layers[0].Ztoc
	}
	one := newBlobCounter()
	want := build(one, WithRangeFetch(0, part, 1))
	if one.getCount(d.Digest) != 1 {
		t.Fatalf("one connection: %d GETs", one.getCount(d.Digest))
	}

	ranges := newBlobCounter()
	got := build(ranges, WithRangeFetch(0, part, 3))
	if got.Digest != want.Digest {
		t.Fatalf("zTOC %s from Range GETs, %s from one GET", got.Digest, want.Digest)
	}
	parts := int((d.Size + part - 1) / part)
	if n := ranges.getCount(d.Digest); n != parts {
		t.Fatalf("%d GETs of the layer, want %d parts", n, parts)
	}
	if n := ranges.bytesRead(d.Digest); n != d.Size {
		t.Fatalf("read %d bytes of a %d-byte layer", n, d.Size)
	}

	fallback := newBlobCounter()
	fallback.base = stripRange{http.DefaultTransport}
	if got := build(fallback, WithRangeFetch(0, part, 3)); got.Digest != want.Digest {
		t.Fatalf("zTOC %s after the fallback, want %s", got.Digest, want.Digest)
	}
	// The probe for part 0 is answered with the whole blob: it is the one GET.
	if n, read := fallback.getCount(d.Digest), fallback.bytesRead(d.Digest); n != 1 || read != d.Size {
		t.Fatalf("fallback: %d GETs reading %d bytes, want one GET of %d", n, read, d.Size)
	}
}
