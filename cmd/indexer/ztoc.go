package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

func newZtocCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ztoc",
		Short: "Build, inspect and read zTOCs (the per-layer part of a SOCI index)",
	}
	cmd.AddCommand(newZtocCreateCmd(), newZtocInfoCmd(), newZtocExtractCmd())
	return cmd
}

func newZtocCreateCmd() *cobra.Command {
	var (
		spanSize     int64
		uncompressed bool
		gzipLayer    bool
		output       string
		tool         string
	)
	cmd := &cobra.Command{
		Use:   "create LAYER|-",
		Short: "Build the zTOC of a layer blob (gzip or uncompressed tar) in one streaming pass",
		Long: "Build the zTOC of a layer blob, as soci-snapshotter v0.16.1 does, reading the layer once.\n" +
			"The compression is detected from the first bytes unless --gzip or --uncompressed is given.\n" +
			"Prints the zTOC's digest and size, then the layer's.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if uncompressed && gzipLayer {
				return errors.New("--gzip and --uncompressed exclude each other")
			}
			layerPath := args[0]
			if output == "" {
				if layerPath == "-" {
					return errors.New("-o is required when the layer is read from stdin")
				}
				output = layerPath + ".ztoc"
			}
			if err := ztoc.CheckSpanSize(spanSize); err != nil {
				return fmt.Errorf("--span-size: %w", err)
			}
			in, size, err := openZtocLayer(layerPath)
			if err != nil {
				return err
			}
			defer in.Close()

			r := bufio.NewReaderSize(in, 64<<10)
			compression := ztoc.Gzip
			switch {
			case uncompressed:
				compression = ztoc.Uncompressed
			case !gzipLayer:
				if compression, err = detectLayerCompression(r); err != nil {
					return fmt.Errorf("%s: %w", layerPath, err)
				}
			}

			opts := []ztoc.BuildOption{
				ztoc.WithSpanSize(spanSize),
				ztoc.WithCompression(compression),
				ztoc.WithBuildToolIdentifier(tool),
				ztoc.WithLogger(slog.Default()),
			}
			limit := limitHeapGrowth()
			var read atomic.Int64
			opts = append(opts, ztoc.WithProgress(func(n int64) {
				read.Store(n)
				if size > 0 && n >= size {
					// The layer is read; the zTOC is encoded next.
					limit.finalPhase()
				}
			}))
			stopProgress := func() {}
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) && (size < 0 || size >= 64<<20) {
				stopProgress = showZtocProgress(f, &read, size)
			}
			zf := &ztocFile{path: output, digester: digest.SHA256.Digester()}
			res, err := ztoc.BuildTo(cmd.Context(), r, zf, opts...)
			limit.stop()
			stopProgress()
			if err == nil {
				err = zf.close()
			}
			if err != nil {
				zf.abort()
				if zf.writeErr != nil {
					return fmt.Errorf("%s: %w", output, zf.writeErr)
				}
				return fmt.Errorf("%s: %w", layerPath, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "ztoc  %s %d %s\n", zf.digester.Digest(), res.ZtocSize, output)
			fmt.Fprintf(out, "layer %s %d %s\n", res.LayerDigest, res.LayerSize, compression)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&spanSize, "span-size", ztoc.DefaultSpanSize, "minimum span size in uncompressed bytes, at least 1 MiB (soci's default)")
	fl.BoolVar(&uncompressed, "uncompressed", false, "the layer is an uncompressed tar")
	fl.BoolVar(&gzipLayer, "gzip", false, "the layer is gzip-compressed")
	fl.StringVarP(&output, "output", "o", "", "file to write the zTOC to (default LAYER.ztoc)")
	fl.StringVar(&tool, "build-tool-identifier", ztoc.DefaultBuildToolIdentifier, "build tool recorded in the zTOC")
	return cmd
}

