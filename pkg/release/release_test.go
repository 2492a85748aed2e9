package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// elfBinary is a minimal ELF64 executable for machine: the 64-byte header
// and no sections, then payload, so that each fake binary has digests of
// its own. It is all Stage reads of a binary.
func elfBinary(t testing.TB, machine elf.Machine, payload string) []byte {
	t.Helper()
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Ehsize: 64, Phentsize: 56, Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, &h); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 64 {
		t.Fatalf("ELF64 header is %d bytes, want 64", b.Len())
	}
	b.WriteString(payload)
	f, err := elf.NewFile(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("debug/elf refuses the fixture ELF: %v", err)
	}
	if f.Machine != machine {
		t.Fatalf("fixture ELF is for %v, want %v", f.Machine, machine)
	}
	return b.Bytes()
}

var machineOf = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// entry is one member of a fixture tar.
type entry struct {
	name string
	body []byte
	typ  byte // 0: a regular file, or a directory when name ends in "/"
	link string
}

func tarball(t testing.TB, gz bool, entries ...entry) []byte {
	t.Helper()
	var out bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&out)
	if gz {
		zw = gzip.NewWriter(&out)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
			if strings.HasSuffix(e.name, "/") {
				h.Typeflag = tar.TypeDir
			}
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil && h.Size > 0 {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func sum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sum512(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

// fixture is a fake release tree as an operator downloads it: every kind
// Stage knows, each with the checksum format its project publishes.
type fixture struct {
	t    *testing.T
	dir  string
	want map[string][]byte // asset path -> the binary Stage should lay out there
}

func (fx *fixture) write(rel string, data []byte) {
	fx.t.Helper()
	p := filepath.Join(fx.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		fx.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *fixture) read(rel string) []byte {
	fx.t.Helper()
	b, err := os.ReadFile(filepath.Join(fx.dir, filepath.FromSlash(rel)))
	if err != nil {
		fx.t.Fatal(err)
	}
	return b
}

// bin makes the fake binary that belongs at asset path p.
func (fx *fixture) bin(p string) []byte {
	arch := strings.Split(p, "/")[2]
	b := elfBinary(fx.t, machineOf[arch], "fake "+p+"\n"+strings.Repeat("\x00\x01", 512))
	fx.want[p] = b
	return b
}

// bareSums writes rel.sha256 and rel.sha512 as dl.k8s.io has them: the
// digest alone.
func (fx *fixture) bareSums(rel string) {
	b := fx.read(rel)
	fx.write(rel+".sha256", []byte(sum256(b)))
	fx.write(rel+".sha512", []byte(sum512(b)+"\n"))
}

// listing writes a sha256sum-style listing of files (in dir), plus
// extra lines as they are.
func (fx *fixture) listing(dir, name string, sha512 bool, files []string, extra ...string) {
	var b strings.Builder
	for _, f := range files {
		data := fx.read(path.Join(dir, f))
		d := sum256(data)
		if sha512 {
			d = sum512(data)
		}
		fmt.Fprintf(&b, "%s  %s\n", d, f)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	fx.write(path.Join(dir, name), []byte(b.String()))
}

const (
	kubeAMD = "kubernetes/release/v1.37.2/bin/linux/amd64"
	kubeARM = "kubernetes/release/v1.37.2/bin/linux/arm64"
	etcdTGZ = "etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz"
	cniTGZ  = "cni-plugins/v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz"
	flDir   = "flannel/v0.28.10"
	fcniTGZ = "flannel/v0.28.10/cni-plugin-flannel-linux-amd64-v0.9.1.tgz"
	dnsTGZ  = "coredns/v1.15.0/coredns_1.15.0_linux_amd64.tgz"
	dnsARM  = "coredns/v1.15.0/coredns_1.15.0_linux_arm64.tgz"
)

func newFixture(t *testing.T) *fixture {
	fx := &fixture{t: t, dir: t.TempDir(), want: map[string][]byte{}}

	for _, n := range []string{"kubelet", "kube-proxy", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		fx.write(kubeAMD+"/"+n, fx.bin("kubernetes/v1.37.2/amd64/"+n))
		fx.bareSums(kubeAMD + "/" + n)
	}
	for _, n := range []string{"kubelet", "kube-proxy"} {
		fx.write(kubeARM+"/"+n, fx.bin("kubernetes/v1.37.2/arm64/"+n))
		// sha256sum's own output, name and all.
		fx.write(kubeARM+"/"+n+".sha256", []byte(sum256(fx.read(kubeARM+"/"+n))+"  "+n+"\n"))
	}

	top := "etcd-v3.6.16-linux-amd64/"
	fx.write(etcdTGZ, tarball(t, true,
		entry{name: top},
		entry{name: top + "Documentation/"},
		entry{name: top + "Documentation/dev-guide.md", body: []byte("# docs\n")},
		entry{name: top + "README.md", body: []byte("# etcd\n")},
		entry{name: top + "etcd", body: fx.bin("etcd/v3.6.16/amd64/etcd")},
		entry{name: top + "etcdctl", body: fx.bin("etcd/v3.6.16/amd64/etcdctl")},
		entry{name: top + "etcdutl", body: fx.bin("etcd/v3.6.16/amd64/etcdutl")},
	))
	// etcd's SHA256SUMS names every arch; only amd64 was downloaded.
	fx.listing("etcd/v3.6.16", "SHA256SUMS", false, []string{path.Base(etcdTGZ)},
		strings.Repeat("12", 32)+"  etcd-v3.6.16-linux-arm64.tar.gz")

	cni := []entry{{name: "./"}, {name: "./LICENSE", body: []byte("Apache 2.0\n")}, {name: "./README.md", body: []byte("# plugins\n")}}
	for _, n := range []string{"bridge", "host-local", "loopback", "portmap"} {
		cni = append(cni, entry{name: "./" + n, body: fx.bin("cni-plugins/v1.10.0/amd64/" + n)})
	}
	fx.write(cniTGZ, tarball(t, true, cni...))
	c := fx.read(cniTGZ)
	fx.write(cniTGZ+".sha256", []byte(sum256(c)+"  "+path.Base(cniTGZ)+"\n"))
	fx.write(cniTGZ+".sha512", []byte(sum512(c)+"  "+path.Base(cniTGZ)+"\n"))

	fx.write(flDir+"/flanneld-amd64", fx.bin("flannel/v0.28.10/amd64/flanneld"))
	fx.write(flDir+"/flanneld-arm64", fx.bin("flannel/v0.28.10/arm64/flanneld"))
	fx.write(fcniTGZ, tarball(t, true, entry{name: "./"}, entry{name: "./flannel-amd64", body: fx.bin("flannel-cni/v0.9.1/amd64/flannel")}))
	fx.listing(flDir, "sha256sum.txt", false, []string{"flanneld-amd64", "flanneld-arm64", path.Base(fcniTGZ)})

	fx.write(dnsTGZ, tarball(t, true, entry{name: "coredns", body: fx.bin("coredns/v1.15.0/amd64/coredns")}))
	fx.write(dnsTGZ+".sha256", []byte(sum256(fx.read(dnsTGZ))+"  "+path.Base(dnsTGZ)+"\n"))
	fx.write(dnsARM, tarball(t, true, entry{name: "coredns", body: fx.bin("coredns/v1.15.0/arm64/coredns")}))
	// A sha512 listing, binary-mode names.
	fx.write("coredns/v1.15.0/checksums.txt", []byte(sum512(fx.read(dnsARM))+" *"+path.Base(dnsARM)+"\n"))

	fx.write("README.txt", []byte("what the operator downloaded\n"))
	return fx
}

// snapshot is every path under dir with its mode and content digest.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + sum256(b)
		}
		m[filepath.ToSlash(rel)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// oldAssets makes an assets dir that already holds an import, so that a
// refused one can be seen to leave it alone.
func oldAssets(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "kubernetes", "v1.37.2", "amd64")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "kubelet"), []byte("the kubelet imported last week"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func assetFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	for p, v := range snapshot(t, dir) {
		if strings.HasPrefix(v, "-") {
			b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
			got[p] = b
			if !strings.HasPrefix(v, "-rwxr-xr-x") {
				t.Errorf("%s has mode %s, want -rwxr-xr-x", p, v[:10])
			}
		}
	}
	return got
}

func TestStageCommit(t *testing.T) {
	fx := newFixture(t)
	assets := t.TempDir()

	st, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	// Staged, nothing visible: the assets dir holds the staging dir alone.
	ents, _ := os.ReadDir(assets)
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), StagingPrefix) {
		t.Fatalf("before Commit the assets dir holds %v, want only a %s* dir", ents, StagingPrefix)
	}

	var paths []string
	for _, a := range st.Assets {
		paths = append(paths, a.Path)
		want, ok := fx.want[a.Path]
		if !ok {
			t.Errorf("unexpected asset %s from %s", a.Path, a.From)
			continue
		}
		if a.Size != int64(len(want)) || a.SHA256 != sum256(want) || a.SHA512 != sum512(want) {
			t.Errorf("%s: size %d sha256 %s sha512 %s; want %d %s %s", a.Path, a.Size, a.SHA256, a.SHA512, len(want), sum256(want), sum512(want))
		}
		if a.Path != path.Join(a.Component, a.Version, a.Arch, a.Name) {
			t.Errorf("%s is not laid out as its component/version/arch/name %+v", a.Path, a)
		}
		if a.VerifiedBy == "" {
			t.Errorf("%s: no checksum file vouched for it", a.Path)
		}
	}
	wantPaths := slices.Sorted(func(yield func(string) bool) {
		for p := range fx.want {
			yield(p)
		}
	})
	if !slices.Equal(paths, wantPaths) {
		t.Fatalf("assets\n%s\nwant\n%s", strings.Join(paths, "\n"), strings.Join(wantPaths, "\n"))
	}
	byPath := map[string]Asset{}
	for _, a := range st.Assets {
		byPath[a.Path] = a
	}
	for p, want := range map[string]struct{ from, by string }{
		"etcd/v3.6.16/amd64/etcd":                 {etcdTGZ + "!etcd-v3.6.16-linux-amd64/etcd", "etcd/v3.6.16/SHA256SUMS"},
		"kubernetes/v1.37.2/amd64/kubelet":        {kubeAMD + "/kubelet", kubeAMD + "/kubelet.sha256, " + kubeAMD + "/kubelet.sha512"},
		"cni-plugins/v1.10.0/amd64/bridge":        {cniTGZ + "!bridge", cniTGZ + ".sha256, " + cniTGZ + ".sha512"},
		"flannel/v0.28.10/amd64/flanneld":         {flDir + "/flanneld-amd64", flDir + "/sha256sum.txt"},
		"flannel-cni/v0.9.1/amd64/flannel":        {fcniTGZ + "!flannel-amd64", flDir + "/sha256sum.txt"},
		"coredns/v1.15.0/arm64/coredns":           {dnsARM + "!coredns", "coredns/v1.15.0/checksums.txt"},
		"kubernetes/v1.37.2/arm64/kube-proxy":     {kubeARM + "/kube-proxy", kubeARM + "/kube-proxy.sha256"},
		"kubernetes/v1.37.2/amd64/kube-apiserver": {kubeAMD + "/kube-apiserver", kubeAMD + "/kube-apiserver.sha256, " + kubeAMD + "/kube-apiserver.sha512"},
	} {
		if a := byPath[p]; a.From != want.from || a.VerifiedBy != want.by {
			t.Errorf("%s: From %q VerifiedBy %q; want %q %q", p, a.From, a.VerifiedBy, want.from, want.by)
		}
	}
	for _, s := range []string{"README.txt", etcdTGZ + "!etcd-v3.6.16-linux-amd64/README.md", cniTGZ + "!LICENSE", cniTGZ + "!README.md"} {
		if !slices.Contains(st.Skipped, s) {
			t.Errorf("Skipped = %q, want it to hold %s", st.Skipped, s)
		}
	}

	if err := st.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	st.Abort() // a no-op now
	got := assetFiles(t, assets)
	if len(got) != len(fx.want) {
		t.Errorf("assets dir holds %d files, want %d: %v", len(got), len(fx.want), slices.Sorted(func(y func(string) bool) {
			for p := range got {
				y(p)
			}
		}))
	}
	for p, want := range fx.want {
		if !bytes.Equal(got[p], want) {
			t.Errorf("%s is not the binary the release holds", p)
		}
	}
	checkSumTools(t, assets, st.Assets)
	if err := st.Commit(); err == nil {
		t.Error("a second Commit of the same Staged succeeded")
	}

	// The same tree again replaces each component/version/arch dir cleanly.
	before := snapshot(t, assets)
	st2, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatalf("second Stage: %v", err)
	}
	if err := st2.Commit(); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	if after := snapshot(t, assets); !mapsEqual(before, after) {
		t.Errorf("re-importing the same tree changed the assets dir:\nbefore %v\nafter  %v", before, after)
	}

	// A new build of the same CNI release replaces its whole directory: a
	// plugin the new one no longer ships goes with the old one.
	cni := []entry{{name: "./"}}
	newBridge := elfBinary(t, elf.EM_X86_64, "a rebuilt bridge")
	cni = append(cni, entry{name: "./bridge", body: newBridge})
	fx.write(cniTGZ, tarball(t, true, cni...))
	os.Remove(filepath.Join(fx.dir, cniTGZ+".sha512"))
	fx.write(cniTGZ+".sha256", []byte(sum256(fx.read(cniTGZ))+"  "+path.Base(cniTGZ)+"\n"))
	st3, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatalf("third Stage: %v", err)
	}
	if err := st3.Commit(); err != nil {
		t.Fatalf("third Commit: %v", err)
	}
	got = assetFiles(t, assets)
	if !bytes.Equal(got["cni-plugins/v1.10.0/amd64/bridge"], newBridge) {
		t.Error("the rebuilt bridge did not replace the old one")
	}
	if _, ok := got["cni-plugins/v1.10.0/amd64/portmap"]; ok {
		t.Error("portmap, gone from the new release, is still in its directory")
	}
	if !bytes.Equal(got["etcd/v3.6.16/amd64/etcd"], fx.want["etcd/v3.6.16/amd64/etcd"]) {
		t.Error("etcd changed on an import that did not change it")
	}
	if ents, _ := os.ReadDir(assets); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), StagingPrefix) }) {
		t.Errorf("a staging dir is left in the assets dir: %v", ents)
	}
}

