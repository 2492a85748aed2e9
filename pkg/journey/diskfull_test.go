package journey

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// tinyDisk mounts a tmpfs of size bytes on a fresh directory: a disk that
// really fills (ENOSPC from the kernel), removed after the test.
func tinyDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs to fill a real disk under the state file")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs mount -t tmpfs (root in a namespace that may mount): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("filling %s: %v", p, err)
			}
			return p
		}
	}
}

// tinyState is a state file on a 2 MB tmpfs (tinyDisk) holding one
// registered machine, mac; it is closed when the test ends.
func tinyState(t *testing.T) (string, *state.DB) {
	t.Helper()
	dir := tinyDisk(t, "2m")
	st, err := state.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Update(func(tx state.Tx) error {
		return tx.PutMachine(model.Machine{MAC: mac, IP: "10.0.0.1", Hostname: "n1", Profile: "p", State: model.StateRegistered})
	}); err != nil {
		t.Fatal(err)
	}
	return dir, st
}

// Events that cannot be written while the disk is full are held, not
// dropped, and land by themselves, once and in order, when space returns.
func TestDiskFullHoldsEvents(t *testing.T) {
	dir, st := tinyState(t)
	j := New(st, nil)
	var logs bytes.Buffer
	j.Start(slog.New(slog.NewTextHandler(&logs, nil)))
	defer j.Close()

	filler := fill(t, dir)
	// The disk is full for the state too: a direct write says so plainly.
	big := strings.Repeat("y", 512<<10)
	err := st.Update(func(tx state.Tx) error {
		return tx.PutMachine(model.Machine{MAC: "52:54:00:00:00:02", IP: "10.0.0.2", Hostname: "n2", Profile: "p", Labels: map[string]string{"big": big}})
	})
	if !errors.Is(err, state.ErrWriteFailed) || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("write on a full disk: %v, want ErrWriteFailed naming the disk", err)
	}

	const n = model.MaxEvents // a history keeps no more
	pad := strings.Repeat("z", 4096)
	for i := 0; i < n; i++ {
		j.Record(mac, model.Event{Type: model.StateIPXE, Fields: map[string]string{"i": string(rune('a' + i%26)), "pad": pad}})
	}
	time.Sleep(1500 * time.Millisecond) // several failed tries
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, types := events(t, j)
		if len(types) == n {
			break
		}
		if len(types) > n || time.Now().After(deadline) {
			t.Fatalf("%d events recorded after space returned, want %d (none dropped, none twice)", len(types), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.Close()
	// One warning for the outage and one line when it ends, not one per try.
	if w := strings.Count(logs.String(), "holding them and retrying"); w != 1 || !strings.Contains(logs.String(), "are recorded") {
		t.Errorf("logs: %d warnings about held events, want 1 and a line when they are recorded:\n%s", w, logs.String())
	}
}

// RecordDurable returns once its event is in the state file itself (no
// journal flush in between), and with ErrWriteFailed after its wait while
// the disk is full; the event is still held and lands when space returns.
func TestRecordDurable(t *testing.T) {
	dir, st := tinyState(t)
	j := New(st, nil)
	j.Start(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	defer j.Close()
	inFile := func() (n int) {
		st.View(func(tx state.Tx) error {
			return tx.Events(mac, func(e model.Event) error {
				if e.Type == model.StateIgnition {
					n++
				}
				return nil
			})
		})
		return n
	}
	if err := j.RecordDurable(mac, model.Event{Type: model.StateIgnition}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := inFile(); n != 1 {
		t.Fatalf("after RecordDurable returned: %d ignition events in the state file, want 1", n)
	}

	filler := fill(t, dir)
	pad := strings.Repeat("z", 64<<10) // more than the space left
	err := j.RecordDurable(mac, model.Event{Type: model.StateIgnition, Fields: map[string]string{"pad": pad}}, 700*time.Millisecond)
	if !errors.Is(err, state.ErrWriteFailed) || !strings.Contains(err.Error(), "not committed within") {
		t.Fatalf("RecordDurable on a full disk: %v, want ErrWriteFailed saying it was not committed", err)
	}
	os.Remove(filler)
	deadline := time.Now().Add(10 * time.Second)
	for inFile() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the held event did not land when space returned: %d ignition events", inFile())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
