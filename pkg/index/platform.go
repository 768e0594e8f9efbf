package index

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// NormalizePlatform returns p with its OS, architecture and variant in
// canonical form, following containerd's rules (x86_64 is amd64, aarch64 is
// arm64 whose default variant v8 is dropped, arm defaults to v7, ...), so
// that platforms compare as the snapshotter compares them.
func NormalizePlatform(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "i386":
		arch, variant = "386", ""
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		case "9", "9.0", "v9.0":
			variant = "v9"
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// ParsePlatform parses "os/arch[/variant]" (or "arch" alone for linux) the
// way containerd's platforms.Parse does for soci's --platform flag: names are
// normalized, but an explicit arm64 variant stays "v8" and a two-part "arm"
// has no variant. The result is what a v2 SOCI index descriptor records, so
// it must be the same as soci's for the same flag.
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	var p ocispec.Platform
	switch len(parts) {
	case 1:
		p = ocispec.Platform{OS: "linux", Architecture: parts[0]}
	case 2:
		p = ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = ocispec.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	default:
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	for _, part := range parts {
		if part == "" {
			return ocispec.Platform{}, fmt.Errorf("platform %q: empty component", s)
		}
	}
	p = NormalizePlatform(p)
	switch {
	case len(parts) == 3 && p.Architecture == "arm64" && p.Variant == "":
		p.Variant = "v8"
	case len(parts) < 3 && p.Architecture == "arm" && p.Variant == "v7":
		p.Variant = ""
	}
	return p, nil
}

// FormatPlatform writes p as "os/arch[/variant]", the form soci records in
// its artifacts DB.
func FormatPlatform(p ocispec.Platform) string {
	if p.OS == "" && p.Architecture == "" {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// MatchPlatform reports whether have is the platform want, exactly after
// normalization (containerd's platforms.OnlyStrict).
func MatchPlatform(want, have ocispec.Platform) bool {
	w, h := NormalizePlatform(want), NormalizePlatform(have)
	return w.OS == h.OS && w.Architecture == h.Architecture && w.Variant == h.Variant
}

// isUnknownPlatform reports the unknown/unknown platform of attestation
// manifests in image indexes.
func isUnknownPlatform(p *ocispec.Platform) bool {
	return p != nil && p.OS == "unknown" && p.Architecture == "unknown"
}
