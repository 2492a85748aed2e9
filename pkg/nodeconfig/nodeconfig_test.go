package nodeconfig

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/bootsrv/bootsrv/pkg/pki"
	"github.com/bootsrv/bootsrv/pkg/render"
)

// fakePEM is a PEM block whose body names it, so a test can tell which
// input landed in which file. Render checks PEM types only.
func fakePEM(typ, name string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte(name)})
}

var testMasters = []Member{
	{Hostname: "node1", IP: "172.17.4.101"},
	{Hostname: "node2", IP: "172.17.4.102"},
	{Hostname: "node3", IP: "172.17.4.103"},
}

// The hosts bootsrv renders for (profiles.hostFor): the default (lab and
// custom OSes), Flatcar and Fedora CoreOS.
var (
	hostFlatcar = Host{BinDir: "/opt/bin", ResolvConf: "/run/systemd/resolve/resolv.conf", ContainerdConfigDropin: true}
	hostFCOS    = Host{BinDir: "/usr/local/bin", ResolvConf: "/run/systemd/resolve/resolv.conf"}
	testHosts   = []struct {
		name string
		host Host
	}{{"default", Host{}}, {"flatcar", hostFlatcar}, {"fcos", hostFCOS}}
)

// testBinary is where bootsrv serves a binary, and a hash that is the
// binary's own, so a test can tell which input landed where.
func testBinary(n Need) Binary {
	sum := sha512.Sum512([]byte(n.Component + "/" + n.Name))
	return Binary{
		URL:  "http://10.0.0.1:8080/assets/" + n.Component + "/v1/amd64/" + n.Name,
		Hash: "sha512-" + hex.EncodeToString(sum[:]),
	}
}

// testInput is the seed guides' cluster (pods 10.2.0.0/16, services
// 10.3.0.0/24, DNS 10.3.0.10) with three masters; role picks which machine
// is rendered: node1 (master) or node4 (worker). Both get every
// certificate and binary a master has, so that a test sees Render pick
// only what the role needs.
func testInput(role string) Input {
	in := Input{
		Cluster: Cluster{
			Name:              "lab",
			APIServer:         "172.17.4.101",
			PodNetwork:        "10.2.0.0/16",
			ServiceRange:      "10.3.0.0/24",
			DNSServiceIP:      "10.3.0.10",
			Domain:            "cluster.local",
			KubernetesVersion: "v1.37.2",
		},
		Masters:        testMasters,
		CA:             fakePEM("CERTIFICATE", "ca"),
		EtcdCA:         fakePEM("CERTIFICATE", "etcd-ca"),
		FrontProxyCA:   fakePEM("CERTIFICATE", "front-proxy-ca"),
		Certs:          map[string]CertKey{},
		ServiceAccount: KeyPair{Public: fakePEM("PUBLIC KEY", "sa-pub"), Private: fakePEM("PRIVATE KEY", "sa-key")},
		Binaries:       map[string]Binary{},
	}
	if role == RoleMaster {
		in.Machine = Machine{Hostname: "node1", IP: "172.17.4.101", Iface: "eth0", Role: RoleMaster}
	} else {
		in.Machine = Machine{Hostname: "node4", IP: "172.17.4.201", Iface: "ens3", Role: role,
			Labels: map[string]string{"rack": "r12", "node.kubernetes.io/pool": "general", "example.com/gpu": "true"}}
	}
	for _, n := range append(append([]string{}, certsBoth...), certsMaster...) {
		in.Certs[n] = CertKey{Cert: fakePEM("CERTIFICATE", "cert-"+n), Key: fakePEM("EC PRIVATE KEY", "key-"+n)}
	}
	bins, _ := BinariesForRole(RoleMaster)
	for _, b := range bins {
		in.Binaries[b.Name] = testBinary(b)
	}
	return in
}

func mustRender(t *testing.T, in Input) Node {
	t.Helper()
	n, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return n
}

func file(t *testing.T, n Node, p string) File {
	t.Helper()
	for _, f := range n.Files {
		if f.Path == p {
			return f
		}
	}
	t.Fatalf("no file %s; have %v", p, GeneratedPaths(n))
	return File{}
}

func hasFile(n Node, p string) bool { return slices.Contains(GeneratedPaths(n), p) }

func unit(t *testing.T, n Node, name string) Unit {
	t.Helper()
	for _, u := range n.Units {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no unit %s; have %v", name, GeneratedUnits(n))
	return Unit{}
}

// kubeconfigPaths are the files that hold a path to a private key and so
// are written 0600 like the keys themselves.
var kubeconfigPaths = []string{pathKubeletKC, pathKubeProxyKC, pathControllerKC, pathSchedulerKC, pathCoreDNSKC, pathAddonsKC}

func TestRenderPathsModesAndContents(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		for _, h := range testHosts {
			t.Run(role+"/"+h.name, func(t *testing.T) {
				in := testInput(role)
				in.Host = h.host
				n := mustRender(t, in)

				want, err := PathsForRole(role, h.host.BinDir)
				if err != nil {
					t.Fatal(err)
				}
				if got := GeneratedPaths(n); !reflect.DeepEqual(got, want) {
					t.Errorf("paths:\n got %v\nwant %v", got, want)
				}
				wantUnits, _ := UnitsForRole(role)
				if h.host.ContainerdConfigDropin {
					// Only a drop-in of the OS's own unit.
					wantUnits = append(wantUnits, unitContainerd)
					sort.Strings(wantUnits)
				}
				if got := GeneratedUnits(n); !reflect.DeepEqual(got, wantUnits) {
					t.Errorf("units: got %v, want %v", got, wantUnits)
				}
				for _, u := range n.Units {
					if u.Name == unitContainerd {
						continue
					}
					if !u.Enabled || u.Contents == "" {
						t.Errorf("unit %s: enabled %v, %d bytes", u.Name, u.Enabled, len(u.Contents))
					}
					if !strings.Contains(u.Contents, "\n[Install]\nWantedBy=multi-user.target\n") {
						t.Errorf("unit %s is not wanted by multi-user.target:\n%s", u.Name, u.Contents)
					}
				}

				// Every cert and key the role needs is there, byte for
				// byte, keys 0600 and certs 0644.
				names, _ := CertsForRole(role)
				for _, name := range names {
					cf, kf := file(t, n, certPath(name)), file(t, n, keyPath(name))
					if !bytes.Equal(cf.Contents, in.Certs[name].Cert) || !bytes.Equal(kf.Contents, in.Certs[name].Key) {
						t.Errorf("cert %s: contents are not the input's", name)
					}
					if cf.Mode != 0o644 || kf.Mode != 0o600 {
						t.Errorf("cert %s: modes %o/%o, want 644/600", name, cf.Mode, kf.Mode)
					}
				}
				if !bytes.Equal(file(t, n, pathCA).Contents, in.CA) {
					t.Error("ca.pem is not the cluster CA")
				}
				for _, f := range n.Files {
					secret := strings.HasSuffix(f.Path, "-key.pem") || f.Path == pathSAPrivate || slices.Contains(kubeconfigPaths, f.Path)
					if secret && f.Mode != 0o600 {
						t.Errorf("%s has mode %o, want 600", f.Path, f.Mode)
					}
					if f.Mode&0o022 != 0 {
						t.Errorf("%s is writable by group or others (%o)", f.Path, f.Mode)
					}
					// A file is either written from its contents or
					// fetched and checked by hash, never both.
					if f.Source != "" && (f.Hash == "" || f.Contents != nil) {
						t.Errorf("%s: source %q with hash %q and %d bytes of contents", f.Path, f.Source, f.Hash, len(f.Contents))
					}
					if f.Source == "" && f.Hash != "" {
						t.Errorf("%s: hash without a source", f.Path)
					}
					if bytes.Contains(f.Contents, []byte("--insecure-port")) || bytes.Contains(f.Contents, []byte("http://127.0.0.1:8080")) {
						t.Errorf("%s uses the removed insecure apiserver port", f.Path)
					}
				}
				for _, p := range kubeconfigPaths {
					if hasFile(n, p) && file(t, n, p).Mode != 0o600 {
						t.Errorf("kubeconfig %s is not 0600", p)
					}
				}
				// What every profile gets is the caller's (pkg/assemble
				// writes it for every role); a second copy would be a
				// duplicate path.
				for _, p := range []string{"/etc/hostname", "/etc/bootsrv/report.env"} {
					if hasFile(n, p) {
						t.Errorf("Render writes %s, which the caller owns", p)
					}
				}
				marker, absent := pathWorkerMarker, pathMasterMarker
				if role == RoleMaster {
					marker, absent = pathMasterMarker, pathWorkerMarker
				}
				file(t, n, marker)
				if hasFile(n, absent) {
					t.Errorf("a %s has the marker %s", role, absent)
				}
			})
		}
	}
}

