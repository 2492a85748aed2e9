// Package release imports the upstream releases an airgapped site runs
// (Kubernetes' per-binary downloads, etcd, the CNI plugins, flannel and its
// CNI plugin, CoreDNS) into the assets dir: it verifies every file against
// the checksum its project published, unpacks the archives, checks that each
// binary is an ELF executable for the arch its release names, and lays the
// binaries out as <component>/<version>/<arch>/<name>.
//
// Files are recognized by name and place, anywhere in the tree: Kubernetes'
// <version>/bin/linux/<arch>/<name> (as on dl.k8s.io),
// etcd-<version>-linux-<arch>.tar.gz, cni-plugins-linux-<arch>-<version>.tgz,
// flanneld-<arch> in a directory named by its version,
// cni-plugin-flannel-linux-<arch>-<version>.tgz and
// coredns_<version>_linux_<arch>.tgz, for amd64 and arm64. A file is
// verified by every <file>.sha256, <file>.sha512 beside it and every
// SHA256SUMS, SHA512SUMS, sha256sum.txt, sha512sum.txt or checksums.txt in
// its directory that names it; one that none names is refused.
//
// An import is all or nothing. Stage builds the whole result in a staging
// dir inside the assets dir and refuses it, naming every bad file at once,
// if anything does not verify; only Commit makes it visible, by renames on
// one filesystem. A node is never served half an import.
package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

// StagingPrefix starts the name of the staging dir Stage makes inside the
// assets dir. It begins with a dot so that whatever serves the assets dir
// can tell it is not an asset; one left behind by a crash is safe to remove.
const StagingPrefix = ".release-import-"

// Asset is one binary an import lays out.
type Asset struct {
	Component string `json:"component" yaml:"component"`
	Version   string `json:"version" yaml:"version"`
	Arch      string `json:"arch" yaml:"arch"`
	Name      string `json:"name" yaml:"name"`
	// Path is relative to the assets dir, slash-separated:
	// "kubernetes/v1.37.2/amd64/kubelet".
	Path   string `json:"path" yaml:"path"`
	Size   int64  `json:"size" yaml:"size"`
	SHA256 string `json:"sha256" yaml:"sha256"` // hex, of the binary as laid out
	SHA512 string `json:"sha512" yaml:"sha512"` // hex
	// From is the upstream file it came from, relative to src; a member of
	// an archive follows a "!": "etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz!etcd-v3.6.16-linux-amd64/etcd".
	From string `json:"from" yaml:"from"`
	// VerifiedBy is the checksum file(s) that vouched for From, relative to
	// src, comma-separated.
	VerifiedBy string `json:"verified_by" yaml:"verified_by"`
}

// Staged is an import that verified, laid out in a staging dir inside the
// assets dir, waiting for Commit or Abort. It is not safe for concurrent
// use, and two imports into one assets dir should not commit at once: the
// caller (one CLI command, or the server holding its lock) serializes them.
type Staged struct {
	Src     string  // what was imported, as given to Stage
	Assets  []Asset // sorted by Path
	Skipped []string

	assetsDir string   // absolute
	dir       string   // the staging dir
	units     []string // the component/version/arch dirs under dir/new, slash-separated, sorted
	state     state
	rename    func(oldpath, newpath string) error // os.Rename; a test makes it fail
	moved     []move                              // a Swap's renames, for Undo
	made      []string                            // dirs a Swap created in the assets dir, parents first
}

type state int

const (
	staged  state = iota
	swapped       // in place, the replaced files still kept for Undo
	committed
	aborted
	stuck // a Commit failed and could not put everything back: keep the staging dir for the operator
)

// Problem is one reason an import is refused.
type Problem struct {
	File string // relative to src (inside it, for a tar)
	What string // what is wrong with it
	Fix  string // what the operator does about it
}

func (p Problem) String() string { return p.File + ": " + p.What + "; " + p.Fix }

// ImportError lists everything wrong with a release tree. Stage returns it
// when any file fails, after looking at all of them: an operator fixing a
// 500 MB download wants to hear about every bad file at once.
type ImportError struct {
	Src      string
	Problems []Problem // sorted by File
}

