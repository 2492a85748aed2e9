package noderun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// defaultPath is the PATH systemd gives system services (systemd.exec(5),
// "Environment variables in spawned processes"), before the unit's own
// variables.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Exec is one command line of a unit, ready to start.
type Exec struct {
	Argv []string
	// IgnoreFailure: the line began with "-", systemd ignores its exit status.
	IgnoreFailure bool
}

// Command returns the argv and environment systemd would start the unit's
// ExecStart with, except that every absolute path beginning with one of
// prefixes (e.g. "/etc/", "/opt/bin/") is moved under root: in argv words,
// in "--flag=/path" values, in comma- or colon-separated lists, after
// "scheme://", and in the environment's values.
//
// As systemd does: specifiers (%n, %i, %%, ...) are resolved first, the line
// is split into words with quotes and C escapes, then "${NAME}" is replaced
// inside words and a word that is exactly "$NAME" by the value's words. The
// variables come from Environment= and then the EnvironmentFile= files, read
// from root (later ones win), over systemd's default PATH; env holds all of
// them as NAME=VALUE, sorted, and is the process's whole environment.
func (u Unit) Command(root string, prefixes []string) (argv, env []string, err error) {
	if u.ExecStart == "" {
		return nil, nil, fmt.Errorf("unit %s has no ExecStart", u.Name)
	}
	vars, err := u.variables(root)
	if err != nil {
		return nil, nil, err
	}
	c, err := u.commandLine(u.ExecStart, root, vars)
	if err != nil {
		return nil, nil, fmt.Errorf("unit %s ExecStart: %w", u.Name, err)
	}
	r := rewriter{root: filepath.Clean(root), prefixes: prefixes}
	return r.words(c.Argv), r.env(vars), nil
}

// StartPreCommands returns the unit's ExecStartPre lines as Command would
// start them (same variables, same rewriting). Whether to run them is the
// caller's choice: they often touch the host (modprobe, sysctl, mkdir under
// a path that is not rewritten).
func (u Unit) StartPreCommands(root string, prefixes []string) ([]Exec, error) {
	vars, err := u.variables(root)
	if err != nil {
		return nil, err
	}
	r := rewriter{root: filepath.Clean(root), prefixes: prefixes}
	var out []Exec
	for _, line := range u.ExecStartPre {
		c, err := u.commandLine(line, root, vars)
		if err != nil {
			return nil, fmt.Errorf("unit %s ExecStartPre: %w", u.Name, err)
		}
		c.Argv = r.words(c.Argv)
		out = append(out, c)
	}
	return out, nil
}

// variables is the process environment before rewriting: systemd's PATH,
// then Environment=, then each EnvironmentFile= (systemd.exec(5): "Settings
// from these files override settings made with Environment=").
func (u Unit) variables(root string) (map[string]string, error) {
	vars := map[string]string{"PATH": defaultPath}
	for k, v := range u.Environment {
		rv, err := u.specifiers(v, root)
		if err != nil {
			return nil, fmt.Errorf("unit %s Environment %s: %w", u.Name, k, err)
		}
		vars[k] = rv
	}
	for _, f := range u.EnvironmentFiles {
		optional := strings.HasPrefix(f, "-")
		p, err := u.specifiers(strings.TrimPrefix(f, "-"), root)
		if err != nil {
			return nil, fmt.Errorf("unit %s EnvironmentFile=%s: %w", u.Name, f, err)
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("unit %s EnvironmentFile=%s: not an absolute path", u.Name, f)
		}
		// The files are the node's, so under root; systemd accepts a glob
		// (only the unit's part is one: root may hold '[' or '*').
		matches := []string{filepath.Join(root, p)}
		if strings.ContainsAny(p, "*?[") {
			g, err := filepath.Glob(filepath.Join(globQuote(root), p))
			if err != nil {
				return nil, fmt.Errorf("unit %s EnvironmentFile=%s: %w", u.Name, f, err)
			}
			matches = g
		} else if _, err := os.Stat(matches[0]); errors.Is(err, fs.ErrNotExist) {
			matches = nil
		}
		if len(matches) == 0 {
			if optional {
				continue
			}
			return nil, fmt.Errorf("unit %s EnvironmentFile=%s: %w", u.Name, f, fs.ErrNotExist)
		}
		sort.Strings(matches)
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err != nil {
				if optional && errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, fmt.Errorf("unit %s: read EnvironmentFile: %w", u.Name, err)
			}
			kvs, err := parseEnvFile(string(data))
			if err != nil {
				return nil, fmt.Errorf("unit %s EnvironmentFile=%s: %w", u.Name, f, err)
			}
			for _, kv := range kvs {
				vars[kv[0]] = kv[1]
			}
		}
	}
	return vars, nil
}