// A worker holds the identities of its kubelet and kube-proxy and nothing
// else: no etcd CA or cert (etcd would let it in), no front-proxy CA, no
// service-account key, no binary of the control plane.
func TestWorkerHoldsOnlyItsOwn(t *testing.T) {
	in := testInput(RoleWorker)
	n := mustRender(t, in)
	names, _ := CertsForRole(RoleWorker)
	if !reflect.DeepEqual(names, []string{CertKubeProxy, CertKubelet}) {
		t.Errorf("CertsForRole(worker) = %v, want [kube-proxy kubelet]", names)
	}
	own := map[string]bool{}
	for _, c := range names {
		own[certPath(c)], own[keyPath(c)] = true, true
	}
	for _, f := range n.Files {
		base := path.Base(f.Path)
		if strings.Contains(base, "etcd") || strings.Contains(base, "front-proxy") || strings.HasPrefix(base, "sa.") {
			t.Errorf("worker has %s", f.Path)
		}
		if strings.HasPrefix(f.Path, sslDir+"/") && f.Path != pathCA && !own[f.Path] {
			t.Errorf("worker has %s, which is not its own", f.Path)
		}
		if strings.HasSuffix(f.Path, "-key.pem") && !own[f.Path] {
			t.Errorf("worker has the key %s, which is not its own", f.Path)
		}
		// No master secret travels in any file, whatever its name.
		for _, c := range certsMaster {
			if bytes.Contains(f.Contents, in.Certs[c].Key) || bytes.Contains(f.Contents, in.Certs[c].Cert) {
				t.Errorf("%s holds the master's %s", f.Path, c)
			}
		}
		for what, b := range map[string][]byte{"etcd CA": in.EtcdCA, "front-proxy CA": in.FrontProxyCA,
			"service-account key": in.ServiceAccount.Private} {
			if bytes.Contains(f.Contents, b) {
				t.Errorf("%s holds the %s", f.Path, what)
			}
		}
		if bytes.Contains(f.Contents, []byte(":2379")) {
			t.Errorf("%s names etcd's client port:\n%s", f.Path, f.Contents)
		}
	}
	if hasFile(n, pathEtcdCA) {
		t.Error("worker has etcd-ca.pem")
	}
	for _, b := range []string{"etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "coredns"} {
		if hasFile(n, path.Join(DefaultBinDir, b)) {
			t.Errorf("worker fetches %s", b)
		}
	}
	for _, u := range []string{unitEtcd, unitAPIServer, unitCM, unitScheduler, unitCoreDNS, unitAddons} {
		if slices.Contains(GeneratedUnits(n), u) {
			t.Errorf("worker runs %s", u)
		}
	}
}

// Worker and master differ where Kubernetes says they must.
func TestRoleDifferences(t *testing.T) {
	m, w := mustRender(t, testInput(RoleMaster)), mustRender(t, testInput(RoleWorker))
	mp, wp := GeneratedPaths(m), GeneratedPaths(w)
	masterOnly := []string{pathEtcdEnv, pathSAPrivate, pathSAPublic, pathEtcdCA, pathFrontProxyCA, certPath(CertAPIServer),
		certPath(CertFrontProxyClient), certPath(CertEtcdClient), pathControllerKC, pathSchedulerKC, pathCoreDNSKC, pathAddonsKC,
		pathCorefile, path.Join(addonDir, addonNames[0]), path.Join(DefaultBinDir, "etcd"), path.Join(DefaultBinDir, "kube-apiserver")}
	for _, p := range masterOnly {
		if !slices.Contains(mp, p) || slices.Contains(wp, p) {
			t.Errorf("%s: want on the master only", p)
		}
	}
	// kube-proxy, flannel, containerd and the kernel settings are on every
	// node now, masters included.
	both := []string{pathKubeProxyKC, pathKubeProxyConfig, certPath(CertKubeProxy), keyPath(CertKubeProxy), certPath(CertKubelet),
		pathKubeletKC, pathKubeletConfig, pathFlannelEnv, pathFlannelNet, pathCNIConf, pathContainerd, pathModules, pathSysctl,
		path.Join(DefaultBinDir, "kube-proxy"), path.Join(DefaultBinDir, "flanneld"), path.Join(cniBin, "flannel")}
	for _, p := range both {
		if !slices.Contains(wp, p) || !slices.Contains(mp, p) {
			t.Errorf("%s: want on both roles", p)
		}
	}
	for _, u := range []string{unitKubelet, unitKubeProxy, unitFlanneld} {
		if !slices.Contains(GeneratedUnits(m), u) || !slices.Contains(GeneratedUnits(w), u) {
			t.Errorf("%s: want on both roles", u)
		}
	}
	// A worker needs no service-account key, no master certs or binaries,
	// no etcd CA and no front-proxy CA.
	in := testInput(RoleWorker)
	in.ServiceAccount, in.EtcdCA, in.FrontProxyCA = KeyPair{}, nil, nil
	for _, c := range certsMaster {
		delete(in.Certs, c)
	}
	for _, b := range binsMaster {
		delete(in.Binaries, b.Name)
	}
	mustRender(t, in)
}

// The names nodeconfig wants in Input.Certs are the ones pkg/pki issues for
// the role, so pki's Certs.Pairs() can be handed over as it is.
func TestCertNamesMatchPKI(t *testing.T) {
	facts := map[string]pki.NodeFacts{
		RoleMaster: {Hostname: "node1", IP: net.ParseIP("172.17.4.101"), Role: pki.RoleMaster, KubernetesServiceIP: net.ParseIP("10.3.0.1")},
		RoleWorker: {Hostname: "node4", IP: net.ParseIP("172.17.4.201"), Role: pki.RoleWorker},
	}
	for role, f := range facts {
		specs, err := pki.NodeSpecs(f)
		if err != nil {
			t.Fatal(err)
		}
		var issued []string
		for _, s := range specs {
			issued = append(issued, s.Name)
			if s.CertPath != certPath(s.Name) || s.KeyPath != keyPath(s.Name) {
				t.Errorf("%s: pki writes %s and %s, nodeconfig %s and %s", s.Name, s.CertPath, s.KeyPath, certPath(s.Name), keyPath(s.Name))
			}
			// The etcd-* certs come from the etcd CA, front-proxy-client
			// from the front-proxy CA: the files the units name for them.
			wantCA := pki.CAKubernetes
			switch {
			case strings.HasPrefix(s.Name, "etcd-"):
				wantCA = pki.CAEtcd
			case s.Name == CertFrontProxyClient:
				wantCA = pki.CAFrontProxy
			}
			if s.CA != wantCA {
				t.Errorf("%s is signed by %s, want %s", s.Name, s.CA, wantCA)
			}
		}
		sort.Strings(issued)
		want, _ := CertsForRole(role)
		if !reflect.DeepEqual(issued, want) {
			t.Errorf("%s: pki issues %v, nodeconfig wants %v", role, issued, want)
		}
	}
	if pki.CACertPath != pathCA || pki.EtcdCACertPath != pathEtcdCA || pki.ServiceAccountKeyPath != pathSAPrivate || pki.ServiceAccountPubPath != pathSAPublic {
		t.Error("pki and nodeconfig disagree on the CA or service-account paths")
	}
}

// wantBinaries is issue 10's list: what each role runs, programs in
// Host.BinDir and CNI plugins in /opt/cni/bin.
var wantBinaries = map[string]struct{ programs, cni []string }{
	RoleWorker: {
		programs: []string{"flanneld", "kube-proxy", "kubelet"},
		cni:      []string{"bridge", "flannel", "host-local", "loopback", "portmap"},
	},
	RoleMaster: {
		programs: []string{"coredns", "etcd", "etcdctl", "flanneld", "kube-apiserver", "kube-controller-manager", "kube-proxy",
			"kube-scheduler", "kubectl", "kubelet"},
		cni: []string{"bridge", "flannel", "host-local", "loopback", "portmap"},
	},
}

func TestBinaries(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		for _, h := range testHosts {
			t.Run(role+"/"+h.name, func(t *testing.T) {
				in := testInput(role)
				in.Host = h.host
				n := mustRender(t, in)
				binDir := h.host.BinDir
				if binDir == "" {
					binDir = DefaultBinDir
				}
				needs, err := BinariesForRole(role)
				if err != nil {
					t.Fatal(err)
				}
				var programs, cni []string
				for _, b := range needs {
					if b.CNI {
						cni = append(cni, b.Name)
					} else {
						programs = append(programs, b.Name)
					}
				}
				if want := wantBinaries[role]; !reflect.DeepEqual(programs, want.programs) || !reflect.DeepEqual(cni, want.cni) {
					t.Errorf("BinariesForRole(%s): programs %v, CNI %v; want %v and %v", role, programs, cni, want.programs, want.cni)
				}
				fetched := map[string]bool{}
				for _, b := range needs {
					p := path.Join(binDir, b.Name)
					if b.CNI {
						p = path.Join("/opt/cni/bin", b.Name)
					}
					f := file(t, n, p)
					fetched[p] = true
					want := in.Binaries[b.Name]
					if f.Source != want.URL || f.Hash != want.Hash {
						t.Errorf("%s: source %q hash %q, want %q %q", p, f.Source, f.Hash, want.URL, want.Hash)
					}
					if f.Mode != 0o755 || f.Contents != nil {
						t.Errorf("%s: mode %o with %d bytes of contents, want 0755 and none", p, f.Mode, len(f.Contents))
					}
				}
				// Nothing else is fetched or executable.
				for _, f := range n.Files {
					if (f.Source != "" || f.Mode&0o111 != 0) && !fetched[f.Path] {
						t.Errorf("%s: mode %o, source %q: not one of the role's binaries", f.Path, f.Mode, f.Source)
					}
				}
			})
		}
	}
}

