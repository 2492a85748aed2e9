package nodeconfig

import (
	"fmt"
	"path"
	"strings"
)

// CoreDNS runs on every master as a systemd unit from the imported binary,
// bound to the master's own address, and the addons give it a Service on
// the cluster's DNS IP whose endpoints are the masters. So the cluster's DNS
// needs no image, no registry and no scheduling: it is up as soon as the
// masters are, in a site that has nothing else yet. kube-proxy (on every
// node) sends the DNS IP to a master.
func renderDNS(n *Node, c checked) error {
	forward := c.resolvConf
	if len(c.in.Cluster.UpstreamDNS) > 0 {
		forward = strings.Join(c.in.Cluster.UpstreamDNS, " ")
	}
	ip := c.ip.String()
	corefile := "# Written by bootsrv: the cluster's DNS, served by the masters.\n" +
		".:53 {\n" +
		"    bind " + ip + "\n" +
		"    errors\n" +
		"    health " + hostPort(ip, 8080) + "\n" +
		"    ready " + hostPort(ip, 8181) + "\n" +
		"    kubernetes " + c.domain + " in-addr.arpa ip6.arpa {\n" +
		"        kubeconfig " + pathCoreDNSKC + " default\n" +
		"        pods insecure\n" +
		"        fallthrough in-addr.arpa ip6.arpa\n" +
		"    }\n" +
		"    forward . " + forward + "\n" +
		"    cache 30\n" +
		"    loop\n" +
		"    reload\n" +
		"    loadbalance\n" +
		"}\n"
	addFile(n, pathCorefile, modePublic, []byte(corefile))
	n.Units = append(n.Units, unitSpec{name: unitCoreDNS, description: "CoreDNS for cluster " + c.clusterName + " (master " + c.hostname + ")",
		doc: "https://coredns.io/manual/toc/", after: []string{"kube-apiserver.service"}, binary: "coredns",
		flags: []string{"-conf=" + pathCorefile}}.render(c))

	addons, err := renderAddons(c)
	if err != nil {
		return err
	}
	for _, a := range addonNames {
		addFile(n, path.Join(addonDir, a), modePublic, addons[a])
	}
	n.Units = append(n.Units, unitSpec{name: unitAddons, description: "Apply bootsrv's cluster addons (CoreDNS's Service and RBAC)",
		after: []string{"kube-apiserver.service"}, binary: "kubectl", oneshot: true,
		flags: []string{"--kubeconfig=" + pathAddonsKC, "apply", "--server-side", "--force-conflicts", "--field-manager=bootsrv", "-f", addonDir}}.render(c))
	return nil
}

// addonNames are the files under /etc/kubernetes/addons, applied in this
// (kubectl's, lexical) order.
var addonNames = []string{"10-coredns-rbac.yaml", "15-flannel-rbac.yaml", "20-kube-dns-service.yaml", "30-kube-dns-endpoints.yaml"}

// FlannelRole lets every node read every Node: flanneld (kube-subnet-mgr)
// runs with its kubelet's identity and learns the other nodes' subnets and
// VXLAN addresses from a watch of all Nodes, which the Node authorizer
// does not allow a node (in v1.37 it may read only its own Node object:
// "cannot read all nodes"). Writes stay with the Node authorizer and
// NodeRestriction: a node patches only its own Node.
const FlannelRole = "bootsrv:flannel"

type objMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

type object struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   objMeta `json:"metadata"`
	// One of these, as the kind needs.
	Rules       []rbacRule     `json:"rules,omitempty"`
	RoleRef     *roleRef       `json:"roleRef,omitempty"`
	Subjects    []subject      `json:"subjects,omitempty"`
	Spec        *serviceSpec   `json:"spec,omitempty"`
	AddressType string         `json:"addressType,omitempty"`
	Endpoints   []sliceAddress `json:"endpoints,omitempty"`
	Ports       []slicePort    `json:"ports,omitempty"`
}

type rbacRule struct {
	APIGroups []string `json:"apiGroups"`
	Resources []string `json:"resources"`
	Verbs     []string `json:"verbs"`
}

type roleRef struct {
	APIGroup string `json:"apiGroup"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

type subject struct {
	APIGroup string `json:"apiGroup"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

type serviceSpec struct {
	ClusterIP string        `json:"clusterIP"`
	Ports     []servicePort `json:"ports"`
}

type servicePort struct {
	Name       string `json:"name"`
	Protocol   string `json:"protocol"`
	Port       int    `json:"port"`
	TargetPort int    `json:"targetPort"`
}

type sliceAddress struct {
	Addresses  []string `json:"addresses"`
	Conditions struct {
		Ready bool `json:"ready"`
	} `json:"conditions"`
	NodeName string `json:"nodeName"`
}

type slicePort struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
}

// KubeDNSService is the Service that holds the cluster's DNS IP.
const KubeDNSService = "kube-dns"

func renderAddons(c checked) (map[string][]byte, error) {
	const ns = "kube-system"
	role := object{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Metadata: objMeta{Name: "system:coredns"},
		Rules: []rbacRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		}}
	binding := object{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Metadata: objMeta{Name: "system:coredns"},
		RoleRef:  &roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
		Subjects: []subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "system:coredns"}}}
	flannelRole := object{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Metadata: objMeta{Name: FlannelRole},
		Rules: []rbacRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}}
	flannelBinding := object{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Metadata: objMeta{Name: FlannelRole},
		RoleRef:  &roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: FlannelRole},
		Subjects: []subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:nodes"}}}
	labels := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
	// No selector: the endpoints are the masters, named below.
	svc := object{APIVersion: "v1", Kind: "Service", Metadata: objMeta{Name: KubeDNSService, Namespace: ns, Labels: labels},
		Spec: &serviceSpec{ClusterIP: c.dns.String(), Ports: []servicePort{
			{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: 53},
			{Name: "dns-tcp", Protocol: "TCP", Port: 53, TargetPort: 53},
		}}}
	slice := object{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice",
		Metadata: objMeta{Name: KubeDNSService + "-masters", Namespace: ns, Labels: map[string]string{
			"kubernetes.io/service-name":             KubeDNSService,
			"endpointslice.kubernetes.io/managed-by": "bootsrv",
		}},
		AddressType: "IPv4",
		Ports:       []slicePort{{Name: "dns", Protocol: "UDP", Port: 53}, {Name: "dns-tcp", Protocol: "TCP", Port: 53}},
	}
	for _, m := range c.masters {
		var a sliceAddress
		a.Addresses, a.NodeName = []string{m.IP}, m.Hostname
		a.Conditions.Ready = true
		slice.Endpoints = append(slice.Endpoints, a)
	}
	out := map[string][]byte{}
	for name, objs := range map[string][]object{
		addonNames[0]: {role, binding},
		addonNames[1]: {flannelRole, flannelBinding},
		addonNames[2]: {svc},
		addonNames[3]: {slice},
	} {
		var b []byte
		for i, o := range objs {
			y, err := toYAML(o)
			if err != nil {
				return nil, fmt.Errorf("addon %s: %w", name, err)
			}
			if i > 0 {
				b = append(b, "---\n"...)
			}
			b = append(b, y...)
		}
		out[name] = b
	}
	return out, nil
}
