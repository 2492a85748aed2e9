package render_test

import (
	"encoding/json"
	"strings"
	"testing"

	ign "github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/bootsrv/bootsrv/pkg/render"
)

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestBootScript(t *testing.T) {
	base := "http://10.0.0.1:8080"
	cases := []struct {
		name       string
		b          render.Boot
		kernelLine string   // the first kernel line, exactly
		initrds    []string // the first attempt's initrd lines, exactly
		err        string
	}{
		{
			name: "kernel and two initrds",
			b: render.Boot{MAC: "52:54:00:00:00:01", Hostname: "n1", Profile: "p", Kernel: base + "/assets/f/vmlinuz",
				Initrds: []string{base + "/assets/f/initrd.cpio.gz", base + "/assets/f/extra.img?v=2#x"},
				Args:    []string{"console=ttyS0", "ignition.config.url=" + base + "/ignition?mac=52:54:00:00:00:01&token=abc"}},
			kernelLine: "kernel " + base + "/assets/f/vmlinuz console=ttyS0 ignition.config.url=" + base +
				"/ignition?mac=52:54:00:00:00:01&token=abc initrd=initrd.cpio.gz initrd=extra.img || goto attempt2",
			initrds: []string{
				"initrd --name initrd.cpio.gz " + base + "/assets/f/initrd.cpio.gz || goto attempt2",
				"initrd --name extra.img " + base + "/assets/f/extra.img?v=2#x || goto attempt2",
			},
		},
		{
			name:       "no initrd",
			b:          render.Boot{Kernel: base + "/k", Args: []string{"a=1"}},
			kernelLine: "kernel " + base + "/k a=1 || goto attempt2",
		},
		{
			name:       "initrd names iPXE cannot take fall back to initrdN",
			b:          render.Boot{Kernel: base + "/k", Initrds: []string{base + "/dir/", base + "/x/${evil}"}},
			kernelLine: "kernel " + base + "/k initrd=initrd0 initrd=initrd1 || goto attempt2",
			initrds: []string{
				"initrd --name initrd0 " + base + "/dir/ || goto attempt2",
				"initrd --name initrd1 " + base + "/x/${evil} || goto attempt2",
			},
		},
		{name: "no kernel", b: render.Boot{Profile: "empty"}, err: "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := render.BootScript(c.b)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || s != "" {
					t.Fatalf("got %q, %v; want an error naming %q", s, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ls := lines(s)
			if ls[0] != "#!ipxe" {
				t.Errorf("first line %q", ls[0])
			}
			var kernels, boots, labels int
			var first []string
			for i, l := range ls {
				switch {
				case strings.HasPrefix(l, "kernel "):
					if kernels == 0 {
						if l != c.kernelLine {
							t.Errorf("kernel line\n got %s\nwant %s", l, c.kernelLine)
						}
						for _, n := range ls[i+1:] {
							if !strings.HasPrefix(n, "initrd ") {
								break
							}
							first = append(first, n)
						}
					}
					kernels++
				case strings.HasPrefix(l, "boot "):
					boots++
				case strings.HasPrefix(l, ":attempt"):
					labels++
				}
			}
			if kernels != render.Attempts || boots != render.Attempts || labels != render.Attempts {
				t.Errorf("%d kernel, %d boot lines, %d attempt labels; want %d each", kernels, boots, labels, render.Attempts)
			}
			if strings.Join(first, "\n") != strings.Join(c.initrds, "\n") {
				t.Errorf("initrd lines\n got %q\nwant %q", first, c.initrds)
			}
			// Every goto lands on a label that exists; the last attempt
			// gives up to :failed, which reboots.
			for _, l := range ls {
				if _, target, ok := strings.Cut(l, "goto "); ok {
					if !strings.Contains(s, "\n:"+target+"\n") {
						t.Errorf("goto %s has no label", target)
					}
				}
			}
			if !strings.Contains(s, "kernel "+c.b.Kernel) || !strings.HasSuffix(s, "reboot\n") || !strings.Contains(s, "goto failed") {
				t.Errorf("script does not end in a reboot after %d attempts:\n%s", render.Attempts, s)
			}
			if strings.Count(s, "imgfree") != render.Attempts-1 {
				t.Errorf("retries do not free the images of the failed attempt:\n%s", s)
			}
		})
	}
}