// unitBinary is the program each unit runs.
var unitBinary = map[string]string{
	unitKubelet: "kubelet", unitKubeProxy: "kube-proxy", unitFlanneld: "flanneld", unitEtcd: "etcd",
	unitAPIServer: "kube-apiserver", unitCM: "kube-controller-manager", unitScheduler: "kube-scheduler",
	unitCoreDNS: "coredns", unitAddons: "kubectl",
}

// Every unit starts one of the node's fetched binaries, at the path the
// host keeps programs in.
func TestUnitsRunFetchedBinaries(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		for _, h := range testHosts {
			t.Run(role+"/"+h.name, func(t *testing.T) {
				in := testInput(role)
				in.Host = h.host
				n := mustRender(t, in)
				binDir := h.host.BinDir
				if binDir == "" {
					binDir = DefaultBinDir
				}
				units, _ := UnitsForRole(role)
				for _, name := range units {
					bin, ok := unitBinary[name]
					if !ok {
						t.Errorf("no binary known for unit %s", name)
						continue
					}
					words := execStart(t, unit(t, n, name).Contents)
					if want := path.Join(binDir, bin); words[0] != want {
						t.Errorf("%s runs %s, want %s", name, words[0], want)
					}
					if f := file(t, n, words[0]); f.Source != in.Binaries[bin].URL || f.Mode != 0o755 {
						t.Errorf("%s runs %s, which is not the fetched %s", name, words[0], bin)
					}
				}
			})
		}
	}
}

func decodeKubeletConfig(t *testing.T, n Node) kubeletv1beta1.KubeletConfiguration {
	t.Helper()
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(file(t, n, pathKubeletConfig).Contents, &kc); err != nil {
		t.Fatalf("KubeletConfiguration does not decode strictly: %v", err)
	}
	return kc
}

func TestKubeletConfiguration(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			n := mustRender(t, testInput(role))
			kc := decodeKubeletConfig(t, n)
			if kc.APIVersion != "kubelet.config.k8s.io/v1beta1" || kc.Kind != "KubeletConfiguration" {
				t.Errorf("type = %s %s", kc.APIVersion, kc.Kind)
			}
			checks := []struct {
				what string
				ok   bool
			}{
				{"clusterDNS [10.3.0.10]", reflect.DeepEqual(kc.ClusterDNS, []string{"10.3.0.10"})},
				{"clusterDomain cluster.local", kc.ClusterDomain == "cluster.local"},
				{"anonymous auth off", kc.Authentication.Anonymous.Enabled != nil && !*kc.Authentication.Anonymous.Enabled},
				{"webhook authn on", kc.Authentication.Webhook.Enabled != nil && *kc.Authentication.Webhook.Enabled},
				{"clientCAFile is the CA", kc.Authentication.X509.ClientCAFile == pathCA},
				{"authorization Webhook", kc.Authorization.Mode == kubeletv1beta1.KubeletAuthorizationModeWebhook},
				{"readOnlyPort 0", kc.ReadOnlyPort == 0},
				// The control plane runs from systemd units: no static pods.
				{"no staticPodPath", kc.StaticPodPath == ""},
				{"resolvConf /etc/resolv.conf", kc.ResolverConfig != nil && *kc.ResolverConfig == DefaultResolvConf},
				{"tlsCertFile", kc.TLSCertFile == certPath(CertKubelet)},
				{"tlsPrivateKeyFile", kc.TLSPrivateKeyFile == keyPath(CertKubelet)},
				{"cgroupDriver systemd", kc.CgroupDriver == "systemd"},
				{"containerRuntimeEndpoint", kc.ContainerRuntimeEndpoint == DefaultContainerRuntimeEndpoint},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("KubeletConfiguration: want %s; got %+v", c.what, kc)
				}
			}
			// readOnlyPort must be written out, not left to a default.
			var raw map[string]any
			if err := yaml.Unmarshal(file(t, n, pathKubeletConfig).Contents, &raw); err != nil {
				t.Fatal(err)
			}
			if v, ok := raw["readOnlyPort"]; !ok || v != float64(0) {
				t.Errorf("readOnlyPort in the file = %v (present %v), want 0", v, ok)
			}
			taintOK := len(kc.RegisterWithTaints) == 1 &&
				kc.RegisterWithTaints[0].Key == "node-role.kubernetes.io/control-plane" &&
				kc.RegisterWithTaints[0].Effect == corev1.TaintEffectNoSchedule
			if role == RoleMaster && !taintOK {
				t.Errorf("master registerWithTaints = %+v, want control-plane:NoSchedule", kc.RegisterWithTaints)
			}
			if role == RoleWorker && len(kc.RegisterWithTaints) != 0 {
				t.Errorf("worker registerWithTaints = %+v, want none", kc.RegisterWithTaints)
			}
		})
	}
}

// On systemd-resolved hosts the kubelet must hand pods the real upstream
// list, not the 127.0.0.53 stub, or CoreDNS forwards to itself.
func TestKubeletResolvConf(t *testing.T) {
	for _, h := range testHosts {
		t.Run(h.name, func(t *testing.T) {
			in := testInput(RoleWorker)
			in.Host = h.host
			want := h.host.ResolvConf
			if want == "" {
				want = "/etc/resolv.conf"
			}
			kc := decodeKubeletConfig(t, mustRender(t, in))
			if kc.ResolverConfig == nil || *kc.ResolverConfig != want {
				t.Errorf("resolvConf = %v, want %s", kc.ResolverConfig, want)
			}
		})
	}
}

// currentKubeletFlags are flags the v1.37 kubelet still takes (see
// `kubelet --help`); anything else in the unit fails the test.
var currentKubeletFlags = map[string]bool{
	"--config": true, "--config-dir": true, "--kubeconfig": true, "--bootstrap-kubeconfig": true,
	"--hostname-override": true, "--node-ip": true, "--node-labels": true, "--cert-dir": true,
	"--root-dir": true, "--v": true, "--vmodule": true, "--provider-id": true,
}

// removedKubeletFlags are gone (--container-runtime since v1.27) or moved
// into the KubeletConfiguration (--cluster-dns, --cluster-domain).
var removedKubeletFlags = []string{
	"--api-servers", "--register-schedulable", "--configure-cbr0", "--allow-privileged",
	"--network-plugin", "--cluster-dns", "--cluster-domain", "--container-runtime",
}

// execStart joins the ExecStart line of a unit with its continuations and
// splits it into words.
func execStart(t *testing.T, unitText string) []string {
	t.Helper()
	var line string
	in := false
	for _, l := range strings.Split(unitText, "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			in = true
			l = strings.TrimPrefix(l, "ExecStart=")
		}
		if !in {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			line += s + " "
			continue
		}
		line += l
		break
	}
	if line == "" {
		t.Fatalf("no ExecStart in:\n%s", unitText)
	}
	return strings.Fields(line)
}

// flagMap reads --flag=value words, each flag once.
func flagMap(t *testing.T, what string, words []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !strings.HasPrefix(k, "--") {
			t.Errorf("%s: argument %q is not --flag=value", what, w)
		}
		if _, dup := flags[k]; dup {
			t.Errorf("%s: %s given twice", what, k)
		}
		flags[k] = v
	}
	return flags
}

func TestKubeletUnitFlags(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			u := unit(t, mustRender(t, in), unitKubelet)
			words := execStart(t, u.Contents)
			if words[0] != path.Join(DefaultBinDir, "kubelet") {
				t.Errorf("ExecStart runs %s", words[0])
			}
			if !strings.Contains(u.Contents, "\nAfter=network-online.target containerd.service\n") {
				t.Errorf("kubelet does not start after containerd:\n%s", u.Contents)
			}
			flags := map[string]string{}
			for _, w := range words[1:] {
				name, val, _ := strings.Cut(w, "=")
				for _, r := range removedKubeletFlags {
					if name == r {
						t.Errorf("removed kubelet flag %s in ExecStart", w)
					}
				}
				if !currentKubeletFlags[name] {
					t.Errorf("flag %s is not a current kubelet flag", w)
				}
				flags[name] = val
			}
			want := map[string]string{
				"--config":            pathKubeletConfig,
				"--kubeconfig":        pathKubeletKC,
				"--hostname-override": in.Machine.Hostname,
				"--node-ip":           in.Machine.IP,
			}
			for k, v := range want {
				if flags[k] != v {
					t.Errorf("%s=%q, want %q", k, flags[k], v)
				}
			}
			if strings.Contains(flags["--node-labels"], "node-role.kubernetes.io") {
				t.Errorf("--node-labels sets a node-role label: %s", flags["--node-labels"])
			}
			if role == RoleWorker && flags["--node-labels"] != "example.com/gpu=true,node.kubernetes.io/pool=general,rack=r12" {
				t.Errorf("--node-labels=%q", flags["--node-labels"])
			}
			if _, ok := flags["--node-labels"]; role == RoleMaster && ok {
				t.Errorf("master without labels has --node-labels")
			}
		})
	}
}