// checkSumTools checks the digests Stage recorded against sha256sum and
// sha512sum run on the laid-out files, where coreutils is installed.
func checkSumTools(t *testing.T, assets string, as []Asset) {
	t.Helper()
	for _, tool := range []string{"sha256sum", "sha512sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("%s not installed: digests checked with crypto/sha256 and crypto/sha512 only", tool)
			continue
		}
		args := []string{}
		for _, a := range as {
			args = append(args, filepath.FromSlash(a.Path))
		}
		cmd := exec.Command(tool, args...)
		cmd.Dir = assets
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			d, f, _ := strings.Cut(line, "  ")
			got[filepath.ToSlash(f)] = d
		}
		for _, a := range as {
			want := a.SHA256
			if tool == "sha512sum" {
				want = a.SHA512
			}
			if got[a.Path] != want {
				t.Errorf("%s %s = %s, Stage recorded %s", tool, a.Path, got[a.Path], want)
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// flip changes one byte of the file at rel, in its middle.
func (fx *fixture) flip(rel string) {
	b := fx.read(rel)
	b[len(b)/2] ^= 0x01
	fx.write(rel, b)
}

func (fx *fixture) truncate(rel string, n int) {
	fx.write(rel, fx.read(rel)[:n])
}

func TestStageRefuses(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(fx *fixture) []string // returns extra strings the error must hold
		file   string                     // the offending file, as the error names it
		what   string                     // part of what it says
	}{
		{
			name: "tampered binary",
			break_: func(fx *fixture) []string {
				orig := fx.read(kubeAMD + "/kubelet")
				fx.flip(kubeAMD + "/kubelet")
				return []string{sum256(orig), sum256(fx.read(kubeAMD + "/kubelet")), "sha512 mismatch", "download it again"}
			},
			file: kubeAMD + "/kubelet", what: "sha256 mismatch: kubelet.sha256 says",
		},
		{
			name:   "tampered archive",
			break_: func(fx *fixture) []string { fx.flip(dnsTGZ); return nil },
			file:   dnsTGZ, what: "sha256 mismatch",
		},
		{
			name: "missing checksum",
			break_: func(fx *fixture) []string {
				os.Remove(filepath.Join(fx.dir, dnsTGZ+".sha256"))
				return []string{"download its checksum file"}
			},
			file: dnsTGZ, what: "missing checksum",
		},
		{
			name: "missing from the listing",
			break_: func(fx *fixture) []string {
				fx.listing(flDir, "sha256sum.txt", false, []string{"flanneld-amd64", path.Base(fcniTGZ)})
				return nil
			},
			file: flDir + "/flanneld-arm64", what: "missing checksum",
		},
		{
			name: "wrong arch",
			break_: func(fx *fixture) []string {
				fx.write(kubeAMD+"/kube-proxy", elfBinary(fx.t, elf.EM_AARCH64, "an arm64 kube-proxy"))
				fx.bareSums(kubeAMD + "/kube-proxy")
				return []string{"download its linux/amd64 build"}
			},
			file: kubeAMD + "/kube-proxy", what: "wrong arch: kube-proxy is an aarch64 ELF, the release says amd64",
		},
		{
			name: "wrong arch in an archive",
			break_: func(fx *fixture) []string {
				fx.write(dnsTGZ, tarball(fx.t, true, entry{name: "coredns", body: elfBinary(fx.t, elf.EM_AARCH64, "arm")}))
				fx.write(dnsTGZ+".sha256", []byte(sum256(fx.read(dnsTGZ))))
				return nil
			},
			file: dnsTGZ, what: "wrong arch: coredns is an aarch64 ELF, the release says amd64",
		},
		{
			name: "not an ELF",
			break_: func(fx *fixture) []string {
				fx.write(kubeARM+"/kubelet", []byte("#!/bin/sh\necho not a kubelet\n"))
				fx.write(kubeARM+"/kubelet.sha256", []byte(sum256(fx.read(kubeARM+"/kubelet"))))
				return nil
			},
			file: kubeARM + "/kubelet", what: "not an ELF executable",
		},
		{
			name:   "truncated binary",
			break_: func(fx *fixture) []string { fx.truncate(flDir+"/flanneld-amd64", 40); return nil },
			file:   flDir + "/flanneld-amd64", what: "sha256 mismatch: sha256sum.txt says",
		},
		{
			name: "truncated binary, checksum made from the truncated file",
			break_: func(fx *fixture) []string {
				fx.truncate(kubeAMD+"/kubectl", 40)
				fx.bareSums(kubeAMD + "/kubectl")
				return nil
			},
			file: kubeAMD + "/kubectl", what: "not an ELF executable: kubectl",
		},
		{
			name:   "truncated archive",
			break_: func(fx *fixture) []string { fx.truncate(etcdTGZ, len(fx.read(etcdTGZ))/2); return nil },
			file:   etcdTGZ, what: "sha256 mismatch: SHA256SUMS says",
		},
		{
			name: "truncated archive, checksum made from the truncated file",
			break_: func(fx *fixture) []string {
				fx.truncate(etcdTGZ, len(fx.read(etcdTGZ))/2)
				fx.listing("etcd/v3.6.16", "SHA256SUMS", false, []string{path.Base(etcdTGZ)})
				return nil
			},
			file: etcdTGZ, what: "corrupt archive: unexpected EOF (it is cut short)",
		},
		{
			name: "not gzip",
			break_: func(fx *fixture) []string {
				fx.write(cniTGZ, []byte("<html>404</html>"))
				fx.write(cniTGZ+".sha256", []byte(sum256(fx.read(cniTGZ))))
				fx.write(cniTGZ+".sha512", []byte(sum512(fx.read(cniTGZ))))
				return nil
			},
			file: cniTGZ, what: "corrupt archive: gzip: invalid header",
		},
		{
			name: "sha512 digest in a .sha256",
			break_: func(fx *fixture) []string {
				fx.write(kubeAMD+"/kubelet.sha256", []byte(sum512(fx.read(kubeAMD+"/kubelet"))))
				return []string{"download it again from the project's release page"}
			},
			file: kubeAMD + "/kubelet.sha256", what: "a sha512 digest (128 hex digits) where its name says sha256 (64)",
		},
		{
			name: "sha512 digest in SHA256SUMS",
			break_: func(fx *fixture) []string {
				fx.listing("etcd/v3.6.16", "SHA256SUMS", true, []string{path.Base(etcdTGZ)})
				return nil
			},
			file: "etcd/v3.6.16/SHA256SUMS", what: "line 1: a sha512 digest (128 hex digits) where its name says sha256",
		},
		{
			name: "checksum of another file",
			break_: func(fx *fixture) []string {
				fx.write(kubeARM+"/kubelet.sha256", []byte(sum256(fx.read(kubeARM+"/kubelet"))+"  kube-proxy\n"))
				return nil
			},
			file: kubeARM + "/kubelet.sha256", what: "it names kube-proxy, not kubelet beside it",
		},
		{
			name: "two checksums disagree",
			break_: func(fx *fixture) []string {
				fx.write(flDir+"/flanneld-amd64.sha256", []byte(strings.Repeat("0", 64)))
				return nil
			},
			file: flDir + "/flanneld-amd64", what: "sha256 mismatch: flanneld-amd64.sha256 says 0000",
		},
		{
			name: "flanneld outside a version dir",
			break_: func(fx *fixture) []string {
				fx.write("flannel/flanneld-amd64", fx.read(flDir+"/flanneld-amd64"))
				fx.listing("flannel", "sha256sum.txt", false, []string{"flanneld-amd64"})
				return []string{"v0.28.10/flanneld-amd64"}
			},
			file: "flannel/flanneld-amd64", what: "cannot tell flannel's version",
		},
		{
			name: "archive without its binary",
			break_: func(fx *fixture) []string {
				top := "etcd-v3.6.16-linux-amd64/"
				fx.write(etcdTGZ, tarball(fx.t, true, entry{name: top}, entry{name: top + "etcdctl", body: elfBinary(fx.t, elf.EM_X86_64, "ctl")}))
				fx.listing("etcd/v3.6.16", "SHA256SUMS", false, []string{path.Base(etcdTGZ)})
				return nil
			},
			file: etcdTGZ, what: "the archive holds no etcd",
		},
		{
			name: "the same asset twice, different",
			break_: func(fx *fixture) []string {
				other := "mirror/v1.37.2/bin/linux/amd64/kubelet"
				fx.write(other, elfBinary(fx.t, elf.EM_X86_64, "another kubelet"))
				fx.bareSums(other)
				return []string{"kubernetes/v1.37.2/amd64/kubelet"}
			},
			file: "mirror/v1.37.2/bin/linux/amd64/kubelet", what: "it would be laid out as",
		},
		{
			name: "symlink out of the release",
			break_: func(fx *fixture) []string {
				outside := filepath.Join(fx.t.TempDir(), "kubelet")
				os.WriteFile(outside, fx.read(kubeAMD+"/kubelet"), 0o755)
				os.Remove(filepath.Join(fx.dir, kubeAMD, "kubelet"))
				if err := os.Symlink(outside, filepath.Join(fx.dir, kubeAMD, "kubelet")); err != nil {
					fx.t.Skipf("no symlinks here: %v", err)
				}
				return nil
			},
			file: kubeAMD + "/kubelet", what: "symlink points outside the release",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			extra := c.break_(fx)
			assets := oldAssets(t)
			before := snapshot(t, assets)
			st, err := Stage(fx.dir, assets)
			if err == nil {
				st.Abort()
				t.Fatal("Stage accepted a broken release")
			}
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("Stage error is %T, want *ImportError: %v", err, err)
			}
			found := false
			for _, p := range ie.Problems {
				if p.File == c.file && strings.Contains(p.What, c.what) {
					found = true
				}
				if p.Fix == "" {
					t.Errorf("problem %q says nothing of how to fix it", p)
				}
			}
			if !found {
				t.Errorf("no problem for %s saying %q in:\n%v", c.file, c.what, err)
			}
			for _, s := range extra {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q:\n%v", s, err)
				}
			}
			if len(ie.Problems) != 1 {
				t.Logf("more than the one problem:\n%v", err)
			}
			if after := snapshot(t, assets); !mapsEqual(before, after) {
				t.Errorf("a refused import changed the assets dir:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestStageRefusesAllAtOnce: an operator fixing a big download hears of
// every bad file in one go.
func TestStageRefusesAllAtOnce(t *testing.T) {
	fx := newFixture(t)
	fx.flip(kubeAMD + "/kube-scheduler")
	os.Remove(filepath.Join(fx.dir, dnsTGZ+".sha256"))
	fx.truncate(etcdTGZ, 100)
	assets := t.TempDir()
	_, err := Stage(fx.dir, assets)
	var ie *ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("Stage = %v, want an *ImportError", err)
	}
	var files []string
	for _, p := range ie.Problems {
		files = append(files, p.File)
	}
	files = slices.Compact(files)
	want := []string{dnsTGZ, etcdTGZ, kubeAMD + "/kube-scheduler"}
	if !slices.Equal(files, want) {
		t.Errorf("problems name %v, want %v:\n%v", files, want, err)
	}
	if !strings.Contains(err.Error(), "nothing imported") {
		t.Errorf("error does not say nothing was imported: %v", err)
	}
	if ents, _ := os.ReadDir(assets); len(ents) != 0 {
		t.Errorf("assets dir holds %v after a refused import", ents)
	}
}

func TestStageTar(t *testing.T) {
	fx := newFixture(t)
	// The tree as an operator tars it, directories and all.
	var entries []entry
	filepath.WalkDir(fx.dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(fx.dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
			entries = append(entries, entry{name: "./"})
		case d.IsDir():
			entries = append(entries, entry{name: "./" + rel + "/"})
		default:
			entries = append(entries, entry{name: "./" + rel, body: fx.read(rel)})
		}
		return nil
	})
	// Links that stay inside the tree are allowed, and read through: this
	// one is the same kubelet again, so it is laid out once.
	mirror := "mirror/v1.37.2/bin/linux/amd64/kubelet"
	entries = append(entries,
		entry{name: "./docs/"}, entry{name: "./docs/README", typ: tar.TypeSymlink, link: "../README.txt"},
		entry{name: "./" + mirror, typ: tar.TypeSymlink, link: "../../../../../" + kubeAMD + "/kubelet"},
		entry{name: "./" + mirror + ".sha256", body: fx.read(kubeAMD + "/kubelet.sha256")},
	)

	for _, c := range []struct {
		name string
		gz   bool
	}{{"release.tar", false}, {"release.tar.gz", true}, {"release.tgz", true}} {
		t.Run(c.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), c.name)
			if err := os.WriteFile(src, tarball(t, c.gz, entries...), 0o644); err != nil {
				t.Fatal(err)
			}
			assets := t.TempDir()
			st, err := Stage(src, assets)
			if err != nil {
				t.Fatalf("Stage: %v", err)
			}
			if len(st.Assets) != len(fx.want) {
				t.Errorf("%d assets, want %d", len(st.Assets), len(fx.want))
			}
			if a := st.Assets[0]; strings.HasPrefix(a.From, "/") || strings.HasPrefix(a.From, "./") {
				t.Errorf("From %q is not relative to the tree in the tar", a.From)
			}
			if !slices.Contains(st.Skipped, mirror) || !slices.Contains(st.Skipped, "docs/README") {
				t.Errorf("Skipped = %q, want the linked kubelet (a duplicate) and docs/README", st.Skipped)
			}
			if err := st.Commit(); err != nil {
				t.Fatal(err)
			}
			got := assetFiles(t, assets)
			for p, want := range fx.want {
				if !bytes.Equal(got[p], want) {
					t.Errorf("%s is not the binary the release holds", p)
				}
			}
			if len(got) != len(fx.want) {
				t.Errorf("assets dir holds %d files, want %d (the unpacked tar left behind?)", len(got), len(fx.want))
			}
		})
	}
}

