package ztoc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/internal/inflate"
	"github.com/soci-indexer/soci-indexer/internal/testenv"
)

// positionReader counts the bytes archive/tar reads, like soci's
// position-tracking reader: the reference for the TOC semantics.
type positionReader struct {
	r   io.Reader
	pos int64
}

func (p *positionReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pos += int64(n)
	return n, err
}

// referenceTOC reads tarStream the way soci's metadataFromTarReader does.
func referenceTOC(t *testing.T, tarStream []byte) ([]*tar.Header, []int64, int64) {
	t.Helper()
	pr := &positionReader{r: bytes.NewReader(tarStream)}
	tr := tar.NewReader(pr)
	var (
		hdrs    []*tar.Header
		offsets []int64
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs, offsets, pr.pos
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
		offsets = append(offsets, pr.pos)
	}
}

func build(t *testing.T, layer []byte, opts ...BuildOption) *Ztoc {
	t.Helper()
	res, err := Build(context.Background(), bytes.NewReader(layer), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(layer); res.LayerDigest != want || res.LayerSize != int64(len(layer)) {
		t.Fatalf("layer %s/%d, want %s/%d", res.LayerDigest, res.LayerSize, want, len(layer))
	}
	return res.Ztoc
}

// checkTOC compares a zTOC's entries with archive/tar's view of tarStream.
func checkTOC(t *testing.T, z *Ztoc, tarStream []byte) {
	t.Helper()
	hdrs, offsets, end := referenceTOC(t, tarStream)
	if z.UncompressedArchiveSize != end {
		t.Errorf("uncompressed archive size %d, want %d", z.UncompressedArchiveSize, end)
	}
	if len(z.FileMetadata) != len(hdrs) {
		t.Fatalf("%d entries, want %d", len(z.FileMetadata), len(hdrs))
	}
	types := map[byte]string{'0': "reg", '1': "hardlink", '2': "symlink", '3': "char", '4': "block", '5': "dir", '6': "fifo"}
	for i, f := range z.FileMetadata {
		h := hdrs[i]
		if f.Name != h.Name || f.Type != types[h.Typeflag] || f.UncompressedOffset != offsets[i] ||
			f.UncompressedSize != h.Size || f.Linkname != h.Linkname || f.Mode != h.Mode ||
			f.UID != h.Uid || f.GID != h.Gid || f.Uname != h.Uname || f.Gname != h.Gname ||
			!f.ModTime.Equal(h.ModTime) || f.Devmajor != h.Devmajor || f.Devminor != h.Devminor ||
			!maps.Equal(f.PAXHeaders, h.PAXRecords) {
			t.Errorf("entry %d:\n got %+v\nwant %+v at %d", i, f, h, offsets[i])
		}
		// The header of each entry must parse, alone, from the derived
		// header offset up to the data (the snapshotter's verification).
		hr := tar.NewReader(bytes.NewReader(tarStream[f.TarHeaderOffset:f.UncompressedOffset]))
		if hh, err := hr.Next(); err != nil || hh.Name != f.Name {
			t.Errorf("entry %d: header at %d: %v", i, f.TarHeaderOffset, err)
		}
	}
}

func TestBuildTOC(t *testing.T) {
	entries := corpusEntries()
	raw := makeTar(t, entries)
	for _, tc := range []struct {
		name  string
		layer []byte
		opts  []BuildOption
	}{
		{"gzip", gzipBytes(t, raw, gzip.DefaultCompression), nil},
		{"uncompressed", raw, []BuildOption{WithCompression(Uncompressed)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := build(t, tc.layer, tc.opts...)
			checkTOC(t, z, raw)
			if z.CompressedArchiveSize != int64(len(tc.layer)) {
				t.Errorf("compressed size %d, want %d", z.CompressedArchiveSize, len(tc.layer))
			}
			if z.Version != Version09 || z.BuildToolIdentifier != DefaultBuildToolIdentifier {
				t.Errorf("version %q, tool %q", z.Version, z.BuildToolIdentifier)
			}
			// Spot checks of what the generic comparison could miss.
			byName := map[string]FileMetadata{}
			for _, f := range z.FileMetadata {
				byName[f.Name] = f
			}
			if got := byName["pax/xattrs"].PAXHeaders["SCHILY.xattr.security.capability"]; got != "\x01\x00\x00\x02\x00\x00\x00\x00\xff" {
				t.Errorf("binary xattr %q", got)
			}
			if got := byName["pax/subsecond"].ModTime.Nanosecond(); got != 123456000 {
				t.Errorf("sub-second mtime: %d ns", got)
			}
			if _, ok := byName["pax/subsecond"].PAXHeaders["mtime"]; !ok {
				t.Error("PAX mtime record missing")
			}
			for _, name := range []string{"etc/.wh.removed", "opt/.wh..wh..opq"} {
				if byName[name].Type != "reg" {
					t.Errorf("%s: type %q", name, byName[name].Type)
				}
			}
		})
	}
}

// GNU tar pads archives to 10240-byte records; soci's size stops at the
// end-of-archive blocks.
func TestBuildRecordPadding(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:6])
	padded := append(bytes.Clone(raw), make([]byte, 10240-len(raw)%10240)...)
	for _, opts := range [][]BuildOption{nil, {WithCompression(Uncompressed)}} {
		layer := padded
		if opts == nil {
			layer = gzipBytes(t, padded, gzip.BestSpeed)
		}
		z := build(t, layer, opts...)
		if z.UncompressedArchiveSize != int64(len(raw)) || z.CompressedArchiveSize != int64(len(layer)) {
			t.Errorf("sizes %d/%d, want %d/%d", z.UncompressedArchiveSize, z.CompressedArchiveSize, len(raw), len(layer))
		}
	}
}