// The control plane's units: each runs its binary with the flags a v1.37
// control plane needs, and every file a flag names is one the master gets.
func TestControlPlaneUnits(t *testing.T) {
	n := mustRender(t, testInput(RoleMaster))
	cases := []struct {
		unit, binary string
		after        string
		want         map[string]string
		absent       []string
		absentPrefix []string
	}{
		{unitAPIServer, "kube-apiserver", "etcd.service", map[string]string{
			"--etcd-servers":                     "https://172.17.4.101:2379,https://172.17.4.102:2379,https://172.17.4.103:2379",
			"--etcd-cafile":                      pathEtcdCA,
			"--etcd-certfile":                    certPath(CertEtcdClient),
			"--etcd-keyfile":                     keyPath(CertEtcdClient),
			"--service-cluster-ip-range":         "10.3.0.0/24",
			"--service-account-key-file":         pathSAPublic,
			"--service-account-signing-key-file": pathSAPrivate,
			"--service-account-issuer":           "https://kubernetes.default.svc.cluster.local",
			"--enable-admission-plugins":         "NodeRestriction",
			"--authorization-mode":               "Node,RBAC",
			"--client-ca-file":                   pathCA,
			"--tls-cert-file":                    certPath(CertAPIServer),
			"--tls-private-key-file":             keyPath(CertAPIServer),
			"--kubelet-client-certificate":       certPath(CertAPIServerKubeletClient),
			"--kubelet-client-key":               keyPath(CertAPIServerKubeletClient),
			"--kubelet-certificate-authority":    pathCA,
			"--secure-port":                      "6443",
			"--advertise-address":                "172.17.4.101",
			// The aggregation layer: aggregated API servers trust the
			// user headers of front-proxy-client from the front-proxy CA.
			"--requestheader-client-ca-file":       "/etc/kubernetes/ssl/front-proxy-ca.pem",
			"--requestheader-allowed-names":        pki.FrontProxyClientCN,
			"--requestheader-username-headers":     "X-Remote-User",
			"--requestheader-group-headers":        "X-Remote-Group",
			"--requestheader-extra-headers-prefix": "X-Remote-Extra-",
			"--proxy-client-cert-file":             "/etc/kubernetes/ssl/front-proxy-client.pem",
			"--proxy-client-key-file":              "/etc/kubernetes/ssl/front-proxy-client-key.pem",
		}, []string{"--insecure-port", "--insecure-bind-address", "--admission-control", "--kubelet-https", "--etcd-servers-overrides"}, nil},
		{unitCM, "kube-controller-manager", "kube-apiserver.service", map[string]string{
			"--kubeconfig":                       pathControllerKC,
			"--authentication-kubeconfig":        pathControllerKC,
			"--authorization-kubeconfig":         pathControllerKC,
			"--client-ca-file":                   pathCA,
			"--requestheader-client-ca-file":     "/etc/kubernetes/ssl/front-proxy-ca.pem",
			"--cluster-name":                     "lab",
			"--cluster-cidr":                     "10.2.0.0/16",
			"--allocate-node-cidrs":              "true",
			"--node-cidr-mask-size":              "24",
			"--service-cluster-ip-range":         "10.3.0.0/24",
			"--service-account-private-key-file": pathSAPrivate,
			"--root-ca-file":                     pathCA,
			"--use-service-account-credentials":  "true",
			"--bind-address":                     "127.0.0.1",
		}, []string{"--master", "--port"},
			// The CA key never leaves bootsrv: no CSR signer.
			[]string{"--cluster-signing"}},
		{unitScheduler, "kube-scheduler", "kube-apiserver.service", map[string]string{
			"--kubeconfig":                pathSchedulerKC,
			"--authentication-kubeconfig": pathSchedulerKC,
			"--authorization-kubeconfig":  pathSchedulerKC,
			"--bind-address":              "127.0.0.1",
		}, []string{"--master", "--port"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.unit, func(t *testing.T) {
			u := unit(t, n, tc.unit)
			words := execStart(t, u.Contents)
			if words[0] != path.Join(DefaultBinDir, tc.binary) {
				t.Errorf("ExecStart runs %s, want %s", words[0], path.Join(DefaultBinDir, tc.binary))
			}
			if !strings.Contains(u.Contents, "\nAfter=network-online.target "+tc.after+"\n") {
				t.Errorf("%s does not start after %s:\n%s", tc.unit, tc.after, u.Contents)
			}
			if !strings.Contains(u.Contents, "\nRestart=always\n") {
				t.Errorf("%s is not restarted:\n%s", tc.unit, u.Contents)
			}
			flags := flagMap(t, tc.unit, words[1:])
			for k, v := range tc.want {
				if flags[k] != v {
					t.Errorf("%s=%q, want %q", k, flags[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := flags[k]; ok {
					t.Errorf("%s is set; it is gone or must not be used", k)
				}
			}
			for k := range flags {
				for _, p := range tc.absentPrefix {
					if strings.HasPrefix(k, p) {
						t.Errorf("%s is set; no %s* flag may be", k, p)
					}
				}
			}
			// Every file a flag names is on the master.
			for k, v := range flags {
				if strings.HasPrefix(v, "/") && !hasFile(n, v) {
					t.Errorf("%s=%s: the master has no such file", k, v)
				}
			}
		})
	}
}

func TestKubeProxy(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			n := mustRender(t, in)
			var kp kubeproxyv1alpha1.KubeProxyConfiguration
			if err := yaml.UnmarshalStrict(file(t, n, pathKubeProxyConfig).Contents, &kp); err != nil {
				t.Fatalf("KubeProxyConfiguration does not decode strictly: %v", err)
			}
			if kp.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" || kp.Kind != "KubeProxyConfiguration" {
				t.Errorf("type %s %s", kp.APIVersion, kp.Kind)
			}
			if kp.ClusterCIDR != "10.2.0.0/16" || kp.ClientConnection.Kubeconfig != pathKubeProxyKC ||
				kp.HostnameOverride != in.Machine.Hostname || kp.Mode != "iptables" {
				t.Errorf("KubeProxyConfiguration = %+v", kp)
			}
			words := execStart(t, unit(t, n, unitKubeProxy).Contents)
			if words[0] != path.Join(DefaultBinDir, "kube-proxy") {
				t.Errorf("kube-proxy.service runs %s", words[0])
			}
			if flags := flagMap(t, unitKubeProxy, words[1:]); !reflect.DeepEqual(flags, map[string]string{"--config": pathKubeProxyConfig}) {
				t.Errorf("kube-proxy flags %v, want only --config=%s", flags, pathKubeProxyConfig)
			}
		})
	}
}

func envFile(t *testing.T, b []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("env line %q is not K=V", l)
		}
		if _, dup := env[k]; dup {
			t.Errorf("env %s set twice", k)
		}
		env[k] = v
	}
	return env
}

func TestFlannelOptions(t *testing.T) {
	cases := []struct {
		name, role, iface, want string
	}{
		{"worker iface name", RoleWorker, "ens3", "ens3"},
		{"master iface name", RoleMaster, "bond0.100", "bond0.100"},
		{"iface given as IP", RoleWorker, "172.17.4.201", "172.17.4.201"},
		{"empty iface is the machine IP", RoleWorker, "", "172.17.4.201"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(tc.role)
			in.Machine.Iface = tc.iface
			n := mustRender(t, in)
			f := file(t, n, pathFlannelEnv)
			env := envFile(t, f.Contents)
			// kube-subnet-mgr: the subnet comes from the Node's podCIDR,
			// read with the kubelet's identity; flannel needs no etcd.
			want := map[string]string{
				"FLANNELD_IFACE":           tc.want,
				"FLANNELD_KUBE_SUBNET_MGR": "true",
				"FLANNELD_KUBECONFIG_FILE": pathKubeletKC,
				"FLANNELD_NET_CONFIG_PATH": "/etc/kube-flannel/net-conf.json",
				"FLANNELD_IP_MASQ":         "true",
				"FLANNELD_SUBNET_FILE":     "/run/flannel/subnet.env",
				"NODE_NAME":                in.Machine.Hostname,
			}
			if !reflect.DeepEqual(env, want) {
				t.Errorf("options.env = %v, want %v", env, want)
			}
			for k := range env {
				if strings.HasPrefix(k, "FLANNELD_ETCD") {
					t.Errorf("options.env sets %s", k)
				}
			}
			if bytes.Contains(bytes.ToLower(f.Contents), []byte("etcd")) {
				t.Errorf("options.env mentions etcd:\n%s", f.Contents)
			}
			u := unit(t, n, unitFlanneld)
			if !strings.Contains(u.Contents, "\nEnvironmentFile="+pathFlannelEnv+"\n") {
				t.Errorf("flanneld.service does not read %s:\n%s", pathFlannelEnv, u.Contents)
			}
			if words := execStart(t, u.Contents); words[0] != path.Join(DefaultBinDir, "flanneld") || len(words) != 1 {
				t.Errorf("flanneld.service runs %v", words)
			}
		})
	}
}