func TestStageTarRefuses(t *testing.T) {
	fx := newFixture(t)
	good := []entry{{name: "./"}, {name: "./" + dnsTGZ, body: fx.read(dnsTGZ)}, {name: "./" + dnsTGZ + ".sha256", body: fx.read(dnsTGZ + ".sha256")}}
	cases := []struct {
		name  string
		bad   entry
		file  string
		what  string
		magic []byte // the tar's bytes instead, when set
	}{
		{name: "dot-dot", bad: entry{name: "../evil", body: []byte("x")}, file: "../evil", what: "a .. in its path"},
		{name: "dot-dot inside", bad: entry{name: "./coredns/../../evil", body: []byte("x")}, file: "./coredns/../../evil", what: "a .. in its path"},
		{name: "absolute", bad: entry{name: "/tmp/evil", body: []byte("x")}, file: "/tmp/evil", what: "absolute path"},
		{name: "symlink out", bad: entry{name: "./escape", typ: tar.TypeSymlink, link: "../../etc"}, file: "./escape", what: "link to ../../etc, outside the release"},
		{name: "absolute symlink", bad: entry{name: "./etc", typ: tar.TypeSymlink, link: "/etc"}, file: "./etc", what: "link to /etc, outside the release"},
		{name: "hard link out", bad: entry{name: "./passwd", typ: tar.TypeLink, link: "../etc/passwd"}, file: "./passwd", what: "outside the release"},
		{name: "device", bad: entry{name: "./sda", typ: tar.TypeBlock}, file: "./sda", what: "device file"},
		{name: "char device", bad: entry{name: "./null", typ: tar.TypeChar}, file: "./null", what: "device file"},
		{name: "fifo", bad: entry{name: "./pipe", typ: tar.TypeFifo}, file: "./pipe", what: "named pipe"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src := filepath.Join(dir, "in", "release.tgz")
			os.MkdirAll(filepath.Dir(src), 0o755)
			// The bad entry sits in the middle: what comes after it is still read.
			entries := append(append(slices.Clone(good[:2]), c.bad), good[2:]...)
			if err := os.WriteFile(src, tarball(t, true, entries...), 0o644); err != nil {
				t.Fatal(err)
			}
			assets := filepath.Join(dir, "assets")
			_, err := Stage(src, assets)
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("Stage = %v, want an *ImportError", err)
			}
			if len(ie.Problems) != 1 || ie.Problems[0].File != c.file || !strings.Contains(ie.Problems[0].What, c.what) {
				t.Fatalf("problems %v, want one for %s saying %q", ie.Problems, c.file, c.what)
			}
			if !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), "tar -C DIR") {
				t.Errorf("error does not name %s and how to make the tar again: %v", c.file, err)
			}
			// Nothing was written outside, nothing into the assets dir.
			for _, p := range []string{filepath.Join(dir, "evil"), filepath.Join(dir, "in", "evil")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			if ents, _ := os.ReadDir(assets); len(ents) != 0 {
				t.Errorf("assets dir holds %v", ents)
			}
		})
	}

	t.Run("truncated tar", func(t *testing.T) {
		b := tarball(t, true, good...)
		src := filepath.Join(t.TempDir(), "release.tgz")
		os.WriteFile(src, b[:len(b)/2], 0o644)
		_, err := Stage(src, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "release.tgz: corrupt tar") {
			t.Fatalf("Stage = %v, want a corrupt tar", err)
		}
	})
}