func TestLocalBootScript(t *testing.T) {
	s := render.LocalBootScript("52:54:00:00:00:01", "node1")
	for _, want := range []string{"#!ipxe\n", "node1", "52:54:00:00:00:01", "sanboot", "exit"} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q:\n%s", want, s)
		}
	}
	for _, bad := range []string{"kernel ", "chain ", "token"} {
		if strings.Contains(s, bad) {
			t.Errorf("local boot script has %q:\n%s", bad, s)
		}
	}
}

func TestChainScript(t *testing.T) {
	s := render.ChainScript("http://10.0.0.1:8080")
	want := "chain --autofree http://10.0.0.1:8080/ipxe?mac=${mac:hexhyp}&"
	if !strings.HasPrefix(s, "#!ipxe\n") || !strings.Contains(s, want) {
		t.Errorf("lacks %q:\n%s", want, s)
	}
	for _, v := range []string{"${uuid}", "${buildarch}", "${serial"} {
		if !strings.Contains(s, v) {
			t.Errorf("does not name the machine by %s:\n%s", v, s)
		}
	}
	// A failed chain retries rather than dropping to a shell.
	if !strings.Contains(s, "|| goto failed") || !strings.Contains(s, "/boot.ipxe") {
		t.Errorf("no retry:\n%s", s)
	}
}

func TestMessageScript(t *testing.T) {
	s := render.MessageScript("machine ${mac} is\nunknown", "second")
	ls := lines(s)
	if ls[0] != "#!ipxe" || ls[1] != "echo bootsrv: machine {mac} is unknown" || ls[2] != "echo bootsrv: second" {
		t.Errorf("message lines: %q", ls)
	}
	if !strings.HasSuffix(s, "reboot\n") {
		t.Errorf("does not reboot:\n%s", s)
	}
}

// decode returns the contents of every file in cfg, decoded as Ignition
// decodes them (vincent-petithory/dataurl).
func decode(t *testing.T, cfg types.Config) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range cfg.Storage.Files {
		if f.Contents.Source == nil {
			t.Fatalf("%s: no source", f.Path)
		}
		d, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatalf("%s: %q: %v", f.Path, *f.Contents.Source, err)
		}
		out[f.Path] = d.Data
	}
	return out
}

