package assets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

const goodSHA = "f09cfbe9bbd39c3f5eb9cdf7386b520a4f5858bbc4438960c5b870c7a8930a7f"

func TestParseManifest(t *testing.T) {
	pkg := "package ipxe 1.0-1 " + goodSHA + "\n"
	tests := []struct {
		name    string
		in      string
		wantErr string
		files   int
	}{
		{"ok with comments", "# c\n\n" + pkg + "file a.efi /boot/a.efi 10 " + goodSHA + "\n", "", 1},
		{"no package", "file a.efi /x 10 " + goodSHA + "\n", "no package", 0},
		{"no files", pkg, "no files", 0},
		{"two packages", pkg + pkg + "file a /x 1 " + goodSHA + "\n", "second package", 0},
		{"bad size", pkg + "file a /x ten " + goodSHA + "\n", "bad size", 0},
		{"zero size", pkg + "file a /x 0 " + goodSHA + "\n", "bad size", 0},
		{"short sha", pkg + "file a /x 1 abcd\n", "bad sha256", 0},
		{"upper-case sha", pkg + "file a /x 1 " + strings.ToUpper(goodSHA) + "\n", "bad sha256", 0},
		{"bad deb sha", "package ipxe 1.0 nope\nfile a /x 1 " + goodSHA + "\n", "bad .deb sha256", 0},
		{"name with a slash", pkg + "file sub/a /x 1 " + goodSHA + "\n", "bad file name", 0},
		{"name with dot-dot", pkg + "file .. /x 1 " + goodSHA + "\n", "bad file name", 0},
		{"pinned twice", pkg + "file a /x 1 " + goodSHA + "\nfile a /y 1 " + goodSHA + "\n", "pinned twice", 0},
		{"junk line", pkg + "file a /x 1 " + goodSHA + "\nhello\n", "cannot parse", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Files) != tt.files || m.Package.Version != "1.0-1" {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// The committed manifest pins the three builds issue 4 asks for.
func TestCommittedManifest(t *testing.T) {
	raw, err := embedded.ReadFile("ipxe/MANIFEST")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range m.Files {
		names[f.Name] = true
	}
	for _, want := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"} {
		if !names[want] {
			t.Errorf("manifest does not pin %s", want)
		}
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fakeBuild is an embedded tree with a manifest pinning a.efi and b.kpxe; the
// binaries named in present are embedded, with the given content.
func fakeBuild(present map[string][]byte) fstest.MapFS {
	a, b := []byte("AAAA-efi"), []byte("BB-kpxe")
	manifest := fmt.Sprintf("package ipxe 9.9-1 %s\nfile a.efi /boot/a.efi %d %s\nfile b.kpxe /usr/lib/ipxe/b.kpxe %d %s\n",
		goodSHA, len(a), sum(a), len(b), sum(b))
	fsys := fstest.MapFS{
		"ipxe/MANIFEST":  {Data: []byte(manifest)},
		"ipxe/README.md": {Data: []byte("readme")},
	}
	for name, data := range present {
		fsys["ipxe/"+name] = &fstest.MapFile{Data: data}
	}
	return fsys
}

func writeDir(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoad(t *testing.T) {
	a, b := []byte("AAAA-efi"), []byte("BB-kpxe")
	tests := []struct {
		name     string
		embedded map[string][]byte
		dir      map[string][]byte // nil: no --ipxe-dir
		wantErr  string
		want     map[string]string // name -> Source prefix/containing
		pinned   map[string]bool
		logHas   []string
	}{
		{
			name:     "all embedded",
			embedded: map[string][]byte{"a.efi": a, "b.kpxe": b},
			want:     map[string]string{"a.efi": "embedded (ipxe 9.9-1)", "b.kpxe": "embedded (ipxe 9.9-1)"},
			pinned:   map[string]bool{"a.efi": true, "b.kpxe": true},
			logHas:   []string{"embedded in this build"},
		},
		{
			name:     "embedded but not the pinned bytes: the build is broken",
			embedded: map[string][]byte{"a.efi": []byte("tampered"), "b.kpxe": b},
			wantErr:  "embedded a.efi",
		},
		{
			name:   "plain go build: served from --ipxe-dir, said in the log",
			dir:    map[string][]byte{"a.efi": a, "b.kpxe": b},
			want:   map[string]string{"a.efi": "(pinned ipxe 9.9-1)", "b.kpxe": "(pinned ipxe 9.9-1)"},
			pinned: map[string]bool{"a.efi": true, "b.kpxe": true},
			logHas: []string{"embeds none", "--ipxe-dir"},
		},
		{
			name:   "--ipxe-dir with another build: served, flagged",
			dir:    map[string][]byte{"a.efi": []byte("custom build"), "b.kpxe": b},
			want:   map[string]string{"a.efi": "NOT the pinned build", "b.kpxe": "(pinned ipxe 9.9-1)"},
			pinned: map[string]bool{"a.efi": false, "b.kpxe": true},
			logHas: []string{"not the pinned build"},
		},
		{
			name:     "some embedded, the rest from the dir",
			embedded: map[string][]byte{"a.efi": a},
			dir:      map[string][]byte{"b.kpxe": b},
			want:     map[string]string{"a.efi": "embedded", "b.kpxe": "(pinned ipxe 9.9-1)"},
			pinned:   map[string]bool{"a.efi": true, "b.kpxe": true},
			logHas:   []string{"some embedded"},
		},
		{
			name:   "nowhere: left out, loudly, bootsrv still runs",
			dir:    map[string][]byte{},
			want:   map[string]string{},
			logHas: []string{"iPXE binaries missing", "a.efi"},
		},
		{
			name:   "no --ipxe-dir and nothing embedded",
			want:   map[string]string{},
			logHas: []string{"iPXE binaries missing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ""
			if tt.dir != nil {
				dir = writeDir(t, tt.dir)
			}
			var logBuf bytes.Buffer
			set, err := load(fakeBuild(tt.embedded), dir, slog.New(slog.NewTextHandler(&logBuf, nil)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list := set.List()
			if len(list) != len(tt.want) {
				t.Fatalf("List() = %+v, want %d entries", list, len(tt.want))
			}
			for _, in := range list {
				if !strings.Contains(in.Source, tt.want[in.Name]) || in.Pinned != tt.pinned[in.Name] {
					t.Errorf("%s: Source %q Pinned %v; want source containing %q, pinned %v", in.Name, in.Source, in.Pinned, tt.want[in.Name], tt.pinned[in.Name])
				}
				data, err := fs.ReadFile(set.FS(), in.Name)
				if err != nil || int64(len(data)) != in.Size || sum(data) != in.SHA256 {
					t.Errorf("%s: FS content does not match List (%v)", in.Name, err)
				}
				if in.Embedded != strings.HasPrefix(in.Source, "embedded") {
					t.Errorf("%s: Embedded %v but Source %q", in.Name, in.Embedded, in.Source)
				}
			}
			for _, s := range tt.logHas {
				if !strings.Contains(logBuf.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, logBuf.String())
				}
			}
		})
	}
}

// The Set's FS is a proper fs.FS (fstest checks Open, Stat, ReadDir, Seek,
// ReadAt...), so net/http and pkg/tftp can serve it.
func TestSetFS(t *testing.T) {
	set, err := load(fakeBuild(map[string][]byte{"a.efi": []byte("AAAA-efi"), "b.kpxe": []byte("BB-kpxe")}), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(set.FS(), "a.efi", "b.kpxe"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"../a.efi", "/a.efi", "MANIFEST", "nope"} {
		if _, err := set.FS().Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// What this very build serves (embedded after `make assets`, else
// /usr/lib/ipxe) is the pinned build.
func TestLoadThisBuild(t *testing.T) {
	set, err := Load(DefaultIPXEDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.List()) == 0 {
		t.Skipf("iPXE binaries neither embedded (make assets) nor in %s (apt-get install ipxe)", DefaultIPXEDir)
	}
	for _, in := range set.List() {
		if !in.Pinned {
			t.Errorf("%s from %s is not the pinned build", in.Name, in.Source)
		}
		t.Logf("%-14s %7d %s %s", in.Name, in.Size, in.SHA256, in.Source)
	}
}

// fetch-ipxe.sh copies the pinned build and verifies it; --check catches a
// file that is not the pinned one. Runs only where the pinned ipxe package is
// installed (the script would otherwise download it).
func TestFetchScript(t *testing.T) {
	raw, err := embedded.ReadFile("ipxe/MANIFEST")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", m.Package.Name).Output()
	if err != nil || string(out) != m.Package.Version {
		t.Skipf("Debian package %s %s not installed (have %q): apt-get install %s=%s",
			m.Package.Name, m.Package.Version, out, m.Package.Name, m.Package.Version)
	}
	dest := t.TempDir()
	if out, err := exec.Command("./fetch-ipxe.sh", dest).CombinedOutput(); err != nil {
		t.Fatalf("fetch-ipxe.sh: %v\n%s", err, out)
	}
	for _, f := range m.Files {
		data, err := os.ReadFile(filepath.Join(dest, f.Name))
		if err != nil || check(f, data) != nil {
			t.Fatalf("%s not fetched as pinned: %v", f.Name, err)
		}
	}
	if out, err := exec.Command("./fetch-ipxe.sh", "--check", dest).CombinedOutput(); err != nil {
		t.Fatalf("--check on a good copy: %v\n%s", err, out)
	}
	victim := filepath.Join(dest, m.Files[0].Name)
	if err := os.WriteFile(victim, []byte("not ipxe"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("./fetch-ipxe.sh", "--check", dest).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "MISMATCH") {
		t.Fatalf("--check accepted a tampered %s: %v\n%s", m.Files[0].Name, err, out)
	}
}
