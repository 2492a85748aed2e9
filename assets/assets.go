// Package assets is what ships inside the bootsrv binary: the first-stage
// iPXE builds, embedded with go:embed and pinned by ipxe/MANIFEST, and the
// fallback to a directory on disk (--ipxe-dir) for a build made without them.
//
// The binaries are not committed. assets/fetch-ipxe.sh (`make assets`) copies
// them from Debian's ipxe package and checks them against the manifest before
// `go build` embeds them; a plain `go build` without them still compiles,
// because the embedded directory always holds the committed MANIFEST and
// README.md.
package assets

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultIPXEDir is where Debian's ipxe package installs its builds.
const DefaultIPXEDir = "/usr/lib/ipxe"

//go:embed ipxe
var embedded embed.FS

// Package is the Debian package the pinned files come from.
type Package struct {
	Name      string // e.g. "ipxe"
	Version   string // e.g. "1.0.0+git-20190125.36a4c85-5.1"
	DebSHA256 string // sha256 of the .deb, for fetching exactly this build
}

// File is one pinned binary of the manifest.
type File struct {
	Name   string // name served over TFTP, e.g. "ipxe.efi"
	Path   string // path inside the package, e.g. "/boot/ipxe.efi"
	Size   int64
	SHA256 string // lower-case hex
}

// Manifest is the parsed ipxe/MANIFEST.
type Manifest struct {
	Package Package
	Files   []File
}

// ParseManifest reads the manifest format described at the top of
// ipxe/MANIFEST. It is strict: a manifest that pins nothing, or pins a file
// twice, is an error rather than a build that silently embeds less.
func ParseManifest(r io.Reader) (Manifest, error) {
	var m Manifest
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case f[0] == "package" && len(f) == 4:
			if m.Package.Name != "" {
				return Manifest{}, fmt.Errorf("manifest line %d: second package line", n)
			}
			if !isSHA256(f[3]) {
				return Manifest{}, fmt.Errorf("manifest line %d: bad .deb sha256 %q", n, f[3])
			}
			m.Package = Package{Name: f[1], Version: f[2], DebSHA256: f[3]}
		case f[0] == "file" && len(f) == 5:
			size, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil || size <= 0 {
				return Manifest{}, fmt.Errorf("manifest line %d: bad size %q", n, f[3])
			}
			if !isSHA256(f[4]) {
				return Manifest{}, fmt.Errorf("manifest line %d: bad sha256 %q", n, f[4])
			}
			// The name is served over TFTP and embedded from ipxe/NAME: keep it a
			// plain file name.
			if !fs.ValidPath(f[1]) || strings.Contains(f[1], "/") {
				return Manifest{}, fmt.Errorf("manifest line %d: bad file name %q", n, f[1])
			}
			if seen[f[1]] {
				return Manifest{}, fmt.Errorf("manifest line %d: %s pinned twice", n, f[1])
			}
			seen[f[1]] = true
			m.Files = append(m.Files, File{Name: f[1], Path: f[2], Size: size, SHA256: f[4]})
		default:
			return Manifest{}, fmt.Errorf("manifest line %d: cannot parse %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	if m.Package.Name == "" || len(m.Files) == 0 {
		return Manifest{}, errors.New("manifest names no package or no files")
	}
	return m, nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && s == strings.ToLower(s)
}

// Info describes one binary a Set serves, for `bootsrv assets ls`.
type Info struct {
	Name   string `json:"name" yaml:"name"`
	Size   int64  `json:"size" yaml:"size"`
	SHA256 string `json:"sha256" yaml:"sha256"`
	// Source says where the bytes come from: "embedded (ipxe 1.0.0+…)" or the
	// path on disk, with "(pinned ipxe …)" or "(NOT the pinned build)".
	Source string `json:"source" yaml:"source"`
	// Embedded is true when the bytes are inside the bootsrv binary.
	Embedded bool `json:"embedded" yaml:"embedded"`
	// Pinned is true when size and sha256 match the manifest.
	Pinned bool `json:"pinned" yaml:"pinned"`
}

// Set is the first-stage binaries one bootsrv process serves, all in memory
// (they are small: about 1 MB in all), so TFTP and HTTP serve them without
// touching the disk.
type Set struct {
	files    map[string][]byte
	infos    []Info
	manifest Manifest
	loaded   time.Time
}

// Load builds the Set: each file of the manifest from the binary when it was
// embedded, else from ipxeDir (skipped when ""). An embedded file that does not
// match the manifest is an error: the build is broken and must not serve it.
// A file from ipxeDir that does not match is served with a warning, because an
// operator may point --ipxe-dir at builds of their own on purpose. A file found
// nowhere is left out with a warning; Load still succeeds so that bootsrv runs
// (HTTP boot, assets dir) on a host without iPXE.
func Load(ipxeDir string, log *slog.Logger) (*Set, error) {
	return load(embedded, ipxeDir, log)
}