func TestCommitRollsBack(t *testing.T) {
	fx := newFixture(t)
	assets := oldAssets(t)
	// Another old release, which the import replaces, comes first in order.
	old := filepath.Join(assets, "cni-plugins", "v1.10.0", "amd64")
	os.MkdirAll(old, 0o755)
	os.WriteFile(filepath.Join(old, "bridge"), []byte("old bridge"), 0o755)
	before := snapshot(t, assets)

	st, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatal(err)
	}
	// The fifth rename fails: by then cni-plugins is replaced (two renames)
	// and both coredns dirs are moved in (one each).
	n := 0
	st.rename = func(from, to string) error {
		if n++; n == 5 {
			return errors.New("injected rename failure")
		}
		return os.Rename(from, to)
	}
	err = st.Commit()
	if err == nil || !strings.Contains(err.Error(), "injected rename failure") || !strings.Contains(err.Error(), "as it was") {
		t.Fatalf("Commit = %v, want the injected failure, rolled back", err)
	}
	got := snapshot(t, assets)
	for k := range got {
		if strings.HasPrefix(k, StagingPrefix) {
			delete(got, k)
		}
	}
	if !mapsEqual(before, got) {
		t.Fatalf("a failed Commit left the assets dir changed:\nbefore %v\nafter  %v", before, got)
	}

	// Still staged: a second Commit does it all.
	st.rename = os.Rename
	if err := st.Commit(); err != nil {
		t.Fatalf("Commit after the rollback: %v", err)
	}
	files := assetFiles(t, assets)
	if !bytes.Equal(files["cni-plugins/v1.10.0/amd64/bridge"], fx.want["cni-plugins/v1.10.0/amd64/bridge"]) {
		t.Error("bridge was not replaced")
	}
	if !bytes.Equal(files["kubernetes/v1.37.2/amd64/kubelet"], fx.want["kubernetes/v1.37.2/amd64/kubelet"]) {
		t.Error("kubelet was not replaced")
	}
}

