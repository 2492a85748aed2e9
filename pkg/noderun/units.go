package noderun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Where Ignition's files stage writes units and the preset that enables
// them (internal/exec/util in Ignition v2.24.0: SystemdUnitsPath, PresetPath).
const (
	unitDir    = "/etc/systemd/system"
	presetFile = "/etc/systemd/system-preset/20-ignition.preset"
)

// Sections is a unit file's raw content: section name -> key -> values in
// the order systemd applies them, after the empty-assignment resets (so a
// list setting's values are the whole list and a single-valued setting's
// effective value is the last one).
type Sections map[string]map[string][]string

// Get returns the effective value of a single-valued setting (the last
// assignment), or "" when it is not set.
func (s Sections) Get(section, key string) string {
	v := s[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Unit is one service unit as Ignition wrote it under a root, with its
// drop-ins applied.
type Unit struct {
	Name    string   // "etcd.service"
	Path    string   // the unit file relative to root; "" when only drop-ins exist
	DropIns []string // drop-in files relative to root, in the order applied
	Enabled bool     // an "enable" line in Ignition's preset file names it
	Masked  bool     // the unit file is a symlink to /dev/null (Ignition's mask)

	Type string // [Service] Type=, "simple" when unset (systemd's default)
	// ExecStartPre lines as written (continuations joined), in order.
	ExecStartPre []string
	// ExecStart as written (continuations joined). Only Type=oneshot may
	// have several; then this is the first and Sections has all of them.
	ExecStart string
	// Environment= assignments, unquoted; specifiers are resolved by Command.
	Environment map[string]string
	// EnvironmentFile= paths as written; a leading "-" means the file may be
	// missing.
	EnvironmentFiles []string
	Restart          string // [Service] Restart=, "no" when unset

	Sections Sections
}

// LoadUnits reads root/etc/systemd/system/*.service with their
// NAME.service.d/*.conf drop-ins, and which of them Ignition's preset file
// enables. A root without that directory has no units (an empty map).
func LoadUnits(root string) (map[string]Unit, error) {
	dir := filepath.Join(root, unitDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Unit{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read units: %w", err)
	}

	presets, err := readPresets(root)
	if err != nil {
		return nil, err
	}

	names := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".service") && !e.IsDir():
			names[n] = true
		case strings.HasSuffix(n, ".service.d") && e.IsDir():
			// Drop-ins for a unit the OS image ships (Ignition writes only
			// the .d directory then): still a unit the node will run.
			names[strings.TrimSuffix(n, ".d")] = true
		}
	}

	units := make(map[string]Unit, len(names))
	for name := range names {
		u, err := loadUnit(root, name)
		if err != nil {
			return nil, err
		}
		u.Enabled = presets.enabled(name)
		units[name] = u
	}
	return units, nil
}

