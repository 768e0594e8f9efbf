package index

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNormalizePlatform(t *testing.T) {
	tests := []struct {
		in   ocispec.Platform
		want string
	}{
		{ocispec.Platform{OS: "linux", Architecture: "x86_64"}, "linux/amd64"},
		{ocispec.Platform{OS: "Linux", Architecture: "aarch64", Variant: "v8"}, "linux/arm64"},
		{ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "8"}, "linux/arm64"},
		{ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "9"}, "linux/arm64/v9"},
		{ocispec.Platform{OS: "linux", Architecture: "arm"}, "linux/arm/v7"},
		{ocispec.Platform{OS: "linux", Architecture: "armel"}, "linux/arm/v6"},
		{ocispec.Platform{OS: "linux", Architecture: "i386"}, "linux/386"},
		{ocispec.Platform{OS: "macos", Architecture: "amd64"}, "darwin/amd64"},
	}
	for _, tt := range tests {
		if got := FormatPlatform(NormalizePlatform(tt.in)); got != tt.want {
			t.Errorf("%+v: got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestMatchPlatformIsStrict(t *testing.T) {
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	if !MatchPlatform(arm64, ocispec.Platform{OS: "linux", Architecture: "aarch64", Variant: "v8"}) {
		t.Error("arm64 should match aarch64/v8")
	}
	if MatchPlatform(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}) {
		t.Error("arm/v7 matched arm/v6: only strict matches count")
	}
	if MatchPlatform(arm64, ocispec.Platform{OS: "linux", Architecture: "amd64"}) {
		t.Error("arm64 matched amd64")
	}
}

func TestParsePlatform(t *testing.T) {
	p, err := ParsePlatform("linux/arm64/v8")
	if err != nil || FormatPlatform(p) != "linux/arm64/v8" || !MatchPlatform(p, ocispec.Platform{OS: "linux", Architecture: "arm64"}) {
		t.Fatalf("linux/arm64/v8: %v %v", p, err)
	}
	for in, want := range map[string]string{"linux/aarch64": "linux/arm64", "linux/arm/v7": "linux/arm/v7", "linux/arm": "linux/arm", "linux/x86_64": "linux/amd64", "linux/arm64": "linux/arm64"} {
		if p, err := ParsePlatform(in); err != nil || FormatPlatform(p) != want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %s", in, FormatPlatform(p), err, want)
		}
	}
	for _, bad := range []string{"", "linux//", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
