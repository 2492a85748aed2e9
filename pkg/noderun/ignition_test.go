package noderun

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHostConfigSources(t *testing.T) {
	tests := []struct {
		cmdline string
		exists  []string
		want    []string
	}{
		{cmdline: "console=ttyS0 quiet\n"},
		{cmdline: "console=ttyS0 ignition.config.url=http://x/y.ign\n",
			want: []string{"/proc/cmdline has ignition.config.url=http://x/y.ign"}},
		{cmdline: "quiet", exists: []string{"/usr/lib/ignition/user.ign", "/usr/lib/ignition/base.d"},
			want: []string{"/usr/lib/ignition/user.ign exists", "/usr/lib/ignition/base.d exists"}},
		// Another platform's base config is not read with -platform file.
		{cmdline: "quiet", exists: []string{"/usr/lib/ignition/base.platform.d/metal"}},
	}
	for _, tt := range tests {
		exists := func(p string) bool {
			for _, e := range tt.exists {
				if e == p {
					return true
				}
			}
			return false
		}
		if got := hostConfigSources([]byte(tt.cmdline), exists); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("hostConfigSources(%q, %v) = %q, want %q", tt.cmdline, tt.exists, got, tt.want)
		}
	}
}

func TestSeedPasswd(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"etc/group": "root:x:0:\nwheel:x:10:\n"})
	cfg := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/gshadow"}]}}`)
	seeded, err := seedPasswd(root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// group exists already, gshadow is the config's to write.
	if want := []string{"/etc/passwd", "/etc/shadow"}; !reflect.DeepEqual(seeded, want) {
		t.Errorf("seeded %q, want %q", seeded, want)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/group")); !strings.Contains(string(b), "wheel") {
		t.Errorf("existing /etc/group was overwritten: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/shadow")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("shadow: %v %v", fi, err)
	}
	if again, err := seedPasswd(root, cfg); err != nil || len(again) != 0 {
		t.Errorf("second seed: %q %v", again, err)
	}
}

func TestIgnitionArgs(t *testing.T) {
	got := strings.Join(ignitionArgs("files", "/r", "/tmp/s"), " ")
	want := "-platform file -stage files -root /r -config-cache /tmp/s/ignition.json -state-file /tmp/s/state -neednet /tmp/s/neednet -log-to-stdout"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
}

func TestCriticalLine(t *testing.T) {
	log := "INFO     : a\nCRITICAL : files: op(1): [failed] x\nfiles failed\nCRITICAL : Ignition failed: y: x\n"
	if got, want := criticalLine(log), "CRITICAL : Ignition failed: y: x"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := criticalLine("a\nb\nc\nd\ne\nf\ng\n"); got != "c\nd\ne\nf\ng" {
		t.Errorf("no CRITICAL: got %q", got)
	}
}