func TestCommitBlocked(t *testing.T) {
	// A file where a component's directory goes: Commit fails on it after
	// it has moved others in, and puts them back.
	fx := newFixture(t)
	assets := t.TempDir()
	os.WriteFile(filepath.Join(assets, "flannel"), []byte("not a dir"), 0o644)
	before := snapshot(t, assets)
	st, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(); err == nil {
		t.Fatal("Commit succeeded over a file where a directory goes")
	}
	st.Abort()
	if after := snapshot(t, assets); !mapsEqual(before, after) {
		t.Errorf("failed Commit then Abort left the assets dir changed:\nbefore %v\nafter  %v", before, after)
	}
}

func TestAbort(t *testing.T) {
	fx := newFixture(t)
	assets := oldAssets(t)
	before := snapshot(t, assets)
	st, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatal(err)
	}
	st.Abort()
	st.Abort()
	if after := snapshot(t, assets); !mapsEqual(before, after) {
		t.Errorf("Abort left the assets dir changed:\nbefore %v\nafter  %v", before, after)
	}
	if err := st.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestStageOddSources(t *testing.T) {
	fx := newFixture(t)
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("x"), 0o644)
	notTar := filepath.Join(t.TempDir(), "release.zip")
	os.WriteFile(notTar, []byte("PK"), 0o644)
	inside := filepath.Join(fx.dir, "assets")
	os.Mkdir(inside, 0o755)
	cases := []struct {
		name, src, assets, err string
	}{
		{"missing", filepath.Join(empty, "nope"), t.TempDir(), "no such file"},
		{"no release files", empty, t.TempDir(), "no release files in it (1 other files skipped)"},
		{"not a tar", notTar, t.TempDir(), "not a directory, nor a .tar, .tar.gz or .tgz"},
		{"assets inside the release", fx.dir, inside, "inside one another"},
		{"release inside the assets", filepath.Join(fx.dir, "etcd"), fx.dir, "inside one another"},
		{"new assets dir inside the release", fx.dir, filepath.Join(fx.dir, "new", "assets"), "inside one another"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Stage(c.src, c.assets)
			if err == nil {
				st.Abort()
				t.Fatal("Stage succeeded")
			}
			if !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Stage = %v, want %q", err, c.err)
			}
		})
	}
	if ents, _ := os.ReadDir(inside); len(ents) != 0 {
		t.Errorf("assets dir holds %v", ents)
	}
	if _, err := os.Stat(filepath.Join(fx.dir, "new")); err == nil {
		t.Error("a refused import made its assets dir inside the release")
	}
}

