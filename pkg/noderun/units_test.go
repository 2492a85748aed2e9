package noderun

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name    string
		files   []string // the unit, then drop-ins in order
		want    Sections
		wantErr string
	}{
		{
			name: "continuations join with a space per backslash",
			files: []string{"[Service]\n" +
				"ExecStart=/opt/bin/kube-apiserver \\\n" +
				"  --etcd-servers=https://10.99.0.10:2379 \\\n" +
				"  --secure-port=6443\n"},
			want: Sections{"Service": {"ExecStart": {"/opt/bin/kube-apiserver    --etcd-servers=https://10.99.0.10:2379    --secure-port=6443"}}},
		},
		{
			name: "comments inside a continuation are skipped, an empty line ends it",
			files: []string{"[Service]\n" +
				"ExecStart=/bin/a \\\n" +
				"# not part of it\n" +
				"; nor this\n" +
				"  b \\\n" +
				"\n" +
				"Type=simple\n"},
			want: Sections{"Service": {"ExecStart": {"/bin/a    b"}, "Type": {"simple"}}},
		},
		{
			name:  "an escaped backslash does not continue",
			files: []string{"[Service]\nExecStart=/bin/echo a\\\\\nType=oneshot\n"},
			want:  Sections{"Service": {"ExecStart": {`/bin/echo a\\`}, "Type": {"oneshot"}}},
		},
		{
			name:  "a comment ending in a backslash swallows the next line",
			files: []string{"[Service]\n# comment \\\nType=notify\nRestart=always\n"},
			want:  Sections{"Service": {"Restart": {"always"}}},
		},
		{
			name:  "file ends inside a continuation",
			files: []string{"[Service]\nExecStart=/bin/a \\\n# trailing comment"},
			want:  Sections{"Service": {"ExecStart": {"/bin/a"}}},
		},
		{
			name: "repeated keys append, CRLF and blanks around = are fine",
			files: []string{"[Unit]\r\nAfter=a.service\r\nAfter = b.service\r\n[Service]\r\n" +
				"Environment=A=1\r\nEnvironment=B=2\r\n"},
			want: Sections{
				"Unit":    {"After": {"a.service", "b.service"}},
				"Service": {"Environment": {"A=1", "B=2"}},
			},
		},
		{
			name: "an empty ExecStart= in a drop-in resets the list",
			files: []string{
				"[Service]\nExecStart=/opt/bin/etcd\nExecStartPre=/bin/true\n",
				"[Service]\nExecStart=\nExecStart=/opt/bin/etcd --debug\n",
				"[Service]\nExecStartPre=/bin/false\n",
			},
			want: Sections{"Service": {
				"ExecStart":    {"/opt/bin/etcd --debug"},
				"ExecStartPre": {"/bin/true", "/bin/false"},
			}},
		},
		{
			name:  "sections reopen",
			files: []string{"[Service]\nType=simple\n[Install]\nWantedBy=multi-user.target\n[Service]\nRestart=always\n"},
			want: Sections{
				"Service": {"Type": {"simple"}, "Restart": {"always"}},
				"Install": {"WantedBy": {"multi-user.target"}},
			},
		},
		{name: "no =", files: []string{"[Service]\nExecStart /bin/a\n"}, wantErr: `line 2: "ExecStart /bin/a" has no '='`},
		{name: "outside a section", files: []string{"Type=simple\n"}, wantErr: "outside any section"},
		{name: "bad header", files: []string{"[Service\nType=simple\n"}, wantErr: "bad section header"},
		{name: "error names the first line of a continuation", files: []string{"[Service]\n\nfoo \\\nbar\n"}, wantErr: "line 3:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sections{}
			var err error
			for _, f := range tt.files {
				if err = parseUnitInto(got, f); err != nil {
					break
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestPresets(t *testing.T) {
	p, err := parsePresets("# Ignition writes these\n" +
		"enable etcd.service\n" +
		"disable kubelet.service\n" +
		"enable echo@.service foo bar\n" +
		"; comment\n" +
		"enable kube-*.service\n" +
		"disable *\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"etcd.service":           true,
		"kubelet.service":        false,
		"echo@foo.service":       true,
		"echo@bar.service":       true,
		"echo@baz.service":       false,
		"kube-apiserver.service": true,
		"other.service":          false,
	} {
		if got := p.enabled(name); got != want {
			t.Errorf("enabled(%s) = %v, want %v", name, got, want)
		}
	}

	for _, bad := range []string{"enable\n", "start etcd.service\n", "enable [x\n"} {
		if _, err := parsePresets(bad); err == nil {
			t.Errorf("parsePresets(%q): no error", bad)
		}
	}
}

// writeTree writes files (path relative to root -> content) under root; a
// content of "->TARGET" makes a symlink.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		abs := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, abs); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(abs, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadUnits(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/systemd/system/etcd.service": "[Unit]\nDescription=etcd\n[Service]\n" +
			"Type=notify\n" +
			"EnvironmentFile=/etc/etcd/etcd.env\n" +
			"EnvironmentFile=-/etc/etcd/extra.env\n" +
			"Environment=\"GOMAXPROCS=2\" ETCD_UNSUPPORTED_ARCH=amd64\n" +
			"ExecStartPre=/bin/mkdir -p /var/lib/etcd\n" +
			"ExecStart=/opt/bin/etcd\n" +
			"Restart=always\n" +
			"[Install]\nWantedBy=multi-user.target\n",
		"etc/systemd/system/etcd.service.d/10-debug.conf":  "[Service]\nEnvironment=ETCD_LOG_LEVEL=debug\n",
		"etc/systemd/system/etcd.service.d/05-first.conf":  "[Service]\nExecStartPre=/bin/true\n",
		"etc/systemd/system/etcd.service.d/README":         "not a drop-in",
		"etc/systemd/system/kubelet.service":               "[Service]\nExecStart=/opt/bin/kubelet\n",
		"etc/systemd/system/containerd.service.d/10.conf":  "[Service]\nEnvironment=A=1\n",
		"etc/systemd/system/masked.service":                "->/dev/null",
		"etc/systemd/system/multi-user.target.wants/x":     "ignored",
		"etc/systemd/system/cleanup.timer":                 "[Timer]\nOnBootSec=1\n",
		"etc/systemd/system-preset/20-ignition.preset":     "enable etcd.service\ndisable kubelet.service\n",
		"etc/systemd/system/oneshot.service":               "[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n",
		"etc/systemd/system/containerd.service.d/20.conf~": "[Service]\nEnvironment=B=2\n",
	})
	units, err := LoadUnits(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range units {
		names = append(names, n)
	}
	wantNames := []string{"containerd.service", "etcd.service", "kubelet.service", "masked.service", "oneshot.service"}
	if len(names) != len(wantNames) {
		t.Fatalf("units %v, want %v", names, wantNames)
	}

	etcd := units["etcd.service"]
	want := Unit{
		Name:             "etcd.service",
		Path:             "/etc/systemd/system/etcd.service",
		DropIns:          []string{"/etc/systemd/system/etcd.service.d/05-first.conf", "/etc/systemd/system/etcd.service.d/10-debug.conf"},
		Enabled:          true,
		Type:             "notify",
		ExecStartPre:     []string{"/bin/mkdir -p /var/lib/etcd", "/bin/true"},
		ExecStart:        "/opt/bin/etcd",
		Environment:      map[string]string{"GOMAXPROCS": "2", "ETCD_UNSUPPORTED_ARCH": "amd64", "ETCD_LOG_LEVEL": "debug"},
		EnvironmentFiles: []string{"/etc/etcd/etcd.env", "-/etc/etcd/extra.env"},
		Restart:          "always",
	}
	etcd.Sections = nil
	if !reflect.DeepEqual(etcd, want) {
		t.Errorf("etcd.service:\n got %+v\nwant %+v", etcd, want)
	}
	if got := units["etcd.service"].Sections.Get("Unit", "Description"); got != "etcd" {
		t.Errorf("raw Description = %q", got)
	}

	k := units["kubelet.service"]
	if k.Enabled || k.Type != "simple" || k.Restart != "no" || k.ExecStart != "/opt/bin/kubelet" {
		t.Errorf("kubelet.service = %+v", k)
	}
	c := units["containerd.service"]
	if c.Path != "" || len(c.DropIns) != 1 || c.Environment["A"] != "1" || c.Environment["B"] != "" {
		t.Errorf("drop-in-only containerd.service = %+v", c)
	}
	if m := units["masked.service"]; !m.Masked || m.Enabled {
		t.Errorf("masked.service = %+v", m)
	}
	if o := units["oneshot.service"]; o.ExecStart != "/bin/a" || len(o.Sections["Service"]["ExecStart"]) != 2 {
		t.Errorf("oneshot.service = %+v", o)
	}
}

func TestLoadUnitsErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"two ExecStart in a simple service",
			map[string]string{"etc/systemd/system/a.service": "[Service]\nExecStart=/bin/a\n",
				"etc/systemd/system/a.service.d/x.conf": "[Service]\nExecStart=/bin/b\n"},
			"2 ExecStart= lines"},
		{"bad Environment",
			map[string]string{"etc/systemd/system/a.service": "[Service]\nEnvironment=NOVALUE\n"},
			`"NOVALUE" is not NAME=VALUE`},
		{"bad drop-in names itself",
			map[string]string{"etc/systemd/system/a.service": "[Service]\n",
				"etc/systemd/system/a.service.d/x.conf": "junk\n"},
			"drop-in /etc/systemd/system/a.service.d/x.conf: line 1"},
		{"bad preset",
			map[string]string{"etc/systemd/system/a.service": "[Service]\n",
				"etc/systemd/system-preset/20-ignition.preset": "maybe a.service\n"},
			"preset file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			_, err := LoadUnits(root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}

	units, err := LoadUnits(t.TempDir())
	if err != nil || len(units) != 0 {
		t.Errorf("empty root: %v, %v", units, err)
	}
}