func TestIgnitionRoundTrip(t *testing.T) {
	binary := make([]byte, 1024)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	files := []render.File{
		{Path: "/etc/hostname", Mode: 0o644, Contents: []byte("node1\n")},
		{Path: "/etc/plus", Mode: 0o644, Contents: []byte("a+b=c 100% sure\n")},
		{Path: "/etc/special", Mode: 0o600, Contents: []byte("#hash ?q &amp ;semi ,comma /slash \\back \"quote\" 'single' ${var} %2B é ü 日本\n\ttab\r\n")},
		{Path: "/etc/lines", Mode: 0o644, Contents: []byte("line1\nline2\n\nline4")},
		{Path: "/etc/report.env", Mode: 0o600, Contents: []byte(`BOOTSRV_REPORT_URL="http://10.0.0.1/report?mac=52:54:00:00:00:01&token=a-b_c"` + "\n")},
		{Path: "/opt/bin/blob", Mode: 0o755, Contents: binary},
		{Path: "/opt/zeros", Mode: 0o644, Contents: make([]byte, 300)},
		{Path: "/etc/empty", Mode: 0o644, Contents: nil},
		{Path: "/etc/pem", Mode: 0o600, Contents: []byte("-----BEGIN CERTIFICATE-----\nMIIB+zCCAaGgAwIBAgIU/abc+def==\n-----END CERTIFICATE-----\n")},
	}
	units := []render.Unit{
		{Name: "a.service", Enabled: true, Contents: "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"},
		{Name: "kubelet.service", Dropins: []render.Dropin{{Name: "10-x.conf", Contents: "[Service]\nEnvironment=A=1\n"}}},
	}
	out, err := render.Ignition(render.Config{SSHKeys: []string{"ssh-ed25519 AAAAC3 me@host"}, Files: files, Units: units})
	if err != nil {
		t.Fatal(err)
	}
	cfg, rpt, err := ign.Parse(out)
	if err != nil || len(rpt.Entries) != 0 {
		t.Fatalf("Parse: %v, report %q", err, rpt.String())
	}
	if cfg.Ignition.Version != render.IgnitionVersion {
		t.Errorf("version %q", cfg.Ignition.Version)
	}
	got := decode(t, cfg)
	for _, f := range files {
		if string(got[f.Path]) != string(f.Contents) {
			t.Errorf("%s decodes to %q, want %q", f.Path, got[f.Path], f.Contents)
		}
	}
	modes := map[string]int{}
	for _, f := range cfg.Storage.Files {
		if f.Mode == nil || f.Overwrite == nil || !*f.Overwrite {
			t.Errorf("%s: mode %v overwrite %v", f.Path, f.Mode, f.Overwrite)
			continue
		}
		modes[f.Path] = *f.Mode
	}
	for _, f := range files {
		if modes[f.Path] != f.Mode {
			t.Errorf("%s mode %o, want %o", f.Path, modes[f.Path], f.Mode)
		}
	}
	if len(cfg.Passwd.Users) != 1 || cfg.Passwd.Users[0].Name != "core" || len(cfg.Passwd.Users[0].SSHAuthorizedKeys) != 1 {
		t.Errorf("users %+v", cfg.Passwd.Users)
	}
	if len(cfg.Systemd.Units) != 2 || cfg.Systemd.Units[0].Enabled == nil || !*cfg.Systemd.Units[0].Enabled ||
		cfg.Systemd.Units[1].Enabled != nil || len(cfg.Systemd.Units[1].Dropins) != 1 {
		t.Errorf("units %+v", cfg.Systemd.Units)
	}
	// The binary travels as base64, text as percent-encoding (readable).
	for _, f := range cfg.Storage.Files {
		src := *f.Contents.Source
		switch f.Path {
		case "/opt/bin/blob":
			if !strings.Contains(src, ";base64,") {
				t.Errorf("binary not base64: %.60s", src)
			}
		case "/etc/hostname", "/etc/lines":
			if strings.Contains(src, "base64") {
				t.Errorf("text %s in base64: %s", f.Path, src)
			}
		}
	}
}

