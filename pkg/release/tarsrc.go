package release

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

func isTarName(p string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// extractTar unpacks the tar (gzipped or not: the bytes say, not the name)
// at tarPath into dest, a new directory, refusing what could reach outside
// it: absolute paths, "..", links that point out, device files. Writes go
// through an os.Root on dest, so even a chain of links that each looked
// harmless cannot lead a write out of it. Every unsafe entry is reported,
// not just the first.
func extractTar(tarPath, dest string) error {
	fail := func(err error) error { return fmt.Errorf("import release %s: %w", tarPath, err) }
	f, err := os.Open(tarPath)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return corruptTar(tarPath, err)
		}
		defer gz.Close()
		r = gz
	}
	if err := os.Mkdir(dest, 0o755); err != nil {
		return fail(err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fail(err)
	}
	defer root.Close()

	const retar = "make the tar again from inside the release directory: tar -C DIR -czf release.tgz ."
	var problems []Problem
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return corruptTar(tarPath, err)
		}
		bad := func(what string) { problems = append(problems, Problem{File: hdr.Name, What: what, Fix: retar}) }
		name := hdr.Name
		if strings.HasPrefix(name, "/") {
			bad("tar entry with an absolute path")
			continue
		}
		if hasDotDot(name) {
			bad("tar entry with a .. in its path, which could write outside the release")
			continue
		}
		name = path.Clean(name)
		if name == "." {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				bad(fmt.Sprintf("cannot extract: %v", err))
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				bad(fmt.Sprintf("cannot extract: %v", err))
				continue
			}
			out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				bad(fmt.Sprintf("cannot extract: %v", err))
				continue
			}
			_, err = copyStream(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if re, ok := err.(readError); ok {
				return corruptTar(tarPath, fmt.Errorf("%s: %w", hdr.Name, re.err))
			}
			if err != nil {
				return fail(fmt.Errorf("extract %s: %w", hdr.Name, err))
			}
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			rel := target
			if hdr.Typeflag == tar.TypeSymlink {
				rel = path.Join(path.Dir(name), target) // a symlink is relative to its own dir
			}
			if strings.HasPrefix(target, "/") || escapes(rel) {
				bad(fmt.Sprintf("link to %s, outside the release", target))
				continue
			}
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				bad(fmt.Sprintf("cannot extract: %v", err))
				continue
			}
			if hdr.Typeflag == tar.TypeSymlink {
				err = root.Symlink(target, name)
			} else {
				err = root.Link(path.Clean(target), name)
			}
			if err != nil {
				bad(fmt.Sprintf("cannot extract: %v", err))
			}
		case tar.TypeXGlobalHeader:
			// PAX metadata for the whole tar (git archive writes one).
		case tar.TypeChar, tar.TypeBlock:
			bad("device file in the tar")
		case tar.TypeFifo:
			bad("named pipe in the tar")
		default:
			bad(fmt.Sprintf("tar entry of type %q, which a release does not hold", hdr.Typeflag))
		}
	}
	if len(problems) > 0 {
		return &ImportError{Src: tarPath, Problems: problems}
	}
	return nil
}

func corruptTar(tarPath string, err error) error {
	return &ImportError{Src: tarPath, Problems: []Problem{{
		File: filepath.Base(tarPath), What: fmt.Sprintf("corrupt tar: %v", err), Fix: "copy it again (compare its sha256sum with the one on the connected side)",
	}}}
}

func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// escapes reports whether the slash-separated path p, relative to the
// tree, leads out of it.
func escapes(p string) bool {
	p = path.Clean(p)
	return p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/")
}