// ztocFile is the output of ztoc create. BuildTo writes the zTOC only once
// the layer is read, so the file is created at the first write: a failed
// build leaves an existing file alone. Writes are gathered in blocks that a
// goroutine of its own hashes and writes to the file while the next block
// is filled: writing the zTOC is the build's last step, on its critical
// path, and so the hashing and the file writes run beside the encoding
// instead of after it. Two blocks, so the zTOC is never held a second time.
type ztocFile struct {
	path     string
	digester digest.Digester
	f        *os.File
	block    []byte        // the block being filled
	full     chan []byte   // blocks for the writer goroutine
	free     chan []byte   // blocks it is done with
	done     chan struct{} // closed when the writer goroutine has ended
	failed   atomic.Bool   // the writer goroutine failed, with bgErr
	bgErr    error
	writeErr error // the first error of creating or writing the file
	regular  bool  // the output is a regular file, to be removed on failure (not /dev/stdout)
}

const (
	ztocFileBlockSize = 1 << 20
	ztocFileBlocks    = 2
)

func (z *ztocFile) Write(p []byte) (int, error) {
	if z.writeErr == nil && z.failed.Load() {
		z.writeErr = z.bgErr
	}
	if z.writeErr != nil {
		return 0, z.writeErr
	}
	if z.f == nil {
		if z.f, z.writeErr = os.Create(z.path); z.writeErr != nil {
			return 0, z.writeErr
		}
		if fi, err := z.f.Stat(); err == nil {
			z.regular = fi.Mode().IsRegular()
		}
		z.full = make(chan []byte, ztocFileBlocks-1)
		z.free = make(chan []byte, ztocFileBlocks)
		for range ztocFileBlocks {
			z.free <- make([]byte, 0, ztocFileBlockSize)
		}
		z.done = make(chan struct{})
		go z.writeBlocks()
	}
	n := len(p)
	for len(p) > 0 {
		if z.block == nil {
			z.block = <-z.free
		}
		k := min(len(p), cap(z.block)-len(z.block))
		z.block = append(z.block, p[:k]...)
		p = p[k:]
		if len(z.block) == cap(z.block) {
			z.full <- z.block
			z.block = nil
		}
	}
	return n, nil
}

// writeBlocks is the writer goroutine. After an error it only hands the
// blocks back, so that Write never waits for a block forever.
func (z *ztocFile) writeBlocks() {
	defer close(z.done)
	h := z.digester.Hash()
	for b := range z.full {
		if !z.failed.Load() {
			h.Write(b)
			if _, err := z.f.Write(b); err != nil {
				z.bgErr = err
				z.failed.Store(true)
			}
		}
		z.free <- b[:0]
	}
}

// stopWriter hands the writer goroutine the last block, if it is to be
// written, and waits for it to end.
func (z *ztocFile) stopWriter(flush bool) {
	if flush && len(z.block) > 0 {
		z.full <- z.block
	}
	z.block = nil
	close(z.full)
	<-z.done
	if z.writeErr == nil && z.failed.Load() {
		z.writeErr = z.bgErr
	}
}

// close writes the last block and closes the file.
func (z *ztocFile) close() error {
	if z.f == nil {
		return nil
	}
	z.stopWriter(z.writeErr == nil)
	err := z.writeErr
	if cerr := z.f.Close(); err == nil {
		err = cerr
	}
	z.f = nil
	if err != nil {
		z.writeErr = err
		z.remove()
	}
	return err
}

// abort removes a partly written file.
func (z *ztocFile) abort() {
	if z.f != nil {
		z.stopWriter(false)
		z.f.Close()
		z.f = nil
		z.remove()
	}
}

// remove removes a partly written output, if it is a regular file.
func (z *ztocFile) remove() {
	if z.regular {
		os.Remove(z.path)
	}
}

// Heap slack allowed by limitHeapGrowth above the live heap, while the
// layer is read and once it is (the zTOC is encoded then), and how often
// the limit follows the live heap.
const (
	ztocHeapSlack      = 16 << 20
	ztocFinalHeapSlack = 4 << 20
	ztocFinalFrom      = 32 << 20 // live heap from which the final slack applies
	// The lowest limit set. At the start of a build the live heap is a
	// MiB or two and the pipeline's buffers (about 9 MiB) are allocated
	// at once; a limit of live+16 MiB made the collector run six times in
	// the first 60 ms; the floor made a 300 MB layer's build about 4 %
	// faster (docs/bench/ztoc.md).
	ztocLimitFloor      = 32 << 20
	ztocLimitUpdateTick = 50 * time.Millisecond
)

