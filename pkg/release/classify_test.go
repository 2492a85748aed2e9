package release

import (
	"maps"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	kube := func(v, arch, name string) Upstream {
		return Upstream{Kind: KindBinary, Component: Kubernetes, Version: v, Arch: arch, Name: name}
	}
	tgz := func(c, v, arch string) Upstream {
		return Upstream{Kind: KindTarGz, Component: c, Version: v, Arch: arch}
	}
	flanneld := func(v, arch string) Upstream {
		return Upstream{Kind: KindBinary, Component: Flannel, Version: v, Arch: arch, Name: "flanneld"}
	}
	cases := []struct {
		rel  string
		want Upstream
		ok   bool
	}{
		// Kubernetes, as dl.k8s.io lays it out, at any depth.
		{"kubernetes/release/v1.37.2/bin/linux/amd64/kubelet", kube("v1.37.2", "amd64", "kubelet"), true},
		{"v1.37.2/bin/linux/arm64/kube-apiserver", kube("v1.37.2", "arm64", "kube-apiserver"), true},
		{"a/b/c/release/v1.37.2/bin/linux/amd64/kube-controller-manager", kube("v1.37.2", "amd64", "kube-controller-manager"), true},
		{"k/v1.37.2/bin/linux/amd64/kube-scheduler", kube("v1.37.2", "amd64", "kube-scheduler"), true},
		{"k/v1.37.2/bin/linux/amd64/kube-proxy", kube("v1.37.2", "amd64", "kube-proxy"), true},
		{"k/v1.37.2/bin/linux/amd64/kubectl", kube("v1.37.2", "amd64", "kubectl"), true},
		{"k/v1.38.0-rc.1/bin/linux/amd64/kubelet", kube("v1.38.0-rc.1", "amd64", "kubelet"), true},
		{"k/v1.38.0-alpha.2.117+3f2a4c/bin/linux/amd64/kubelet", kube("v1.38.0-alpha.2.117+3f2a4c", "amd64", "kubelet"), true},
		{"k/v1.37.2/bin/linux/s390x/kubelet", Upstream{}, false},   // an arch bootsrv does not serve
		{"k/v1.37.2/bin/windows/amd64/kubelet", Upstream{}, false}, // not linux
		{"k/v1.37/bin/linux/amd64/kubelet", Upstream{}, false},     // no patch number
		{"k/1.37.2/bin/linux/amd64/kubelet", Upstream{}, false},    // no v
		{"k/v1.37.2/linux/amd64/kubelet", Upstream{}, false},       // no bin
		{"kubelet", Upstream{}, false},                                      // no place at all
		{"k/v1.37.2/bin/linux/amd64/kubeadm", Upstream{}, false},            // not one a node runs from bootsrv
		{"k/v1.37.2/bin/linux/amd64/kubelet.sha256", Upstream{}, false},     // a checksum, not a binary
		{"k/v01.37.2/bin/linux/amd64/kubelet", Upstream{}, false},           // leading zero
		{"k/v1.37.2-/bin/linux/amd64/kubelet", Upstream{}, false},           // empty pre-release
		{"k/v1.37.2/bin/linux/amd64/kubelet/extra", Upstream{}, false},      // a directory named kubelet
		{"k/v1.37.2/bin/linux/amd64/kubelet.tar.gz", Upstream{}, false},     // not the binary
		{"k/v1.37.2/bin/linux/amd64/kube-apiserver.exe", Upstream{}, false}, // windows naming

		// etcd.
		{"etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz", tgz(Etcd, "v3.6.16", "amd64"), true},
		{"etcd-v3.6.0-rc.5-linux-arm64.tar.gz", tgz(Etcd, "v3.6.0-rc.5", "arm64"), true},
		{"etcd-v3.6.16-linux-amd64.zip", Upstream{}, false},
		{"etcd-v3.6.16-darwin-amd64.zip", Upstream{}, false},
		{"etcd-v3.6.16-linux-ppc64le.tar.gz", Upstream{}, false},
		{"etcd-3.6.16-linux-amd64.tar.gz", Upstream{}, false},

		// CNI plugins.
		{"cni-plugins/v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz", tgz(CNIPlugins, "v1.10.0", "amd64"), true},
		{"cni-plugins-linux-arm64-v1.10.0-rc1.tgz", tgz(CNIPlugins, "v1.10.0-rc1", "arm64"), true},
		{"cni-plugins-linux-amd64-v1.10.0.tar.gz", Upstream{}, false},
		{"cni-plugins-windows-amd64-v1.10.0.tgz", Upstream{}, false},

		// flannel: the version is the directory's.
		{"flannel/v0.28.10/flanneld-amd64", flanneld("v0.28.10", "amd64"), true},
		{"v0.29.0-rc.1/flanneld-arm64", flanneld("v0.29.0-rc.1", "arm64"), true},
		{"flannel/latest/flanneld-amd64", flanneld("", "amd64"), true}, // recognized; Stage refuses it
		{"flanneld-amd64", flanneld("", "amd64"), true},
		{"flannel/v0.28.10/flanneld-s390x", Upstream{}, false},
		{"flannel/v0.28.10/flanneld", Upstream{}, false},
		{"flannel/v0.28.10/flannel-v0.28.10-linux-amd64.tar.gz", Upstream{}, false}, // not needed: flanneld-<arch> is

		// flannel's CNI plugin.
		{"flannel/v0.28.10/cni-plugin-flannel-linux-amd64-v0.9.1.tgz", tgz(FlannelCNI, "v0.9.1", "amd64"), true},
		{"cni-plugin-flannel-linux-arm64-v1.6.2-flannel1.tgz", tgz(FlannelCNI, "v1.6.2-flannel1", "arm64"), true},
		{"cni-plugin-flannel-linux-amd64-1.6.2.tgz", Upstream{}, false},

		// CoreDNS: no v in the name, one in the version.
		{"coredns/v1.15.0/coredns_1.15.0_linux_amd64.tgz", tgz(CoreDNS, "v1.15.0", "amd64"), true},
		{"coredns_1.12.0-rc.1_linux_arm64.tgz", tgz(CoreDNS, "v1.12.0-rc.1", "arm64"), true},
		{"coredns_v1.15.0_linux_amd64.tgz", Upstream{}, false},
		{"coredns_1.15.0_linux_amd64.tgz.sha256", Upstream{}, false},
		{"coredns_1.15.0_linux_mips.tgz", Upstream{}, false},

		{"README.md", Upstream{}, false},
		{"", Upstream{}, false},
	}
	for _, c := range cases {
		t.Run(c.rel, func(t *testing.T) {
			got, ok := Classify(c.rel)
			if ok != c.ok || got != c.want {
				t.Fatalf("Classify(%q) = %+v, %v; want %+v, %v", c.rel, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestMember(t *testing.T) {
	etcd := Upstream{Kind: KindTarGz, Component: Etcd, Version: "v3.6.16", Arch: "amd64"}
	cni := Upstream{Kind: KindTarGz, Component: CNIPlugins, Version: "v1.10.0", Arch: "amd64"}
	fcni := Upstream{Kind: KindTarGz, Component: FlannelCNI, Version: "v0.9.1", Arch: "arm64"}
	dns := Upstream{Kind: KindTarGz, Component: CoreDNS, Version: "v1.15.0", Arch: "amd64"}
	cases := []struct {
		u      Upstream
		member string
		want   string // "" for not taken
	}{
		{etcd, "etcd-v3.6.16-linux-amd64/etcd", "etcd"},
		{etcd, "etcd-v3.6.16-linux-amd64/etcdctl", "etcdctl"},
		{etcd, "etcd-v3.6.16-linux-amd64/etcdutl", "etcdutl"},
		{etcd, "etcd-v3.6.16-linux-amd64/README.md", ""},
		{etcd, "etcd-v3.6.16-linux-amd64/Documentation/etcd", ""},
		{etcd, "etcd-v3.6.15-linux-amd64/etcd", ""}, // another release's dir
		{etcd, "etcd", ""},
		{cni, "bridge", "bridge"},
		{cni, "host-local", "host-local"},
		{cni, "LICENSE", ""},
		{cni, "README.md", ""},
		{cni, "sub/bridge", ""},
		{cni, ".hidden", ""},
		{fcni, "flannel-arm64", "flannel"},
		{fcni, "flannel-amd64", ""},
		{dns, "coredns", "coredns"},
		{dns, "README", ""},
	}
	for _, c := range cases {
		got, ok := c.u.member(c.member)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("%s member %q = %q, %v; want %q", c.u.Component, c.member, got, ok, c.want)
		}
	}
}

func TestParseChecksums(t *testing.T) {
	h256 := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	cases := []struct {
		name, data string
		want       map[string]string
		err        string // a part of the error; "" for none
	}{
		// Beside the file, as dl.k8s.io and sha256sum write them.
		{"kubelet.sha256", h256 + "\n", map[string]string{"kubelet": h256}, ""},
		{"kubelet.sha256", h256, map[string]string{"kubelet": h256}, ""},
		{"kubelet.sha256", strings.ToUpper(h256) + "\r\n", map[string]string{"kubelet": h256}, ""},
		{"kubelet.sha512", h512 + "\n", map[string]string{"kubelet": h512}, ""},
		{"x.tgz.sha256", h256 + "  x.tgz\n", map[string]string{"x.tgz": h256}, ""},
		{"x.tgz.sha512", h512 + " *x.tgz\n", map[string]string{"x.tgz": h512}, ""},
		{"x.tgz.sha256", h256 + "  /home/op/dl/x.tgz\n", map[string]string{"/home/op/dl/x.tgz": h256}, ""},
		{"kubelet.sha256", h512 + "\n", nil, "a sha512 digest (128 hex digits) where its name says sha256 (64)"},
		{"kubelet.sha512", h256 + "\n", nil, "a sha256 digest (64 hex digits) where its name says sha512 (128)"},
		{"kubelet.sha256", "", nil, "names no file"},
		{"kubelet.sha256", "not-hex\n", nil, "is not a hex digest"},
		{"kubelet.sha256", h256[:40] + "\n", nil, "40-digit digest is neither"},
		{"kubelet.sha256", "<html>404 Not Found</html>\n", nil, "is not a hex digest"},

		// Listings.
		{"SHA256SUMS", h256 + "  a.tar.gz\n" + strings.Repeat("01", 32) + "  ./b.tar.gz\n\n", map[string]string{"a.tar.gz": h256, "b.tar.gz": strings.Repeat("01", 32)}, ""},
		{"sha256sum.txt", h256 + " *flanneld-amd64\n# comment\n", map[string]string{"flanneld-amd64": h256}, ""},
		{"sha256sum.txt", h256 + "  name with spaces.tgz\n", map[string]string{"name with spaces.tgz": h256}, ""},
		{"SHA512SUMS", h512 + "  a.tar.gz\n", map[string]string{"a.tar.gz": h512}, ""},
		{"sha512sum.txt", "SHA512 (a.tgz) = " + h512 + "\n", map[string]string{"a.tgz": h512}, ""},
		{"SHA256SUMS", "SHA256 (a.tgz) = " + h256 + "\n", map[string]string{"a.tgz": h256}, ""},
		{"checksums.txt", h256 + "  a.tgz\n" + h512 + "  b.tgz\n", map[string]string{"a.tgz": h256, "b.tgz": h512}, ""},
		{"checksums.txt", h256 + "  sub/dir/a.tgz\n", map[string]string{"sub/dir/a.tgz": h256}, ""},
		{"SHA256SUMS", h256 + "  a.tgz\n" + h256 + "  a.tgz\n", map[string]string{"a.tgz": h256}, ""}, // repeated, agreeing
		{"SHA256SUMS", h512 + "  a.tar.gz\n", nil, "line 1: a sha512 digest (128 hex digits) where its name says sha256 (64)"},
		{"sha256sum.txt", h256 + "  a\n" + h512 + "  b\n", nil, "line 2: a sha512 digest"},
		{"SHA512SUMS", h256 + "  a.tar.gz\n", nil, "a sha256 digest (64 hex digits) where its name says sha512"},
		{"SHA256SUMS", "SHA512 (a.tgz) = " + h256 + "\n", nil, "a sha256 digest tagged SHA512"},
		{"SHA256SUMS", h256 + "\n", nil, "line 1: a digest without a file name"},
		{"SHA256SUMS", h256 + "  a.tgz\n" + strings.Repeat("01", 32) + "  a.tgz\n", nil, "lists a.tgz twice with different digests"},
		{"checksums.txt", h256 + "  a.tgz\n" + h512 + "  a.tgz\n", nil, "both a sha256 and a sha512 digest"},
		{"checksums.txt", strings.Repeat("0", 40) + "  a.tgz\n", nil, "40-digit digest is neither sha256 (64) nor sha512 (128)"},
		{"SHA256SUMS", "\n\n", nil, "names no file"},

		{"MD5SUMS", h256 + "  a\n", nil, "not a checksum file"},
		{"kubelet.sha1", h256 + "\n", nil, "not a checksum file"},
		{".sha256", h256 + "\n", nil, "not a checksum file"},
	}
	for _, c := range cases {
		t.Run(c.name+" "+short(c.data), func(t *testing.T) {
			got, err := ParseChecksums(c.name, []byte(c.data))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ParseChecksums = %v, %v; want an error with %q", got, err, c.err)
				}
				if !strings.Contains(err.Error(), c.name) {
					t.Errorf("error %q does not name the checksum file %s", err, c.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChecksums: %v", err)
			}
			if !maps.Equal(got, c.want) {
				t.Fatalf("ParseChecksums = %v, want %v", got, c.want)
			}
		})
	}
}

// TestUpstreamFileClassifies: the file UpstreamFile tells an operator to
// download is one Classify recognizes as that component, version and arch.
func TestUpstreamFileClassifies(t *testing.T) {
	for _, c := range []struct{ component, version, name string }{
		{Kubernetes, "v1.37.2", "kubelet"}, {Etcd, "v3.6.16", "etcd"}, {CNIPlugins, "v1.10.0", "bridge"},
		{Flannel, "v0.28.10", "flanneld"}, {FlannelCNI, "v0.9.1", "flannel"}, {CoreDNS, "v1.15.0", "coredns"},
	} {
		file, _, _ := strings.Cut(UpstreamFile(c.component, c.version, "amd64", c.name), " ")
		u, ok := Classify("dl/" + file)
		if !ok || u.Component != c.component || u.Version != c.version || u.Arch != "amd64" {
			t.Errorf("UpstreamFile(%s) names %q, which classifies as %+v (%v)", c.component, file, u, ok)
		}
	}
}
