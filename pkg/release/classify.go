package release

import (
	"debug/elf"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Kind says how an upstream file yields its binaries.
type Kind string

const (
	// KindBinary is a file that is the binary itself (dl.k8s.io, flanneld).
	KindBinary Kind = "binary"
	// KindTarGz is a gzipped tar that holds the binaries.
	KindTarGz Kind = "tar.gz"
)

// Components, as they name the first level of the assets dir.
const (
	Kubernetes = "kubernetes"
	Etcd       = "etcd"
	CNIPlugins = "cni-plugins"
	Flannel    = "flannel"
	FlannelCNI = "flannel-cni"
	CoreDNS    = "coredns"
)

// Upstream is what a file's path says about it.
type Upstream struct {
	Kind      Kind
	Component string
	// Version has a leading v. It is "" for a flanneld whose directory is not
	// named by a version: flannel does not put its version in the binary's
	// name, so the directory has to (see Classify).
	Version string
	Arch    string // amd64 or arm64
	// Name is what a KindBinary file is laid out as ("flanneld" for
	// flanneld-amd64); "" for an archive, whose members name themselves.
	Name string
}

// arches are the architectures bootsrv serves, by the name releases use,
// with the ELF machine their binaries must be built for.
var arches = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// kubeBinaries are the per-binary Kubernetes releases a node runs.
var kubeBinaries = map[string]bool{
	"kubelet": true, "kube-proxy": true, "kube-apiserver": true,
	"kube-controller-manager": true, "kube-scheduler": true, "kubectl": true,
}

// semver is a release version without its leading v: 1.37.2, 3.6.0-rc.5,
// 1.38.0-alpha.1+build.3 (SemVer 2.0's grammar, which all six projects tag by).
const semver = `(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)` +
	`(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?`

var (
	versionRE    = regexp.MustCompile(`^v` + semver + `$`)
	etcdRE       = regexp.MustCompile(`^etcd-(v` + semver + `)-linux-([a-z0-9]+)\.tar\.gz$`)
	cniRE        = regexp.MustCompile(`^cni-plugins-linux-([a-z0-9]+)-(v` + semver + `)\.tgz$`)
	flannelCNIRE = regexp.MustCompile(`^cni-plugin-flannel-linux-([a-z0-9]+)-(v` + semver + `)\.tgz$`)
	corednsRE    = regexp.MustCompile(`^coredns_(` + semver + `)_linux_([a-z0-9]+)\.tgz$`)
	flanneldRE   = regexp.MustCompile(`^flanneld-([a-z0-9]+)$`)
)

// IsVersion reports whether v is a release version as the assets dir names
// them: vX.Y.Z with an optional pre-release and build suffix.
func IsVersion(v string) bool { return versionRE.MatchString(v) }

// Classify says what the upstream file at rel (slash-separated, relative to
// the release tree) is, from its name and place alone. ok is false for a
// file that is not one of the recognized releases, including a recognized
// name for an arch bootsrv does not serve (s390x, ppc64le, ...): those are
// skipped, not refused.
//
// flanneld is published as a bare flanneld-<arch> with no version in its
// name, so its version is taken from the directory it sits in, which must be
// named by it (v0.28.10/flanneld-amd64). Outside such a directory Classify
// still recognizes it, with Version "", and Stage refuses it saying so.
func Classify(rel string) (Upstream, bool) {
	base := path.Base(rel)
	supported := func(arch string) bool { _, ok := arches[arch]; return ok }

	if kubeBinaries[base] {
		// <version>/bin/linux/<arch>/<name>, as dl.k8s.io serves them.
		seg := strings.Split(rel, "/")
		n := len(seg)
		if n >= 5 && seg[n-4] == "bin" && seg[n-3] == "linux" && supported(seg[n-2]) && IsVersion(seg[n-5]) {
			return Upstream{Kind: KindBinary, Component: Kubernetes, Version: seg[n-5], Arch: seg[n-2], Name: base}, true
		}
		return Upstream{}, false
	}
	if m := flanneldRE.FindStringSubmatch(base); m != nil && supported(m[1]) {
		u := Upstream{Kind: KindBinary, Component: Flannel, Arch: m[1], Name: "flanneld"}
		if dir := path.Base(path.Dir(rel)); IsVersion(dir) {
			u.Version = dir
		}
		return u, true
	}
	if m := etcdRE.FindStringSubmatch(base); m != nil && supported(m[2]) {
		return Upstream{Kind: KindTarGz, Component: Etcd, Version: m[1], Arch: m[2]}, true
	}
	if m := cniRE.FindStringSubmatch(base); m != nil && supported(m[1]) {
		return Upstream{Kind: KindTarGz, Component: CNIPlugins, Version: m[2], Arch: m[1]}, true
	}
	if m := flannelCNIRE.FindStringSubmatch(base); m != nil && supported(m[1]) {
		return Upstream{Kind: KindTarGz, Component: FlannelCNI, Version: m[2], Arch: m[1]}, true
	}
	if m := corednsRE.FindStringSubmatch(base); m != nil && supported(m[2]) {
		// CoreDNS drops the v in its file names; the assets dir keeps one
		// spelling of versions for every component.
		return Upstream{Kind: KindTarGz, Component: CoreDNS, Version: "v" + m[1], Arch: m[2]}, true
	}
	return Upstream{}, false
}

// member says whether the archive member at name (cleaned, "./" dropped)
// of an archive u is one of its binaries, and what it is laid out as.
// Archives also hold licenses, READMEs and docs; those are not taken.
func (u Upstream) member(name string) (string, bool) {
	switch u.Component {
	case Etcd:
		dir, base := path.Split(name)
		if dir == "etcd-"+u.Version+"-linux-"+u.Arch+"/" && (base == "etcd" || base == "etcdctl" || base == "etcdutl") {
			return base, true
		}
	case CNIPlugins:
		// Every plugin at the top level; the release's LICENSE and README
		// are not plugins.
		if !strings.Contains(name, "/") && pluginNameRE.MatchString(name) && !isDoc(name) {
			return name, true
		}
	case FlannelCNI:
		if name == "flannel-"+u.Arch {
			return "flannel", true
		}
	case CoreDNS:
		if name == "coredns" {
			return "coredns", true
		}
	}
	return "", false
}

// primary is the binary an archive of u must hold to be the release it is
// named after; "" when any one will do (the CNI plugins).
func (u Upstream) primary() string {
	switch u.Component {
	case Etcd:
		return "etcd"
	case FlannelCNI:
		return "flannel"
	case CoreDNS:
		return "coredns"
	}
	return ""
}

// pluginNameRE is what a CNI plugin may be called: it becomes a file name
// in the assets dir and part of a URL.
var pluginNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// isDoc reports whether an archive member is documentation that releases
// ship beside their binaries.
func isDoc(name string) bool {
	up := strings.ToUpper(name)
	for _, p := range []string{"LICENSE", "README", "NOTICE", "CHANGELOG", "AUTHORS", "COPYING"} {
		if strings.HasPrefix(up, p) {
			return true
		}
	}
	return strings.HasSuffix(up, ".MD") || strings.HasSuffix(up, ".TXT")
}

// UpstreamFile names, for an operator, the upstream file (and the checksum
// beside it) that holds a binary: what to download when it is missing.
func UpstreamFile(component, version, arch, name string) string {
	v := strings.TrimPrefix(version, "v")
	switch component {
	case Kubernetes:
		return fmt.Sprintf("%s/bin/linux/%s/%s with its %s.sha256 (from the Kubernetes release)", version, arch, name, name)
	case Etcd:
		return fmt.Sprintf("etcd-%s-linux-%s.tar.gz with SHA256SUMS", version, arch)
	case CNIPlugins:
		return fmt.Sprintf("cni-plugins-linux-%s-%s.tgz with its .sha256", arch, version)
	case Flannel:
		return fmt.Sprintf("%s/flanneld-%s with a checksum file", version, arch)
	case FlannelCNI:
		return fmt.Sprintf("cni-plugin-flannel-linux-%s-%s.tgz with its .sha256", arch, version)
	case CoreDNS:
		return fmt.Sprintf("coredns_%s_linux_%s.tgz with its .sha256", v, arch)
	}
	return component + " " + version
}
