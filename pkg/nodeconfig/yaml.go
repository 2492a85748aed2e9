package nodeconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// toYAML writes v as block-style YAML with the field names and order of its
// json tags, the way Kubernetes writes its own objects. v goes through
// encoding/json first (so omitempty and field order follow the tags), and
// that JSON is re-written as YAML by a small emitter: the values here are
// plain objects, lists, strings, numbers and booleans, and a YAML library
// round trip cost several times the rest of a render.
func toYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	p := jparser{b: j}
	root, err := p.value()
	if err == nil && p.i != len(j) {
		err = fmt.Errorf("trailing data at offset %d", p.i)
	}
	if err != nil {
		return nil, fmt.Errorf("re-read %T: %w", v, err)
	}
	if root.kind != '{' {
		return nil, fmt.Errorf("%T is not an object", v)
	}
	var b bytes.Buffer
	b.Grow(len(j) * 5 / 4)
	emitMap(&b, root, 0, false)
	return b.Bytes(), nil
}

// jnode is one JSON value with the order of its keys kept.
type jnode struct {
	kind   byte   // '{', '[' or 's' (scalar)
	scalar string // the scalar as YAML writes it
	keys   []string
	vals   []*jnode
}

// jparser reads the compact JSON encoding/json writes (no white space);
// anything else is an error, never a guess.
type jparser struct {
	b []byte
	i int
}

func (p *jparser) errf(format string, a ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{p.i}, a...)...)
}

func (p *jparser) value() (*jnode, error) {
	if p.i >= len(p.b) {
		return nil, p.errf("unexpected end")
	}
	switch c := p.b[p.i]; {
	case c == '{' || c == '[':
		n := &jnode{kind: c}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		p.i++
		for first := true; ; first = false {
			if p.i < len(p.b) && p.b[p.i] == end {
				p.i++
				return n, nil
			}
			if !first {
				if p.i >= len(p.b) || p.b[p.i] != ',' {
					return nil, p.errf("want ',' or %q", end)
				}
				p.i++
			}
			if c == '{' {
				k, err := p.str()
				if err != nil {
					return nil, err
				}
				if p.i >= len(p.b) || p.b[p.i] != ':' {
					return nil, p.errf("want ':'")
				}
				p.i++
				n.keys = append(n.keys, yamlString(k))
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &jnode{kind: 's', scalar: yamlString(s)}, nil
	default:
		// A number, true, false or null: YAML writes them as JSON does.
		j := p.i
		for j < len(p.b) && !strings.ContainsRune(",]}", rune(p.b[j])) {
			j++
		}
		lit := string(p.b[p.i:j])
		if lit == "" {
			return nil, p.errf("empty value")
		}
		p.i = j
		return &jnode{kind: 's', scalar: lit}, nil
	}
}

// str reads a JSON string; one with escapes goes through encoding/json.
func (p *jparser) str() (string, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", p.errf("want a string")
	}
	esc := false
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			raw := p.b[p.i : j+1]
			p.i = j + 1
			if !esc {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", p.errf("%v", err)
			}
			return s, nil
		}
	}
	return "", p.errf("unterminated string")
}

// plainOK says whether s may be written unquoted: it starts with a letter,
// '/' or "--" and a letter, and holds only letters, digits and ._/:,=+- (no
// space, '#', quote, bracket or other YAML indicator). A leading digit is
// quoted because YAML 1.1 readers take "1:20" or "0123" for numbers.
func plainOK(s string) bool {
	letter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	switch {
	case s == "":
		return false
	case letter(s[0]) || s[0] == '/':
	case len(s) > 2 && s[0] == '-' && s[1] == '-' && letter(s[2]):
	default:
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !letter(c) && !(c >= '0' && c <= '9') && !strings.ContainsRune("._/:,=+-", rune(c)) {
			return false
		}
	}
	return true
}

// yamlString writes s plain when no YAML reader (1.1 or 1.2) could take it
// for anything but that string, and as a JSON string otherwise: a JSON
// string is a valid YAML double-quoted scalar.
func yamlString(s string) string {
	if plainOK(s) && !strings.HasSuffix(s, ":") {
		switch strings.ToLower(s) {
		case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		default:
			return s
		}
	}
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}

func pad(b *bytes.Buffer, n int) {
	for range n {
		b.WriteByte(' ')
	}
}

// emitValue writes what follows "key:" or "-": a scalar or an empty
// collection on the same line, a collection on the next lines.
func emitValue(b *bytes.Buffer, v *jnode, indent int, inSeq bool) {
	switch {
	case v.kind == 's':
		b.WriteString(" " + v.scalar + "\n")
	case v.kind == '{' && len(v.vals) == 0:
		b.WriteString(" {}\n")
	case v.kind == '[' && len(v.vals) == 0:
		b.WriteString(" []\n")
	case v.kind == '{' && inSeq:
		b.WriteByte(' ')
		emitMap(b, v, indent, true)
	case v.kind == '{':
		b.WriteByte('\n')
		emitMap(b, v, indent, false)
	default:
		b.WriteByte('\n')
		emitSeq(b, v, indent)
	}
}

// emitMap writes a mapping at indent; when inline, its first key follows
// a "- " already written.
func emitMap(b *bytes.Buffer, m *jnode, indent int, inline bool) {
	for i, k := range m.keys {
		if i > 0 || !inline {
			pad(b, indent)
		}
		b.WriteString(k + ":")
		emitValue(b, m.vals[i], indent+2, false)
	}
}

func emitSeq(b *bytes.Buffer, s *jnode, indent int) {
	for _, v := range s.vals {
		pad(b, indent)
		b.WriteByte('-')
		emitValue(b, v, indent+2, true)
	}
}