func (e *ImportError) Error() string {
	var b strings.Builder
	n := "1 problem"
	if len(e.Problems) != 1 {
		n = fmt.Sprintf("%d problems", len(e.Problems))
	}
	fmt.Fprintf(&b, "import release %s: refused, nothing imported (%s):", e.Src, n)
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// Stage verifies and unpacks everything under src into a staging dir
// inside assetsDir (so that Commit's renames stay on one filesystem).
// Nothing visible changes in assetsDir until Commit: the staging dir's name
// starts with StagingPrefix, and Stage removes it when it fails. assetsDir
// is created if it does not exist.
//
// src is a release tree, as an operator downloaded it (any layout: files are
// recognized by name and place, see Classify), or a .tar, .tar.gz or .tgz of
// one. Files that are neither releases nor checksums are listed in
// Staged.Skipped. A refused import returns an *ImportError.
func Stage(src, assetsDir string) (*Staged, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("import release: %w", err)
	}
	abs, err := filepath.Abs(assetsDir)
	if err != nil {
		return nil, fmt.Errorf("import release %s: assets dir: %w", src, err)
	}
	if fi.IsDir() {
		if err := disjoint(src, abs); err != nil {
			return nil, fmt.Errorf("import release %s: %w", src, err)
		}
	} else if !isTarName(src) {
		return nil, fmt.Errorf("import release %s: not a directory, nor a .tar, .tar.gz or .tgz of one", src)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("import release %s: assets dir: %w", src, err)
	}
	dir, err := os.MkdirTemp(abs, StagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("import release %s: make staging dir: %w", src, err)
	}
	s := &Staged{Src: src, assetsDir: abs, dir: dir, rename: os.Rename}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(dir)
		}
	}()
	tree := src
	if !fi.IsDir() {
		tree = filepath.Join(dir, "src")
		if err := extractTar(src, tree); err != nil {
			return nil, err
		}
	}
	if err := s.stage(tree); err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		if err := os.RemoveAll(tree); err != nil {
			return nil, fmt.Errorf("import release %s: remove the unpacked tar: %w", src, err)
		}
	}
	done = true
	return s, nil
}

// disjoint refuses a release tree and an assets dir inside one another:
// the walk would read the staging dir, or the import would read itself.
func disjoint(src, assetsDir string) error {
	a, err := resolve(src)
	if err != nil {
		return err
	}
	b, err := resolve(assetsDir)
	if err != nil {
		return err
	}
	within := func(p, dir string) bool {
		r, err := filepath.Rel(dir, p)
		return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
	}
	if within(a, b) || within(b, a) {
		return fmt.Errorf("the release dir and the assets dir %s are inside one another; put the release elsewhere", assetsDir)
	}
	return nil
}

// resolve makes p absolute with its symlinks resolved, as far as it
// exists: an assets dir may not exist yet.
func resolve(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r, nil
	}
	if parent := filepath.Dir(p); parent != p {
		d, err := resolve(parent)
		if err != nil {
			return "", err
		}
		return filepath.Join(d, filepath.Base(p)), nil
	}
	return p, nil
}

// claim is one checksum file's word on one file.
type claim struct {
	digest string // hex; its length says the algorithm
	by     string // the checksum file, relative to src
}

// job is one recognized upstream file to verify and unpack.
type job struct {
	rel    string
	up     Upstream
	claims []claim
}

// laid is a binary a job wrote into its work dir.
type laid struct {
	Asset
	tmp string
}

type jobResult struct {
	laid     []laid
	skipped  []string
	problems []Problem
	err      error // the staging side failed (disk full, ...): the import cannot go on
}

// maxChecksumFile bounds what is read of a checksum file: a listing of a
// few thousand files is kilobytes, so anything this big is not one.
const maxChecksumFile = 16 << 20

