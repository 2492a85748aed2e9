// Package releasetest writes small stand-ins for the upstream release files
// (Kubernetes' per-binary releases, etcd's tarball, the CNI plugins,
// flannel, CoreDNS), laid out and checksummed as their projects publish
// them, so that tests of what renders them need neither the real 600 MB
// nor a build. The binaries are ELF headers only: they verify and import,
// they do not run. Tests that run them use the real releases
// (examples/releases/build.sh).
package releasetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Versions names the release of each component to write.
type Versions struct {
	Kubernetes, Etcd, CNIPlugins, Flannel, FlannelCNI, CoreDNS, Arch string
}

// Default is what bootsrv's cluster defaults name.
var Default = Versions{Kubernetes: "v1.37.2", Etcd: "v3.6.16", CNIPlugins: "v1.10.0", Flannel: "v0.28.10",
	FlannelCNI: "v0.9.1", CoreDNS: "v1.15.0", Arch: "amd64"}

// ELF is a minimal 64-bit little-endian executable header for arch
// ("amd64" or "arm64"), with name in its padding so every binary differs.
func ELF(arch, name string) []byte {
	m := elf.EM_X86_64
	if arch == "arm64" {
		m = elf.EM_AARCH64
	}
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), 0})
	b.Write(make([]byte, 8))
	le := binary.LittleEndian
	_ = binary.Write(&b, le, uint16(elf.ET_EXEC))
	_ = binary.Write(&b, le, uint16(m))
	_ = binary.Write(&b, le, uint32(elf.EV_CURRENT))
	_ = binary.Write(&b, le, uint64(0x400000)) // entry
	_ = binary.Write(&b, le, uint64(0))        // phoff
	_ = binary.Write(&b, le, uint64(0))        // shoff
	_ = binary.Write(&b, le, uint32(0))        // flags
	_ = binary.Write(&b, le, uint16(64))       // ehsize
	_ = binary.Write(&b, le, uint16(56))       // phentsize
	_ = binary.Write(&b, le, uint16(0))        // phnum
	_ = binary.Write(&b, le, uint16(64))       // shentsize
	_ = binary.Write(&b, le, uint16(0))        // shnum
	_ = binary.Write(&b, le, uint16(0))        // shstrndx
	b.WriteString("bootsrv releasetest " + name + "\n")
	return b.Bytes()
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// Failer is what the writers need of a test (testing.TB has it): a
// benchmark driver outside a test passes its own.
type Failer interface {
	Helper()
	Fatal(args ...any)
}

func write(t Failer, p string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
}

// tgz packs files (name -> contents) into a gzipped tar.
func tgz(t Failer, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o755, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Write lays out under dir one release of each component as its project
// publishes it, with checksum files, and returns dir.
func Write(t Failer, dir string, v Versions) string {
	t.Helper()
	a := v.Arch
	k8s := filepath.Join(dir, "kubernetes", v.Kubernetes, "bin", "linux", a)
	for _, n := range []string{"kubelet", "kube-proxy", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		b := ELF(a, n+" "+v.Kubernetes)
		write(t, filepath.Join(k8s, n), b, 0o755)
		write(t, filepath.Join(k8s, n+".sha256"), []byte(sum(b)), 0o644)
	}
	etcdTop := "etcd-" + v.Etcd + "-linux-" + a
	var ef [][2]string
	for _, n := range []string{"etcd", "etcdctl", "etcdutl"} {
		ef = append(ef, [2]string{etcdTop + "/" + n, string(ELF(a, n+" "+v.Etcd))})
	}
	eb := tgz(t, ef)
	write(t, filepath.Join(dir, "etcd", etcdTop+".tar.gz"), eb, 0o644)
	write(t, filepath.Join(dir, "etcd", "SHA256SUMS"), []byte(sum(eb)+"  "+etcdTop+".tar.gz\n"), 0o644)

	var cf [][2]string
	for _, n := range []string{"bridge", "host-local", "loopback", "portmap"} {
		cf = append(cf, [2]string{"./" + n, string(ELF(a, n+" "+v.CNIPlugins))})
	}
	cname := "cni-plugins-linux-" + a + "-" + v.CNIPlugins + ".tgz"
	cb := tgz(t, cf)
	write(t, filepath.Join(dir, "cni", cname), cb, 0o644)
	write(t, filepath.Join(dir, "cni", cname+".sha256"), []byte(sum(cb)+"  "+cname+"\n"), 0o644)

	fdir := filepath.Join(dir, "flannel", v.Flannel)
	fb := ELF(a, "flanneld "+v.Flannel)
	write(t, filepath.Join(fdir, "flanneld-"+a), fb, 0o755)
	fcname := "cni-plugin-flannel-linux-" + a + "-" + v.FlannelCNI + ".tgz"
	fcb := tgz(t, [][2]string{{"flannel-" + a, string(ELF(a, "flannel "+v.FlannelCNI))}})
	write(t, filepath.Join(fdir, fcname), fcb, 0o644)
	write(t, filepath.Join(fdir, "sha256sum.txt"), []byte(fmt.Sprintf("%s  flanneld-%s\n%s  %s\n", sum(fb), a, sum(fcb), fcname)), 0o644)

	dname := "coredns_" + strings.TrimPrefix(v.CoreDNS, "v") + "_linux_" + a + ".tgz"
	db := tgz(t, [][2]string{{"coredns", string(ELF(a, "coredns "+v.CoreDNS))}})
	write(t, filepath.Join(dir, "coredns", dname), db, 0o644)
	write(t, filepath.Join(dir, "coredns", dname+".sha256"), []byte(sum(db)+"  "+dname+"\n"), 0o644)
	return dir
}
