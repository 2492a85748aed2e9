package nodeconfig

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
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

// testInput is the seed guides' cluster (pods 10.2.0.0/16, services
// 10.3.0.0/24, DNS 10.3.0.10) with three masters; role picks which machine
// is rendered: node1 (master) or node4 (worker).
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
		Certs:          map[string]CertKey{},
		ServiceAccount: KeyPair{Public: fakePEM("PUBLIC KEY", "sa-pub"), Private: fakePEM("PRIVATE KEY", "sa-key")},
	}
	if role == RoleMaster {
		in.Machine = Machine{Hostname: "node1", IP: "172.17.4.101", Iface: "eth0", Role: RoleMaster}
	} else {
		in.Machine = Machine{Hostname: "node4", IP: "172.17.4.201", Iface: "ens3", Role: role,
			Labels: map[string]string{"rack": "r12", "node.kubernetes.io/pool": "general", "example.com/gpu": "true"}}
	}
	for _, n := range append(append(append([]string{}, certsBoth...), certsMaster...), certsWorker...) {
		in.Certs[n] = CertKey{Cert: fakePEM("CERTIFICATE", "cert-"+n), Key: fakePEM("EC PRIVATE KEY", "key-"+n)}
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

func TestRenderPathsModesAndContents(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			n := mustRender(t, in)

			want, err := PathsForRole(role)
			if err != nil {
				t.Fatal(err)
			}
			if got := GeneratedPaths(n); !reflect.DeepEqual(got, want) {
				t.Errorf("paths:\n got %v\nwant %v", got, want)
			}
			wantUnits, _ := UnitsForRole(role)
			if got := GeneratedUnits(n); !reflect.DeepEqual(got, wantUnits) {
				t.Errorf("units: got %v, want %v", got, wantUnits)
			}
			for _, u := range n.Units {
				if !u.Enabled {
					t.Errorf("unit %s is not enabled", u.Name)
				}
			}

			// Every cert and key the role needs is there, byte for byte,
			// keys 0600 and certs 0644.
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
			for _, f := range n.Files {
				secret := strings.HasSuffix(f.Path, "-key.pem") || strings.HasSuffix(f.Path, ".key") ||
					strings.HasSuffix(f.Path, ".conf")
				if secret && f.Mode != 0o600 {
					t.Errorf("%s has mode %o, want 600", f.Path, f.Mode)
				}
				if f.Mode&0o022 != 0 {
					t.Errorf("%s is writable by group or others (%o)", f.Path, f.Mode)
				}
				if bytes.Contains(f.Contents, []byte(":8080")) {
					t.Errorf("%s mentions port 8080 (the removed insecure apiserver port)", f.Path)
				}
			}
			// What every profile gets is the caller's (pkg/profiles writes
			// it for every role); a second copy would be a duplicate path.
			for _, p := range []string{"/etc/hostname", "/etc/bootsrv/report.env"} {
				if slices.Contains(GeneratedPaths(n), p) {
					t.Errorf("Render writes %s, which the caller owns", p)
				}
			}
			marker, absent := pathWorkerMarker, pathMasterMarker
			if role == RoleMaster {
				marker, absent = pathMasterMarker, pathWorkerMarker
			}
			file(t, n, marker)
			if slices.Contains(GeneratedPaths(n), absent) {
				t.Errorf("a %s has the marker %s", role, absent)
			}
		})
	}
}

