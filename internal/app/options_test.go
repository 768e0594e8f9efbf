package app

import (
	"errors"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/config"
)

// The service and `indexer index` parse --platform with the same parser:
// what one accepts the other accepts, and nonsense is refused by both.
func TestBuildOptionsPlatforms(t *testing.T) {
	for _, ok := range []string{"amd64", "linux/arm64", "linux/arm64/v8", "linux/x86_64"} {
		cfg := config.Config{SpanSize: 4 << 20, MinLayerSize: 10 << 20, LayerConcurrency: 1}
		cfg.Platforms = []string{ok}
		if _, _, err := BuildOptions(cfg); err != nil {
			t.Errorf("platform %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"foo", "linux//", "a/b/c/d", ""} {
		cfg := config.Config{SpanSize: 4 << 20, MinLayerSize: 10 << 20, LayerConcurrency: 1}
		cfg.Platforms = []string{bad}
		if _, _, err := BuildOptions(cfg); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("platform %q: err = %v, want config.ErrInvalid", bad, err)
		}
	}
}
