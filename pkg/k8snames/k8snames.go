// Package k8snames holds Kubernetes' rules for the names bootsrv puts on a
// node, in one place for the inventory (which checks what an operator
// gives) and for nodeconfig (which checks what it renders): a node name is
// a lower-case RFC 1123 subdomain; a node label has an optional DNS
// subdomain prefix, a name and a value of at most 63 characters; and the
// kubelet refuses --node-labels in the kubernetes.io and k8s.io
// namespaces except the few it sets itself. Callers word their own
// messages from what these return.
package k8snames

import (
	"regexp"
	"strings"
)

var (
	dnsLabelRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	labelNameRe   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelPrefixRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
)

// HostnameProblem says what is wrong with a node name.
type HostnameProblem int

const (
	HostnameOK HostnameProblem = iota
	HostnameEmpty
	HostnameTooLong // over 253 characters
	HostnameBadLabel
)

// Hostname checks s, as given (no lower-casing), as a node name.
func Hostname(s string) HostnameProblem {
	switch {
	case s == "":
		return HostnameEmpty
	case len(s) > 253:
		return HostnameTooLong
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabelRe.MatchString(l) {
			return HostnameBadLabel
		}
	}
	return HostnameOK
}

// LabelProblem says what is wrong with a node label.
type LabelProblem int

const (
	LabelOK LabelProblem = iota
	LabelBadPrefix
	LabelBadName
	LabelBadValue
	// LabelKubeletRefuses: a key the kubelet will not set through
	// --node-labels; it exits without registering the node.
	LabelKubeletRefuses
)

// Label checks the label k=v (v may be empty) and returns what is wrong,
// with the key's prefix and name as split.
func Label(k, v string) (p LabelProblem, prefix, name string) {
	name = k
	if i := strings.LastIndex(k, "/"); i >= 0 {
		prefix, name = k[:i], k[i+1:]
		if !labelPrefixRe.MatchString(prefix) {
			return LabelBadPrefix, prefix, name
		}
	}
	switch {
	case !labelNameRe.MatchString(name):
		return LabelBadName, prefix, name
	case v != "" && !labelNameRe.MatchString(v):
		return LabelBadValue, prefix, name
	case !KubeletMaySet(k):
		return LabelKubeletRefuses, prefix, name
	}
	return LabelOK, prefix, name
}

// The kubelet's --node-labels rule, copied from k8s.io/kubelet/pkg/apis
// (well_known_labels.go, v0.37.2) and the kubelet's options check so that
// bootsrv does not link k8s.io code.
var (
	// kubeletLabels: the well-known labels the kubelet sets itself.
	kubeletLabels = []string{
		"kubernetes.io/hostname",
		"topology.kubernetes.io/zone",
		"topology.kubernetes.io/region",
		"failure-domain.beta.kubernetes.io/zone",
		"failure-domain.beta.kubernetes.io/region",
		"beta.kubernetes.io/instance-type",
		"node.kubernetes.io/instance-type",
		"kubernetes.io/os",
		"kubernetes.io/arch",
		"beta.kubernetes.io/os",
		"beta.kubernetes.io/arch",
	}
	// kubeletLabelNamespaces: namespaces (and their subdomains) the
	// kubelet may label its own Node with.
	kubeletLabelNamespaces = []string{"kubelet.kubernetes.io", "node.kubernetes.io"}
)

// KubeletMaySet says whether the kubelet accepts key in --node-labels: any
// key outside the kubernetes.io and k8s.io namespaces (and their
// subdomains), and inside them only what IsKubeletLabel allows.
// node-role.kubernetes.io/* is refused.
func KubeletMaySet(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	in := func(d string) bool { return ns == d || strings.HasSuffix(ns, "."+d) }
	if !in("kubernetes.io") && !in("k8s.io") {
		return true
	}
	for _, l := range kubeletLabels {
		if key == l {
			return true
		}
	}
	for _, a := range kubeletLabelNamespaces {
		if in(a) {
			return true
		}
	}
	return false
}
