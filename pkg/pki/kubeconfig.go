package pki

import "github.com/bootsrv/bootsrv/pkg/kubeconfig"

// Kubeconfig returns a kubeconfig with one cluster, one user and one
// context, everything embedded as *-data so the file stands alone: it can
// be handed to an operator or written by Ignition without the cert files
// beside it.
//
// clusterName names the cluster entry, serverURL is the apiserver
// ("https://10.0.0.10:6443"), caPEM the cluster CA certificate, user the
// user entry's name (the identity itself is the client cert's CN/O).
func Kubeconfig(clusterName, serverURL string, caPEM []byte, user string, client Pair) ([]byte, error) {
	return kubeconfig.New(clusterName, kubeconfig.Cluster{Server: serverURL, CertificateAuthorityData: caPEM},
		user, kubeconfig.User{ClientCertificateData: client.CertPEM, ClientKeyData: client.KeyPEM},
		user+"@"+clusterName).Marshal()
}