// heapLimit is what limitHeapGrowth returns.
type heapLimit struct {
	final chan struct{} // closed by finalPhase
	once  sync.Once
	stop  func()
}

// finalPhase lowers the slack to ztocFinalHeapSlack once the live heap is
// ztocFinalFrom or more: encoding the zTOC allocates little but holds the
// most (the encoded TOC beside the stored checkpoints), and with the
// build's buffers freed a tight limit makes the runtime reuse and return
// their memory instead of growing (peak RSS on a 1.8 GB layer 66-67 MiB
// against 77, docs/bench/ztoc-vs-soci.md). A small zTOC is left alone: the
// extra collection would only add to the build's time.
func (l *heapLimit) finalPhase() { l.once.Do(func() { close(l.final) }) }

// limitHeapGrowth keeps the Go runtime's memory limit at the live heap plus
// ztocHeapSlack until stopped. A build's live heap is mostly the zTOC it
// accumulates, and Go's default GOGC=100 lets the heap grow to twice that
// before collecting; the limit makes it collect, and return freed memory to
// the OS, sooner. It follows the live heap rather than being fixed so that
// a large layer does not make the collector run all the time. This is
// process-wide state, so it is set here in the command, not in pkg/ztoc;
// an explicit GOMEMLIMIT lower than the limit is kept.
func limitHeapGrowth() *heapLimit {
	previous := debug.SetMemoryLimit(-1)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	finalPhase := false
	update := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := int64(sample[0].Value.Uint64())
		slack := int64(ztocHeapSlack)
		if finalPhase && live >= ztocFinalFrom {
			slack = ztocFinalHeapSlack
		}
		debug.SetMemoryLimit(min(max(live+slack, ztocLimitFloor), previous))
	}
	update()
	l := &heapLimit{final: make(chan struct{})}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(ztocLimitUpdateTick)
		defer tick.Stop()
		final := l.final
		for {
			select {
			case <-done:
				return
			case <-final:
				final = nil
				finalPhase = true
				update()
			case <-tick.C:
				update()
			}
		}
	}()
	l.stop = func() {
		close(done)
		<-finished
		debug.SetMemoryLimit(previous)
	}
	return l
}

