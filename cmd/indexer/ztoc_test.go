package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// runZtoc runs "indexer ztoc ARGS..." in-process and returns its stdout.
func runZtoc(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newZtocCmd()
	cmd.SilenceUsage = true // as under the root command
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), err
}

func writeZtocTestLayers(t *testing.T) (dir string, files map[string][]byte) {
	t.Helper()
	files = map[string][]byte{
		"etc/hostname":  []byte("indexer\n"),
		"usr/lib/large": bytes.Repeat([]byte("0123456789abcdef soci span "), 200000),
		"empty":         nil,
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, name := range []string{"etc/hostname", "usr/lib/large", "empty"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(files[name])), Mode: 0o644})
		tw.Write(files[name])
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "layer.tar"), raw.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "layer.tar.gz"), gz.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "layer.tar.zst"), []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, 0o644)
	return dir, files
}

func TestZtocCommands(t *testing.T) {
	dir, files := writeZtocTestLayers(t)
	for _, tc := range []struct{ layer, compression string }{
		{"layer.tar.gz", "gzip"},
		{"layer.tar", "uncompressed"},
	} {
		t.Run(tc.compression, func(t *testing.T) {
			layer := filepath.Join(dir, tc.layer)
			out, err := runZtoc(t, "create", layer, "--span-size", "1048576")
			if err != nil {
				t.Fatal(err)
			}
			blob, err := os.ReadFile(layer + ".ztoc")
			if err != nil {
				t.Fatal(err)
			}
			layerBlob, _ := os.ReadFile(layer)
			if !strings.Contains(out, digest.FromBytes(blob).String()) ||
				!strings.Contains(out, digest.FromBytes(layerBlob).String()) || !strings.Contains(out, tc.compression) {
				t.Errorf("create printed %q", out)
			}

			out, err = runZtoc(t, "info", layer+".ztoc", "--json")
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Compression string `json:"compression"`
				Spans       []any  `json:"spans"`
				Entries     []struct {
					Name string `json:"name"`
					Size int64  `json:"size"`
				} `json:"entries"`
			}
			if err := json.Unmarshal([]byte(out), &info); err != nil {
				t.Fatal(err)
			}
			if info.Compression != tc.compression || len(info.Entries) != 3 || len(info.Spans) < 2 {
				t.Errorf("info: %+v", info)
			}
			if out, err := runZtoc(t, "info", layer+".ztoc"); err != nil || !strings.Contains(out, "usr/lib/large") {
				t.Errorf("info listing: %v\n%s", err, out)
			}

			for name, want := range files {
				got, err := runZtoc(t, "extract", "--ztoc", layer+".ztoc", layer, name)
				if err != nil || got != string(want) {
					t.Errorf("extract %s: %v (%d bytes, want %d)", name, err, len(got), len(want))
				}
			}
			target := filepath.Join(dir, "out")
			if _, err := runZtoc(t, "extract", "--ztoc", layer+".ztoc", layer, "etc/hostname", "-o", target); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(target); string(got) != "indexer\n" {
				t.Errorf("extract -o wrote %q", got)
			}
		})
	}
}

func TestZtocCommandErrors(t *testing.T) {
	dir, _ := writeZtocTestLayers(t)
	for _, args := range [][]string{
		{"create", filepath.Join(dir, "layer.tar.zst")},
		{"create", "-"},
		{"create", filepath.Join(dir, "missing")},
		{"create", filepath.Join(dir, "layer.tar"), "--gzip", "-o", filepath.Join(dir, "x")},
		{"create", filepath.Join(dir, "layer.tar"), "--uncompressed", "--span-size", "0", "-o", filepath.Join(dir, "x")},
		{"create", filepath.Join(dir, "layer.tar.gz"), "--span-size", "100", "-o", filepath.Join(dir, "x")},
		{"create", filepath.Join(dir, "layer.tar.gz"), "--span-size", "1", "-o", filepath.Join(dir, "x")},
		{"info", filepath.Join(dir, "layer.tar")},
		{"extract", filepath.Join(dir, "layer.tar"), "etc/hostname"},
	} {
		if _, err := runZtoc(t, args...); err == nil {
			t.Errorf("ztoc %v: no error", args)
		}
	}
}

