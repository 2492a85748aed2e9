package model

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bootsrv/bootsrv/pkg/fault"
)

// ParseMachinesFile reads a rack description, YAML or CSV (chosen by the
// name's extension, or sniffed), into machines whose Source names the file
// and line, so that every later error points at the entry.
func ParseMachinesFile(name string, data []byte) ([]Machine, error) {
	// Spreadsheets save CSV with a UTF-8 byte order mark before the header.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	switch {
	case strings.HasSuffix(name, ".csv"):
		return parseMachinesCSV(name, data)
	case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"), strings.HasSuffix(name, ".json"):
		return parseMachinesYAML(name, data)
	}
	if first := bytes.TrimSpace(data); bytes.HasPrefix(first, []byte("mac,")) || bytes.HasPrefix(first, []byte("MAC,")) {
		return parseMachinesCSV(name, data)
	}
	return parseMachinesYAML(name, data)
}

var machineFields = map[string]bool{"mac": true, "hostname": true, "ip": true, "profile": true, "iface": true, "labels": true, "boot_file": true}

func parseMachinesCSV(name string, data []byte) ([]Machine, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err == io.EOF {
		return nil, fault.Invalidf("%s is empty: it needs a header line such as mac,hostname,ip,profile,iface,labels", name)
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !machineFields[h] {
			return nil, fault.Invalidf("%s:1: unknown column %q: the columns are mac, hostname, ip, profile, iface, labels, boot_file", name, header[i])
		}
		if _, dup := col[h]; dup {
			return nil, fault.Invalidf("%s:1: column %q appears twice", name, h)
		}
		col[h] = i
	}
	for _, need := range []string{"mac", "hostname", "ip", "profile"} {
		if _, ok := col[need]; !ok {
			return nil, fault.Invalidf("%s:1: the header has no %q column (needed: mac, hostname, ip, profile)", name, need)
		}
	}
	var out []Machine
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvErr(name, err)
		}
		line, _ := r.FieldPos(0)
		src := fmt.Sprintf("%s:%d", name, line)
		if len(rec) != len(header) {
			return nil, fault.Invalidf("%s: has %d fields, the header has %d", src, len(rec), len(header))
		}
		get := func(f string) string {
			if i, ok := col[f]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		m := Machine{MAC: get("mac"), Hostname: get("hostname"), IP: get("ip"), Profile: get("profile"),
			Iface: get("iface"), BootFile: get("boot_file"), Source: src}
		if ls := get("labels"); ls != "" {
			m.Labels = map[string]string{}
			for _, kv := range strings.Split(ls, ";") {
				k, v, err := ParseLabel(strings.TrimSpace(kv))
				if err != nil {
					return nil, fault.At(src, fault.InField("labels", err))
				}
				if _, dup := m.Labels[k]; dup {
					return nil, fault.Invalidf("%s: field labels: label %s is given twice", src, k)
				}
				m.Labels[k] = v
			}
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fault.Invalidf("%s has a header but no machines", name)
	}
	return out, nil
}

func csvErr(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fault.Invalidf("%s:%d: %v", name, pe.Line, pe.Err)
	}
	return fault.Invalidf("%s: %v", name, err)
}

// yamlItems returns the mapping nodes of a file that holds one mapping, a
// list of mappings, several documents, or a mapping with the list under
// key (e.g. "machines:").
func yamlItems(name, key string, data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var items []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fault.Invalidf("%s: not valid YAML: %v", name, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		if n.Kind == yaml.MappingNode && len(n.Content) >= 2 && n.Content[0].Value == key {
			if len(n.Content) > 2 {
				return nil, fault.Invalidf("%s:%d: a %q file holds only the %q list", name, n.Content[2].Line, key, key)
			}
			n = n.Content[1]
		}
		switch n.Kind {
		case yaml.MappingNode:
			items = append(items, n)
		case yaml.SequenceNode:
			for _, it := range n.Content {
				if it.Kind != yaml.MappingNode {
					return nil, fault.Invalidf("%s:%d: each entry must be a mapping of fields", name, it.Line)
				}
				items = append(items, it)
			}
		default:
			return nil, fault.Invalidf("%s:%d: expected a mapping or a list of mappings", name, n.Line)
		}
	}
	if len(items) == 0 {
		return nil, fault.Invalidf("%s holds no %s", name, key)
	}
	return items, nil
}

// fieldAliases maps a field's other spellings to its name, so that giving
// both counts as giving it twice.
var fieldAliases = map[string]string{"initrd": "initrds"}

// noDuplicateKeys refuses a mapping that gives a key twice: decoding into a
// yaml.Node keeps both, and the parsers would silently keep the last one.
// what names the keys in the message ("field", "label").
func noDuplicateKeys(name, what string, n *yaml.Node) error {
	first := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		key := k.Value
		if a, ok := fieldAliases[key]; ok && what == "field" {
			key = a
		}
		if f, dup := first[key]; dup {
			if f.Value != k.Value {
				return fault.Invalidf("%s:%d: %s %s is given twice (first at line %d, as %s)", name, k.Line, what, k.Value, f.Line, f.Value)
			}
			return fault.Invalidf("%s:%d: %s %s is given twice (first at line %d)", name, k.Line, what, k.Value, f.Line)
		}
		first[key] = k
	}
	return nil
}

