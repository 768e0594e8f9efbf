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
	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

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
		// A truncated gzip layer wraps io.ErrUnexpectedEOF; all its bytes
		// came, so it is corrupt, not a transfer problem.
		{"truncated gzip", fmt.Errorf("build: %w", fmt.Errorf("%w: x: %w", index.ErrCorruptLayer,
			fmt.Errorf("%w: gzip: %w", ztoc.ErrCorruptLayer, io.ErrUnexpectedEOF))), false},
		{"digest mismatch", fmt.Errorf("build: %w", ztoc.ErrDigestMismatch), false},
		{"short layer body", fmt.Errorf("build: %w: %w", index.ErrLayerShortRead, io.ErrUnexpectedEOF), true},
		{"registry not allowed", fmt.Errorf("%w: evil.example", ErrRegistryNotAllowed), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isTransient(tt.err); got != tt.want {
				t.Errorf("isTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