func TestFlannelNetworkAndCNI(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			in.Cluster.PodNetwork = "10.244.0.0/16"
			n := mustRender(t, in)
			var net struct {
				Network string
				Backend struct{ Type string }
			}
			dec := json.NewDecoder(bytes.NewReader(file(t, n, pathFlannelNet).Contents))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&net); err != nil {
				t.Fatalf("net-conf.json: %v", err)
			}
			if net.Network != "10.244.0.0/16" || net.Backend.Type != "vxlan" {
				t.Errorf("net-conf.json = %+v, want Network 10.244.0.0/16 over vxlan", net)
			}

			var conf struct {
				Name       string           `json:"name"`
				CNIVersion string           `json:"cniVersion"`
				Plugins    []map[string]any `json:"plugins"`
			}
			if err := json.Unmarshal(file(t, n, pathCNIConf).Contents, &conf); err != nil {
				t.Fatalf("%s is not JSON: %v", pathCNIConf, err)
			}
			var types []string
			for _, p := range conf.Plugins {
				typ, _ := p["type"].(string)
				types = append(types, typ)
				// The plugin is a binary the node fetches into /opt/cni/bin.
				if !hasFile(n, path.Join("/opt/cni/bin", typ)) {
					t.Errorf("CNI plugin %q is not in /opt/cni/bin", typ)
				}
			}
			if conf.Name == "" || conf.CNIVersion == "" || !reflect.DeepEqual(types, []string{"flannel", "portmap"}) {
				t.Errorf("conflist %+v, want flannel then portmap", conf)
			}
			if caps, _ := conf.Plugins[len(conf.Plugins)-1]["capabilities"].(map[string]any); caps["portMappings"] != true {
				t.Errorf("portmap without the portMappings capability: %v", conf.Plugins)
			}
			// flannel delegates to the bridge plugin, with host-local IPAM
			// and loopback for the pod's lo.
			for _, b := range []string{"bridge", "host-local", "loopback"} {
				if !hasFile(n, path.Join("/opt/cni/bin", b)) {
					t.Errorf("no CNI plugin %s", b)
				}
			}
		})
	}
}

func TestContainerd(t *testing.T) {
	in := testInput(RoleWorker)
	n := mustRender(t, in)
	cfg := string(file(t, n, pathContainerd).Contents)
	for _, want := range []string{
		"version = 2\n",
		"\n  SystemdCgroup = true\n",
		"\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n",
		"\n  config_path = \"/etc/containerd/certs.d\"\n",
		"\n  bin_dir = \"/opt/cni/bin\"\n",
		"\n  conf_dir = \"/etc/cni/net.d\"\n",
		"\n  runtime_type = \"io.containerd.runc.v2\"\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.toml lacks %q:\n%s", want, cfg)
		}
	}
	// No mirror: no hosts.toml, no CA, no drop-in on a default host.
	for _, p := range GeneratedPaths(n) {
		if strings.HasPrefix(p, pathCertsD+"/") {
			t.Errorf("no mirror, but %s", p)
		}
	}
	if slices.Contains(GeneratedUnits(n), unitContainerd) {
		t.Error("containerd.service drop-in on a host that does not need it")
	}

	in.Cluster.SandboxImage = "registry.lab.local/pause@sha256:abcd"
	cfg = string(file(t, mustRender(t, in), pathContainerd).Contents)
	if !strings.Contains(cfg, "\n  sandbox_image = \"registry.lab.local/pause@sha256:abcd\"\n") {
		t.Errorf("sandbox image not used:\n%s", cfg)
	}
}

// Flatcar's containerd.service does not read /etc/containerd/config.toml:
// a drop-in points it there, and leaves the OS's unit otherwise alone.
func TestContainerdDropin(t *testing.T) {
	in := testInput(RoleWorker)
	in.Host = hostFlatcar
	u := unit(t, mustRender(t, in), unitContainerd)
	if u.Enabled || u.Contents != "" || len(u.Dropins) != 1 {
		t.Fatalf("containerd.service = %+v, want only a drop-in", u)
	}
	d := u.Dropins[0].Contents
	if !strings.HasSuffix(u.Dropins[0].Name, ".conf") || !strings.HasPrefix(d, "[Service]\n") ||
		!strings.Contains(d, "\nExecStart=\nExecStart=/usr/bin/containerd --config "+pathContainerd+"\n") {
		t.Errorf("drop-in %s:\n%s", u.Dropins[0].Name, d)
	}
}

func TestRegistryMirror(t *testing.T) {
	upstreams := []string{"docker.io", "gcr.io", "ghcr.io", "quay.io", "registry.k8s.io"}
	for _, withCA := range []bool{false, true} {
		t.Run(fmt.Sprintf("ca=%v", withCA), func(t *testing.T) {
			in := testInput(RoleWorker)
			in.Cluster.RegistryMirror = "https://registry.lab.local:5000/"
			if withCA {
				in.Cluster.RegistryCA = fakePEM("CERTIFICATE", "mirror-ca")
			}
			n := mustRender(t, in)
			base, _ := PathsForRole(RoleWorker, "")
			var extra []string
			for _, p := range GeneratedPaths(n) {
				if !slices.Contains(base, p) {
					extra = append(extra, p)
				}
			}
			var want []string
			for _, up := range upstreams {
				want = append(want, "/etc/containerd/certs.d/"+up+"/hosts.toml")
			}
			if withCA {
				want = append(want, pathRegistryCA)
			}
			sort.Strings(want)
			if !reflect.DeepEqual(extra, want) {
				t.Errorf("files beyond PathsForRole: %v, want %v", extra, want)
			}
			if withCA && !bytes.Equal(file(t, n, pathRegistryCA).Contents, in.Cluster.RegistryCA) {
				t.Error("mirror CA file is not the cluster's registry CA")
			}
			for _, up := range upstreams {
				h := string(file(t, n, "/etc/containerd/certs.d/"+up+"/hosts.toml").Contents)
				server := "https://" + up
				if up == "docker.io" {
					server = "https://registry-1.docker.io"
				}
				for _, w := range []string{
					"server = \"" + server + "\"\n",
					"[host.\"https://registry.lab.local:5000/v2/" + up + "\"]\n",
					"capabilities = [\"pull\", \"resolve\"]\n",
					"override_path = true\n",
				} {
					if !strings.Contains(h, w) {
						t.Errorf("%s hosts.toml lacks %q:\n%s", up, w, h)
					}
				}
				if hasCA := strings.Contains(h, "ca = \""+pathRegistryCA+"\"\n"); hasCA != withCA {
					t.Errorf("%s hosts.toml: ca = set %v, want %v:\n%s", up, hasCA, withCA, h)
				}
				if strings.Contains(h, "5000/\"") || strings.Contains(h, "5000//") {
					t.Errorf("the mirror's trailing slash was kept:\n%s", h)
				}
			}
		})
	}
}

func TestHostPrep(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			n := mustRender(t, testInput(role))
			var mods []string
			for _, l := range strings.Split(string(file(t, n, pathModules).Contents), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					mods = append(mods, l)
				}
			}
			for _, m := range []string{"overlay", "br_netfilter"} {
				if !slices.Contains(mods, m) {
					t.Errorf("modules-load.d lacks %s: %v", m, mods)
				}
			}
			sysctl := map[string]string{}
			for _, l := range strings.Split(string(file(t, n, pathSysctl).Contents), "\n") {
				if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					t.Fatalf("sysctl line %q is not key = value", l)
				}
				sysctl[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			for _, k := range []string{"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"} {
				if sysctl[k] != "1" {
					t.Errorf("sysctl %s = %q, want 1 (have %v)", k, sysctl[k], sysctl)
				}
			}
		})
	}
}

func TestEtcdMember(t *testing.T) {
	cases := []struct {
		name    string
		masters []Member
		want    string
	}{
		{"one master", testMasters[:1], "node1=https://172.17.4.101:2380"},
		{"three masters, any order", []Member{testMasters[2], testMasters[0], testMasters[1]},
			"node1=https://172.17.4.101:2380,node2=https://172.17.4.102:2380,node3=https://172.17.4.103:2380"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(RoleMaster)
			in.Masters = tc.masters
			n := mustRender(t, in)
			env := envFile(t, file(t, n, pathEtcdEnv).Contents)
			if env["ETCD_INITIAL_CLUSTER"] != tc.want {
				t.Errorf("ETCD_INITIAL_CLUSTER=%q, want %q", env["ETCD_INITIAL_CLUSTER"], tc.want)
			}
			for _, m := range tc.masters {
				if !strings.Contains(env["ETCD_INITIAL_CLUSTER"], m.Hostname+"=https://"+m.IP+":2380") {
					t.Errorf("ETCD_INITIAL_CLUSTER misses %s", m.Hostname)
				}
			}
			want := map[string]string{
				"ETCD_NAME":                        "node1",
				"ETCD_INITIAL_CLUSTER_STATE":       "new",
				"ETCD_LISTEN_CLIENT_URLS":          "https://172.17.4.101:2379",
				"ETCD_ADVERTISE_CLIENT_URLS":       "https://172.17.4.101:2379",
				"ETCD_LISTEN_PEER_URLS":            "https://172.17.4.101:2380",
				"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://172.17.4.101:2380",
				"ETCD_CERT_FILE":                   certPath(CertEtcdServer),
				"ETCD_KEY_FILE":                    keyPath(CertEtcdServer),
				"ETCD_TRUSTED_CA_FILE":             pathEtcdCA,
				"ETCD_CLIENT_CERT_AUTH":            "true",
				"ETCD_PEER_CERT_FILE":              certPath(CertEtcdPeer),
				"ETCD_PEER_KEY_FILE":               keyPath(CertEtcdPeer),
				"ETCD_PEER_TRUSTED_CA_FILE":        pathEtcdCA,
				"ETCD_PEER_CLIENT_CERT_AUTH":       "true",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s=%q, want %q", k, env[k], v)
				}
			}
			u := unit(t, n, unitEtcd)
			words := execStart(t, u.Contents)
			if !strings.Contains(u.Contents, "\nEnvironmentFile="+pathEtcdEnv+"\n") || words[0] != path.Join(DefaultBinDir, "etcd") || len(words) != 1 {
				t.Errorf("etcd unit does not run %s with %s:\n%s", path.Join(DefaultBinDir, "etcd"), pathEtcdEnv, u.Contents)
			}
			// etcd tells systemd when it serves, so the apiserver's
			// After=etcd.service waits for it.
			if !strings.Contains(u.Contents, "\nType=notify\n") {
				t.Errorf("etcd.service is not Type=notify:\n%s", u.Contents)
			}
		})
	}
}

