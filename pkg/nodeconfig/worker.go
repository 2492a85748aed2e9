package nodeconfig

import "fmt"

// kubeProxyConfig is the part of kubeproxy.config.k8s.io/v1alpha1
// KubeProxyConfiguration bootsrv sets; the rest keeps kube-proxy's defaults
// (iptables mode on Linux).
type kubeProxyConfig struct {
	APIVersion       string `json:"apiVersion"`
	Kind             string `json:"kind"`
	ClientConnection struct {
		Kubeconfig string `json:"kubeconfig"`
	} `json:"clientConnection"`
	HostnameOverride string `json:"hostnameOverride"`
	// ClusterCIDR tells kube-proxy which traffic is pod traffic (its
	// default detectLocalMode is ClusterCIDR).
	ClusterCIDR string `json:"clusterCIDR"`
}

func renderWorker(n *Node, c checked) error {
	addCert(n, c, CertKubeProxy)
	kc, err := renderKubeconfig(c, c.apiEndpoint, "system:kube-proxy", CertKubeProxy)
	if err != nil {
		return err
	}
	addFile(n, pathKubeProxyKC, modePrivate, kc)

	var kp kubeProxyConfig
	kp.APIVersion, kp.Kind = "kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"
	kp.ClientConnection.Kubeconfig = pathKubeProxyKC
	kp.HostnameOverride = c.hostname
	kp.ClusterCIDR = c.podNet.String()
	b, err := toYAML(kp)
	if err != nil {
		return fmt.Errorf("kube-proxy config: %w", err)
	}
	addFile(n, pathKubeProxyConfig, modePrivate, b)

	// kube-proxy as a static pod, as in the seed guides, so Services work
	// on a worker without anything applied to the cluster first. A
	// kube-proxy DaemonSet later would replace it (drop this file then).
	pod, err := staticPod(c, "kube-proxy", "kube-proxy",
		[]string{"kube-proxy", "--config=" + pathKubeProxyConfig},
		[]hostMount{
			{name: "config", path: pathKubeProxyConfig, typ: "File", readOnly: true},
			{name: "kubeconfig", path: pathKubeProxyKC, typ: "File", readOnly: true},
			mountSSL,
			{name: "lib-modules", path: "/lib/modules", typ: "Directory", readOnly: true},
			{name: "xtables-lock", path: "/run/xtables.lock", typ: "FileOrCreate"},
		}, nil, "", true)
	if err != nil {
		return err
	}
	addFile(n, pathKubeProxyPod, modePrivate, pod)
	return nil
}