// Worker and master differ where Kubernetes says they must.
func TestRoleDifferences(t *testing.T) {
	m, w := mustRender(t, testInput(RoleMaster)), mustRender(t, testInput(RoleWorker))
	mp, wp := GeneratedPaths(m), GeneratedPaths(w)
	for _, p := range []string{pathAPIServerPod, pathCMPod, pathSchedPod, pathEtcdEnv, pathSAPrivate, certPath(CertAPIServer)} {
		if !slices.Contains(mp, p) || slices.Contains(wp, p) {
			t.Errorf("%s: want on the master only", p)
		}
	}
	for _, p := range []string{pathKubeProxyKC, pathKubeProxyConfig, pathKubeProxyPod, certPath(CertKubeProxy)} {
		if !slices.Contains(wp, p) || slices.Contains(mp, p) {
			t.Errorf("%s: want on the worker only", p)
		}
	}
	if slices.Contains(GeneratedUnits(w), unitEtcd) {
		t.Error("worker runs etcd")
	}
	// A worker needs no service-account key and no master certs.
	in := testInput(RoleWorker)
	in.ServiceAccount = KeyPair{}
	for _, c := range certsMaster {
		delete(in.Certs, c)
	}
	mustRender(t, in)
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
				{"staticPodPath", kc.StaticPodPath == "/etc/kubernetes/manifests"},
				{"tlsCertFile", kc.TLSCertFile == certPath(CertKubelet)},
				{"tlsPrivateKeyFile", kc.TLSPrivateKeyFile == keyPath(CertKubelet)},
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

func TestKubeletUnitFlags(t *testing.T) {
	for _, role := range []string{RoleMaster, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			in := testInput(role)
			u := unit(t, mustRender(t, in), unitKubelet)
			words := execStart(t, u.Contents)
			if words[0] != DefaultKubeletPath {
				t.Errorf("ExecStart runs %s", words[0])
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
			env := envFile(t, file(t, mustRender(t, in), pathFlannelEnv).Contents)
			if env["FLANNELD_IFACE"] != tc.want {
				t.Errorf("FLANNELD_IFACE=%q, want %q", env["FLANNELD_IFACE"], tc.want)
			}
			wantEP := "https://172.17.4.101:2379,https://172.17.4.102:2379,https://172.17.4.103:2379"
			if env["FLANNELD_ETCD_ENDPOINTS"] != wantEP {
				t.Errorf("FLANNELD_ETCD_ENDPOINTS=%q, want %q", env["FLANNELD_ETCD_ENDPOINTS"], wantEP)
			}
			if env["FLANNELD_ETCD_CAFILE"] != pathEtcdCA || env["FLANNELD_ETCD_CERTFILE"] != certPath(CertEtcdClientFlannel) ||
				env["FLANNELD_ETCD_KEYFILE"] != keyPath(CertEtcdClientFlannel) {
				t.Errorf("flannel etcd TLS files: %v", env)
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
			if !strings.Contains(u.Contents, "EnvironmentFile="+pathEtcdEnv) || execStart(t, u.Contents)[0] != DefaultEtcdPath {
				t.Errorf("etcd unit does not run %s with %s:\n%s", DefaultEtcdPath, pathEtcdEnv, u.Contents)
			}
		})
	}
}

func decodeStaticPod(t *testing.T, n Node, p string) (corev1.Pod, map[string]string) {
	t.Helper()
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(file(t, n, p).Contents, &pod); err != nil {
		t.Fatalf("%s does not decode strictly as a core/v1 Pod: %v", p, err)
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || pod.Namespace != "kube-system" || !pod.Spec.HostNetwork {
		t.Errorf("%s: %s %s in %q, hostNetwork %v", p, pod.APIVersion, pod.Kind, pod.Namespace, pod.Spec.HostNetwork)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", p, len(pod.Spec.Containers))
	}
	flags := map[string]string{}
	for _, w := range pod.Spec.Containers[0].Command[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !strings.HasPrefix(k, "--") {
			t.Errorf("%s: argument %q is not --flag=value", p, w)
		}
		if _, dup := flags[k]; dup {
			t.Errorf("%s: %s given twice", p, k)
		}
		flags[k] = v
	}
	// Every file a flag names must be mounted into the pod.
	for k, v := range flags {
		if !strings.HasPrefix(v, "/") {
			continue
		}
		mounted := false
		for _, m := range pod.Spec.Containers[0].VolumeMounts {
			if v == m.MountPath || strings.HasPrefix(v, m.MountPath+"/") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s: %s=%s is not mounted into the pod", p, k, v)
		}
	}
	return pod, flags
}

func TestStaticPods(t *testing.T) {
	n := mustRender(t, testInput(RoleMaster))
	cases := []struct {
		path, image string
		want        map[string]string
		absent      []string
	}{
		{pathAPIServerPod, "registry.k8s.io/kube-apiserver:v1.37.2", map[string]string{
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
			"--secure-port":                      "6443",
			"--advertise-address":                "172.17.4.101",
		}, []string{"--insecure-port", "--insecure-bind-address", "--admission-control", "--kubelet-https", "--etcd-servers-overrides"}},
		{pathCMPod, "registry.k8s.io/kube-controller-manager:v1.37.2", map[string]string{
			"--kubeconfig":                       pathControllerKC,
			"--cluster-cidr":                     "10.2.0.0/16",
			"--allocate-node-cidrs":              "true",
			"--node-cidr-mask-size":              "24",
			"--service-account-private-key-file": pathSAPrivate,
			"--root-ca-file":                     pathCA,
			"--use-service-account-credentials":  "true",
		}, []string{"--master", "--port", "--cluster-signing-key-file"}},
		{pathSchedPod, "registry.k8s.io/kube-scheduler:v1.37.2", map[string]string{
			"--kubeconfig": pathSchedulerKC,
		}, []string{"--master", "--port"}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			pod, flags := decodeStaticPod(t, n, tc.path)
			if got := pod.Spec.Containers[0].Image; got != tc.image {
				t.Errorf("image %s, want %s", got, tc.image)
			}
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
			if pod.Spec.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName %q", pod.Spec.PriorityClassName)
			}
		})
	}
}