// Extracting a directory or a symbolic link says what the entry is and
// writes nothing, instead of an empty file and exit 0.
func TestZtocExtractNonRegularFile(t *testing.T) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/localtime", Linkname: "/usr/share/zoneinfo/UTC"})
	tw.Close()
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(layer, raw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runZtoc(t, "create", layer, "--span-size", "1048576"); err != nil {
		t.Fatal(err)
	}
	for name, what := range map[string]string{"etc/": "is a directory", "etc/localtime": "symbolic link to /usr/share/zoneinfo/UTC"} {
		target := filepath.Join(dir, "out")
		_, err := runZtoc(t, "extract", "--ztoc", layer+".ztoc", layer, name, "-o", target)
		if err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("extract %s: err = %v, want one saying %q", name, err, what)
		}
		if _, statErr := os.Lstat(target); !os.IsNotExist(statErr) {
			t.Errorf("extract %s wrote %s", name, target)
		}
		if out, err := runZtoc(t, "extract", "--ztoc", layer+".ztoc", layer, name); err == nil || out != "" {
			t.Errorf("extract %s to stdout: %q, %v", name, out, err)
		}
	}
}

// A failed create leaves no zTOC behind and an existing file as it was.
func TestZtocCreateFailureWritesNothing(t *testing.T) {
	dir, _ := writeZtocTestLayers(t)
	gz, err := os.ReadFile(filepath.Join(dir, "layer.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.tar.gz")
	if err := os.WriteFile(truncated, gz[:len(gz)-50], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runZtoc(t, "create", truncated); err == nil || !strings.Contains(err.Error(), "truncated.tar.gz") {
		t.Fatalf("create of a truncated layer: error %v", err)
	}
	if _, err := os.Stat(truncated + ".ztoc"); !os.IsNotExist(err) {
		t.Errorf("a failed create left %s.ztoc (stat: %v)", truncated, err)
	}
	existing := filepath.Join(dir, "existing.ztoc")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runZtoc(t, "create", truncated, "-o", existing); err == nil {
		t.Fatal("create of a truncated layer: no error")
	}
	if got, _ := os.ReadFile(existing); string(got) != "keep me" {
		t.Errorf("a failed create changed the existing output to %q", got)
	}
	if _, err := runZtoc(t, "create", filepath.Join(dir, "layer.tar.gz"), "-o", filepath.Join(dir, "no", "such", "dir.ztoc")); err == nil ||
		!strings.Contains(err.Error(), "dir.ztoc") {
		t.Errorf("create into a missing directory: error %v, want one naming the output", err)
	}
	// Writes that fail (the file is written on a goroutine of its own) fail
	// the command; an output that is not a regular file is not removed.
	if _, err := runZtoc(t, "create", filepath.Join(dir, "layer.tar.gz"), "-o", "/dev/full"); err == nil ||
		!strings.Contains(err.Error(), "/dev/full") || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("create into /dev/full: error %v, want ENOSPC naming the output", err)
	}
	if fi, err := os.Stat("/dev/full"); err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Errorf("/dev/full after a failed create: %v, %v", fi, err)
	}
}

// limitHeapGrowth lowers the runtime's memory limit while a build runs,
// keeps a lower limit the user set, and restores the limit when stopped.
func TestLimitHeapGrowth(t *testing.T) {
	original := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(original)

	// A live heap above ztocFinalFrom, as a large layer's zTOC makes it.
	ballast := make([]byte, ztocFinalFrom+8<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	runtime.GC()
	defer runtime.KeepAlive(ballast)

	limit := limitHeapGrowth()
	during := debug.SetMemoryLimit(-1)
	if during >= original || during < ztocHeapSlack {
		t.Errorf("limit during the build %d, want at least the slack %d and below the previous %d", during, ztocHeapSlack, original)
	}
	// Once the layer is read, the slack drops: the limit follows within a
	// tick of the updater.
	limit.finalPhase()
	limit.finalPhase() // a second call is harmless
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) > during-(ztocHeapSlack-ztocFinalHeapSlack)/2 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d 10 s after finalPhase, want about %d less than %d",
				debug.SetMemoryLimit(-1), ztocHeapSlack-ztocFinalHeapSlack, during)
		}
		time.Sleep(5 * time.Millisecond)
	}
	limit.stop()
	if after := debug.SetMemoryLimit(-1); after != original {
		t.Errorf("limit after stop %d, want the previous %d", after, original)
	}

	const userLimit = 4 << 20 // below any live heap plus the slack
	debug.SetMemoryLimit(userLimit)
	limit = limitHeapGrowth()
	during = debug.SetMemoryLimit(-1)
	limit.stop()
	if during != userLimit || debug.SetMemoryLimit(-1) != userLimit {
		t.Errorf("a lower GOMEMLIMIT was not kept: %d during the build", during)
	}
}