// load is Load over any embedded tree (ipxe/MANIFEST, ipxe/NAME), so that
// tests can stand in for a build with and without the binaries.
func load(emb fs.FS, ipxeDir string, log *slog.Logger) (*Set, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw, err := fs.ReadFile(emb, "ipxe/MANIFEST")
	if err != nil {
		return nil, fmt.Errorf("read embedded manifest: %w", err)
	}
	m, err := ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("embedded ipxe/MANIFEST: %w", err)
	}
	s := &Set{files: map[string][]byte{}, manifest: m, loaded: time.Now()}
	pkg := m.Package.Name + " " + m.Package.Version
	var fromBinary, fromDir, missing []string
	for _, f := range m.Files {
		data, err := fs.ReadFile(emb, "ipxe/"+f.Name)
		if err == nil {
			if err := check(f, data); err != nil {
				return nil, fmt.Errorf("embedded %s (rebuild after `make assets`): %w", f.Name, err)
			}
			s.add(f.Name, data, Info{Source: "embedded (" + pkg + ")", Embedded: true, Pinned: true})
			fromBinary = append(fromBinary, f.Name)
			continue
		}
		if ipxeDir == "" {
			missing = append(missing, f.Name)
			continue
		}
		p := filepath.Join(ipxeDir, f.Name)
		// The directory is the operator's, not a client's: following its
		// symlinks is intended (Debian's ipxe.efi is a link to /boot/ipxe.efi).
		data, err = os.ReadFile(p)
		if err != nil {
			log.Warn("iPXE binary not found", "file", f.Name, "ipxe_dir", ipxeDir, "err", err)
			missing = append(missing, f.Name)
			continue
		}
		if err := check(f, data); err != nil {
			log.Warn("iPXE binary is not the pinned build; serving it anyway", "path", p, "pinned", pkg, "err", err)
			s.add(f.Name, data, Info{Source: p + " (NOT the pinned build)"})
		} else {
			s.add(f.Name, data, Info{Source: p + " (pinned " + pkg + ")", Pinned: true})
		}
		fromDir = append(fromDir, f.Name)
	}
	switch {
	case len(fromDir) == 0 && len(missing) == 0:
		log.Info("iPXE binaries: embedded in this build", "files", fromBinary, "package", pkg)
	case len(fromBinary) == 0 && len(fromDir) > 0:
		log.Info("iPXE binaries: this build embeds none (run `make assets` before `go build`); serving them from --ipxe-dir",
			"ipxe_dir", ipxeDir, "files", fromDir)
	case len(fromDir) > 0:
		log.Info("iPXE binaries: some embedded, the rest from --ipxe-dir",
			"embedded", fromBinary, "ipxe_dir", ipxeDir, "from_dir", fromDir)
	}
	if len(missing) > 0 {
		log.Error("iPXE binaries missing: firmware asking for them will get a TFTP error",
			"missing", missing, "ipxe_dir", ipxeDir)
	}
	return s, nil
}

func (s *Set) add(name string, data []byte, info Info) {
	sum := sha256.Sum256(data)
	info.Name, info.Size, info.SHA256 = name, int64(len(data)), hex.EncodeToString(sum[:])
	s.files[name] = data
	s.infos = append(s.infos, info)
	slices.SortFunc(s.infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
}

// check compares data with the size and sha256 the manifest pins.
func check(f File, data []byte) error {
	if int64(len(data)) != f.Size {
		return fmt.Errorf("size %d, manifest pins %d", len(data), f.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != f.SHA256 {
		return fmt.Errorf("sha256 %s, manifest pins %s", got, f.SHA256)
	}
	return nil
}

// List returns what the Set serves, sorted by name.
func (s *Set) List() []Info { return slices.Clone(s.infos) }

// Manifest returns the pinned manifest compiled into this binary.
func (s *Set) Manifest() Manifest { return s.manifest }

// FS returns the binaries as a flat, read-only fs.FS. Its files implement
// io.ReaderAt and io.Seeker, so pkg/tftp and net/http serve them from memory
// and learn their size without reading them.
func (s *Set) FS() fs.FS { return memFS{s} }

type memFS struct{ s *Set }

func (m memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &memDir{s: m.s}, nil
	}
	data, ok := m.s.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{Reader: bytes.NewReader(data), info: memInfo{name: name, size: int64(len(data)), mod: m.s.loaded}}, nil
}

// ReadDir lets fs.WalkDir and http.FileServerFS list the Set.
func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	d := &memDir{s: m.s}
	return d.ReadDir(-1)
}

type memFile struct {
	*bytes.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

type memDir struct {
	s    *Set
	read int
}

func (d *memDir) Stat() (fs.FileInfo, error) {
	return memInfo{name: ".", dir: true, mod: d.s.loaded}, nil
}
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}
func (d *memDir) Close() error { return nil }

func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	for _, in := range d.s.infos[d.read:] {
		if n > 0 && len(out) == n {
			break
		}
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: in.Name, size: in.Size, mod: d.s.loaded}))
	}
	d.read += len(out)
	if n > 0 && len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
	mod  time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
