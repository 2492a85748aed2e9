package k8snames

import (
	"strings"
	"testing"
)

func TestHostname(t *testing.T) {
	for s, want := range map[string]HostnameProblem{
		"node1": HostnameOK, "rack1.node-2": HostnameOK, "": HostnameEmpty,
		strings.Repeat("a.", 127): HostnameTooLong, "Node4": HostnameBadLabel, "-x": HostnameBadLabel,
		"x-": HostnameBadLabel, "a..b": HostnameBadLabel, "n_1": HostnameBadLabel, strings.Repeat("a", 64): HostnameBadLabel,
	} {
		if got := Hostname(s); got != want {
			t.Errorf("Hostname(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		k, v string
		want LabelProblem
	}{
		{"rack", "r1", LabelOK},
		{"example.com/zone", "", LabelOK},
		{"node.kubernetes.io/pool", "a", LabelOK},
		{"x.kubelet.kubernetes.io/y", "z", LabelOK},
		{"topology.kubernetes.io/zone", "a", LabelOK},
		{"node-role.kubernetes.io/worker", "", LabelKubeletRefuses},
		{"kubernetes.io/role", "x", LabelKubeletRefuses},
		{"foo.k8s.io/x", "y", LabelKubeletRefuses},
		{"Example.com/x", "y", LabelBadPrefix},
		{"-rack", "r1", LabelBadName},
		{"a", "b,c=d", LabelBadValue},
		{"a", strings.Repeat("v", 64), LabelBadValue},
	} {
		if got, _, _ := Label(tc.k, tc.v); got != tc.want {
			t.Errorf("Label(%q, %q) = %d, want %d", tc.k, tc.v, got, tc.want)
		}
	}
}