// eachField calls set for every field of an entry, in file order, after
// refusing a field given twice.
func eachField(name string, entry *yaml.Node, set func(k, v *yaml.Node) error) error {
	if err := noDuplicateKeys(name, "field", entry); err != nil {
		return err
	}
	for i := 0; i+1 < len(entry.Content); i += 2 {
		if err := set(entry.Content[i], entry.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// nodeKind names what a YAML node is, for errors.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	}
	return "a document"
}

func scalar(src, field string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fault.Invalidf("%s:%d: field %s: expected a single value", src, n.Line, field)
	}
	return n.Value, nil
}

func scalarList(src, field string, n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fault.Invalidf("%s:%d: field %s: expected a list", src, n.Line, field)
	}
	var out []string
	for _, it := range n.Content {
		v, err := scalar(src, field, it)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func parseMachinesYAML(name string, data []byte) ([]Machine, error) {
	items, err := yamlItems(name, "machines", data)
	if err != nil {
		return nil, err
	}
	out := make([]Machine, 0, len(items))
	for _, it := range items {
		m := Machine{Source: fmt.Sprintf("%s:%d", name, it.Line)}
		err := eachField(name, it, func(k, v *yaml.Node) (err error) {
			switch k.Value {
			case "mac":
				m.MAC, err = scalar(name, k.Value, v)
			case "hostname":
				m.Hostname, err = scalar(name, k.Value, v)
			case "ip":
				m.IP, err = scalar(name, k.Value, v)
			case "profile":
				m.Profile, err = scalar(name, k.Value, v)
			case "iface":
				m.Iface, err = scalar(name, k.Value, v)
			case "boot_file":
				m.BootFile, err = scalar(name, k.Value, v)
			case "labels":
				if v.Kind != yaml.MappingNode {
					return fault.Invalidf("%s:%d: field labels: expected a mapping of key: value", name, v.Line)
				}
				if err := noDuplicateKeys(name, "field labels: label", v); err != nil {
					return err
				}
				m.Labels = map[string]string{}
				for j := 0; j+1 < len(v.Content); j += 2 {
					kn, vn := v.Content[j], v.Content[j+1]
					// A list, a map or an alias has no single value: its
					// Value is "", which would be stored as the label.
					if kn.Kind != yaml.ScalarNode {
						return fault.Invalidf("%s:%d: field labels: a label's key must be a single value, not %s", name, kn.Line, nodeKind(kn))
					}
					if vn.Kind != yaml.ScalarNode {
						return fault.Invalidf("%s:%d: field labels: label %s: the value must be a single value (quote it if it looks like YAML), not %s", name, vn.Line, kn.Value, nodeKind(vn))
					}
					lk, lv := kn.Value, vn.Value
					if err := ValidLabel(lk, lv); err != nil {
						return fault.At(fmt.Sprintf("%s:%d", name, v.Content[j].Line), fault.InField("labels", err))
					}
					m.Labels[lk] = lv
				}
			default:
				return fault.Invalidf("%s:%d: unknown field %q: machine fields are mac, hostname, ip, profile, iface, labels, boot_file", name, k.Line, k.Value)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ParseProfilesFile reads one or more profiles from YAML (one mapping, a
// list, several documents, or a "profiles:" list). The ignition field may be
// a JSON string or a YAML mapping, which is turned into JSON.
func ParseProfilesFile(name string, data []byte) ([]Profile, error) {
	items, err := yamlItems(name, "profiles", data)
	if err != nil {
		return nil, err
	}
	out := make([]Profile, 0, len(items))
	for _, it := range items {
		p := Profile{Source: fmt.Sprintf("%s:%d", name, it.Line)}
		err := eachField(name, it, func(k, v *yaml.Node) (err error) {
			switch k.Value {
			case "name":
				p.Name, err = scalar(name, k.Value, v)
			case "role":
				p.Role, err = scalar(name, k.Value, v)
			case "os":
				p.OS, err = scalar(name, k.Value, v)
			case "kernel":
				p.Kernel, err = scalar(name, k.Value, v)
			case "initrds", "initrd":
				p.Initrds, err = scalarList(name, k.Value, v)
			case "args":
				p.Args, err = scalarList(name, k.Value, v)
			case "install":
				p.Install, err = scalar(name, k.Value, v)
			case "install_device":
				p.InstallDevice, err = scalar(name, k.Value, v)
			case "ignition":
				if v.Kind == yaml.ScalarNode {
					p.Ignition = v.Value
					break
				}
				var obj any
				if err := v.Decode(&obj); err != nil {
					return fault.Invalidf("%s:%d: field ignition: %v", name, v.Line, err)
				}
				b, err := json.Marshal(obj)
				if err != nil {
					return fault.Invalidf("%s:%d: field ignition cannot be written as JSON: %v", name, v.Line, err)
				}
				p.Ignition = string(b)
			default:
				return fault.Invalidf("%s:%d: unknown field %q: profile fields are name, role, os, kernel, initrds, args, install, install_device, ignition", name, k.Line, k.Value)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseClusterFile reads a cluster's settings from YAML, with the field
// names `bootsrv cluster show -o yaml` prints. Unknown fields are errors.
func ParseClusterFile(name string, data []byte) (Cluster, error) {
	var c Cluster
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fault.Invalidf("%s: %v", name, err)
	}
	c.CreatedAt = time.Time{}
	return c, nil
}
