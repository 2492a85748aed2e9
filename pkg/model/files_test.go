package model

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/fault/faulttest"
)

func TestParseMachinesFileGood(t *testing.T) {
	cases := []struct {
		name, file, data string
		want             []Machine
	}{
		{
			name: "csv with comment, optional columns and labels",
			file: "rack.csv",
			data: "# rack 1\n" +
				"mac,hostname,ip,profile,iface,labels\n" +
				"52-54-00-00-00-01,node1,192.168.1.11,worker,eth0,rack=r1;zone=a\n" +
				"\n" +
				"5254.0000.0002, node2 ,192.168.1.12,worker,,\n",
			want: []Machine{
				{MAC: "52-54-00-00-00-01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Iface: "eth0",
					Labels: map[string]string{"rack": "r1", "zone": "a"}, Source: "rack.csv:3"},
				{MAC: "5254.0000.0002", Hostname: "node2", IP: "192.168.1.12", Profile: "worker", Source: "rack.csv:5"},
			},
		},
		{
			name: "csv columns in another order, upper-case header",
			file: "rack.csv",
			data: "IP,MAC,Profile,Hostname,boot_file\n192.168.1.11,52:54:00:00:00:01,worker,node1,ipxe.efi\n",
			want: []Machine{{MAC: "52:54:00:00:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", BootFile: "ipxe.efi", Source: "rack.csv:2"}},
		},
		{
			name: "csv sniffed without extension",
			file: "<stdin>",
			data: "mac,hostname,ip,profile\n52:54:00:00:00:01,node1,192.168.1.11,worker\n",
			want: []Machine{{MAC: "52:54:00:00:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Source: "<stdin>:2"}},
		},
		{
			name: "yaml machines: list",
			file: "rack.yaml",
			data: "machines:\n" +
				"  - mac: 52:54:00:00:00:01\n" +
				"    hostname: node1\n" +
				"    ip: 192.168.1.11\n" +
				"    profile: worker\n" +
				"    labels:\n" +
				"      rack: r1\n" +
				"  - mac: AABBCCDDEEFF\n" +
				"    hostname: node2\n" +
				"    ip: 192.168.1.12\n" +
				"    profile: worker\n" +
				"    iface: eth1\n",
			want: []Machine{
				{MAC: "52:54:00:00:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Labels: map[string]string{"rack": "r1"}, Source: "rack.yaml:2"},
				{MAC: "AABBCCDDEEFF", Hostname: "node2", IP: "192.168.1.12", Profile: "worker", Iface: "eth1", Source: "rack.yaml:8"},
			},
		},
		{
			name: "yaml bare list and a second document",
			file: "rack.yml",
			data: "- {mac: 52:54:00:00:00:01, hostname: node1, ip: 192.168.1.11, profile: worker}\n" +
				"---\n" +
				"mac: 52:54:00:00:00:02\nhostname: node2\nip: 192.168.1.12\nprofile: worker\n",
			want: []Machine{
				{MAC: "52:54:00:00:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Source: "rack.yml:1"},
				{MAC: "52:54:00:00:00:02", Hostname: "node2", IP: "192.168.1.12", Profile: "worker", Source: "rack.yml:3"},
			},
		},
		{
			name: "json",
			file: "rack.json",
			data: `[{"mac":"52:54:00:00:00:01","hostname":"node1","ip":"192.168.1.11","profile":"worker"}]`,
			want: []Machine{{MAC: "52:54:00:00:00:01", Hostname: "node1", IP: "192.168.1.11", Profile: "worker", Source: "rack.json:1"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMachinesFile(tc.file, []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseMachinesFileBad(t *testing.T) {
	cases := []struct {
		name, file, data string
		subs             []string
	}{
		{"csv empty", "rack.csv", "", []string{"rack.csv is empty: it needs a header line"}},
		{"csv header only", "rack.csv", "mac,hostname,ip,profile\n", []string{"rack.csv has a header but no machines"}},
		{"csv unknown column", "rack.csv", "mac,hostname,ip,profile,colour\n", []string{`rack.csv:1: unknown column "colour"`}},
		{"csv missing column", "rack.csv", "mac,hostname,ip\n52:54:00:00:00:01,n1,192.168.1.11\n", []string{`rack.csv:1: the header has no "profile" column`}},
		{"csv column twice", "rack.csv", "mac,hostname,ip,profile,ip\n", []string{`rack.csv:1: column "ip" appears twice`}},
		{"csv wrong field count on line 3", "rack.csv",
			"mac,hostname,ip,profile\n52:54:00:00:00:01,n1,192.168.1.11,worker\n52:54:00:00:00:02,n2,192.168.1.12\n",
			[]string{"rack.csv:3: has 3 fields, the header has 4"}},
		{"csv bad quote on line 2", "rack.csv", "mac,hostname,ip,profile\n52:54:00:00:00:01,\"n1,192.168.1.11,worker\n",
			[]string{"rack.csv:2:"}},
		{"csv bad label on line 3", "rack.csv",
			"mac,hostname,ip,profile,labels\n52:54:00:00:00:01,n1,192.168.1.11,worker,rack=r1\n52:54:00:00:00:02,n2,192.168.1.12,worker,rack\n",
			[]string{"rack.csv:3: field labels:", `label "rack" is not key=value`}},
		{"yaml not yaml", "rack.yaml", "- mac: [\n", []string{"rack.yaml: not valid YAML"}},
		{"yaml empty", "rack.yaml", "# nothing\n", []string{"rack.yaml holds no machines"}},
		{"yaml unknown field on line 5", "rack.yaml",
			"machines:\n  - mac: 52:54:00:00:00:01\n    hostname: n1\n    ip: 192.168.1.11\n    colour: red\n    profile: worker\n",
			[]string{`rack.yaml:5: unknown field "colour"`}},
		{"yaml list value for mac", "rack.yaml", "- mac: [a, b]\n  hostname: n1\n", []string{"rack.yaml:1: field mac: expected a single value"}},
		{"yaml labels not a mapping", "rack.yaml", "- mac: 52:54:00:00:00:01\n  labels: [a]\n", []string{"rack.yaml:2: field labels: expected a mapping"}},
		{"yaml bad label on line 4", "rack.yaml", "- mac: 52:54:00:00:00:01\n  labels:\n    rack: r1\n    node-role.kubernetes.io/master: \"\"\n",
			[]string{"rack.yaml:4: field labels:", "node-role.kubernetes.io/master"}},
		{"yaml label value a list", "rack.yaml", "- mac: 52:54:00:00:00:01\n  labels:\n    rack: r1\n    zone: [a, b]\n",
			[]string{"rack.yaml:4: field labels: label zone: the value must be a single value", "not a list"}},
		{"yaml label value a mapping", "rack.yaml", "- mac: 52:54:00:00:00:01\n  labels:\n    zone:\n      a: b\n",
			[]string{"rack.yaml:4: field labels: label zone:", "not a mapping"}},
		{"yaml label key a list", "rack.yaml", "- mac: 52:54:00:00:00:01\n  labels:\n    ? [a]\n    : b\n",
			[]string{"rack.yaml:3: field labels: a label's key must be a single value, not a list"}},
		{"yaml anchor bomb in a label", "rack.yaml",
			"- mac: 52:54:00:00:00:01\n  labels:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" +
				"    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n    d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
			[]string{"rack.yaml:3: field labels: label a: the value must be a single value", "not a list"}},
		{"yaml label value an alias", "rack.yaml", "- mac: 52:54:00:00:00:01\n  hostname: &h n1\n  labels:\n    name: *h\n",
			[]string{"rack.yaml:4: field labels: label name:", "not an alias (*h)"}},
		{"yaml entry not a mapping", "rack.yaml", "- mac: 52:54:00:00:00:01\n- just a string\n", []string{"rack.yaml:2: each entry must be a mapping"}},
		{"yaml scalar document", "rack.yaml", "hello\n", []string{"rack.yaml:1: expected a mapping or a list of mappings"}},
		{"yaml machines: with another key", "rack.yaml", "machines:\n  - mac: 52:54:00:00:00:01\nprofiles: []\n", []string{`rack.yaml:3: a "machines" file holds only the "machines" list`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := ParseMachinesFile(tc.file, []byte(tc.data))
			if ms != nil {
				t.Errorf("got machines %+v with the error", ms)
			}
			faulttest.Want(t, err, fault.KindInvalid, tc.subs...)
		})
	}
}

// TestParseMachinesFileBadValue: a file that parses but holds a bad value:
// the error of the check names the file, the entry's line and the field.
func TestParseMachinesFileBadValue(t *testing.T) {
	subnet := netip.MustParsePrefix("192.168.1.0/24")
	cases := []struct {
		name, file, data string
		subs             []string
	}{
		{"csv bad ip on line 4", "rack.csv",
			"mac,hostname,ip,profile\n52:54:00:00:00:01,n1,192.168.1.11,worker\n52:54:00:00:00:02,n2,192.168.1.12,worker\n52:54:00:00:00:03,n3,192.168.1.1300,worker\n",
			[]string{"rack.csv:4: field ip:", `"192.168.1.1300" is not an IPv4 address`}},
		{"csv bad mac on line 3", "rack.csv",
			"mac,hostname,ip,profile\n52:54:00:00:00:01,n1,192.168.1.11,worker\n52:54:00:00:00,n2,192.168.1.12,worker\n",
			[]string{"rack.csv:3: field mac:"}},
		{"yaml ip outside subnet at line 6", "rack.yaml",
			"- mac: 52:54:00:00:00:01\n  hostname: n1\n  ip: 192.168.1.11\n  profile: w\n\n- mac: 52:54:00:00:00:02\n  hostname: n2\n  ip: 10.0.0.2\n  profile: w\n",
			[]string{"rack.yaml:6: field ip: 10.0.0.2 is outside the provisioning subnet 192.168.1.0/24"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := ParseMachinesFile(tc.file, []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var firstErr error
			for _, m := range ms {
				if _, err := NormalizeMachine(m, subnet); err != nil {
					firstErr = err
					break
				}
			}
			faulttest.Want(t, firstErr, fault.KindInvalid, tc.subs...)
		})
	}
}

// TestParseMachinesFileDuplicateKey: a YAML entry that gives a field twice
// is a typo the user must hear about, not a silent "last one wins".
func TestParseMachinesFileDuplicateKey(t *testing.T) {
	data := "- mac: 52:54:00:00:00:01\n  hostname: n1\n  ip: 192.168.1.11\n  ip: 192.168.1.12\n  profile: w\n"
	ms, err := ParseMachinesFile("rack.yaml", []byte(data))
	if err == nil {
		t.Fatalf("a YAML entry with ip given twice is accepted (ip=%s); want an error naming rack.yaml:4 and field ip", ms[0].IP)
	}
	faulttest.Want(t, err, fault.KindInvalid, "rack.yaml:4", "ip")
}

func TestParseProfilesFile(t *testing.T) {
	cases := []struct {
		name, data string
		want       []Profile
	}{
		{
			name: "two documents",
			data: "name: master\nrole: master\nkernel: /assets/flatcar/vmlinuz\ninitrd: /assets/flatcar/initrd.cpio.gz\n" +
				"---\n" +
				"name: worker\nrole: worker\nos: fcos\nargs: [console=ttyS0, console=tty0]\ninitrds:\n  - a.img\n  - b.img\n",
			want: []Profile{
				{Name: "master", Role: "master", Kernel: "/assets/flatcar/vmlinuz", Initrds: []string{"/assets/flatcar/initrd.cpio.gz"}, Source: "p.yaml:1"},
				{Name: "worker", Role: "worker", OS: "fcos", Args: []string{"console=ttyS0", "console=tty0"}, Initrds: []string{"a.img", "b.img"}, Source: "p.yaml:6"},
			},
		},
		{
			name: "list",
			data: "- name: master\n  role: master\n- name: worker\n  role: worker\n",
			want: []Profile{{Name: "master", Role: "master", Source: "p.yaml:1"}, {Name: "worker", Role: "worker", Source: "p.yaml:3"}},
		},
		{
			name: "profiles: list",
			data: "profiles:\n  - name: worker\n    role: worker\n",
			want: []Profile{{Name: "worker", Role: "worker", Source: "p.yaml:2"}},
		},
		{
			name: "install to disk",
			data: "name: worker\nrole: worker\nos: flatcar\ninstall: disk\ninstall_device: /dev/vda\n",
			want: []Profile{{Name: "worker", Role: "worker", OS: "flatcar", Install: "disk", InstallDevice: "/dev/vda", Source: "p.yaml:1"}},
		},
		{
			name: "ignition as JSON text",
			data: "name: worker\nrole: worker\nignition: |\n  {\"ignition\": {\"version\": \"3.4.0\"}}\n",
			want: []Profile{{Name: "worker", Role: "worker", Ignition: "{\"ignition\": {\"version\": \"3.4.0\"}}\n", Source: "p.yaml:1"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProfilesFile("p.yaml", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			for _, p := range got {
				if _, err := NormalizeProfile(p); err != nil {
					t.Errorf("parsed profile does not validate: %v", err)
				}
			}
		})
	}
}

func TestParseProfilesFileIgnitionMapping(t *testing.T) {
	data := `name: worker
role: worker
ignition:
  ignition:
    version: 3.4.0
  storage:
    files:
      - path: /etc/motd
        mode: 420
        contents:
          source: "data:,hello"
`
	ps, err := ParseProfilesFile("p.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(ps[0].Ignition), &got); err != nil {
		t.Fatalf("ignition %q is not JSON: %v", ps[0].Ignition, err)
	}
	if v := got["ignition"].(map[string]any)["version"]; v != "3.4.0" {
		t.Errorf("ignition.version = %v, want 3.4.0", v)
	}
	files := got["storage"].(map[string]any)["files"].([]any)
	if f := files[0].(map[string]any); f["path"] != "/etc/motd" || f["mode"] != float64(420) {
		t.Errorf("file = %v", f)
	}
	if _, err := NormalizeProfile(ps[0]); err != nil {
		t.Errorf("ignition from a YAML mapping does not validate: %v", err)
	}

	// A mapping that is not valid Ignition is refused at validation,
	// naming the entry.
	bad := "name: worker\nrole: worker\nignition:\n  ignition:\n    version: 3.4.0\n  colour: red\n"
	ps, err = ParseProfilesFile("p.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NormalizeProfile(ps[0])
	faulttest.Want(t, err, fault.KindInvalid, "p.yaml:1: profile worker: ignition snippet has warnings", "colour")
}

func TestParseProfilesFileBad(t *testing.T) {
	cases := []struct{ name, data, sub string }{
		{"unknown field", "name: w\nrole: worker\nkernal: x\n", `p.yaml:3: unknown field "kernal"`},
		{"name as list", "name: [a]\n", "p.yaml:1: field name: expected a single value"},
		{"args as mapping", "name: w\nargs: {a: b}\n", "p.yaml:2: field args: expected a list"},
		{"empty", "", "p.yaml holds no profiles"},
		{"not yaml", "name: [\n", "p.yaml: not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfilesFile("p.yaml", []byte(tc.data))
			faulttest.Want(t, err, fault.KindInvalid, tc.sub)
		})
	}
}

// TestParseMachinesCSVWithBOM: spreadsheets save CSV with a UTF-8 byte
// order mark before the header.
func TestParseMachinesCSVWithBOM(t *testing.T) {
	ms, err := ParseMachinesFile("rack.csv", []byte("\ufeffmac,hostname,ip,profile\n52:54:00:00:00:01,n1,192.168.1.11,worker\n"))
	if err != nil {
		t.Fatalf("a CSV with a UTF-8 BOM is refused: %v", err)
	}
	if len(ms) != 1 || ms[0].MAC != "52:54:00:00:00:01" {
		t.Errorf("got %+v", ms)
	}
}
