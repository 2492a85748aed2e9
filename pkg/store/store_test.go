package store

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestTxOperations(t *testing.T) {
	s, err := Open(t.TempDir(), 0, testSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx Tx) error {
		for _, k := range []string{"a\x001", "a\x002", "ab\x001", "b"} {
			if err := tx.Put("machines", []byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx Tx) error {
		if err := tx.CompareAndSwap("machines", []byte("b"), []byte("wrong"), []byte("x")); !errors.Is(err, ErrConflict) {
			t.Errorf("CAS with a wrong old value = %v, want ErrConflict", err)
		}
		if err := tx.CompareAndSwap("machines", []byte("new"), []byte("x"), []byte("x")); !errors.Is(err, ErrConflict) {
			t.Errorf("CAS of an absent key with old set = %v, want ErrConflict", err)
		}
		if err := tx.CompareAndSwap("machines", []byte("new"), nil, []byte("n")); err != nil {
			t.Errorf("CAS of an absent key with nil old: %v", err)
		}
		if err := tx.CompareAndSwap("machines", []byte("new"), nil, []byte("n2")); !errors.Is(err, ErrConflict) {
			t.Errorf("CAS of a present key with nil old = %v, want ErrConflict", err)
		}
		if err := tx.CompareAndSwap("machines", []byte("b"), []byte("vb"), []byte("vb2")); err != nil {
			t.Errorf("CAS: %v", err)
		}
		return tx.Delete("machines", []byte("a\x002"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx Tx) error {
		var keys []string
		if err := tx.Scan("machines", []byte("a\x00"), func(k, _ []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
			return err
		}
		if strings.Join(keys, ",") != "a\x001" {
			t.Errorf("Scan a\\x00 = %q", keys)
		}
		keys = nil
		if err := tx.Scan("machines", nil, func(k, _ []byte) error {
			keys = append(keys, string(k))
			if len(keys) == 2 {
				return ErrStop
			}
			return nil
		}); err != nil {
			t.Errorf("Scan ended with ErrStop returned %v", err)
		}
		if len(keys) != 2 {
			t.Errorf("ErrStop did not stop the scan: %q", keys)
		}
		boom := errors.New("boom")
		if err := tx.Scan("machines", nil, func(k, _ []byte) error { return boom }); !errors.Is(err, boom) {
			t.Errorf("Scan error = %v, want boom", err)
		}
		if got := string(tx.Get("machines", []byte("b"))); got != "vb2" {
			t.Errorf("b = %q", got)
		}
		if n := tx.Count("machines"); n != 4 {
			t.Errorf("Count = %d, want 4", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing Update writes nothing.
	boom := errors.New("boom")
	err = s.Update(func(tx Tx) error {
		_ = tx.Put("machines", []byte("z"), []byte("z"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v", err)
	}
	_ = s.View(func(tx Tx) error {
		if tx.Get("machines", []byte("z")) != nil {
			t.Error("a failed Update was committed")
		}
		return nil
	})
}

func TestNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0, testSchema)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSchemaForTest(testSchema.Version + 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, 0, testSchema)
	if err == nil {
		s.Close()
		t.Fatal("a file of a newer schema was opened")
	}
	if !errors.Is(err, ErrNewerSchema) {
		t.Errorf("error %v is not ErrNewerSchema", err)
	}
	for _, sub := range []string{filepath.Join(dir, FileName), "has schema 2", "knows up to 1", "run a bootsrv at least as new as the one that wrote it"} {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	}
	// The refused open did not stamp the file down to this schema.
	s2, err := Open(dir, 0, testSchema)
	if err == nil {
		s2.Close()
		t.Error("second open of the newer file succeeded: the failed open rewrote its schema")
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0, testSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := Open(dir, 50*time.Millisecond, testSchema)
	if err == nil {
		s2.Close()
		t.Fatal("opened a file another handle holds")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v is not ErrLocked", err)
	}
	for _, sub := range []string{filepath.Join(dir, FileName), "is a bootsrv server running with this data dir?"} {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	}
}

// TestDataDirUnderFile: the data dir cannot even be created.
func TestDataDirUnderFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f, "data")
	s, err := Open(dir, 0, testSchema)
	if err == nil {
		s.Close()
		t.Fatal("opened a data dir under a regular file")
	}
	for _, sub := range []string{"create data dir " + dir, "not a directory", "--data-dir or BOOTSRV_DATA_DIR"} {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	}
}

// TestDataDirNotWritable opens a data dir its user cannot write. Root
// bypasses permission bits, so as root the open runs in a child process
// (this test binary, copied where uid 65534 may run it) as uid 65534.
func TestDataDirNotWritable(t *testing.T) {
	if dir := os.Getenv("BOOTSRV_STORE_HELPER_DIR"); dir != "" {
		// Child: report the error on stdout.
		s, err := Open(dir, 0, testSchema)
		if err == nil {
			s.Close()
			os.Stdout.WriteString("OPENED")
			return
		}
		os.Stdout.WriteString(err.Error())
		return
	}
	base := t.TempDir()
	// t.TempDir makes its dirs 0700: let uid 65534 reach the copy.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var msg string
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, 0, testSchema)
		if err == nil {
			s.Close()
			t.Fatal("opened a data dir without write permission")
		}
		msg = err.Error()
	} else {
		bin := filepath.Join(base, "store.test")
		if err := copyFile(os.Args[0], bin); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^TestDataDirNotWritable$", "-test.count=1")
		cmd.Env = append(os.Environ(), "BOOTSRV_STORE_HELPER_DIR="+dir)
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child as uid 65534: %v\n%s", err, out)
		}
		msg = string(out)
	}
	if strings.Contains(msg, "OPENED") {
		t.Fatal("opened a data dir without write permission")
	}
	for _, sub := range []string{"data dir " + dir + " is not writable", "permission denied", "fix its permissions, or choose another with --data-dir or BOOTSRV_DATA_DIR"} {
		if !strings.Contains(msg, sub) {
			t.Errorf("error %q does not contain %q", msg, sub)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a state file was created in the unwritable dir: %v", err)
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestReleasesBucket: the release catalog's bucket is one of the schema's,
// and a state file written before it existed (same schema, fewer buckets)
// gets it on open, its data kept.
func TestReleasesBucket(t *testing.T) {
	if !slices.Contains(testSchema.Buckets, "releases") {
		t.Fatalf("testSchema.Buckets %q lack releases", testSchema.Buckets)
	}
	dir := t.TempDir()
	old, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("meta")); err != nil {
			return err
		}
		for _, b := range testSchema.Buckets {
			if b == "releases" {
				continue
			}
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte(strconv.Itoa(testSchema.Version))); err != nil {
			return err
		}
		return tx.Bucket([]byte("machines")).Put([]byte("m"), []byte("kept"))
	})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := Open(dir, 0, testSchema)
	if err != nil {
		t.Fatalf("open a file from before the releases bucket: %v", err)
	}
	defer s.Close()
	if err := s.Update(func(tx Tx) error {
		return tx.Put("releases", []byte("kubernetes/v1.37.2/amd64/kubelet"), []byte("{}"))
	}); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx Tx) error {
		if n := tx.Count("releases"); n != 1 {
			t.Errorf("releases holds %d keys, want 1", n)
		}
		if got := string(tx.Get("machines", []byte("m"))); got != "kept" {
			t.Errorf("machines/m = %q after the open added a bucket", got)
		}
		return nil
	})
}

// testSchema is a layout like pkg/state's: the engine knows none of its own.
var testSchema = Schema{Version: 1, Buckets: []string{"cluster", "profiles", "machines", "events", "releases"}}
