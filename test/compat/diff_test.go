package compat

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sociztoc "github.com/awslabs/soci-snapshotter/ztoc"
	sociflatbuf "github.com/awslabs/soci-snapshotter/ztoc/fbs/ztoc"
)

// Layout of soci's gzip zinfo blob (docs/format.md 3.4).
const (
	zinfoHeaderSize = 4 + 8
	windowSize      = 32 << 10
	checkpointSize  = 8 + 8 + 1 + windowSize
)

type checkpoint struct {
	in, out int64
	bits    uint8
	window  []byte
}

func parseGzipCheckpoints(blob []byte) (cps []checkpoint, spanSize int64, err error) {
	if len(blob) < zinfoHeaderSize {
		return nil, 0, fmt.Errorf("zinfo blob of %d bytes has no header", len(blob))
	}
	n := int(int32(binary.LittleEndian.Uint32(blob)))
	spanSize = int64(binary.LittleEndian.Uint64(blob[4:]))
	if n < 1 || len(blob) != zinfoHeaderSize+n*checkpointSize {
		return nil, 0, fmt.Errorf("zinfo blob of %d bytes for %d checkpoints, want 12 + 32785*N", len(blob), n)
	}
	for i := range n {
		rec := blob[zinfoHeaderSize+i*checkpointSize:][:checkpointSize]
		cps = append(cps, checkpoint{
			in:     int64(binary.LittleEndian.Uint64(rec)),
			out:    int64(binary.LittleEndian.Uint64(rec[8:])),
			bits:   rec[16],
			window: rec[17:],
		})
	}
	return cps, spanSize, nil
}

// windowBefore is what a checkpoint at out must hold: the 32 KiB of output
// before out, left-padded with zeros near the start of the stream.
func windowBefore(uncompressed []byte, out int64) []byte {
	w := make([]byte, windowSize)
	start := max(0, out-windowSize)
	copy(w[windowSize-(out-start):], uncompressed[start:out])
	return w
}

// gzipHeaderLen parses the optional fields of a gzip member header (RFC
// 1952) to find where the deflate data starts: checkpoint 0's "in".
func gzipHeaderLen(b []byte) (int, error) {
	const (
		flagHCRC    = 1 << 1
		flagExtra   = 1 << 2
		flagName    = 1 << 3
		flagComment = 1 << 4
	)
	errShort := errors.New("gzip header: truncated")
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x8b {
		return 0, errors.New("gzip header: bad magic")
	}
	flags, n := b[3], 10
	if flags&flagExtra != 0 {
		if len(b) < n+2 {
			return 0, errShort
		}
		n += 2 + int(binary.LittleEndian.Uint16(b[n:]))
	}
	for _, f := range []byte{flagName, flagComment} {
		if flags&f == 0 {
			continue
		}
		end := bytes.IndexByte(b[min(n, len(b)):], 0)
		if end < 0 {
			return 0, errShort
		}
		n += end + 1
	}
	if flags&flagHCRC != 0 {
		n += 2
	}
	if n > len(b) {
		return 0, errShort
	}
	return n, nil
}

// maxDiffLines bounds a diff report; the first differences explain the rest.
const maxDiffLines = 30

// diffZtocs explains why two zTOCs differ (docs/format.md 10.C): both are
// decoded with soci's Unmarshal and compared field by field, checkpoint by
// checkpoint and entry by entry.
func diffZtocs(want, got []byte) string {
	var lines []string
	add := func(format string, args ...any) {
		if len(lines) < maxDiffLines {
			lines = append(lines, fmt.Sprintf(format, args...))
		}
	}
	w, err := sociztoc.Unmarshal(bytes.NewReader(want))
	if err != nil {
		return fmt.Sprintf("soci's zTOC does not decode: %v", err)
	}
	g, err := sociztoc.Unmarshal(bytes.NewReader(got))
	if err != nil {
		return fmt.Sprintf("our zTOC does not decode with soci's Unmarshal: %v", err)
	}

	field := func(name string, want, got any) {
		if want != got {
			add("%s: soci %v, ours %v", name, want, got)
		}
	}
	field("version", w.Version, g.Version)
	field("build_tool_identifier", w.BuildToolIdentifier, g.BuildToolIdentifier)
	field("compressed_archive_size", w.CompressedArchiveSize, g.CompressedArchiveSize)
	field("uncompressed_archive_size", w.UncompressedArchiveSize, g.UncompressedArchiveSize)
	field("max_span_id", w.MaxSpanID, g.MaxSpanID)
	field("compression_algorithm", w.CompressionAlgorithm, g.CompressionAlgorithm)

	field("len(span_digests)", len(w.SpanDigests), len(g.SpanDigests))
	for i := range min(len(w.SpanDigests), len(g.SpanDigests)) {
		if w.SpanDigests[i] != g.SpanDigests[i] {
			add("span_digests[%d]: soci %s, ours %s", i, w.SpanDigests[i], g.SpanDigests[i])
		}
	}

	diffCheckpoints(w, g, add)

	field("len(toc)", len(w.FileMetadata), len(g.FileMetadata))
	for i := range min(len(w.FileMetadata), len(g.FileMetadata)) {
		if !w.FileMetadata[i].Equal(g.FileMetadata[i]) {
			add("toc[%d]:\n  soci %+v\n  ours %+v", i, w.FileMetadata[i], g.FileMetadata[i])
		}
	}

	// soci's decoder turns an empty or unparsable mod_time into the zero
	// time, so the text itself is compared on the raw flatbuffers.
	wantTimes, gotTimes := rawModTimes(want), rawModTimes(got)
	for i := range min(len(wantTimes), len(gotTimes)) {
		if wantTimes[i] != gotTimes[i] {
			add("toc[%d] (flatbuffer order) mod_time text: soci %q, ours %q", i, wantTimes[i], gotTimes[i])
		}
	}

	if len(lines) == 0 {
		return "every decoded field is equal: the flatbuffer layout (builder call order) differs"
	}
	return strings.Join(lines, "\n")
}