func TestCoreDNS(t *testing.T) {
	cases := []struct {
		name     string
		machine  Member
		upstream []string
		host     Host
		forward  string
	}{
		{"node1, host resolv.conf", testMasters[0], nil, Host{}, "/etc/resolv.conf"},
		{"node2 on flatcar", testMasters[1], nil, hostFlatcar, "/run/systemd/resolve/resolv.conf"},
		{"upstream servers", testMasters[2], []string{"9.9.9.9", "1.1.1.1"}, Host{}, "9.9.9.9 1.1.1.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(RoleMaster)
			in.Machine.Hostname, in.Machine.IP = tc.machine.Hostname, tc.machine.IP
			in.Cluster.UpstreamDNS = tc.upstream
			in.Host = tc.host
			n := mustRender(t, in)
			cf := string(file(t, n, pathCorefile).Contents)
			// The master's own address, not the API endpoint's, nor every
			// address (systemd-resolved holds 127.0.0.53:53).
			for _, w := range []string{
				"\n    bind " + tc.machine.IP + "\n",
				"\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n",
				"\n        kubeconfig " + pathCoreDNSKC + " default\n",
				"\n    forward . " + tc.forward + "\n",
				"\n    loop\n",
			} {
				if !strings.Contains(cf, w) {
					t.Errorf("Corefile lacks %q:\n%s", w, cf)
				}
			}
			if strings.Count(cf, "bind ") != 1 {
				t.Errorf("Corefile binds more than once:\n%s", cf)
			}
			// The kubeconfig it names has the context it names.
			var kc kubeconfigFile
			if err := yaml.UnmarshalStrict(file(t, n, pathCoreDNSKC).Contents, &kc); err != nil {
				t.Fatal(err)
			}
			if len(kc.Contexts) != 1 || kc.Contexts[0].Name != "default" || kc.Users[0].Name != pki.CoreDNSUserName {
				t.Errorf("coredns kubeconfig %+v", kc)
			}
			words := execStart(t, unit(t, n, unitCoreDNS).Contents)
			if !reflect.DeepEqual(words, []string{path.Join(DefaultBinDir, "coredns"), "-conf=" + pathCorefile}) {
				t.Errorf("coredns.service runs %v", words)
			}
		})
	}
}

// yamlDocs splits a multi-document YAML file.
func yamlDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range strings.Split(string(b), "\n---\n") {
		if strings.TrimSpace(d) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func strictDecode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s does not decode strictly as %T: %v\n%s", what, v, err, b)
	}
}

func ruleAllows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func TestAddons(t *testing.T) {
	in := testInput(RoleMaster)
	in.Masters = []Member{testMasters[1], testMasters[0]} // sorted on output
	in.Masters = append(in.Masters, testMasters[2])
	n := mustRender(t, in)

	// CoreDNS's RBAC: a ClusterRole and its binding to the user in the
	// coredns cert.
	rbac := yamlDocs(file(t, n, path.Join(addonDir, "10-coredns-rbac.yaml")).Contents)
	if len(rbac) != 2 {
		t.Fatalf("10-coredns-rbac.yaml has %d objects, want 2", len(rbac))
	}
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	strictDecode(t, "ClusterRole", rbac[0], &role)
	strictDecode(t, "ClusterRoleBinding", rbac[1], &binding)
	if role.APIVersion != "rbac.authorization.k8s.io/v1" || role.Kind != "ClusterRole" || role.Name != "system:coredns" {
		t.Errorf("ClusterRole %s %s %s", role.APIVersion, role.Kind, role.Name)
	}
	for _, want := range [][3]string{
		{"", "services", "list"}, {"", "services", "watch"}, {"", "namespaces", "list"}, {"", "namespaces", "watch"},
		{"discovery.k8s.io", "endpointslices", "list"}, {"discovery.k8s.io", "endpointslices", "watch"},
	} {
		if !ruleAllows(role.Rules, want[0], want[1], want[2]) {
			t.Errorf("ClusterRole system:coredns does not allow %s %s/%s", want[2], want[0], want[1])
		}
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "list" && v != "watch" {
				t.Errorf("CoreDNS may %s %v: it only reads", v, r.Resources)
			}
		}
	}
	if binding.Kind != "ClusterRoleBinding" || binding.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name}) ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "User" || binding.Subjects[0].Name != pki.CoreDNSUserName {
		t.Errorf("ClusterRoleBinding %+v", binding)
	}

	// flanneld reads every Node with its kubelet's identity, which the
	// Node authorizer confines to its own Node: the addons let the group
	// of all nodes read Nodes, and nothing more.
	fl := yamlDocs(file(t, n, path.Join(addonDir, "15-flannel-rbac.yaml")).Contents)
	if len(fl) != 2 {
		t.Fatalf("15-flannel-rbac.yaml has %d objects, want 2", len(fl))
	}
	var flRole rbacv1.ClusterRole
	var flBinding rbacv1.ClusterRoleBinding
	strictDecode(t, "ClusterRole", fl[0], &flRole)
	strictDecode(t, "ClusterRoleBinding", fl[1], &flBinding)
	if flRole.Kind != "ClusterRole" || flRole.Name != FlannelRole ||
		!reflect.DeepEqual(flRole.Rules, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}) {
		t.Errorf("flannel ClusterRole %s %s %+v, want get/list/watch nodes only", flRole.Kind, flRole.Name, flRole.Rules)
	}
	if flBinding.Kind != "ClusterRoleBinding" || flBinding.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: FlannelRole}) ||
		!reflect.DeepEqual(flBinding.Subjects, []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: pki.NodesGroup}}) {
		t.Errorf("flannel ClusterRoleBinding %+v, want the group %s", flBinding, pki.NodesGroup)
	}
	if env := envFile(t, file(t, n, pathFlannelEnv).Contents); env["FLANNELD_KUBECONFIG_FILE"] != pathKubeletKC {
		t.Errorf("flanneld does not use the kubelet's identity (%s); the binding above is for that", env["FLANNELD_KUBECONFIG_FILE"])
	}

	// The Service on the cluster's DNS IP, without a selector: its
	// endpoints are the masters.
	svcDocs := yamlDocs(file(t, n, path.Join(addonDir, "20-kube-dns-service.yaml")).Contents)
	if len(svcDocs) != 1 {
		t.Fatalf("20-kube-dns-service.yaml has %d objects", len(svcDocs))
	}
	var svc corev1.Service
	strictDecode(t, "Service", svcDocs[0], &svc)
	if svc.APIVersion != "v1" || svc.Kind != "Service" || svc.Namespace != "kube-system" || svc.Name != "kube-dns" ||
		svc.Spec.ClusterIP != "10.3.0.10" || svc.Spec.Selector != nil {
		t.Errorf("Service %s %s %s/%s clusterIP %s selector %v", svc.APIVersion, svc.Kind, svc.Namespace, svc.Name, svc.Spec.ClusterIP, svc.Spec.Selector)
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
	}
	if p := svcPorts["dns"]; p.Protocol != corev1.ProtocolUDP || p.Port != 53 || p.TargetPort.IntValue() != 53 {
		t.Errorf("Service port dns %+v", p)
	}
	if p := svcPorts["dns-tcp"]; p.Protocol != corev1.ProtocolTCP || p.Port != 53 || p.TargetPort.IntValue() != 53 {
		t.Errorf("Service port dns-tcp %+v", p)
	}

	// The EndpointSlice kube-proxy sends the DNS IP to: every master's IP.
	epDocs := yamlDocs(file(t, n, path.Join(addonDir, "30-kube-dns-endpoints.yaml")).Contents)
	if len(epDocs) != 1 {
		t.Fatalf("30-kube-dns-endpoints.yaml has %d objects", len(epDocs))
	}
	var slice discoveryv1.EndpointSlice
	strictDecode(t, "EndpointSlice", epDocs[0], &slice)
	if slice.APIVersion != "discovery.k8s.io/v1" || slice.Kind != "EndpointSlice" || slice.Namespace != "kube-system" ||
		slice.Labels[discoveryv1.LabelServiceName] != "kube-dns" || slice.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("EndpointSlice %s %s %s labels %v type %s", slice.APIVersion, slice.Kind, slice.Namespace, slice.Labels, slice.AddressType)
	}
	if m := slice.Labels[discoveryv1.LabelManagedBy]; m == "" || m == "endpointslice-controller.k8s.io" {
		t.Errorf("EndpointSlice managed-by %q: the controller would take it over", m)
	}
	var ips, nodes []string
	for _, e := range slice.Endpoints {
		ips = append(ips, e.Addresses...)
		if e.NodeName != nil {
			nodes = append(nodes, *e.NodeName)
		}
		if e.Conditions.Ready == nil || !*e.Conditions.Ready {
			t.Errorf("endpoint %v is not ready", e.Addresses)
		}
	}
	if !reflect.DeepEqual(ips, []string{"172.17.4.101", "172.17.4.102", "172.17.4.103"}) ||
		!reflect.DeepEqual(nodes, []string{"node1", "node2", "node3"}) {
		t.Errorf("EndpointSlice endpoints %v on %v, want the three masters", ips, nodes)
	}
	// kube-proxy matches slice ports to Service ports by name.
	if len(slice.Ports) != len(svc.Spec.Ports) {
		t.Errorf("slice ports %d, Service ports %d", len(slice.Ports), len(svc.Spec.Ports))
	}
	for _, p := range slice.Ports {
		sp, ok := svcPorts[*p.Name]
		if !ok || p.Protocol == nil || *p.Protocol != sp.Protocol || p.Port == nil || *p.Port != sp.TargetPort.IntVal {
			t.Errorf("slice port %s does not match the Service's", *p.Name)
		}
	}

	// The applier: kubectl with the addons kubeconfig, once per boot.
	u := unit(t, n, unitAddons)
	words := execStart(t, u.Contents)
	if words[0] != path.Join(DefaultBinDir, "kubectl") || !slices.Contains(words, "--kubeconfig="+pathAddonsKC) ||
		!slices.Contains(words, "apply") || words[len(words)-2] != "-f" || words[len(words)-1] != addonDir {
		t.Errorf("kube-addons.service runs %v", words)
	}
	if !strings.Contains(u.Contents, "\nType=oneshot\n") || !strings.Contains(u.Contents, "\nRestart=on-failure\n") {
		t.Errorf("kube-addons.service is not a retried oneshot:\n%s", u.Contents)
	}
}

