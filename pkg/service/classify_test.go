package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

func TestClassifyManifest(t *testing.T) {
	const (
		ociManifest = "application/vnd.oci.image.manifest.v1+json"
		ociIndex    = "application/vnd.oci.image.index.v1+json"
		imageConfig = `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2}`
	)
	tests := []struct {
		name      string
		mediaType string
		body      string
		wantSkip  bool
		wantOwn   bool
		wantIndex bool
	}{
		{"image", ociManifest, `{` + imageConfig + `,"layers":[]}`, false, false, false},
		{"docker image", mediaTypeDockerManifest,
			`{"config":{"mediaType":"application/vnd.docker.container.image.v1+json"},"layers":[]}`, false, false, false},
		{"soci v1 index", ociManifest,
			`{"config":{"mediaType":"` + index.SociIndexArtifactTypeV1 + `"},"subject":{"digest":"sha256:bb"}}`, true, true, false},
		{"soci v2 index", ociManifest, `{"config":{"mediaType":"` + index.SociIndexArtifactTypeV2 + `"}}`, true, true, false},
		{"rewritten v2 manifest", ociManifest,
			`{` + imageConfig + `,"annotations":{"com.amazon.soci.index-digest":"sha256:cc"}}`, true, true, false},
		{"signature", ociManifest,
			`{"config":{"mediaType":"application/vnd.oci.empty.v1+json"},"subject":{"digest":"sha256:bb"}}`, true, false, false},
		{"helm chart", ociManifest, `{"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json"}}`, true, false, false},
		{"artifact", ociManifest, `{"artifactType":"application/x-sbom",` + imageConfig + `}`, true, false, false},
		{"image index", ociIndex, `{"manifests":[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}}]}`,
			false, false, true},
		{"soci-enabled index", ociIndex,
			`{"manifests":[{"digest":"sha256:a"},{"digest":"sha256:b","artifactType":"` + index.SociIndexArtifactTypeV2 + `"}]}`,
			true, true, true},
		{"referrers index", ociIndex, `{"manifests":[{"digest":"sha256:a","artifactType":"` + index.SociIndexArtifactTypeV1 + `"}]}`,
			true, true, true},
		{"empty index", ociIndex, `{"manifests":[]}`, true, false, true},
		{"media type from body", "", `{"mediaType":"` + ociManifest + `",` + imageConfig + `}`, false, false, false},
		{"not json", ociManifest, `{`, true, false, false},
		{"schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{}`, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyManifest(tt.mediaType, []byte(tt.body))
			if (got.skip != "") != tt.wantSkip || got.own != tt.wantOwn || got.isIndex != tt.wantIndex {
				t.Errorf("classifyManifest = %+v, want skip=%v own=%v index=%v", got, tt.wantSkip, tt.wantOwn, tt.wantIndex)
			}
		})
	}
}

func TestIsReferrersTag(t *testing.T) {
	hex := "71aa0000000000000000000000000000000000000000000000000000000000ff"
	for tag, want := range map[string]bool{
		"sha256-" + hex:        true,
		"sha256-" + hex + "-x": false,
		"v1":                   false,
		"v1-soci":              false,
		"sha256-abc":           false,
	} {
		if got := IsReferrersTag(tag); got != want {
			t.Errorf("IsReferrersTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

func TestIsTransient(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("fetch: %w", &errcode.ErrorResponse{Method: "GET", StatusCode: code})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"registry 500", status(http.StatusInternalServerError), true},
		{"registry 503", status(http.StatusServiceUnavailable), true},
		{"registry 429", status(http.StatusTooManyRequests), true},
		{"registry 404", status(http.StatusNotFound), false},
		{"registry 401", status(http.StatusUnauthorized), false},
		{"manifest gone", fmt.Errorf("%w: x: %w", ErrManifestGone, errdef.ErrNotFound), false},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutError{}}, true},
		{"unexpected EOF", fmt.Errorf("read layer: %w", io.ErrUnexpectedEOF), true},
		{"deadline", fmt.Errorf("build: %w", context.DeadlineExceeded), true},
		{"queue down", fmt.Errorf("x: %w", queue.ErrUnavailable), true},
		{"empty index", index.ErrEmptyIndex, false},
		{"corrupt layer", errors.New("gzip: invalid header"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isTransient(tt.err); got != tt.want {
				t.Errorf("isTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