// checkGzipZinfo checks the checkpoints and spans of a gzip zTOC against the
// layer and its decompressed stream.
func checkGzipZinfo(t *testing.T, z *Ztoc, layer, stream []byte, spanSize int64, headerLen int64) {
	t.Helper()
	blob := z.Checkpoints
	n := int(int32(binary.LittleEndian.Uint32(blob)))
	if len(blob) != 12+n*checkpointSize || int(z.MaxSpanID) != n-1 || len(z.SpanDigests) != n {
		t.Fatalf("blob %d bytes, %d checkpoints, max span %d, %d digests", len(blob), n, z.MaxSpanID, len(z.SpanDigests))
	}
	if got := int64(binary.LittleEndian.Uint64(blob[4:])); got != spanSize {
		t.Errorf("span size %d, want %d", got, spanSize)
	}
	checkpoints, _, err := z.GzipCheckpoints()
	if err != nil || len(checkpoints) != n {
		t.Fatalf("%d checkpoints: %v", len(checkpoints), err)
	}
	for i, cp := range checkpoints {
		if i == 0 {
			if cp.In != headerLen || cp.Out != 0 || cp.Bits != 0 {
				t.Errorf("checkpoint 0 = %d/%d/%d, want %d/0/0", cp.In, cp.Out, cp.Bits, headerLen)
			}
		} else if prev := checkpoints[i-1]; cp.Out-prev.Out <= spanSize || cp.In <= prev.In {
			t.Errorf("checkpoint %d (%d,%d) too close to %d (%d,%d)", i, cp.In, cp.Out, i-1, prev.In, prev.Out)
		}
		want := make([]byte, WindowSize)
		lo := max(cp.Out-WindowSize, 0)
		copy(want[WindowSize-(cp.Out-lo):], stream[lo:cp.Out])
		if !bytes.Equal(cp.Window, want) {
			t.Errorf("checkpoint %d: window differs", i)
		}
	}
	spans, err := z.Spans()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		if want := digest.FromBytes(layer[s.StartCompressed:s.EndCompressed]); s.Digest != want {
			t.Errorf("span %d digest %s, want %s", s.ID, s.Digest, want)
		}
	}
	if last := spans[len(spans)-1]; last.EndCompressed != int64(len(layer)) || last.EndUncompressed != z.UncompressedArchiveSize {
		t.Errorf("last span ends at %d/%d", last.EndCompressed, last.EndUncompressed)
	}
}

func TestBuildGzipCheckpoints(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	for _, level := range []int{gzip.NoCompression, gzip.BestSpeed, gzip.DefaultCompression, gzip.BestCompression} {
		layer := gzipBytes(t, raw, level)
		for _, span := range []int64{DefaultSpanSize, 1 << 20, 64 << 10, 16 << 10} {
			z := build(t, layer, WithSpanSize(span))
			checkGzipZinfo(t, z, layer, raw, span, 10)
			checkSpans(t, z, layer, raw)
		}
	}
}

