package render

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	ign "github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
)

// IgnitionVersion is the spec bootsrv writes: the one most deployed OS
// releases accept.
const IgnitionVersion = "3.4.0"

// File is a file the config writes: its Contents, or what Ignition fetches
// from Source and checks against Hash ("sha512-HEX") before writing it.
type File struct {
	Path     string
	Mode     int
	Contents []byte
	Source   string
	Hash     string
}

// Dropin is a systemd drop-in for a unit.
type Dropin struct {
	Name, Contents string
}

// Unit is a systemd unit the config writes (and maybe enables).
type Unit struct {
	Name     string
	Enabled  bool
	Contents string
	Dropins  []Dropin
}

// Config is what a machine's Ignition is made of.
type Config struct {
	SSHKeys []string // for user core
	Files   []File
	Units   []Unit
	// Snippet is the profile's own Ignition (spec 3.0-3.4), merged in.
	Snippet string
}

// Ignition builds the config, merges the snippet, and checks the result
// with Ignition's own parser, warnings counting as errors. A snippet that
// writes a file or unit bootsrv generates is an error, never a silent
// overwrite.
func Ignition(c Config) ([]byte, error) {
	cfg := types.Config{Ignition: types.Ignition{Version: IgnitionVersion}}
	if len(c.SSHKeys) > 0 {
		u := types.PasswdUser{Name: "core"}
		for _, k := range c.SSHKeys {
			u.SSHAuthorizedKeys = append(u.SSHAuthorizedKeys, types.SSHAuthorizedKey(k))
		}
		cfg.Passwd.Users = []types.PasswdUser{u}
	}
	for _, f := range c.Files {
		mode := f.Mode
		res := types.Resource{}
		if f.Source != "" {
			if len(f.Contents) > 0 {
				return nil, fmt.Errorf("file %s: has both contents and a source to fetch (%s): give one", f.Path, f.Source)
			}
			if f.Hash == "" {
				return nil, fmt.Errorf("file %s: fetched from %s with no hash to check it against", f.Path, f.Source)
			}
			res.Source, res.Verification.Hash = ptr(f.Source), ptr(f.Hash)
		} else {
			res.Source = ptr(dataURL(f.Contents))
		}
		cfg.Storage.Files = append(cfg.Storage.Files, types.File{
			Node:          types.Node{Path: f.Path, Overwrite: ptr(true)},
			FileEmbedded1: types.FileEmbedded1{Mode: &mode, Contents: res},
		})
	}
	for _, u := range c.Units {
		tu := types.Unit{Name: u.Name}
		if u.Contents != "" {
			tu.Contents = ptr(u.Contents)
		}
		if u.Enabled {
			tu.Enabled = ptr(true)
		}
		for _, d := range u.Dropins {
			tu.Dropins = append(tu.Dropins, types.Dropin{Name: d.Name, Contents: ptr(d.Contents)})
		}
		cfg.Systemd.Units = append(cfg.Systemd.Units, tu)
	}
	if strings.TrimSpace(c.Snippet) != "" {
		snip, rpt, err := ign.ParseCompatibleVersion([]byte(c.Snippet))
		if err != nil {
			return nil, fmt.Errorf("profile's ignition snippet: %v %s", err, strings.TrimSpace(rpt.String()))
		}
		if clash := Clashes(cfg, snip); len(clash) > 0 {
			return nil, fmt.Errorf("profile's ignition snippet writes what bootsrv generates: %s", strings.Join(clash, ", "))
		}
		cfg = ign.Merge(cfg, snip)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode ignition: %w", err)
	}
	_, rpt, err := ign.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("generated ignition does not validate: %v %s", err, strings.TrimSpace(rpt.String()))
	}
	if len(rpt.Entries) > 0 {
		return nil, fmt.Errorf("generated ignition has warnings: %s", strings.TrimSpace(rpt.String()))
	}
	return out, nil
}

// Clashes lists what both configs write: unit names, and paths. Ignition's
// Merge keys files, directories and links by path in one namespace, so a
// snippet's directory or link at the path of a generated file replaces it
// as surely as a file there does.
func Clashes(generated, snippet types.Config) []string {
	have := map[string]bool{}
	for _, f := range generated.Storage.Files {
		have[path.Clean(f.Path)] = true
	}
	for _, d := range generated.Storage.Directories {
		have[path.Clean(d.Path)] = true
	}
	for _, l := range generated.Storage.Links {
		have[path.Clean(l.Path)] = true
	}
	units := map[string]bool{}
	for _, u := range generated.Systemd.Units {
		units[u.Name] = true
	}
	// clash: the snippet's entry replaces a generated one (Merge keys files,
	// directories and links by path together), stands where a generated
	// unit lives, or, being a file or link, stands where a generated path
	// needs a directory.
	clash := func(p string, mayBeParent bool) bool {
		p = path.Clean(p)
		if have[p] {
			return true
		}
		if rest, ok := strings.CutPrefix(p, unitDir+"/"); ok {
			name, _, _ := strings.Cut(rest, "/")
			if units[name] || units[strings.TrimSuffix(name, ".d")] {
				return true
			}
		}
		if mayBeParent {
			return false
		}
		for g := range have {
			if strings.HasPrefix(g, p+"/") {
				return true
			}
		}
		return false
	}
	var out []string
	for _, f := range snippet.Storage.Files {
		if clash(f.Path, false) {
			out = append(out, "file "+f.Path)
		}
	}
	for _, d := range snippet.Storage.Directories {
		if clash(d.Path, true) {
			out = append(out, "directory "+d.Path)
		}
	}
	for _, l := range snippet.Storage.Links {
		if clash(l.Path, false) {
			out = append(out, "link "+l.Path)
		}
	}
	for _, u := range snippet.Systemd.Units {
		if units[u.Name] {
			out = append(out, "unit "+u.Name)
		}
	}
	sort.Strings(out)
	return out
}

// unitDir is where Ignition writes systemd units and their drop-ins.
const unitDir = "/etc/systemd/system"

// SnippetClashes checks a snippet against paths and units known up front
// (those a role always generates), for `profile add`.
func SnippetClashes(snippet string, paths, units []string) ([]string, error) {
	snip, _, err := ign.ParseCompatibleVersion([]byte(snippet))
	if err != nil {
		return nil, err
	}
	var gen types.Config
	for _, p := range paths {
		gen.Storage.Files = append(gen.Storage.Files, types.File{Node: types.Node{Path: p}})
	}
	for _, u := range units {
		gen.Systemd.Units = append(gen.Systemd.Units, types.Unit{Name: u})
	}
	return Clashes(gen, snip), nil
}

// dataURL encodes contents the compact way: percent-encoding for text,
// base64 where that is shorter (keys and certificates are text, but
// binaries would balloon).
func dataURL(b []byte) string {
	// '+' is escaped too: some data URL decoders read it as a space.
	esc := strings.ReplaceAll(url.PathEscape(string(b)), "+", "%2B")
	b64 := base64.StdEncoding.EncodeToString(b)
	if len(b64)+7 < len(esc) {
		return "data:;base64," + b64
	}
	return "data:," + esc
}

func ptr[T any](v T) *T { return &v }