func diffCheckpoints(w, g *sociztoc.Ztoc, add func(string, ...any)) {
	if bytes.Equal(w.Checkpoints, g.Checkpoints) {
		return
	}
	if w.CompressionAlgorithm != "gzip" {
		add("checkpoints (tar zinfo): soci %x, ours %x", w.Checkpoints, g.Checkpoints)
		return
	}
	wcp, wspan, werr := parseGzipCheckpoints(w.Checkpoints)
	gcp, gspan, gerr := parseGzipCheckpoints(g.Checkpoints)
	if werr != nil || gerr != nil {
		add("checkpoints: soci %v, ours %v", werr, gerr)
		return
	}
	if wspan != gspan {
		add("checkpoints span_size: soci %d, ours %d", wspan, gspan)
	}
	if len(wcp) != len(gcp) {
		add("checkpoint count: soci %d, ours %d", len(wcp), len(gcp))
	}
	for i := range min(len(wcp), len(gcp)) {
		a, b := wcp[i], gcp[i]
		if a.in != b.in || a.out != b.out || a.bits != b.bits {
			add("checkpoint %d: soci in=%d out=%d bits=%d, ours in=%d out=%d bits=%d", i, a.in, a.out, a.bits, b.in, b.out, b.bits)
		} else if !bytes.Equal(a.window, b.window) {
			add("checkpoint %d: window soci %x, ours %x", i, sha256.Sum256(a.window), sha256.Sum256(b.window))
		}
	}
}

// rawModTimes returns the mod_time strings of the TOC entries as stored.
func rawModTimes(b []byte) []string {
	toc := sociflatbuf.GetRootAsZtoc(b, 0).Toc(nil)
	if toc == nil {
		return nil
	}
	var entry sociflatbuf.FileMetadata
	times := make([]string, toc.MetadataLength())
	for i := range times {
		if toc.Metadata(&entry, i) {
			times[i] = string(entry.ModTime())
		}
	}
	return times
}

// TestDiffZtocsNamesTheDifference checks the failure report itself: zTOCs
// that differ in a TOC entry, a checkpoint and a mod_time text are each
// explained, and equal ones only by layout.
func TestDiffZtocsNamesTheDifference(t *testing.T) {
	layer := filepath.Join(t.TempDir(), "layer.tar.gz")
	if err := writeSmallLayer(layer); err != nil {
		t.Fatal(err)
	}
	want, err := buildWithSoci(layer, 16<<10, "gzip")
	if err != nil {
		t.Fatal(err)
	}
	z, err := sociztoc.Unmarshal(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	z.FileMetadata[1].Mode = 0o600
	z.FileMetadata[2].ModTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // written as ""
	z.Checkpoints[zinfoHeaderSize+checkpointSize+16]++                       // bits of checkpoint 1
	r, _, err := sociztoc.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}

	report := diffZtocs(want, got)
	for _, fragment := range []string{"toc[1]:", "checkpoint 1: soci in=", "mod_time text: soci \"", `ours ""`} {
		if !strings.Contains(report, fragment) {
			t.Errorf("report lacks %q:\n%s", fragment, report)
		}
	}
	if report := diffZtocs(want, want); !strings.Contains(report, "layout") {
		t.Errorf("equal zTOCs: report %q, want the layout explanation", report)
	}
}

// writeSmallLayer writes a gzip layer of three files, about 100 KB of
// tar, big enough for several 16 KiB spans.
func writeSmallLayer(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for i, size := range []int{40_000, 30_000, 30_000} {
		data := bytes.Repeat([]byte(fmt.Sprintf("file %d line\n", i)), size/12)
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(len(data)),
			ModTime: time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
