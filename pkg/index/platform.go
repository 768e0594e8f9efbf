package index

import (
	"fmt"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platforms are parsed, normalized, matched and formatted by containerd's
// platforms package, the one soci and the snapshotter use, so that a
// platform means here what it means to them.

// NormalizePlatform returns p in canonical form (x86_64 is amd64, aarch64
// is arm64 whose default variant v8 is dropped, arm defaults to v7, ...).
func NormalizePlatform(p ocispec.Platform) ocispec.Platform {
	return platforms.Normalize(p)
}

// ParsePlatform parses a platform specifier ("os/arch[/variant]", or an OS
// or an architecture alone, the rest taken from this machine) as soci's
// --platform flag does. The result is what a v2 SOCI index descriptor
// records, so it must be soci's for the same text.
func ParsePlatform(s string) (ocispec.Platform, error) {
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	return p, nil
}

// FormatPlatform writes p as "os/arch[/variant]", the form soci records in
// its artifacts DB ("unknown" for an empty platform).
func FormatPlatform(p ocispec.Platform) string {
	return platforms.Format(p)
}

// MatchPlatform reports whether have is the platform want, exactly after
// normalization (containerd's platforms.OnlyStrict, which soci uses).
func MatchPlatform(want, have ocispec.Platform) bool {
	return platforms.OnlyStrict(want).Match(have)
}

// isUnknownPlatform reports the unknown/unknown platform of attestation
// manifests in image indexes.
func isUnknownPlatform(p *ocispec.Platform) bool {
	return p != nil && p.OS == "unknown" && p.Architecture == "unknown"
}
