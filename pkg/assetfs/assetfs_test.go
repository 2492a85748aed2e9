package assetfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"
)

func read(t *testing.T, f *File, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The first stage is in front of the assets dir; the jail, dot-names and
// non-regular files are refused the same way for every door.
func TestLookup(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	for name, data := range map[string]string{"ipxe.efi": "from disk", "k/vmlinuz": "kernel", ".release-import-1/x": "staged"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := fstest.MapFS{"ipxe.efi": {Data: []byte("embedded")}}
	a, err := Open(first, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	f, err := a.Lookup("ipxe.efi")
	if got := read(t, f, err); got != "embedded" {
		t.Errorf("ipxe.efi = %q, want the first stage's", got)
	}
	f, err = a.Lookup("k/vmlinuz")
	if f != nil && f.From != FromAssetsDir {
		t.Errorf("k/vmlinuz from %s", f.From)
	}
	if got := read(t, f, err); got != "kernel" {
		t.Errorf("k/vmlinuz = %q", got)
	}
	for name, want := range map[string]func(error) bool{
		".release-import-1/x": func(err error) bool { return errors.Is(err, fs.ErrNotExist) },
		"nope":                func(err error) bool { return errors.Is(err, fs.ErrNotExist) },
		"fifo":                func(err error) bool { return errors.Is(err, ErrNotRegular) },
		"k":                   func(err error) bool { return errors.Is(err, ErrNotRegular) },
		"escape":              IsEscape,
	} {
		if f, err := a.Lookup(name); err == nil || !want(err) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Lookup(%q) = %v, not the refusal it should be", name, err)
		}
	}
	none, err := Open(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.Lookup("ipxe.efi"); !errors.Is(err, fs.ErrNotExist) || none.HasAssetsDir() {
		t.Errorf("empty FS: %v", err)
	}
	if _, err := Open(nil, "/nonexistent/bootsrv-test"); err == nil {
		t.Error("a missing assets dir opened")
	}
}