// checkSpans reads every span back through its checkpoint.
func checkSpans(t *testing.T, z *Ztoc, layer, stream []byte) {
	t.Helper()
	spans, err := z.Spans()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		got, err := z.ReadSpan(context.Background(), bytes.NewReader(layer), s.ID)
		if err != nil {
			t.Fatalf("span %d: %v", s.ID, err)
		}
		if !bytes.Equal(got, stream[s.StartUncompressed:s.EndUncompressed]) {
			t.Fatalf("span %d: content differs", s.ID)
		}
	}
}

func TestBuildGzipHeaderFields(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:5])
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Name, zw.Comment, zw.Extra = "layer.tar", "a comment", []byte("xyz")
	zw.Write(raw)
	zw.Close()
	want := int64(10 + 2 + 3 + len("layer.tar") + 1 + len("a comment") + 1)
	z := build(t, buf.Bytes(), WithSpanSize(0))
	checkGzipZinfo(t, z, buf.Bytes(), raw, 0, want)

	// FHCRC: Go's writer cannot set it, so add the header CRC-16 by hand.
	plain := gzipBytes(t, raw, gzip.BestSpeed)
	hdr := bytes.Clone(plain[:10])
	hdr[3] |= 0x02
	crc := crc32.ChecksumIEEE(hdr)
	withHCRC := append(append(hdr, byte(crc), byte(crc>>8)), plain[10:]...)
	z = build(t, withHCRC, WithSpanSize(1<<20))
	checkGzipZinfo(t, z, withHCRC, raw, 1<<20, 12)
	checkSpans(t, z, withHCRC, raw)
}

func TestBuildMultiMember(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	cut := len(raw)/2 + 123
	// zlib's gzip ends a member with a data block marked final, so the next
	// member's header is the next boundary that may carry a checkpoint.
	// (Go's writer ends with an empty final block, which leaves nothing
	// between the last checkpoint and the next header.)
	gzipTool := testenv.RequireTool(t, "gzip")
	cmd := exec.Command(gzipTool, "-n", "-c")
	cmd.Stdin = bytes.NewReader(raw[:cut])
	first, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	layer := append(bytes.Clone(first), gzipBytes(t, raw[cut:], gzip.DefaultCompression)...)
	z := build(t, layer, WithSpanSize(0))
	checkTOC(t, z, raw)
	checkGzipZinfo(t, z, layer, raw, 0, 10)
	zi, _ := decodeGzipZinfo(z.Checkpoints)
	found := false
	for i := range zi.maxSpanID() + 1 {
		if cp := zi.checkpoint(i); cp.In == int64(len(first))+10 && cp.Out == int64(cut) {
			found = true
		}
	}
	if !found {
		t.Error("no checkpoint at the second member's header")
	}
	checkSpans(t, z, layer, raw)
	checkExtract(t, z, layer, raw)
}

func TestBuildPigz(t *testing.T) {
	pigz := testenv.RequireTool(t, "pigz")
	raw := makeTar(t, corpusEntries())
	for _, args := range [][]string{{"-c"}, {"-c", "-i", "-b", "128"}} {
		cmd := exec.Command(pigz, args...)
		cmd.Stdin = bytes.NewReader(raw)
		layer, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		z := build(t, layer, WithSpanSize(64<<10))
		checkTOC(t, z, raw)
		checkGzipZinfo(t, z, layer, raw, 64<<10, 10)
		checkSpans(t, z, layer, raw)
	}
}

// A writer that flushes before writing data starts with an empty deflate
// block: soci records two checkpoints at offset 0, and so must we.
func TestBuildEmptyFirstBlock(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:8])
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Flush()
	zw.Write(raw)
	zw.Close()
	var logs bytes.Buffer
	z := build(t, buf.Bytes(), WithSpanSize(16<<10), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	zi, _ := decodeGzipZinfo(z.Checkpoints)
	if zi.out(0) != 0 || zi.out(1) != 0 || zi.in(1) <= zi.in(0) {
		t.Errorf("checkpoints 0 and 1 at %d/%d and %d/%d, want two at out=0", zi.in(0), zi.out(0), zi.in(1), zi.out(1))
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no warning logged: %q", logs.String())
	}
	checkExtract(t, z, buf.Bytes(), raw)
}