// stage walks tree, verifies and unpacks what it recognizes into s.dir/new.
func (s *Staged) stage(tree string) error {
	root, err := os.OpenRoot(tree)
	if err != nil {
		return fmt.Errorf("import release %s: %w", s.Src, err)
	}
	defer root.Close()

	var (
		files    []string
		problems []Problem
	)
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			problems = append(problems, Problem{File: p, What: fmt.Sprintf("cannot read: %v", err), Fix: "make it readable to bootsrv"})
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
		case t.IsRegular():
			files = append(files, p)
		case t&fs.ModeSymlink != 0:
			// Followed only to a file inside the tree: the tree is what the
			// operator carries in, and a directory link could loop.
			fi, err := root.Stat(p)
			switch {
			case err == nil && fi.Mode().IsRegular():
				files = append(files, p)
			case err == nil || errors.Is(err, fs.ErrNotExist):
				s.Skipped = append(s.Skipped, p)
			default:
				problems = append(problems, Problem{File: p, What: "symlink points outside the release", Fix: "copy the file it points to into the release instead"})
			}
		default:
			s.Skipped = append(s.Skipped, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import release %s: %w", s.Src, err)
	}

	present := make(map[string]bool, len(files))
	for _, f := range files {
		present[f] = true
	}
	claims := map[string][]claim{}
	// What a refused checksum file would have vouched for: those files are
	// not also reported as missing a checksum, which would send the
	// operator looking for a file that is there.
	brokenFor, brokenDir := map[string]bool{}, map[string]bool{}
	refused := func(f, target string) {
		if target != "" {
			brokenFor[target] = true
		} else {
			brokenDir[path.Dir(f)] = true
		}
	}
	for _, f := range files {
		base := path.Base(f)
		_, beside, ok := checksumFile(base)
		if !ok {
			continue
		}
		var target string
		if beside {
			target = path.Join(path.Dir(f), base[:len(base)-len(".sha256")])
			if !present[target] {
				// Its file was not downloaded: worth telling the operator.
				s.Skipped = append(s.Skipped, f)
				continue
			}
		}
		data, err := readSmall(root, f)
		if err != nil {
			problems = append(problems, Problem{File: f, What: fmt.Sprintf("cannot read checksum file: %v", err), Fix: "download it again"})
			refused(f, target)
			continue
		}
		sums, err := ParseChecksums(base, data)
		if err != nil {
			problems = append(problems, Problem{File: f, What: "bad checksum file: " + err.Error(), Fix: "download it again from the project's release page"})
			refused(f, target)
			continue
		}
		if beside {
			d, ok := sums[path.Base(target)]
			if !ok {
				for k, v := range sums {
					if path.Base(k) == path.Base(target) {
						d, ok = v, true
					}
				}
			}
			if !ok {
				problems = append(problems, Problem{File: f, What: fmt.Sprintf("bad checksum file: it names %s, not %s beside it", strings.Join(slices.Sorted(maps.Keys(sums)), ", "), path.Base(target)), Fix: "download the checksum file of " + path.Base(target) + " again"})
				refused(f, target)
				continue
			}
			claims[target] = append(claims[target], claim{d, f})
			continue
		}
		for k, d := range sums {
			if strings.HasPrefix(k, "/") {
				// sha256sum run on absolute paths: the file is its name.
				k = path.Base(k)
			}
			// A listing vouches for its own directory (and below it).
			// Names of files not downloaded (other arches) are the norm.
			if t := path.Join(path.Dir(f), k); !escapes(k) && present[t] {
				claims[t] = append(claims[t], claim{d, f})
			}
		}
	}

	var jobs []job
	for _, f := range files {
		if IsChecksumFile(path.Base(f)) {
			continue
		}
		u, ok := Classify(f)
		if !ok {
			s.Skipped = append(s.Skipped, f)
			continue
		}
		if u.Version == "" {
			problems = append(problems, Problem{File: f, What: "cannot tell flannel's version: flanneld's name does not carry it, so its directory must",
				Fix: "put it in a directory named by its version, e.g. v0.28.10/" + path.Base(f)})
			continue
		}
		c := claims[f]
		if len(c) == 0 && (brokenFor[f] || brokenDir[path.Dir(f)]) {
			continue // its checksum file is refused already
		}
		if len(c) == 0 {
			problems = append(problems, Problem{File: f, What: "missing checksum: no " + path.Base(f) + ".sha256 or .sha512 beside it, and no SHA256SUMS, SHA512SUMS, sha256sum.txt, sha512sum.txt or checksums.txt in its directory names it",
				Fix: "download its checksum file from the project's release page into the same directory"})
			continue
		}
		jobs = append(jobs, job{rel: f, up: u, claims: c})
	}

	// Every job runs, even once some have failed, so that the refusal names
	// every bad file. Each writes into a work dir of its own: two jobs may
	// make the same asset, and which one is laid out is decided after.
	work := filepath.Join(s.dir, "work")
	results := make([]jobResult, len(jobs))
	sem := make(chan struct{}, workers())
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dir := filepath.Join(work, fmt.Sprint(i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				results[i] = jobResult{err: fmt.Errorf("import release %s: %w", s.Src, err)}
				return
			}
			results[i] = run(root, j, dir)
		})
	}
	wg.Wait()

	var all []laid
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
		all = append(all, r.laid...)
		s.Skipped = append(s.Skipped, r.skipped...)
		problems = append(problems, r.problems...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Path != all[j].Path {
			return all[i].Path < all[j].Path
		}
		return all[i].From < all[j].From
	})
	var kept []laid
	for _, l := range all {
		if n := len(kept); n > 0 && kept[n-1].Path == l.Path {
			if kept[n-1].SHA256 != l.SHA256 {
				problems = append(problems, Problem{File: l.From, What: fmt.Sprintf("it would be laid out as %s, as would %s, which differs from it", l.Path, kept[n-1].From),
					Fix: "keep only one of them in the release"})
			} else {
				s.Skipped = append(s.Skipped, l.From) // the same binary twice
			}
			continue
		}
		kept = append(kept, l)
	}

	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].File < problems[j].File })
		return &ImportError{Src: s.Src, Problems: problems}
	}
	if len(kept) == 0 {
		return fmt.Errorf("import release %s: no release files in it (%d other files skipped); expected Kubernetes' <version>/bin/linux/<arch>/ binaries, etcd-*.tar.gz, cni-plugins-*.tgz, flanneld-<arch>, cni-plugin-flannel-*.tgz or coredns_*.tgz", s.Src, len(s.Skipped))
	}

	units := map[string]bool{}
	for _, l := range kept {
		dst := filepath.Join(s.dir, "new", filepath.FromSlash(l.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("import release %s: %w", s.Src, err)
		}
		if err := os.Rename(l.tmp, dst); err != nil {
			return fmt.Errorf("import release %s: %w", s.Src, err)
		}
		units[path.Dir(l.Path)] = true
		s.Assets = append(s.Assets, l.Asset)
	}
	s.units = slices.Sorted(maps.Keys(units))
	sort.Strings(s.Skipped)
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("import release %s: %w", s.Src, err)
	}
	return nil
}