// kubeconfigFile is clientcmd's v1 Config, as far as bootsrv writes it.
type kubeconfigFile struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Clusters   []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server               string `json:"server"`
			CertificateAuthority string `json:"certificate-authority"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate string `json:"client-certificate"`
			ClientKey         string `json:"client-key"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	CurrentContext string `json:"current-context"`
}

func TestKubeconfigs(t *testing.T) {
	// The API endpoint is a load balancer here, so that the kubeconfigs of
	// the master's own components show they use the apiserver beside them.
	const lb, local = "https://172.17.4.100:6443", "https://172.17.4.101:6443"
	cases := []struct {
		role, cluster, path, server, user, cert string
	}{
		{RoleWorker, "lab", pathKubeletKC, lb, "system:node:node4", CertKubelet},
		{RoleWorker, "lab", pathKubeProxyKC, lb, "system:kube-proxy", CertKubeProxy},
		{RoleMaster, "lab", pathKubeletKC, lb, "system:node:node1", CertKubelet},
		{RoleMaster, "lab", pathKubeProxyKC, lb, "system:kube-proxy", CertKubeProxy},
		{RoleMaster, "lab", pathControllerKC, local, "system:kube-controller-manager", CertControllerManager},
		{RoleMaster, "lab", pathSchedulerKC, local, "system:kube-scheduler", CertScheduler},
		{RoleMaster, "lab", pathCoreDNSKC, local, "system:coredns", CertCoreDNS},
		{RoleMaster, "lab", pathAddonsKC, local, "system:bootsrv-addons", CertAddons},
		// A cluster name that reads as a number in YAML must stay a string.
		{RoleWorker, "0123", pathKubeletKC, lb, "system:node:node4", CertKubelet},
	}
	for _, tc := range cases {
		t.Run(tc.role+tc.path+tc.cluster, func(t *testing.T) {
			in := testInput(tc.role)
			in.Cluster.Name = tc.cluster
			in.Cluster.APIServer = "172.17.4.100"
			var kc kubeconfigFile
			if err := yaml.UnmarshalStrict(file(t, mustRender(t, in), tc.path).Contents, &kc); err != nil {
				t.Fatalf("kubeconfig does not decode: %v", err)
			}
			if kc.APIVersion != "v1" || kc.Kind != "Config" || len(kc.Clusters) != 1 || len(kc.Users) != 1 || len(kc.Contexts) != 1 {
				t.Fatalf("kubeconfig shape: %+v", kc)
			}
			cx := kc.Contexts[0]
			if kc.CurrentContext != cx.Name || cx.Context.Cluster != kc.Clusters[0].Name || cx.Context.User != kc.Users[0].Name {
				t.Errorf("current context does not tie cluster and user: %+v", kc)
			}
			if kc.Clusters[0].Name != tc.cluster || kc.Clusters[0].Cluster.Server != tc.server || kc.Clusters[0].Cluster.CertificateAuthority != pathCA {
				t.Errorf("cluster %+v", kc.Clusters[0])
			}
			u := kc.Users[0]
			if u.Name != tc.user || u.User.ClientCertificate != certPath(tc.cert) || u.User.ClientKey != keyPath(tc.cert) {
				t.Errorf("user %+v", u)
			}
		})
	}
}

func TestPathsForRoleUnknown(t *testing.T) {
	paths := func(role string) ([]string, error) { return PathsForRole(role, "") }
	bins := func(role string) ([]string, error) {
		_, err := BinariesForRole(role)
		return nil, err
	}
	for _, f := range []func(string) ([]string, error){paths, UnitsForRole, CertsForRole, bins} {
		if _, err := f("custom"); err == nil || !strings.Contains(err.Error(), `unknown role "custom"`) {
			t.Errorf("role custom: err = %v", err)
		}
	}
}

// PathsForRole follows the bin dir: programs move, CNI plugins stay.
func TestPathsForRoleBinDir(t *testing.T) {
	def, _ := PathsForRole(RoleWorker, "")
	flatcar, _ := PathsForRole(RoleWorker, "/opt/bin")
	fcos, _ := PathsForRole(RoleWorker, "/usr/local/bin")
	if !reflect.DeepEqual(def, flatcar) {
		t.Errorf("default bin dir is not /opt/bin:\n%v\n%v", def, flatcar)
	}
	for _, p := range []string{"/usr/local/bin/kubelet", "/usr/local/bin/kube-proxy", "/usr/local/bin/flanneld", "/opt/cni/bin/flannel"} {
		if !slices.Contains(fcos, p) {
			t.Errorf("fcos paths lack %s", p)
		}
	}
	for _, p := range fcos {
		if strings.HasPrefix(p, "/opt/bin/") {
			t.Errorf("fcos paths have %s", p)
		}
	}
}

func TestRenderIsStable(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		in := testInput(role)
		a, b := mustRender(t, in), mustRender(t, in)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two renders of the same input differ", role)
		}
	}
}