func TestBuildUncompressedZinfo(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	raw = append(raw, make([]byte, 3000)...) // bytes after the tar end are still spans
	const span = 1 << 20
	z := build(t, raw, WithCompression(Uncompressed), WithSpanSize(span))
	if !bytes.Equal(z.Checkpoints, encodeTarZinfo(span, int64(len(raw)))) {
		t.Errorf("checkpoints %x", z.Checkpoints)
	}
	wantSpans := (len(raw) + span - 1) / span
	if int(z.MaxSpanID) != wantSpans-1 || len(z.SpanDigests) != wantSpans {
		t.Fatalf("max span %d, %d digests, want %d spans", z.MaxSpanID, len(z.SpanDigests), wantSpans)
	}
	for i, d := range z.SpanDigests {
		if want := digest.FromBytes(raw[i*span : min((i+1)*span, len(raw))]); d != want {
			t.Errorf("span %d: %s, want %s", i, d, want)
		}
	}
	checkSpans(t, z, raw, raw)
}

func TestBuildDigestAndProgress(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()), gzip.BestSpeed)
	var reports []int64
	res, err := Build(context.Background(), bytes.NewReader(layer),
		WithExpectedDigest(digest.FromBytes(layer)),
		WithProgress(func(n int64) { reports = append(reports, n) }))
	if err != nil {
		t.Fatal(err)
	}
	if res.LayerSize != int64(len(layer)) || len(reports) == 0 || reports[len(reports)-1] != int64(len(layer)) {
		t.Errorf("size %d, progress %v", res.LayerSize, reports)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] <= reports[i-1] {
			t.Errorf("progress not increasing: %v", reports)
		}
	}

	wrong := digest.FromString("another layer")
	_, err = Build(context.Background(), bytes.NewReader(layer), WithExpectedDigest(wrong))
	var mismatch *DigestMismatchError
	if !errors.Is(err, ErrDigestMismatch) || !errors.As(err, &mismatch) || mismatch.Actual != digest.FromBytes(layer) || mismatch.Expected != wrong {
		t.Errorf("got %v", err)
	}
}

// rawHeader returns a tar header block with the given typeflag, for the
// types archive/tar's writer refuses to write.
func rawHeader(name string, typeflag byte, size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, Format: tar.FormatGNU})
	blk := buf.Bytes()[:512]
	blk[156] = typeflag
	copy(blk[148:156], "        ")
	var sum int64
	for _, c := range blk {
		sum += int64(c)
	}
	copy(blk[148:], []byte(strings.Repeat("0", 6-len(itoa8(sum)))+itoa8(sum)+"\x00 "))
	return blk
}

func itoa8(v int64) string {
	s := ""
	for ; v > 0; v /= 8 {
		s = string(rune('0'+v%8)) + s
	}
	return s
}