// loadUnit reads one unit and its drop-ins (sorted by file name, as systemd
// applies drop-ins from one directory).
func loadUnit(root, name string) (Unit, error) {
	u := Unit{Name: name, Sections: Sections{}}
	rel := path.Join(unitDir, name)
	abs := filepath.Join(root, rel)

	if target, err := os.Readlink(abs); err == nil && target == "/dev/null" {
		u.Masked = true
		return u, nil
	}
	data, err := os.ReadFile(abs)
	switch {
	case err == nil:
		u.Path = rel
		if err := parseUnitInto(u.Sections, string(data)); err != nil {
			return Unit{}, fmt.Errorf("unit %s: %w", rel, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return Unit{}, fmt.Errorf("read unit %s: %w", name, err)
	}

	dropins, err := filepath.Glob(filepath.Join(root, unitDir, name+".d", "*.conf"))
	if err != nil {
		return Unit{}, fmt.Errorf("list drop-ins of %s: %w", name, err)
	}
	sort.Strings(dropins)
	for _, d := range dropins {
		data, err := os.ReadFile(d)
		if err != nil {
			return Unit{}, fmt.Errorf("read drop-in of %s: %w", name, err)
		}
		drel := path.Join(unitDir, name+".d", filepath.Base(d))
		if err := parseUnitInto(u.Sections, string(data)); err != nil {
			return Unit{}, fmt.Errorf("drop-in %s: %w", drel, err)
		}
		u.DropIns = append(u.DropIns, drel)
	}

	if err := u.fromSections(); err != nil {
		return Unit{}, fmt.Errorf("unit %s: %w", name, err)
	}
	return u, nil
}

// fromSections fills the typed fields from the raw [Service] section.
func (u *Unit) fromSections() error {
	svc := u.Sections["Service"]
	u.Type = u.Sections.Get("Service", "Type")
	if u.Type == "" {
		u.Type = "simple"
	}
	u.Restart = u.Sections.Get("Service", "Restart")
	if u.Restart == "" {
		u.Restart = "no"
	}
	u.ExecStartPre = append([]string(nil), svc["ExecStartPre"]...)
	u.EnvironmentFiles = append([]string(nil), svc["EnvironmentFile"]...)

	starts := svc["ExecStart"]
	if len(starts) > 1 && u.Type != "oneshot" {
		// systemd refuses to start such a unit; so do we.
		return fmt.Errorf("%d ExecStart= lines, only Type=oneshot may have more than one", len(starts))
	}
	if len(starts) > 0 {
		u.ExecStart = starts[0]
	}

	u.Environment = map[string]string{}
	for _, line := range svc["Environment"] {
		words, err := splitWords(line, true, false)
		if err != nil {
			return fmt.Errorf("Environment=%s: %w", line, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok || !validEnvName(k) {
				// systemd logs and ignores it; a rendered unit should not
				// have it, so say so.
				return fmt.Errorf("Environment=%s: %q is not NAME=VALUE", line, w)
			}
			u.Environment[k] = v
		}
	}
	return nil
}

// parseUnitInto adds the assignments of one unit file (or drop-in) to secs,
// with systemd's syntax (systemd.syntax(7), config_parse in
// src/shared/conf-parser.c): "#" and ";" start comment lines; a line ending
// in an unescaped backslash continues on the next one, the backslash
// becoming a space; comment lines inside a continuation are skipped; an
// empty value resets the list of that key.
func parseUnitInto(secs Sections, text string) error {
	section := ""
	parseLine := func(n int, line string) error {
		l := strings.TrimSpace(line)
		if l == "" || l[0] == '#' || l[0] == ';' {
			return nil
		}
		if l[0] == '[' {
			if !strings.HasSuffix(l, "]") || len(l) < 3 {
				return fmt.Errorf("line %d: bad section header %q", n, l)
			}
			section = l[1 : len(l)-1]
			if secs[section] == nil {
				secs[section] = map[string][]string{}
			}
			return nil
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("line %d: %q has no '='", n, l)
		}
		if section == "" {
			return fmt.Errorf("line %d: %q is outside any section", n, l)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return fmt.Errorf("line %d: %q has no key", n, l)
		}
		if v == "" {
			// An empty assignment resets a list (ExecStart= in a drop-in
			// before the new command) and a single value to its default.
			delete(secs[section], k)
			return nil
		}
		secs[section][k] = append(secs[section][k], v)
		return nil
	}

	var cont strings.Builder
	continuing, start := false, 0
	for i, raw := range strings.Split(text, "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		if continuing && isCommentLine(raw) {
			continue
		}
		line := raw
		if continuing {
			cont.WriteString(raw)
			line = cont.String()
		} else {
			start = i + 1
		}
		if endsInEscape(line) {
			cont.Reset()
			cont.WriteString(line[:len(line)-1])
			cont.WriteByte(' ')
			continuing = true
			continue
		}
		continuing = false
		if err := parseLine(start, line); err != nil {
			return err
		}
	}
	if continuing {
		// The file ended inside a continuation: systemd parses what it has.
		return parseLine(start, cont.String())
	}
	return nil
}

func isCommentLine(s string) bool {
	t := strings.TrimLeft(s, " \t")
	return t != "" && (t[0] == '#' || t[0] == ';')
}

// endsInEscape reports whether s ends in a backslash that is not itself
// escaped ("a \\" continues, "a \\\\" does not).
func endsInEscape(s string) bool {
	n := 0
	for i := len(s) - 1; i >= 0 && s[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// presets is the parsed preset file: its lines in order (systemd uses the
// first line that matches a unit).
type presets []presetLine

type presetLine struct {
	enable bool
	glob   string
	// instances of a template line ("enable echo@.service foo bar").
	instances []string
}

func readPresets(root string) (presets, error) {
	data, err := os.ReadFile(filepath.Join(root, presetFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read preset file: %w", err)
	}
	p, err := parsePresets(string(data))
	if err != nil {
		return nil, fmt.Errorf("preset file %s: %w", presetFile, err)
	}
	return p, nil
}

// parsePresets parses systemd.preset(5) lines: "enable GLOB [INSTANCE...]"
// or "disable GLOB", comments with "#" or ";".
func parsePresets(text string) (presets, error) {
	var out presets
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0][0] == '#' || f[0][0] == ';' {
			continue
		}
		if len(f) < 2 || (f[0] != "enable" && f[0] != "disable") {
			return nil, fmt.Errorf("line %d: %q is not \"enable|disable UNIT\"", i+1, line)
		}
		if _, err := path.Match(f[1], ""); err != nil {
			return nil, fmt.Errorf("line %d: bad pattern %q: %w", i+1, f[1], err)
		}
		out = append(out, presetLine{enable: f[0] == "enable", glob: f[1], instances: f[2:]})
	}
	return out, nil
}

// enabled applies the first matching line, as systemd does. A unit no line
// names is not enabled: on a real node the distribution's presets decide,
// and those are not part of a rendered config.
func (p presets) enabled(name string) bool {
	for _, l := range p {
		if len(l.instances) > 0 {
			// "enable echo@.service foo bar" enables echo@foo.service and
			// echo@bar.service (Ignition writes instantiated units so).
			for _, inst := range l.instances {
				if instanceName(l.glob, inst) == name {
					return l.enable
				}
			}
			continue
		}
		if ok, _ := path.Match(l.glob, name); ok {
			return l.enable
		}
	}
	return false
}

// instanceName turns ("echo@.service", "foo") into "echo@foo.service".
func instanceName(template, instance string) string {
	at := strings.Index(template, "@")
	if at < 0 {
		return template
	}
	return template[:at+1] + instance + template[at+1:]
}