func TestIgnitionEmpty(t *testing.T) {
	out, err := render.Ignition(render.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, rpt, err := ign.Parse(out); err != nil || len(rpt.Entries) != 0 {
		t.Fatalf("empty config: %v %s", err, rpt)
	}
}

func TestIgnitionSnippet(t *testing.T) {
	gen := render.Config{
		Files: []render.File{{Path: "/etc/hostname", Mode: 0o644, Contents: []byte("n1\n")}},
		Units: []render.Unit{{Name: "bootsrv-report.service", Enabled: true, Contents: "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}},
	}
	cases := []struct {
		name    string
		snippet string
		err     string            // substring of the error; "" for success
		files   map[string]string // path -> contents after the merge
		units   []string
		bug     string // a known bug: skip with it instead of failing
	}{
		{name: "3.4 file and unit merged", snippet: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi%0A"}}]},"systemd":{"units":[{"name":"x.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`,
			files: map[string]string{"/etc/hostname": "n1\n", "/etc/motd": "hi\n"}, units: []string{"bootsrv-report.service", "x.service"}},
		{name: "3.0 snippet translated", snippet: `{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"/etc/old","contents":{"source":"data:,old"}}]}}`,
			files: map[string]string{"/etc/hostname": "n1\n", "/etc/old": "old"}},
		{name: "whitespace only", snippet: " \n\t", files: map[string]string{"/etc/hostname": "n1\n"}},
		{name: "writes a generated file", snippet: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,evil"}}]}}`,
			err: "file /etc/hostname"},
		{name: "writes a generated unit", snippet: `{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"bootsrv-report.service","mask":true}]}}`,
			err: "unit bootsrv-report.service"},
		{name: "not JSON", snippet: `{"ignition":`, err: "snippet"},
		{name: "spec 2.x", snippet: `{"ignition":{"version":"2.3.0"}}`, err: "snippet"},
		{name: "unknown version", snippet: `{"ignition":{"version":"9.0.0"}}`, err: "snippet"},
		{name: "relative path", snippet: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"etc/x"}]}}`, err: "snippet"},
		// Ignition's Merge keys files, directories and links by path in
		// one namespace: a snippet's directory or link silently replaces
		// the file bootsrv generates at that path.
		{name: "directory where bootsrv writes a file", snippet: `{"ignition":{"version":"3.4.0"},"storage":{"directories":[{"path":"/etc/hostname"}]}}`,
			err: "/etc/hostname"},
		{name: "link where bootsrv writes a file", snippet: `{"ignition":{"version":"3.4.0"},"storage":{"links":[{"path":"/etc/hostname","target":"/tmp/x"}]}}`,
			err: "/etc/hostname"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := gen
			cfg.Snippet = c.snippet
			out, err := render.Ignition(cfg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					if c.bug != "" {
						t.Skip("BUG: " + c.bug)
					}
					t.Fatalf("got %v (%d bytes); want an error naming %q", err, len(out), c.err)
				}
				if out != nil {
					t.Errorf("an error and output")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			parsed, rpt, err := ign.Parse(out)
			if err != nil || len(rpt.Entries) != 0 {
				t.Fatalf("merged config: %v %s", err, rpt)
			}
			got := decode(t, parsed)
			if len(got) != len(c.files) {
				t.Errorf("files %v, want %v", keys(got), c.files)
			}
			for p, want := range c.files {
				if string(got[p]) != want {
					t.Errorf("%s = %q, want %q", p, got[p], want)
				}
			}
			if c.units != nil {
				var names []string
				for _, u := range parsed.Systemd.Units {
					names = append(names, u.Name)
				}
				if strings.Join(names, ",") != strings.Join(c.units, ",") {
					t.Errorf("units %v, want %v", names, c.units)
				}
			}
		})
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSnippetClashes(t *testing.T) {
	paths := []string{"/etc/hostname", "/etc/bootsrv/report.env"}
	units := []string{"bootsrv-report.service", "kubelet.service"}
	cases := []struct {
		name    string
		snippet string
		want    []string
		err     bool
	}{
		{"none", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd"}]}}`, nil, false},
		{"file and unit, sorted", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname"}]},"systemd":{"units":[{"name":"kubelet.service","enabled":false}]}}`,
			[]string{"file /etc/hostname", "unit kubelet.service"}, false},
		{"3.1 snippet", `{"ignition":{"version":"3.1.0"},"storage":{"files":[{"path":"/etc/bootsrv/report.env"}]}}`, []string{"file /etc/bootsrv/report.env"}, false},
		{"empty config", `{"ignition":{"version":"3.4.0"}}`, nil, false},
		{"invalid", `nope`, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := render.SnippetClashes(c.snippet, paths, units)
			if (err != nil) != c.err {
				t.Fatalf("err %v", err)
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestIgnitionJSONStable: the same input renders the same bytes, so a
// re-render (render ignition vs. what was served) compares equal.
func TestIgnitionJSONStable(t *testing.T) {
	c := render.Config{Files: []render.File{{Path: "/a", Mode: 0o644, Contents: []byte("x")}, {Path: "/b", Mode: 0o644, Contents: []byte("y")}}}
	a, err := render.Ignition(c)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := render.Ignition(c)
	if string(a) != string(b) {
		t.Errorf("two renders differ")
	}
	var v map[string]any
	if err := json.Unmarshal(a, &v); err != nil {
		t.Fatal(err)
	}
}

// A binary the node fetches from bootsrv: Ignition downloads contents.source
// and refuses to write it unless it matches contents.verification.hash.
func TestIgnitionRemoteFile(t *testing.T) {
	const src = "http://10.0.0.1:8080/assets/kubernetes/v1.37.2/amd64/kubelet"
	hash := "sha512-" + strings.Repeat("0123456789abcdef", 8)
	files := []render.File{
		{Path: "/opt/bin/kubelet", Mode: 0o755, Source: src, Hash: hash},
		{Path: "/etc/hostname", Mode: 0o644, Contents: []byte("n1\n")},
	}
	out, err := render.Ignition(render.Config{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	cfg, rpt, err := ign.Parse(out)
	if err != nil || len(rpt.Entries) != 0 {
		t.Fatalf("Parse: %v, report %q", err, rpt.String())
	}
	byPath := map[string]types.File{}
	for _, f := range cfg.Storage.Files {
		byPath[f.Path] = f
	}
	bin, ok := byPath["/opt/bin/kubelet"]
	if !ok {
		t.Fatalf("no /opt/bin/kubelet in %s", out)
	}
	if bin.Contents.Source == nil || *bin.Contents.Source != src {
		t.Errorf("contents.source = %v, want %s", bin.Contents.Source, src)
	}
	if bin.Contents.Verification.Hash == nil || *bin.Contents.Verification.Hash != hash {
		t.Errorf("contents.verification.hash = %v, want %s", bin.Contents.Verification.Hash, hash)
	}
	if fn, sum, err := bin.Contents.Verification.HashParts(); err != nil || fn != "sha512" || len(sum) != 128 {
		t.Errorf("hash parts %q %q %v", fn, sum, err)
	}
	if bin.Mode == nil || *bin.Mode != 0o755 || bin.Overwrite == nil || !*bin.Overwrite {
		t.Errorf("mode %v overwrite %v, want 0755 and true", bin.Mode, bin.Overwrite)
	}
	// The embedded file beside it is unchanged: a data URL, no hash.
	host := byPath["/etc/hostname"]
	if host.Contents.Source == nil || !strings.HasPrefix(*host.Contents.Source, "data:") || host.Contents.Verification.Hash != nil {
		t.Errorf("/etc/hostname contents %+v", host.Contents)
	}
	// The raw JSON is what the node's Ignition reads.
	var raw struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source       string `json:"source"`
					Verification struct {
						Hash string `json:"hash"`
					} `json:"verification"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range raw.Storage.Files {
		if f.Path == "/opt/bin/kubelet" {
			found = f.Contents.Source == src && f.Contents.Verification.Hash == hash
		}
	}
	if !found {
		t.Errorf("JSON lacks contents.source and contents.verification.hash for the binary:\n%s", out)
	}
}

func TestIgnitionRemoteFileErrors(t *testing.T) {
	const src = "http://10.0.0.1:8080/assets/etcd/v3.6.16/amd64/etcd"
	cases := []struct {
		name string
		f    render.File
		want string
	}{
		// Fetching a binary without checking it would run whatever the
		// network hands over.
		{"source without hash", render.File{Path: "/opt/bin/etcd", Mode: 0o755, Source: src}, "no hash"},
		// Ignition's own validation: the sum must fit the function.
		{"short hash", render.File{Path: "/opt/bin/etcd", Mode: 0o755, Source: src, Hash: "sha512-abcd"}, "does not validate"},
		{"unknown hash function", render.File{Path: "/opt/bin/etcd", Mode: 0o755, Source: src, Hash: "md5-" + strings.Repeat("0", 32)}, "does not validate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := render.Ignition(render.Config{Files: []render.File{c.f}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (%d bytes); want an error with %q", err, len(out), c.want)
			}
			if c.want == "no hash" && !strings.Contains(err.Error(), "/opt/bin/etcd") {
				t.Errorf("error %q does not name the file", err)
			}
			if out != nil {
				t.Error("an error and output")
			}
		})
	}
}
