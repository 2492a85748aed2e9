// Package assetfs is the one file system bootsrv serves machines from,
// over TFTP and HTTP alike: the first-stage binaries (embedded in the
// binary, or --ipxe-dir) in front of the assets dir, which is jailed with
// os.Root (no "..", no symlink out). Only regular files are served, and
// dot-names of the assets dir never are (a release import stages under one
// until it is verified and committed). Each door maps its own request
// names onto FirstStage, Asset or Lookup.
package assetfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// ErrNotRegular refuses a directory, device, FIFO or socket.
var ErrNotRegular = errors.New("not a regular file")

// Origins of a File.
const (
	FromFirstStage = "first-stage"
	FromAssetsDir  = "assets-dir"
)

// FS is the first stage over the assets dir.
type FS struct {
	first fs.FS
	root  *os.Root
}

// Open serves first (may be nil) over assetsDir ("" for none).
func Open(first fs.FS, assetsDir string) (*FS, error) {
	f := &FS{first: first}
	if assetsDir != "" {
		root, err := os.OpenRoot(assetsDir)
		if err != nil {
			return nil, fmt.Errorf("open assets dir %s: %w", assetsDir, err)
		}
		f.root = root
	}
	return f, nil
}

// HasAssetsDir says whether there is an assets dir behind the first stage.
func (f *FS) HasAssetsDir() bool { return f != nil && f.root != nil }

// Close releases the assets dir.
func (f *FS) Close() error {
	if f == nil || f.root == nil {
		return nil
	}
	return f.root.Close()
}

// Content is an open file's bytes: random access for TFTP's blocks,
// seeking for HTTP's ranges.
type Content interface {
	io.ReadSeeker
	io.ReaderAt
}

// File is one open file to serve.
type File struct {
	Content
	Info fs.FileInfo
	From string // FromFirstStage or FromAssetsDir
	c    io.Closer
}

// Close closes the file.
func (f *File) Close() error {
	if f.c == nil {
		return nil
	}
	return f.c.Close()
}

// FirstStage opens a first-stage binary by its name (fs.ErrNotExist when
// there is none).
func (f *FS) FirstStage(name string) (*File, error) {
	if f == nil || f.first == nil {
		return nil, fs.ErrNotExist
	}
	file, st, err := regular(f.first.Open(name))
	if err != nil {
		return nil, err
	}
	if c, ok := file.(Content); ok {
		return &File{Content: c, Info: st, From: FromFirstStage, c: file}, nil
	}
	// An fs.FS without random access: first-stage files are small, hold it.
	data, err := io.ReadAll(file)
	file.Close()
	if err != nil {
		return nil, err
	}
	return &File{Content: bytes.NewReader(data), Info: st, From: FromFirstStage}, nil
}

// Asset opens name, a clean relative path, in the assets dir.
func (f *FS) Asset(name string) (*File, error) {
	if !f.HasAssetsDir() || strings.HasPrefix(name, ".") || strings.Contains(name, "/.") {
		return nil, fs.ErrNotExist
	}
	// O_NONBLOCK so that a FIFO in the assets dir cannot hang the open;
	// it is then refused as not regular.
	file, st, err := regular(f.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0))
	if err != nil {
		return nil, err
	}
	return &File{Content: file, Info: st, From: FromAssetsDir, c: file}, nil
}

// regular passes on an opened file that is a regular one, with its info,
// and closes any other.
func regular[F fs.File](file F, err error) (F, fs.FileInfo, error) {
	var zero F
	if err != nil {
		return zero, nil, err
	}
	st, err := file.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = ErrNotRegular
	}
	if err != nil {
		file.Close()
		return zero, nil, err
	}
	return file, st, nil
}

// Lookup opens name from the first stage, else from the assets dir.
func (f *FS) Lookup(name string) (*File, error) {
	file, err := f.FirstStage(name)
	if errors.Is(err, fs.ErrNotExist) {
		return f.Asset(name)
	}
	return file, err
}

// IsEscape reports os.Root refusing a path that leaves the root (via ".."
// or a symlink). Go reports it as a *PathError whose text says so; there
// is no exported sentinel in Go 1.26.
func IsEscape(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}