// commandLine turns one Exec*= value into argv, with systemd's prefixes
// (systemd.service(5), "Command lines"), specifiers and variables.
func (u Unit) commandLine(line, root string, vars map[string]string) (Exec, error) {
	var c Exec
	line, err := u.specifiers(line, root)
	if err != nil {
		return c, err
	}
	words, err := splitWords(line, true, false)
	if err != nil {
		return c, err
	}
	if len(words) == 0 {
		return c, errors.New("empty command line")
	}

	expand := true
	first := words[0]
	for len(first) > 0 && strings.ContainsRune("-@:+!|", rune(first[0])) {
		switch first[0] {
		case '-':
			c.IgnoreFailure = true
		case ':':
			expand = false
		case '+', '!':
			// Privilege flags: these processes run as root already.
		case '@':
			// argv[0] other than the path: "ip netns exec" cannot pass it.
			return c, errors.New(`the "@" prefix (a separate argv[0]) is not supported`)
		case '|':
			return c, errors.New(`the "|" prefix (run through a shell) is not supported`)
		}
		first = first[1:]
	}
	if first == "" {
		return c, errors.New("no executable after the prefixes")
	}
	words[0] = first
	for _, w := range words {
		if w == ";" {
			return c, errors.New(`several commands separated by ";" are not supported`)
		}
	}
	if expand {
		words = expandWords(words, vars)
	}
	if len(words) == 0 {
		return c, errors.New("empty command line after expanding variables")
	}
	c.Argv = words
	return c, nil
}