func readSmall(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxChecksumFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxChecksumFile {
		return nil, fmt.Errorf("larger than %d MiB, too large to be a checksum file", maxChecksumFile>>20)
	}
	return data, nil
}

// hashes computes both digests an Asset records, in one pass.
type hashes struct{ h256, h512 hash.Hash }

func newHashes() *hashes { return &hashes{sha256.New(), sha512.New()} }

func (h *hashes) Write(p []byte) (int, error) {
	h.h256.Write(p)
	h.h512.Write(p)
	return len(p), nil
}

func (h *hashes) sums() (string, string) {
	return hex.EncodeToString(h.h256.Sum(nil)), hex.EncodeToString(h.h512.Sum(nil))
}

// bufs are copy buffers: large, since the files are tens of megabytes.
var bufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// readError marks a failure to read the source, as opposed to writing the
// staging dir: the first is the release's problem, the second the import's.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

// copyStream copies r to w through a pooled buffer, telling a failure to
// read (a readError) from a failure to write.
func copyStream(w io.Writer, r io.Reader) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, readError{rerr}
		}
	}
}

// writeBinary streams r into a new file at dst, mode 0755, through the
// extra writer w (the hashes), and syncs it: Commit only renames, so what
// it makes visible must already be on disk.
func writeBinary(dst string, r io.Reader, w io.Writer) (int64, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return 0, err
	}
	n, err := copyStream(io.MultiWriter(f, w), r)
	if err != nil {
		f.Close()
		return n, err
	}
	if err := f.Chmod(0o755); err != nil { // past the umask
		f.Close()
		return n, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return n, err
	}
	return n, f.Close()
}