func TestImageRepositoryAndVersion(t *testing.T) {
	in := testInput(RoleMaster)
	in.Cluster.ImageRepository = "registry.lab.local:5000/k8s/"
	in.Cluster.KubernetesVersion = "1.36.0-rc.1"
	pod, _ := decodeStaticPod(t, mustRender(t, in), pathAPIServerPod)
	if got, want := pod.Spec.Containers[0].Image, "registry.lab.local:5000/k8s/kube-apiserver:v1.36.0-rc.1"; got != want {
		t.Errorf("image %s, want %s", got, want)
	}
}

func TestKubeProxy(t *testing.T) {
	n := mustRender(t, testInput(RoleWorker))
	var kp kubeproxyv1alpha1.KubeProxyConfiguration
	if err := yaml.UnmarshalStrict(file(t, n, pathKubeProxyConfig).Contents, &kp); err != nil {
		t.Fatalf("KubeProxyConfiguration does not decode strictly: %v", err)
	}
	if kp.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" || kp.Kind != "KubeProxyConfiguration" {
		t.Errorf("type %s %s", kp.APIVersion, kp.Kind)
	}
	if kp.ClusterCIDR != "10.2.0.0/16" || kp.ClientConnection.Kubeconfig != pathKubeProxyKC || kp.HostnameOverride != "node4" {
		t.Errorf("KubeProxyConfiguration = %+v", kp)
	}
	pod, flags := decodeStaticPod(t, n, pathKubeProxyPod)
	if pod.Spec.Containers[0].Image != "registry.k8s.io/kube-proxy:v1.37.2" || flags["--config"] != pathKubeProxyConfig {
		t.Errorf("kube-proxy pod: image %s, flags %v", pod.Spec.Containers[0].Image, flags)
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
	cases := []struct {
		role, cluster, path, server, user, cert string
	}{
		{RoleWorker, "lab", pathKubeletKC, "https://172.17.4.101:6443", "system:node:node4", CertKubelet},
		{RoleWorker, "lab", pathKubeProxyKC, "https://172.17.4.101:6443", "system:kube-proxy", CertKubeProxy},
		{RoleMaster, "lab", pathKubeletKC, "https://172.17.4.101:6443", "system:node:node1", CertKubelet},
		{RoleMaster, "lab", pathControllerKC, "https://172.17.4.101:6443", "system:kube-controller-manager", CertControllerManager},
		{RoleMaster, "lab", pathSchedulerKC, "https://172.17.4.101:6443", "system:kube-scheduler", CertScheduler},
		// A cluster name that reads as a number in YAML must stay a string.
		{RoleWorker, "0123", pathKubeletKC, "https://172.17.4.101:6443", "system:node:node4", CertKubelet},
	}
	for _, tc := range cases {
		t.Run(tc.role+tc.path+tc.cluster, func(t *testing.T) {
			in := testInput(tc.role)
			in.Cluster.Name = tc.cluster
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
	for _, f := range []func(string) ([]string, error){PathsForRole, UnitsForRole, CertsForRole} {
		if _, err := f("custom"); err == nil || !strings.Contains(err.Error(), `unknown role "custom"`) {
			t.Errorf("role custom: err = %v", err)
		}
	}
}

func TestRenderIsStable(t *testing.T) {
	in := testInput(RoleWorker)
	a, b := mustRender(t, in), mustRender(t, in)
	if !reflect.DeepEqual(a, b) {
		t.Error("two renders of the same input differ")
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
		{"cert and key swapped", RoleWorker, func(in *Input) {
			ck := in.Certs[CertKubelet]
			in.Certs[CertKubelet] = CertKey{Cert: ck.Key, Key: ck.Cert}
		}, `certificate kubelet is a PEM "EC PRIVATE KEY"`},
		{"missing CA", RoleWorker, func(in *Input) { in.CA = nil }, "CA certificate is missing"},
		{"missing SA key on master", RoleMaster, func(in *Input) { in.ServiceAccount.Private = nil }, "service-account private key is missing"},
		{"relative kubelet path", RoleWorker, func(in *Input) { in.KubeletPath = "kubelet" }, "absolute"},
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
	// Output: [kubelet.service]
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
	// Keys keep the struct's order, as Kubernetes writes its objects; the
	// key "n" is quoted, as YAML 1.1 reads a bare n as false.
	if !bytes.HasPrefix(y, []byte("items:\n  - s: \"\"\n    \"n\": -3\n")) {
		t.Errorf("unexpected layout:\n%.200s", y)
	}
}
