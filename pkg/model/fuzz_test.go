package model

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseMachinesFile: no CSV or YAML file crashes the import parser or
// the checks after it, and every machine it returns names the line it
// came from (errors must point at the file).
func FuzzParseMachinesFile(f *testing.F) {
	for _, s := range []string{
		"mac,hostname,ip,profile,iface,labels\n52:54:00:00:00:01,n1,192.168.1.11,worker,eth0,rack=r1;zone=a\n",
		"mac,hostname,ip,profile\n\"52:54:00:00:00:01\",n1,192.168.1.11,worker\n# comment\n",
		"- mac: 52:54:00:00:00:01\n  hostname: n1\n  ip: 192.168.1.11\n  profile: worker\n  labels:\n    rack: r1\n",
		"machines:\n  - mac: aabb.ccdd.eeff\n    hostname: n2\n    ip: 192.168.1.12\n    profile: w\n",
		"- mac: 52:54:00:00:00:01\n  labels:\n    a: &a [x, x]\n    b: [*a, *a]\n",
		"- {mac: 01:00:5e:00:00:01, hostname: m, ip: 192.168.1.13, profile: w}\n",
	} {
		f.Add(s, strings.HasPrefix(s, "mac,"))
	}
	subnet := netip.MustParsePrefix("192.168.1.0/24")
	f.Fuzz(func(t *testing.T, data string, csv bool) {
		name := "rack.yaml"
		if csv {
			name = "rack.csv"
		}
		ms, err := ParseMachinesFile(name, []byte(data))
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, m := range ms {
			if !strings.HasPrefix(m.Source, name+":") {
				t.Fatalf("machine %+v has no file:line source", m)
			}
			if n, err := NormalizeMachine(m, subnet); err == nil {
				if n.MAC == "" || n.IP == "" || n.Profile == "" {
					t.Fatalf("a checked machine lacks a field: %+v", n)
				}
			}
		}
	})
}