func TestImportErrorMessage(t *testing.T) {
	e := &ImportError{Src: "/srv/dl", Problems: []Problem{
		{File: "a", What: "broken", Fix: "fix it"},
		{File: "b", What: "also broken", Fix: "fix that"},
	}}
	want := "import release /srv/dl: refused, nothing imported (2 problems):\n\ta: broken; fix it\n\tb: also broken; fix that"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// TestSwapUndo: after Swap the new release is in place and the replaced one
// kept; Undo (the caller's record of the import failed) puts the assets dir
// back exactly, and the import can be swapped in again and finished.
func TestSwapUndo(t *testing.T) {
	fx := newFixture(t)
	assets := oldAssets(t)
	old := filepath.Join(assets, "cni-plugins", "v1.10.0", "amd64")
	os.MkdirAll(old, 0o755)
	os.WriteFile(filepath.Join(old, "bridge"), []byte("old bridge"), 0o755)
	before := snapshot(t, assets)
	st, err := Stage(fx.dir, assets)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	if err := st.Swap(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(old, "bridge")); string(b) == "old bridge" {
		t.Fatal("after Swap the old bridge is still in place")
	}
	cause := errors.New("the catalog did not commit")
	if err := st.Undo(cause); !errors.Is(err, cause) {
		t.Fatalf("Undo = %v, want it to wrap the cause", err)
	}
	got := snapshot(t, assets)
	for k := range got {
		if strings.HasPrefix(k, StagingPrefix) {
			delete(got, k)
		}
	}
	if !mapsEqual(before, got) {
		t.Fatalf("after Undo the assets dir differs:\nbefore %v\nafter  %v", before, got)
	}
	if err := st.Swap(); err != nil {
		t.Fatalf("Swap after Undo: %v", err)
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(assets); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), StagingPrefix) }) {
		t.Errorf("a staging dir is left after Finish: %v", ents)
	}
	if err := st.Undo(cause); err != cause {
		t.Errorf("Undo after Finish = %v, want the cause alone (nothing to undo)", err)
	}
}