// openZtocLayer opens a layer file, or stdin for "-". size is -1 when unknown.
func openZtocLayer(path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// detectLayerCompression looks at the magic number of a layer.
func detectLayerCompression(r *bufio.Reader) (ztoc.Compression, error) {
	magic, err := r.Peek(4)
	if err != nil && err != io.EOF {
		return "", err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return ztoc.Gzip, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "", errors.New("zstd layers are not supported (soci v0.16 skips them)")
	}
	return ztoc.Uncompressed, nil
}

// showZtocProgress redraws a progress line on a terminal until stopped.
func showZtocProgress(w io.Writer, read *atomic.Int64, size int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
				n := read.Load()
				rate := float64(n) / time.Since(start).Seconds() / 1e6
				if size > 0 {
					fmt.Fprintf(w, "\r\033[K%d/%d MB (%.0f%%) %.0f MB/s", n/1e6, size/1e6, 100*float64(n)/float64(size), rate)
				} else {
					fmt.Fprintf(w, "\r\033[K%d MB %.0f MB/s", n/1e6, rate)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func newZtocInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Show a zTOC: sizes, spans and entries",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			z, blob, err := readZtoc(args[0])
			if err != nil {
				return err
			}
			spans, err := z.Spans()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeZtocJSON(out, z, blob, spans)
			}
			fmt.Fprintf(out, "digest:              %s\n", digest.FromBytes(blob))
			fmt.Fprintf(out, "size:                %d\n", len(blob))
			fmt.Fprintf(out, "version:             %s\n", z.Version)
			fmt.Fprintf(out, "build tool:          %s\n", z.BuildToolIdentifier)
			fmt.Fprintf(out, "compression:         %s\n", z.CompressionAlgorithm)
			fmt.Fprintf(out, "compressed size:     %d\n", z.CompressedArchiveSize)
			fmt.Fprintf(out, "uncompressed size:   %d\n", z.UncompressedArchiveSize)
			fmt.Fprintf(out, "spans:               %d\n", len(spans))
			fmt.Fprintf(out, "entries:             %d\n\n", len(z.FileMetadata))
			tw := tabwriter.NewWriter(out, 0, 8, 1, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tMODE\tUID:GID\tSIZE\tOFFSET\tSPAN\tMODIFIED\tNAME")
			for _, f := range z.FileMetadata {
				span := "-"
				if f.UncompressedSize > 0 {
					if id, err := z.SpanOf(f.UncompressedOffset); err == nil {
						span = fmt.Sprint(id)
					}
				}
				name := f.Name
				if f.Linkname != "" {
					name += " -> " + f.Linkname
				}
				fmt.Fprintf(tw, "%s\t%#o\t%d:%d\t%d\t%d\t%s\t%s\t%s\n", f.Type, f.Mode, f.UID, f.GID,
					f.UncompressedSize, f.UncompressedOffset, span, f.ModTime.UTC().Format(time.RFC3339), name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeZtocJSON(w io.Writer, z *ztoc.Ztoc, blob []byte, spans []ztoc.Span) error {
	type entry struct {
		Name     string            `json:"name"`
		Type     string            `json:"type"`
		Offset   int64             `json:"offset"`
		Size     int64             `json:"size"`
		Linkname string            `json:"linkname,omitempty"`
		Mode     int64             `json:"mode"`
		UID      int               `json:"uid"`
		GID      int               `json:"gid"`
		ModTime  time.Time         `json:"modTime"`
		Devmajor int64             `json:"devmajor,omitempty"`
		Devminor int64             `json:"devminor,omitempty"`
		PAX      map[string]string `json:"pax,omitempty"`
	}
	view := struct {
		Digest                  digest.Digest    `json:"digest"`
		Size                    int              `json:"size"`
		Version                 string           `json:"version"`
		BuildToolIdentifier     string           `json:"buildToolIdentifier"`
		Compression             ztoc.Compression `json:"compression"`
		CompressedArchiveSize   int64            `json:"compressedArchiveSize"`
		UncompressedArchiveSize int64            `json:"uncompressedArchiveSize"`
		Spans                   []ztoc.Span      `json:"spans"`
		Entries                 []entry          `json:"entries"`
	}{
		Digest: digest.FromBytes(blob), Size: len(blob), Version: z.Version, BuildToolIdentifier: z.BuildToolIdentifier,
		Compression: z.CompressionAlgorithm, CompressedArchiveSize: z.CompressedArchiveSize,
		UncompressedArchiveSize: z.UncompressedArchiveSize, Spans: spans, Entries: []entry{},
	}
	for _, f := range z.FileMetadata {
		view.Entries = append(view.Entries, entry{f.Name, f.Type, f.UncompressedOffset, f.UncompressedSize, f.Linkname,
			f.Mode, f.UID, f.GID, f.ModTime.UTC(), f.Devmajor, f.Devminor, f.PAXHeaders})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(view)
}

func newZtocExtractCmd() *cobra.Command {
	var ztocPath, output string
	cmd := &cobra.Command{
		Use:   "extract --ztoc FILE LAYER PATH",
		Short: "Extract one file from a layer blob through its zTOC, reading only the spans that hold it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			z, _, err := readZtoc(ztocPath)
			if err != nil {
				return err
			}
			layer, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer layer.Close()
			if output == "" || output == "-" {
				// Buffered, so that nothing unverified reaches stdout.
				data, err := z.ExtractFile(cmd.Context(), layer, args[1])
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			// Streamed to a temporary file, renamed once every span checked out.
			tmp, err := os.CreateTemp(filepath.Dir(output), ".ztoc-extract-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			err = z.ExtractFileTo(cmd.Context(), layer, args[1], tmp)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			return os.Rename(tmp.Name(), output)
		},
	}
	cmd.Flags().StringVar(&ztocPath, "ztoc", "", "the layer's zTOC file")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write to (default stdout)")
	_ = cmd.MarkFlagRequired("ztoc")
	return cmd
}

func readZtoc(path string) (*ztoc.Ztoc, []byte, error) {
	blob, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	z, err := ztoc.Unmarshal(blob)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return z, blob, nil
}