func TestBuildErrors(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:8])
	layer := gzipBytes(t, raw, gzip.DefaultCompression)

	globalHeader := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
			PAXRecords: map[string]string{"comment": "git archive"}})
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o644})
		tw.Close()
		return buf.Bytes()
	}()
	withType := func(typeflag byte) []byte {
		return append(append(rawHeader("odd", typeflag, 0), raw...), make([]byte, 1024)...)
	}
	corrupt := bytes.Clone(layer)
	corrupt[len(corrupt)/2] ^= 0xff
	badCRC := bytes.Clone(layer)
	badCRC[len(badCRC)-6] ^= 1
	garbageTar := gzipBytes(t, bytes.Repeat([]byte("not a tar header "), 100), gzip.BestSpeed)

	for _, tc := range []struct {
		name     string
		layer    []byte
		opts     []BuildOption
		want     error
		typeflag byte
	}{
		{"truncated gzip", layer[:len(layer)/2], nil, ErrCorruptLayer, 0},
		{"truncated trailer", layer[:len(layer)-3], nil, ErrCorruptLayer, 0},
		{"corrupt deflate", corrupt, nil, ErrCorruptLayer, 0},
		{"bad crc", badCRC, nil, ErrCorruptLayer, 0},
		{"trailing garbage", append(bytes.Clone(layer), "garbage"...), nil, ErrCorruptLayer, 0},
		{"trailing zeros", append(bytes.Clone(layer), make([]byte, 1024)...), nil, ErrCorruptLayer, 0},
		{"not gzip", raw, nil, ErrCorruptLayer, 0},
		{"empty gzip input", nil, nil, ErrCorruptLayer, 0},
		{"corrupt tar", garbageTar, nil, ErrCorruptLayer, 0},
		{"truncated tar", raw[:len(raw)-2000], []BuildOption{WithCompression(Uncompressed)}, ErrCorruptLayer, 0},
		{"pax global header", gzipBytes(t, globalHeader, gzip.BestSpeed), nil, nil, 'g'},
		{"contiguous file", withType('7'), []BuildOption{WithCompression(Uncompressed)}, nil, '7'},
		{"old GNU sparse", withType('S'), []BuildOption{WithCompression(Uncompressed)}, nil, 'S'},
		{"span size 0 uncompressed", raw, []BuildOption{WithCompression(Uncompressed), WithSpanSize(0)}, ErrInvalidSpanSize, 0},
		{"negative span size", layer, []BuildOption{WithSpanSize(-1)}, ErrInvalidSpanSize, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Build(context.Background(), bytes.NewReader(tc.layer), tc.opts...)
			if err == nil {
				t.Fatalf("no error; %d entries", len(res.Ztoc.FileMetadata))
			}
			if tc.typeflag != 0 {
				var unsupported *UnsupportedEntryError
				if !errors.As(err, &unsupported) || unsupported.Typeflag != tc.typeflag {
					t.Fatalf("got %v, want unsupported entry %q", err, tc.typeflag)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestBuildReadErrorAndCancel(t *testing.T) {
	boom := errors.New("connection reset")
	layer := gzipBytes(t, makeTar(t, corpusEntries()), gzip.BestSpeed)
	_, err := Build(context.Background(), io.MultiReader(bytes.NewReader(layer[:300000]), failingReader{boom}))
	if !errors.Is(err, boom) || errors.Is(err, ErrCorruptLayer) {
		t.Errorf("got %v, want the read error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, bytes.NewReader(layer)); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// sha256 of the blob is what the caller verifies the layer digest with.
func TestBuildLayerDigestIsSHA256(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()[:3]), gzip.BestSpeed)
	res, err := Build(context.Background(), bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(layer)
	if res.LayerDigest.Encoded() != digest.NewDigestFromBytes(digest.SHA256, sum[:]).Encoded() {
		t.Errorf("digest %s", res.LayerDigest)
	}
}

// countingReader exposes nothing but Read, as a registry response body.
type countingReader struct {
	r     io.Reader
	bytes int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bytes += int64(n)
	return n, err
}

// However the input arrives, the zTOC is the same, and the layer is read
// once, to its end.
func TestBuildReaderShapes(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:9])
	layer := gzipBytes(t, raw, gzip.BestSpeed)
	want, err := Marshal(build(t, layer, WithSpanSize(256<<10)))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]func() io.Reader{
		"one byte":    func() io.Reader { return iotest.OneByteReader(bytes.NewReader(layer)) },
		"half":        func() io.Reader { return iotest.HalfReader(bytes.NewReader(layer)) },
		"data+EOF":    func() io.Reader { return iotest.DataErrReader(bytes.NewReader(layer)) },
		"pipe chunks": func() io.Reader { return io.MultiReader(bytes.NewReader(layer[:1000]), bytes.NewReader(layer[1000:])) },
	} {
		t.Run(name, func(t *testing.T) {
			counter := &countingReader{r: r()}
			res, err := Build(context.Background(), counter, WithSpanSize(256<<10))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := Marshal(res.Ztoc)
			if !bytes.Equal(got, want) || counter.bytes != int64(len(layer)) {
				t.Errorf("zTOC equal: %v, read %d of %d bytes", bytes.Equal(got, want), counter.bytes, len(layer))
			}
		})
	}
}

// The tar stage checks each member's CRC-32 for the inflater; a bad one in
// any member, first, middle or last, fails the build as the inflater would.
func TestBuildChecksum(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	cuts := []int{0, len(raw) / 3, len(raw)/3 + 1, len(raw) / 2, len(raw)} // an empty member too
	var members [][]byte
	for i := range len(cuts) - 1 {
		members = append(members, gzipBytes(t, raw[cuts[i]:cuts[i+1]], gzip.DefaultCompression))
	}
	for bad := -1; bad < len(members); bad++ {
		var layer []byte
		for i, m := range members {
			m = bytes.Clone(m)
			if i == bad {
				m[len(m)-8] ^= 1
			}
			layer = append(layer, m...)
		}
		_, err := Build(context.Background(), bytes.NewReader(layer), WithSpanSize(1<<16))
		if bad < 0 {
			if err != nil {
				t.Fatalf("good layer: %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrCorruptLayer) || !errors.Is(err, inflate.ErrChecksum) {
			t.Errorf("bad CRC in member %d: got %v, want ErrCorruptLayer and inflate.ErrChecksum", bad, err)
		}
	}
}