// run verifies one upstream file while it unpacks it into dir: the file is
// read once, its digests computed on the way through, and its binaries
// hashed as they are written. Nothing it writes counts until the digests
// match, and Stage discards it all if any file fails.
func run(root *os.Root, j job, dir string) jobResult {
	var r jobResult
	problem := func(what, fix string) jobResult {
		r.problems = append(r.problems, Problem{File: j.rel, What: what, Fix: fix})
		return r
	}
	const again = "download it again"
	in, err := root.Open(j.rel)
	if err != nil {
		return problem(fmt.Sprintf("cannot read: %v", err), "make it readable to bootsrv")
	}
	defer in.Close()
	h := newHashes()
	src := io.TeeReader(in, h)

	var corrupt error
	switch j.up.Kind {
	case KindBinary:
		// The file is the binary: its digests are the binary's.
		tmp := filepath.Join(dir, j.up.Name)
		n, err := writeBinary(tmp, src, io.Discard)
		if err != nil {
			if re, ok := err.(readError); ok {
				return problem(fmt.Sprintf("cannot read: %v", re.err), again)
			}
			r.err = fmt.Errorf("stage %s: %w", j.rel, err)
			return r
		}
		s256, s512 := h.sums()
		r.laid = append(r.laid, j.laid(j.up.Name, n, s256, s512, j.rel, tmp))
	case KindTarGz:
		corrupt = r.unpack(src, j, dir)
		if r.err != nil {
			return r
		}
	}
	// The digest is of the whole file, whatever the archive reader left.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return problem(fmt.Sprintf("cannot read: %v", err), again)
	}

	// A digest that does not match says all there is to say about the file.
	s256, s512 := h.sums()
	bad := false
	for _, c := range j.claims {
		got := s256
		if len(c.digest) == sha512Hex {
			got = s512
		}
		if got != c.digest {
			bad = true
			by := c.by
			if path.Dir(by) == path.Dir(j.rel) {
				by = path.Base(by)
			}
			problem(fmt.Sprintf("%s mismatch: %s says %s, the file hashes to %s (tampered with, or cut short in the download)", algo(len(c.digest)), by, c.digest, got),
				"download it again; if it was whole, download its checksum file again too")
		}
	}
	if bad {
		r.laid = nil
		return r
	}
	if corrupt != nil {
		r.laid = nil
		what := fmt.Sprintf("corrupt archive: %v", corrupt)
		if errors.Is(corrupt, io.ErrUnexpectedEOF) {
			what += " (it is cut short)"
		}
		return problem(what, again)
	}
	if j.up.Kind == KindTarGz {
		if len(r.laid) == 0 {
			return problem("the archive holds none of its binaries: not the release it is named after", again)
		}
		if p := j.up.primary(); p != "" && !slices.ContainsFunc(r.laid, func(l laid) bool { return l.Name == p }) {
			return problem(fmt.Sprintf("the archive holds no %s: not the release it is named after", p), again)
		}
	}
	for _, l := range r.laid {
		member := l.Name
		if i := strings.Index(l.From, "!"); i >= 0 {
			member = l.From[i+1:]
		}
		what, err := checkELF(l.tmp, member, j.up.Arch)
		if err != nil {
			r.err = fmt.Errorf("stage %s: %w", j.rel, err)
			return r
		}
		if what != "" {
			problem(what, "download its linux/"+j.up.Arch+" build: this file is not one, or sits under the wrong arch's name")
		}
	}
	return r
}

// unpack extracts the binaries of the archive read from src into dir,
// returning what makes it a corrupt archive, if anything. Members that are
// not binaries of the release are listed as skipped.
func (r *jobResult) unpack(src io.Reader, j job, dir string) error {
	gz, err := gzip.NewReader(src)
	if err != nil {
		return err
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %s leaves the archive", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		out, take := j.up.member(name)
		if !take || hdr.Typeflag != tar.TypeReg {
			r.skipped = append(r.skipped, j.rel+"!"+name)
			continue
		}
		if seen[out] {
			return fmt.Errorf("it holds %s twice", name)
		}
		seen[out] = true
		mh := newHashes()
		tmp := filepath.Join(dir, out)
		n, err := writeBinary(tmp, tr, mh)
		if err != nil {
			if re, ok := err.(readError); ok {
				return fmt.Errorf("%s: %w", name, re.err)
			}
			r.err = fmt.Errorf("stage %s: %w", j.rel, err)
			return nil
		}
		s256, s512 := mh.sums()
		r.laid = append(r.laid, j.laid(out, n, s256, s512, j.rel+"!"+name, tmp))
	}
	// To the end of the gzip stream, so that its CRC and length are checked.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return err
	}
	return nil
}

func (j job) laid(name string, size int64, s256, s512, from, tmp string) laid {
	var by []string
	for _, c := range j.claims {
		if !slices.Contains(by, c.by) {
			by = append(by, c.by)
		}
	}
	sort.Strings(by)
	u := j.up
	return laid{Asset: Asset{
		Component: u.Component, Version: u.Version, Arch: u.Arch, Name: name,
		Path: path.Join(u.Component, u.Version, u.Arch, name),
		Size: size, SHA256: s256, SHA512: s512,
		From: from, VerifiedBy: strings.Join(by, ", "),
	}, tmp: tmp}
}

