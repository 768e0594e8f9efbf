package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// classify tells what the manifest of a job is, with pkg/index's one rule
// (index.Classify). The children of an image index are read only when its
// descriptors cannot tell an image index from a referrers index.
func classify(ctx context.Context, repo content.Fetcher, mediaType string, body []byte, tag string) (index.Classification, error) {
	info, err := index.ParseManifestInfo(mediaType, body, tag)
	if err != nil {
		return index.Classification{Class: index.ClassNotImage, Reason: err.Error()}, nil
	}
	return index.Classify(info, func(d ocispec.Descriptor) (bool, error) {
		raw, err := content.FetchAll(ctx, repo, d)
		if err != nil {
			return false, err
		}
		var m struct {
			Subject *ocispec.Descriptor `json:"subject"`
		}
		if json.Unmarshal(raw, &m) != nil {
			return false, nil
		}
		return m.Subject != nil, nil
	})
}

// ErrRegistryNotAllowed is wrapped when a job names a registry host the
// workers may not reach (WithAllowedRegistries).
var ErrRegistryNotAllowed = errors.New("registry not in the allow-list")

// ErrManifestGone is wrapped when the manifest of a job no longer exists.
var ErrManifestGone = errors.New("manifest not found in the registry")

// isTransient reports whether a failed job may succeed if tried again:
// registry 5xx, 429 and 408 answers, network errors and timeouts, a layer
// download cut short, and database or queue unavailability. Everything
// else (404, 4xx, corrupt layers, digest mismatches, unsupported formats,
// a registry not allowed) is permanent. docs/service.md has the table.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	// Corrupt input is decided first: its error may wrap the
	// io.ErrUnexpectedEOF of a truncated gzip stream.
	switch {
	case errors.Is(err, index.ErrCorruptLayer), errors.Is(err, ztoc.ErrCorruptLayer),
		errors.Is(err, ztoc.ErrDigestMismatch), errors.Is(err, ErrRegistryNotAllowed):
		return false
	case errors.Is(err, index.ErrLayerShortRead):
		return true
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
			resp.StatusCode == http.StatusRequestTimeout
	}
	if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, ErrManifestGone) {
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.Is(err, queue.ErrUnavailable),
		errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return db.IsTransient(err)
}