// What Render makes is a valid Ignition config once converted, as
// pkg/assemble does: the binaries as fetched files with their hashes.
func TestNodeIsValidIgnition(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			in.Host = hostFlatcar
			in.Cluster.RegistryMirror = "https://registry.lab.local:5000"
			in.Cluster.RegistryCA = fakePEM("CERTIFICATE", "mirror-ca")
			n := mustRender(t, in)
			var cfg render.Config
			for _, f := range n.Files {
				cfg.Files = append(cfg.Files, render.File{Path: f.Path, Mode: f.Mode, Contents: f.Contents, Source: f.Source, Hash: f.Hash})
			}
			for _, u := range n.Units {
				ru := render.Unit{Name: u.Name, Enabled: u.Enabled, Contents: u.Contents}
				for _, d := range u.Dropins {
					ru.Dropins = append(ru.Dropins, render.Dropin{Name: d.Name, Contents: d.Contents})
				}
				cfg.Units = append(cfg.Units, ru)
			}
			out, err := render.Ignition(cfg)
			if err != nil {
				t.Fatalf("Ignition: %v", err)
			}
			bin := in.Binaries["kubelet"]
			if !bytes.Contains(out, []byte(`"source":"`+bin.URL+`"`)) || !bytes.Contains(out, []byte(`"hash":"`+bin.Hash+`"`)) {
				t.Errorf("the kubelet is not fetched by hash in:\n%.2000s", out)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name   string
		role   string
		mutate func(*Input)
		want   string
	}{
		{"missing hostname", RoleWorker, func(in *Input) { in.Machine.Hostname = "" }, "machine hostname is empty"},
		{"upper-case hostname", RoleWorker, func(in *Input) { in.Machine.Hostname = "Node4" }, "not a lower-case DNS name"},
		{"missing IP", RoleWorker, func(in *Input) { in.Machine.IP = "" }, "machine IP is empty"},
		{"bad IP", RoleWorker, func(in *Input) { in.Machine.IP = "172.17.4.300" }, `machine IP "172.17.4.300" is not an IP`},
		{"unknown role", "custom", nil, `unknown role "custom"`},
		{"empty role", "", nil, `unknown role ""`},
		{"no masters for a master", RoleMaster, func(in *Input) { in.Masters = nil }, "masters list is empty"},
		{"no masters for a worker", RoleWorker, func(in *Input) { in.Masters = nil }, "masters list is empty"},
		{"master not in masters", RoleMaster, func(in *Input) { in.Masters = testMasters[1:] }, "does not name this master"},
		{"master listed at another IP", RoleMaster, func(in *Input) { in.Masters = []Member{{Hostname: "node1", IP: "172.17.4.109"}} }, "machine's IP is 172.17.4.101"},
		{"duplicate master", RoleWorker, func(in *Input) { in.Masters = append([]Member{}, testMasters[0], testMasters[0]) }, "twice"},
		{"unparseable version", RoleWorker, func(in *Input) { in.Cluster.KubernetesVersion = "latest" }, `kubernetes version "latest" is not a release`},
		{"empty version", RoleWorker, func(in *Input) { in.Cluster.KubernetesVersion = "" }, `kubernetes version "" is not a release`},
		{"version with build metadata", RoleWorker, func(in *Input) { in.Cluster.KubernetesVersion = "v1.37.2+abc" }, "is not a release"},
		{"too old version", RoleWorker, func(in *Input) { in.Cluster.KubernetesVersion = "v1.5.2" }, "not supported"},
		{"label node-role", RoleWorker, func(in *Input) { in.Machine.Labels = map[string]string{"node-role.kubernetes.io/worker": ""} }, "kubelet refuses"},
		{"label kubernetes.io", RoleWorker, func(in *Input) { in.Machine.Labels = map[string]string{"kubernetes.io/role": "x"} }, "kubelet refuses"},
		{"label with comma", RoleWorker, func(in *Input) { in.Machine.Labels = map[string]string{"a": "b,c=d"} }, "not a valid label value"},
		{"bad iface", RoleWorker, func(in *Input) { in.Machine.Iface = "eth0\nFOO=1" }, "machine iface"},
		{"DNS outside services", RoleWorker, func(in *Input) { in.Cluster.DNSServiceIP = "10.4.0.10" }, "outside the service range"},
		{"pod network too small", RoleWorker, func(in *Input) { in.Cluster.PodNetwork = "10.2.0.0/25" }, "gets a /24"},
		{"bad API server", RoleWorker, func(in *Input) { in.Cluster.APIServer = "k8s.lab" }, "cluster API server"},
		{"missing cert", RoleWorker, func(in *Input) { delete(in.Certs, CertKubeProxy) }, `needs certificate "kube-proxy"`},
		{"missing master cert", RoleMaster, func(in *Input) { delete(in.Certs, CertEtcdPeer) }, `needs certificate "etcd-peer"`},
		{"missing front-proxy-client cert", RoleMaster, func(in *Input) { delete(in.Certs, CertFrontProxyClient) }, `needs certificate "front-proxy-client"`},
		{"cert and key swapped", RoleWorker, func(in *Input) {
			ck := in.Certs[CertKubelet]
			in.Certs[CertKubelet] = CertKey{Cert: ck.Key, Key: ck.Cert}
		}, `certificate kubelet is a PEM "EC PRIVATE KEY"`},
		{"missing CA", RoleWorker, func(in *Input) { in.CA = nil }, "CA certificate is missing"},
		{"missing etcd CA on a master", RoleMaster, func(in *Input) { in.EtcdCA = nil }, "etcd CA certificate is missing"},
		{"missing front-proxy CA on a master", RoleMaster, func(in *Input) { in.FrontProxyCA = nil }, "front-proxy CA certificate is missing"},
		{"front-proxy CA not a cert", RoleMaster, func(in *Input) { in.FrontProxyCA = fakePEM("PRIVATE KEY", "x") }, "front-proxy CA certificate is a PEM"},
		{"missing SA key on master", RoleMaster, func(in *Input) { in.ServiceAccount.Private = nil }, "service-account private key is missing"},
		{"relative bin dir", RoleWorker, func(in *Input) { in.Host.BinDir = "opt/bin" }, "absolute"},
		{"relative resolv.conf", RoleWorker, func(in *Input) { in.Host.ResolvConf = "resolv.conf" }, "absolute"},
		{"missing worker binary", RoleWorker, func(in *Input) { delete(in.Binaries, "kube-proxy") }, "needs the binary kube-proxy"},
		{"missing CNI plugin", RoleWorker, func(in *Input) { delete(in.Binaries, "portmap") }, "needs the binary portmap (release cni-plugins)"},
		{"missing master binary", RoleMaster, func(in *Input) { delete(in.Binaries, "etcd") }, "needs the binary etcd (release etcd)"},
		{"binary hash not sha512", RoleWorker, func(in *Input) {
			in.Binaries["kubelet"] = Binary{URL: in.Binaries["kubelet"].URL, Hash: "sha256-" + strings.Repeat("ab", 32)}
		}, "binary kubelet: hash"},
		{"binary hash short", RoleWorker, func(in *Input) {
			in.Binaries["flanneld"] = Binary{URL: in.Binaries["flanneld"].URL, Hash: "sha512-abcd"}
		}, "binary flanneld: hash"},
		{"binary without hash", RoleWorker, func(in *Input) {
			in.Binaries["kubelet"] = Binary{URL: in.Binaries["kubelet"].URL}
		}, "binary kubelet: hash"},
		{"binary URL not http", RoleWorker, func(in *Input) {
			in.Binaries["kubelet"] = Binary{URL: "file:///opt/bin/kubelet", Hash: in.Binaries["kubelet"].Hash}
		}, "binary kubelet: URL"},
		{"mirror without scheme", RoleWorker, func(in *Input) { in.Cluster.RegistryMirror = "registry.lab.local:5000" }, "registry mirror"},
		{"mirror with a path", RoleWorker, func(in *Input) { in.Cluster.RegistryMirror = "https://registry.lab.local/v2" }, "registry mirror"},
		{"mirror with a quote", RoleWorker, func(in *Input) { in.Cluster.RegistryMirror = `https://a"b` }, "registry mirror"},
		{"registry CA without mirror", RoleWorker, func(in *Input) { in.Cluster.RegistryCA = fakePEM("CERTIFICATE", "mirror-ca") }, "registry CA is set but no registry mirror"},
		{"registry CA not a cert", RoleWorker, func(in *Input) {
			in.Cluster.RegistryMirror = "https://registry.lab.local"
			in.Cluster.RegistryCA = fakePEM("PRIVATE KEY", "x")
		}, "cluster registry CA is a PEM"},
		{"bad sandbox image", RoleWorker, func(in *Input) { in.Cluster.SandboxImage = `pause" evil` }, "sandbox image"},
		{"bad upstream DNS", RoleMaster, func(in *Input) { in.Cluster.UpstreamDNS = []string{"dns.example"} }, "cluster upstream DNS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(tc.role)
			in.Machine.Role = tc.role
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			n, err := Render(in)
			if err == nil {
				t.Fatalf("Render succeeded with %d files; want an error with %q", len(n.Files), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "render node config for ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

func ExampleRender() {
	in := testInput(RoleWorker)
	n, err := Render(in)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(GeneratedUnits(n))
	// Output: [flanneld.service kube-proxy.service kubelet.service]
}

// BenchmarkRender is the per-request cost of a node's Kubernetes content
// once its certs exist (no key generation happens here).
func BenchmarkRender(b *testing.B) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		in := testInput(role)
		b.Run(role, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// toYAML must read back, through the YAML reader Kubernetes uses, as
// exactly the JSON it came from, whatever the strings look like.
func TestToYAMLRoundTrip(t *testing.T) {
	type item struct {
		S string         `json:"s"`
		N int            `json:"n"`
		B bool           `json:"b"`
		M map[string]int `json:"m"`
		L []string       `json:"l"`
	}
	type doc struct {
		Items  []item            `json:"items"`
		Nested [][]string        `json:"nested"`
		Labels map[string]string `json:"labels"`
		Empty  []string          `json:"empty"`
		Ptr    *item             `json:"ptr"`
	}
	tricky := []string{"", "true", "False", "yes", "No", "on", "OFF", "y", "n", "null", "~", "0123", "1:20", "1e3",
		"0x1f", ".5", "-", "--", "---", "- a", "a: b", "a:", "#x", "x #y", "'q'", `"d"`, "[a]", "{a}", "*ref", "&anc",
		"!tag", "%p", "@a", "`b", "|", ">", "?", "a\nb", "tab\there", "ünï", " lead", "trail ", "2001-12-14",
		"--flag=a,b", "https://10.0.0.1:6443", "/etc/kubernetes", "node-role.kubernetes.io/control-plane", "NoSchedule"}
	d := doc{Labels: map[string]string{}, Nested: [][]string{{"a", "true"}, {}}, Empty: []string{}}
	for i, s := range tricky {
		d.Items = append(d.Items, item{S: s, N: i - 3, B: i%2 == 0, M: map[string]int{s: i}, L: []string{s, s + "x"}})
		d.Labels[s] = s
	}
	y, err := toYAML(d)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(d)
	var fromJSON, fromYAML any
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(y, &fromYAML); err != nil {
		t.Fatalf("YAML does not parse: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("round trip differs:\nJSON %v\nYAML %v\n%s", fromJSON, fromYAML, y)
	}
	// Keys are sorted, as Kubernetes (sigs.k8s.io/yaml) writes its
	// objects; the key "n" is quoted, as YAML 1.1 reads a bare n as false.
	if !bytes.HasPrefix(y, []byte("empty: []\nitems:\n- b: true\n  l:\n  - \"\"\n  - x\n  m:\n    \"\": 0\n  \"n\": -3\n")) {
		t.Errorf("unexpected layout:\n%.200s", y)
	}
}
