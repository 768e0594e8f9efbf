package testsupport

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// TestCorruptImages: the two corrupt images the worker tests push are in
// the registry, their layers' digests match, and the layers cannot be
// gunzipped to their end.
func TestCorruptImages(t *testing.T) {
	reg := StartRegistry(t, "", "")
	for name, push := range map[string]func(testing.TB, string, string, string) ocispec.Descriptor{
		"not gzip":  PushCorruptImage,
		"truncated": PushTruncatedGzipImage,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			img := push(t, reg.Addr(), "corrupt/app", "v1")
			repo, err := PlainRepos(t)(ctx, reg.Addr(), "corrupt/app")
			if err != nil {
				t.Fatal(err)
			}
			body, err := content.FetchAll(ctx, repo, img)
			if err != nil {
				t.Fatal(err)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
				t.Fatalf("layers %+v, want one gzip layer", m.Layers)
			}
			layer, err := content.FetchAll(ctx, repo, m.Layers[0]) // verifies the digest
			if err != nil {
				t.Fatal(err)
			}
			if err := gunzip(layer); err == nil {
				t.Error("the layer gunzips to its end, want an error")
			}
		})
	}
}

func gunzip(b []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, zr)
	return err
}

// TestWorkerBuildIdentity: the identity names the span size, so workers of
// different span sizes index an image apart.
func TestWorkerBuildIdentity(t *testing.T) {
	opts, a := WorkerBuild(128 << 10)
	_, b := WorkerBuild(256 << 10)
	_, again := WorkerBuild(128 << 10)
	if len(opts) != 2 || a == b || a != again {
		t.Errorf("WorkerBuild: %d options, identities %q %q %q", len(opts), a, b, again)
	}
}