// Commit moves the staged binaries into place, one component/version/arch
// directory at a time: an existing one is renamed aside, the staged one
// renamed in, and the old one removed once all are in. Every rename stays
// on one filesystem, so a directory is either the old release or the new,
// never a mix (a request in the instant between the two renames of one
// directory finds it missing, and iPXE and Ignition retry). If a step fails
// midway, Commit puts back what it moved and returns the error, leaving
// the import staged. Commit removes the staging dir. It is Swap, then
// Finish.
func (s *Staged) Commit() error {
	if err := s.Swap(); err != nil {
		return err
	}
	return s.Finish()
}

// Swap is Commit's first half: the staged directories are in place and the
// replaced ones kept aside, so that Undo can still put everything back
// (when the caller's record of the import fails to commit) until Finish.
func (s *Staged) Swap() error {
	switch s.state {
	case committed, swapped:
		return fmt.Errorf("commit release %s: already committed", s.Src)
	case aborted:
		return fmt.Errorf("commit release %s: it was aborted", s.Src)
	case stuck:
		return fmt.Errorf("commit release %s: an earlier commit failed half-way; see the staging dir %s", s.Src, s.dir)
	}
	s.moved, s.made = nil, nil
	for _, u := range s.units {
		target := filepath.Join(s.assetsDir, filepath.FromSlash(u))
		created, err := mkdirAll(filepath.Dir(target))
		s.made = append(s.made, created...)
		if err != nil {
			return s.rollback(err)
		}
		if _, err := os.Lstat(target); err == nil {
			old := filepath.Join(s.dir, "old", filepath.FromSlash(u))
			if err := os.MkdirAll(filepath.Dir(old), 0o755); err != nil {
				return s.rollback(err)
			}
			if err := s.rename(target, old); err != nil {
				return s.rollback(err)
			}
			s.moved = append(s.moved, move{target, old})
		} else if !errors.Is(err, fs.ErrNotExist) {
			return s.rollback(err)
		}
		staged := filepath.Join(s.dir, "new", filepath.FromSlash(u))
		if err := s.rename(staged, target); err != nil {
			return s.rollback(err)
		}
		s.moved = append(s.moved, move{staged, target})
	}
	s.state = swapped
	// The renames are metadata; make them last past a power cut.
	synced := map[string]bool{}
	for _, u := range s.units {
		if d := filepath.Join(s.assetsDir, filepath.FromSlash(path.Dir(u))); !synced[d] {
			synced[d] = true
			syncDir(d)
		}
	}
	return nil
}

type move struct{ from, to string }

// rollback puts back every rename of a Swap, newest first, and removes the
// directories it created; the import is then staged again.
func (s *Staged) rollback(cause error) error {
	var errs []error
	for i := len(s.moved) - 1; i >= 0; i-- {
		if err := s.rename(s.moved[i].to, s.moved[i].from); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		s.state = stuck
		return fmt.Errorf("commit release %s: %w; putting back what it had moved failed too (%w): the new and the replaced files are under %s, move them by hand", s.Src, cause, errors.Join(errs...), s.dir)
	}
	for i := len(s.made) - 1; i >= 0; i-- {
		os.Remove(s.made[i]) // empty now; a dir someone else filled meanwhile stays
	}
	s.moved, s.made, s.state = nil, nil, staged
	return fmt.Errorf("commit release %s: %w (the assets dir is as it was; the import is still staged)", s.Src, cause)
}

// Undo puts the assets dir back as it was before Swap; cause is why, and
// comes back wrapped.
func (s *Staged) Undo(cause error) error {
	if s.state != swapped {
		return cause
	}
	return s.rollback(cause)
}

// Finish ends a Swap: the replaced directories and the staging dir go.
func (s *Staged) Finish() error {
	if s.state != swapped {
		return fmt.Errorf("finish release %s: not swapped in", s.Src)
	}
	s.state = committed
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("commit release %s: imported, but removing the staging dir: %w", s.Src, err)
	}
	return nil
}

// Abort removes the staging dir. It is safe to call after Commit, or
// twice; it keeps the staging dir of a Commit that could not put things
// back, which still holds files the operator needs.
func (s *Staged) Abort() {
	if s.state != staged {
		return
	}
	s.state = aborted
	os.RemoveAll(s.dir)
}

// mkdirAll is os.MkdirAll that says which directories it made, so a failed
// Commit can remove them.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return made, err
		}
		made = append(made, missing[i])
	}
	return made, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// workers is how many upstream files are verified at once: hashing and
// inflating want a core each, and fsync waits leave room for one more.
func workers() int { return min(runtime.GOMAXPROCS(0)+1, 8) }