// specifiers resolves systemd's "%x" specifiers (systemd.unit(5),
// "Specifiers") that make sense for a system service; any other is an
// error, since systemd would not start the unit either.
func (u Unit) specifiers(s, root string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	prefix, instance := u.Name, ""
	if i := strings.LastIndex(prefix, "."); i >= 0 {
		prefix = prefix[:i]
	}
	full := prefix
	if at := strings.Index(prefix, "@"); at >= 0 {
		prefix, instance = full[:at], full[at+1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("%q ends in a lone %%", s)
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteString(u.Name)
		case 'N':
			b.WriteString(full)
		case 'p':
			b.WriteString(prefix)
		case 'i', 'I':
			b.WriteString(instance)
		case 't':
			b.WriteString("/run")
		case 'S':
			b.WriteString("/var/lib")
		case 'C':
			b.WriteString("/var/cache")
		case 'L':
			b.WriteString("/var/log")
		case 'E':
			b.WriteString("/etc")
		case 'T':
			b.WriteString("/tmp")
		case 'V':
			b.WriteString("/var/tmp")
		case 'h':
			b.WriteString("/root")
		case 'u':
			b.WriteString("root")
		case 'U':
			b.WriteString("0")
		case 'H', 'l', 'm':
			// The node's, not this machine's: from the files Ignition wrote.
			file := map[byte]string{'H': "/etc/hostname", 'l': "/etc/hostname", 'm': "/etc/machine-id"}[s[i]]
			data, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				return "", fmt.Errorf("specifier %%%c needs %s: %w", s[i], file, err)
			}
			v := strings.TrimSpace(string(data))
			if s[i] == 'l' {
				v, _, _ = strings.Cut(v, ".")
			}
			b.WriteString(v)
		default:
			return "", fmt.Errorf("unsupported specifier %%%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

// splitWords splits s into words as systemd's extract_first_word does:
// whitespace separates, single and double quotes group and are removed, a
// backslash escapes. With cunescape (Exec*= and Environment= lines) the
// escapes are C's (\n, \t, \x41, \101, \u00e9, "\ " and so on); without it
// (splitting a "$NAME" value) a backslash keeps the next character. relax
// accepts an unterminated quote (systemd's EXTRACT_RELAX).
func splitWords(s string, cunescape, relax bool) ([]string, error) {
	var words []string
	var w strings.Builder
	var quote byte
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			inWord = true
			if i+1 >= len(s) {
				if relax {
					continue
				}
				return nil, fmt.Errorf("%q ends in a lone backslash", s)
			}
			if !cunescape {
				i++
				w.WriteByte(s[i])
				continue
			}
			r, n, err := cUnescape(s[i+1:])
			if err != nil {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			w.WriteString(r)
			i += n
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 && !relax {
		return nil, fmt.Errorf("%q has an unterminated %c quote", s, quote)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// cUnescape decodes the escape after a backslash at the start of s and says
// how many bytes of s it used.
func cUnescape(s string) (string, int, error) {
	simple := map[byte]string{
		'a': "\a", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v",
		'\\': "\\", '"': "\"", '\'': "'", 's': " ", ' ': " ", '\t': "\t",
	}
	if r, ok := simple[s[0]]; ok {
		return r, 1, nil
	}
	hex := func(n int) (uint64, error) {
		if len(s) < 1+n {
			return 0, fmt.Errorf("short escape \\%s", s)
		}
		v, err := strconv.ParseUint(s[1:1+n], 16, 32)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("bad escape \\%s", s[:1+n])
		}
		return v, nil
	}
	switch s[0] {
	case 'x': // a byte
		v, err := hex(2)
		return string([]byte{byte(v)}), 3, err
	case 'u', 'U': // a code point
		n := 4
		if s[0] == 'U' {
			n = 8
		}
		v, err := hex(n)
		if err == nil && !utf8.ValidRune(rune(v)) {
			err = fmt.Errorf("bad escape \\%s", s[:1+n])
		}
		return string(rune(v)), 1 + n, err
	case '0', '1', '2', '3', '4', '5', '6', '7': // a byte, three octal digits
		if len(s) < 3 {
			return "", 0, fmt.Errorf("short octal escape \\%s", s)
		}
		v, err := strconv.ParseUint(s[:3], 8, 8)
		if err != nil || v == 0 {
			return "", 0, fmt.Errorf("bad octal escape \\%s", s[:3])
		}
		return string([]byte{byte(v)}), 3, nil
	}
	return "", 0, fmt.Errorf("unknown escape \\%c", s[0])
}

// expandWords replaces variables as systemd's replace_env_argv does: a word
// that is exactly "$NAME" becomes the value split into words (quotes
// honoured; nothing when unset); inside a word "${NAME}" becomes the value
// and "$$" a "$"; a braceless "$NAME" inside a word stays as it is.
func expandWords(words []string, vars map[string]string) []string {
	var out []string
	for _, w := range words {
		if len(w) > 1 && w[0] == '$' && w[1] != '{' && w[1] != '$' {
			if v, ok := vars[w[1:]]; ok {
				split, _ := splitWords(v, false, true)
				out = append(out, split...)
			}
			continue
		}
		out = append(out, expandBraces(w, vars))
	}
	return out
}

func expandBraces(w string, vars map[string]string) string {
	if !strings.Contains(w, "$") {
		return w
	}
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if w[i] != '$' || i+1 >= len(w) {
			b.WriteByte(w[i])
			continue
		}
		switch w[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(w[i+2:], '}')
			if end < 0 {
				// "${FOO" stays as written.
				b.WriteString(w[i:])
				return b.String()
			}
			b.WriteString(vars[w[i+2:i+2+end]])
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// parseEnvFile parses an EnvironmentFile= as systemd does
// (src/basic/env-file.c): "NAME=VALUE" lines, "#" and ";" comment lines,
// single quotes literal, double quotes where a backslash escapes ", \, `, $
// and a newline, an unquoted backslash escaping the next character (a
// backslash-newline continues the value), unquoted surrounding whitespace
// dropped. Unlike systemd, a line that is not an assignment is an error
// rather than ignored: a rendered env file should not have one.
func parseEnvFile(text string) ([][2]string, error) {
	var out [][2]string
	line := 1
	i := 0
	for i < len(text) {
		// Skip blank space and comment lines.
		c := text[i]
		if c == '\n' {
			line++
			i++
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if c == '#' || c == ';' {
			for i < len(text) && text[i] != '\n' {
				i++
			}
			continue
		}
		start := line
		eq := strings.IndexAny(text[i:], "=\n")
		if eq < 0 || text[i+eq] != '=' {
			end := strings.IndexByte(text[i:], '\n')
			if end < 0 {
				end = len(text) - i
			}
			return nil, fmt.Errorf("line %d: %q is not NAME=VALUE", start, text[i:i+end])
		}
		key := strings.TrimSpace(text[i : i+eq])
		key = strings.TrimPrefix(key, "export ")
		if !validEnvName(key) {
			return nil, fmt.Errorf("line %d: %q is not a valid variable name", start, key)
		}
		i += eq + 1

		var v strings.Builder
		keep := 0 // length of v up to its last non-blank or quoted byte
		for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}
	value:
		for i < len(text) {
			c := text[i]
			switch c {
			case '\n':
				break value
			case '\\':
				i++
				if i < len(text) {
					if text[i] == '\n' {
						line++
					} else {
						v.WriteByte(text[i])
						keep = v.Len()
					}
				}
			case '\'':
				end := strings.IndexByte(text[i+1:], '\'')
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated ' quote", start)
				}
				q := text[i+1 : i+1+end]
				line += strings.Count(q, "\n")
				v.WriteString(q)
				keep = v.Len()
				i += end + 1
			case '"':
				i++
				for ; i < len(text) && text[i] != '"'; i++ {
					ch := text[i]
					if ch == '\\' && i+1 < len(text) {
						switch n := text[i+1]; n {
						case '"', '\\', '`', '$':
							v.WriteByte(n)
							i++
							continue
						case '\n':
							line++
							i++
							continue
						}
					}
					if ch == '\n' {
						line++
					}
					v.WriteByte(ch)
				}
				if i >= len(text) {
					return nil, fmt.Errorf("line %d: unterminated \" quote", start)
				}
				keep = v.Len()
			default:
				v.WriteByte(c)
				if c != ' ' && c != '\t' && c != '\r' {
					keep = v.Len()
				}
			}
			i++
		}
		out = append(out, [2]string{key, v.String()[:keep]})
	}
	return out, nil
}

// globQuote escapes the glob metacharacters of a literal path.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("*?[\\", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// rewriter moves absolute paths under some prefixes below root.
type rewriter struct {
	root     string
	prefixes []string
}

func (r rewriter) words(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = r.rewrite(w)
	}
	return out
}

// env returns vars as sorted NAME=VALUE with the values rewritten.
func (r rewriter) env(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		if k != "PATH" || v != defaultPath {
			v = r.rewrite(v)
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// rewrite puts root in front of every path in s that starts with one of the
// prefixes at a boundary: the start of s, or after '=', ',', ':', a blank,
// or "://" (unix:///run/x.sock). "/etc" matches the prefix "/etc/" too when
// it ends there. The scan is one pass, so the root it inserts is never
// rewritten again.
func (r rewriter) rewrite(s string) string {
	if r.root == "" || r.root == "/" || !strings.Contains(s, "/") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '/' && r.atBoundary(s, i) && r.matches(s[i:]) {
			b.WriteString(r.root)
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (r rewriter) atBoundary(s string, i int) bool {
	if i == 0 {
		return true
	}
	switch s[i-1] {
	case '=', ',', ':', ' ', '\t', '\n':
		return true
	}
	return i >= 3 && s[i-3:i] == "://"
}

func (r rewriter) matches(rest string) bool {
	for _, p := range r.prefixes {
		if p == "" || p == "/" {
			continue
		}
		if strings.HasPrefix(rest, p) {
			return true
		}
		dir := strings.TrimSuffix(p, "/")
		if strings.HasPrefix(rest, dir) {
			tail := rest[len(dir):]
			if tail == "" || strings.ContainsRune(",: \t\n/", rune(tail[0])) {
				return true
			}
		}
	}
	return false
}
