package corpus

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// errLimitReached stops the directory walk once enough file data was written.
var errLimitReached = errors.New("tree tar: data limit reached")

// WriteTreeTar writes a tar of the files under roots to w, as a real layer
// built from a root file system would look: directories, regular files,
// symlinks and, for files with several links, hard links. Roots are walked in
// lexical order, so the same machine gives the same archive. Each root
// contributes files until its regular-file data reaches limitPerRoot bytes
// (<= 0 means no limit), so a few roots give a mix of binaries, libraries
// and text. Unreadable entries and sockets are skipped, because a layer
// builder would not see them either. It returns the number of regular-file
// data bytes written.
func WriteTreeTar(ctx context.Context, w io.Writer, roots []string, limitPerRoot int64) (int64, error) {
	tw := tar.NewWriter(w)
	tree := treeWriter{tw: tw, limit: limitPerRoot, links: make(map[fileID]string)}
	var total int64
	for _, root := range roots {
		total += tree.written
		tree.written = 0
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				// Permission problems below a root are skipped, as a builder
				// running unprivileged would skip them.
				if errors.Is(err, fs.ErrPermission) {
					return nil
				}
				return err
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return tree.add(path, d)
		})
		if err != nil && !errors.Is(err, errLimitReached) {
			return total + tree.written, fmt.Errorf("walk %s: %w", root, err)
		}
	}
	total += tree.written
	if err := tw.Close(); err != nil {
		return total, fmt.Errorf("close tar: %w", err)
	}
	return total, nil
}

// fileID identifies an inode, to turn repeated links into tar hard links.
type fileID struct {
	dev, ino uint64
}

type treeWriter struct {
	tw      *tar.Writer
	limit   int64             // per root
	written int64             // by the current root
	links   map[fileID]string // first tar name of each multiply-linked inode
}

func (t *treeWriter) add(path string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", path, err)
	}
	mode := info.Mode()
	if mode&(fs.ModeSocket|fs.ModeDevice|fs.ModeNamedPipe|fs.ModeIrregular) != 0 {
		return nil
	}
	var target string
	if mode&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(path); err != nil {
			return fmt.Errorf("readlink %s: %w", path, err)
		}
	}
	hdr, err := tar.FileInfoHeader(info, target)
	if err != nil {
		return fmt.Errorf("tar header for %s: %w", path, err)
	}
	hdr.Name = strings.TrimPrefix(filepath.ToSlash(path), "/")
	if info.IsDir() {
		hdr.Name += "/"
	}
	// Drop the host user names so the archive does not depend on /etc/passwd.
	hdr.Uname, hdr.Gname = "", ""

	if st, ok := info.Sys().(*syscall.Stat_t); ok && mode.IsRegular() && st.Nlink > 1 {
		id := fileID{dev: st.Dev, ino: st.Ino}
		if first, seen := t.links[id]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return t.writeHeader(hdr)
		}
		t.links[id] = hdr.Name
	}

	if !mode.IsRegular() {
		return t.writeHeader(hdr)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := t.writeHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, f)
	t.written += n
	if err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	if t.limit > 0 && t.written >= t.limit {
		return errLimitReached
	}
	return nil
}

func (t *treeWriter) writeHeader(hdr *tar.Header) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header %s: %w", hdr.Name, err)
	}
	return nil
}
