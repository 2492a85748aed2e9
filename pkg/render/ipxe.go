// Package render turns values into the bytes a booting machine receives:
// iPXE scripts and Ignition configs. Every function is pure; the Ignition
// config is built with coreos/ignition's own types and checked with its own
// parser before it is returned, so nothing invalid leaves bootsrv.
package render

import (
	"fmt"
	"strings"
)

// ChainScript is what DHCP sends iPXE to first: it asks again, naming the
// machine, so the next script can be made for it.
func ChainScript(baseURL string) string {
	return "#!ipxe\n" +
		"echo bootsrv: ${mac} (${platform}/${buildarch}) asking for its boot script\n" +
		"chain --autofree " + baseURL + "/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&serial=${serial:uristring}&arch=${buildarch}&platform=${platform} || goto failed\n" +
		":failed\n" +
		"echo bootsrv: could not fetch the boot script from " + baseURL + ", retrying in 10 s\n" +
		"sleep 10\n" +
		"chain --autofree " + baseURL + "/boot.ipxe\n"
}

// Boot describes one network boot.
type Boot struct {
	MAC, Hostname, Profile string
	Kernel                 string   // absolute URL
	Initrds                []string // absolute URLs
	Args                   []string // kernel command line, one argument each
}

// Attempts is how often a boot script tries its kernel and initrds before
// it gives up and reboots.
const Attempts = 3

// BootScript renders the iPXE script that fetches kernel and initrds and
// boots them, retrying a failed fetch. Initrds are named after their file,
// and initrd=NAME is on the kernel line: under UEFI the kernel's EFI stub
// finds them by that name, and BIOS boots ignore it.
func BootScript(b Boot) (string, error) {
	if b.Kernel == "" {
		return "", fmt.Errorf("profile %s has no kernel to boot", b.Profile)
	}
	var sb strings.Builder
	sb.WriteString("#!ipxe\n")
	fmt.Fprintf(&sb, "echo bootsrv: booting %s (%s) with profile %s\n", b.Hostname, b.MAC, b.Profile)
	args := append([]string(nil), b.Args...)
	var initrds []string
	for i, u := range b.Initrds {
		name := initrdName(u, i)
		initrds = append(initrds, fmt.Sprintf("initrd --name %s %s", name, u))
		args = append(args, "initrd="+name)
	}
	for a := 1; a <= Attempts; a++ {
		fmt.Fprintf(&sb, ":attempt%d\n", a)
		if a > 1 {
			fmt.Fprintf(&sb, "echo bootsrv: fetching the kernel or initrd failed; attempt %d of %d in 5 s\nsleep 5\nimgfree\n", a, Attempts)
		}
		next := fmt.Sprintf("attempt%d", a+1)
		if a == Attempts {
			next = "failed"
		}
		fmt.Fprintf(&sb, "kernel %s %s || goto %s\n", b.Kernel, strings.Join(args, " "), next)
		for _, l := range initrds {
			fmt.Fprintf(&sb, "%s || goto %s\n", l, next)
		}
		fmt.Fprintf(&sb, "boot || goto %s\n", next)
	}
	sb.WriteString(":failed\n")
	fmt.Fprintf(&sb, "echo bootsrv: could not boot %s after %d attempts; rebooting in 30 s\nsleep 30\nreboot\n", b.MAC, Attempts)
	return sb.String(), nil
}

func initrdName(u string, i int) string {
	name := u
	if j := strings.IndexAny(name, "?#"); j >= 0 {
		name = name[:j]
	}
	name = name[strings.LastIndex(name, "/")+1:]
	if name == "" || strings.ContainsAny(name, " ${}") {
		return fmt.Sprintf("initrd%d", i)
	}
	return name
}

// LocalBootScript tells a machine whose disk is installed to boot from it,
// which makes "network first" boot orders safe: UEFI firmware goes on to
// its next boot entry on exit; BIOS boots the first disk.
func LocalBootScript(mac, hostname string) string {
	return "#!ipxe\n" +
		fmt.Sprintf("echo bootsrv: %s (%s) is provisioned: booting from local disk\n", hostname, mac) +
		"iseq ${platform} efi && goto efi ||\n" +
		"sanboot --no-describe --drive 0x80 || goto efi\n" +
		":efi\n" +
		"exit\n"
}

// MessageScript shows a message on the machine's console and reboots
// after a pause, for machines bootsrv will not boot (unknown, broken
// profile): the operator sees why at the console. The lines may echo what
// the requester sent (its mac), so they are cleaned of iPXE syntax: see
// echoSafe.
func MessageScript(lines ...string) string {
	var sb strings.Builder
	sb.WriteString("#!ipxe\n")
	for _, l := range lines {
		fmt.Fprintf(&sb, "echo bootsrv: %s\n", echoSafe(l))
	}
	sb.WriteString("echo bootsrv: rebooting in 60 s\nsleep 60\nreboot\n")
	return sb.String()
}

// echoSafe makes text safe to put after an iPXE echo: line breaks become
// spaces and '$' is dropped (no ${...} expansion), and every other
// character outside letters, digits and : . _ - = space / , ? { } becomes
// '?', so no ||, &&, # comment or quoting reaches iPXE's parser. (Braces
// are inert once '$' is gone.)
func echoSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r == '$':
			return -1
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			return r
		case strings.ContainsRune(":._ -=/,?{}", r):
			return r
		}
		return '?'
	}, s)
}
