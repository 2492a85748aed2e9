package model

import (
	"encoding/hex"
	"net"
	"net/netip"
	"regexp"
	"strings"

	ign "github.com/coreos/ignition/v2/config/v3_4"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/k8snames"
)

// NormalizeMAC turns any common spelling of an Ethernet MAC
// (AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff, AA:BB:..., aabbccddeeff) into the
// lower-case colon form bootsrv keys machines by. It checks spelling only,
// so a record of any address can still be looked up and deleted; what may
// become a machine is MachineMAC's to say.
func NormalizeMAC(s string) (string, error) {
	t := strings.TrimSpace(s)
	var hw net.HardwareAddr
	if len(t) == 12 {
		b, err := hex.DecodeString(t)
		if err == nil {
			hw = b
		}
	}
	if hw == nil {
		var err error
		hw, err = net.ParseMAC(t)
		if err != nil {
			return "", fault.Invalidf("%q is not a MAC address: use six hex pairs such as 52:54:00:12:34:56 (dashes, dots or no separators work too)", s)
		}
	}
	if len(hw) != 6 {
		return "", fault.Invalidf("%q is not a 6-byte Ethernet MAC address", s)
	}
	return hw.String(), nil
}

// MachineMAC refuses addresses no network card has: all zeros (an unset
// field), and group addresses (the I/G bit, so broadcast too), which a
// frame can be sent to but never from. A machine keyed by one could never
// boot, and a DHCP client claiming one is lying.
func MachineMAC(hw net.HardwareAddr) error {
	if len(hw) != 6 {
		return fault.Invalidf("%s is not a 6-byte Ethernet MAC address", hw)
	}
	if hw[0]|hw[1]|hw[2]|hw[3]|hw[4]|hw[5] == 0 {
		return fault.Invalidf("%s is the all-zero MAC, which no network card has: give the machine's own MAC", hw)
	}
	if hw[0]&1 != 0 {
		if hw.String() == "ff:ff:ff:ff:ff:ff" {
			return fault.Invalidf("%s is the broadcast MAC, which no network card has: give the machine's own MAC", hw)
		}
		return fault.Invalidf("%s is a multicast MAC (the first octet is odd), which no network card has: give the machine's own MAC", hw)
	}
	return nil
}

// NormalizeHostname lower-cases and checks a hostname (a DNS name of
// RFC 1123 labels, as Kubernetes requires of node names).
func NormalizeHostname(s string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	if h == "" {
		return "", fault.Invalidf("hostname is empty: give one with --hostname")
	}
	switch k8snames.Hostname(h) {
	case k8snames.HostnameTooLong:
		return "", fault.Invalidf("hostname %q is longer than 253 characters", s)
	case k8snames.HostnameBadLabel:
		return "", fault.Invalidf("hostname %q is not a valid DNS name: use letters, digits and '-' in dot-separated labels of at most 63 characters", s)
	}
	return h, nil
}

var nameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)

// ValidName checks a cluster or profile name.
func ValidName(what, s string) error {
	if !nameRe.MatchString(s) {
		return fault.Invalidf("%s name %q is not valid: use lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters", what, s)
	}
	return nil
}

func parseIPv4(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}, fault.Field(fault.KindInvalid, field, "%s %q is not an IPv4 address", field, s)
	}
	return a, nil
}

func parsePrefix(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fault.Field(fault.KindInvalid, field, "%s %q is not an IPv4 network in CIDR form (such as 10.2.0.0/16)", field, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fault.Field(fault.KindInvalid, field, "%s %q has host bits set: did you mean %s?", field, s, p.Masked())
	}
	return p, nil
}

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)

// validIface accepts an interface name (eth0, ens3f0, bond0.100) or an IPv4
// address, the two things FLANNELD_IFACE takes.
func validIface(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		if _, err := parseIPv4("iface", s); err != nil {
			return err
		}
		return nil
	}
	if !ifaceRe.MatchString(s) || strings.Contains(s, "/") {
		return fault.Invalidf("iface %q is neither an interface name (such as eth0, at most 15 characters) nor an IPv4 address", s)
	}
	return nil
}

// ValidLabel checks a Kubernetes node label the kubelet will accept through
// --node-labels.
func ValidLabel(k, v string) error {
	problem, prefix, name := k8snames.Label(k, v)
	switch problem {
	case k8snames.LabelBadPrefix:
		return fault.Invalidf("label key %q: prefix %q is not a DNS subdomain", k, prefix)
	case k8snames.LabelKubeletRefuses:
		fix := "use a key under a domain of your own (such as example.com/" + name + ") or under node.kubernetes.io"
		if prefix == "node-role.kubernetes.io" {
			fix = "bootsrv sets the node's role from its profile; for a label of your own use a key under a domain of your own (such as example.com/" + name + ")"
		}
		return fault.Invalidf("label key %q: the kubelet refuses --node-labels under %s and would exit without registering the node "+
			"(in the kubernetes.io and k8s.io namespaces it takes only kubelet.kubernetes.io, node.kubernetes.io, their subdomains, "+
			"and the well-known labels it sets itself such as kubernetes.io/hostname and topology.kubernetes.io/zone); %s", k, prefix, fix)
	case k8snames.LabelBadName:
		return fault.Invalidf("label key %q is not valid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	case k8snames.LabelBadValue:
		return fault.Invalidf("label %s value %q is not valid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k, v)
	}
	return nil
}

// ParseLabel splits "k=v".
func ParseLabel(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fault.Invalidf("label %q is not key=value", s)
	}
	if err := ValidLabel(k, v); err != nil {
		return "", "", err
	}
	return k, v, nil
}

// ValidateIgnitionSnippet checks that s is an Ignition config of spec 3.0
// to 3.4 without errors or warnings, with the real Ignition parser.
func ValidateIgnitionSnippet(s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	_, rpt, err := ign.ParseCompatibleVersion([]byte(s))
	if err != nil {
		msg := err.Error()
		if r := strings.TrimSpace(rpt.String()); r != "" {
			msg += ": " + r
		}
		return fault.Invalidf("ignition snippet is not a valid Ignition config (spec 3.0-3.4): %s", msg)
	}
	if len(rpt.Entries) > 0 {
		return fault.Invalidf("ignition snippet has warnings (bootsrv treats them as errors): %s", strings.TrimSpace(rpt.String()))
	}
	return nil
}

// firstHost is the first usable address of a network (network address + 1).
func firstHost(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// Dedupe drops repeated strings, keeping the first of each in order.
func Dedupe(ss []string) []string {
	seen := map[string]bool{}
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
