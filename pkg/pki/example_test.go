package pki_test

import (
	"fmt"
	"net"
	"time"

	"github.com/bootsrv/bootsrv/pkg/pki"
)

// What `bootsrv cluster init` and the first render of a worker do. The
// caller stores cas, the service-account pair and certs.Pairs(), and on later
// renders writes the stored PEM to c.CertPath / c.KeyPath (keys 0600).
func Example() {
	now := time.Now()
	cluster, _ := pki.NewCA("kubernetes", pki.ECDSAP256, 0, now)
	etcd, _ := pki.NewCA("etcd-ca", pki.ECDSAP256, 0, now)
	frontProxy, _ := pki.NewCA("front-proxy-ca", pki.ECDSAP256, 0, now)
	cas := pki.CAs{Cluster: cluster, Etcd: etcd, FrontProxy: frontProxy}

	certs, err := pki.IssueNode(cas, pki.NodeFacts{
		Hostname: "worker-1",
		IP:       net.ParseIP("10.0.0.21"),
		Role:     pki.RoleWorker,
	}, pki.Options{}, now)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range certs {
		fmt.Println(c.Name, c.CA, c.CertPath, c.KeyPath)
	}
	kubelet, _ := certs.Get(pki.CertKubelet)
	kubeconfig, err := pki.Kubeconfig("lab", "https://10.0.0.11:6443", cas.Cluster.CertPEM, "kubelet", kubelet.Pair)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(kubeconfig) > 0)
	// Output:
	// kubelet ca /etc/kubernetes/ssl/kubelet.pem /etc/kubernetes/ssl/kubelet-key.pem
	// kube-proxy ca /etc/kubernetes/ssl/kube-proxy.pem /etc/kubernetes/ssl/kube-proxy-key.pem
	// true
}
