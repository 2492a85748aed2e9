package pki

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// Kubeconfig returns a kubeconfig (kind Config, apiVersion v1) with one
// cluster, one user and one context, everything embedded as *-data so the
// file stands alone: it can be handed to an operator or written by Ignition
// without the cert files beside it.
//
// clusterName names the cluster entry, serverURL is the apiserver
// ("https://10.0.0.10:6443"), caPEM the cluster CA certificate, user the
// user entry's name (the identity itself is the client cert's CN/O).
func Kubeconfig(clusterName, serverURL string, caPEM []byte, user string, client Pair) []byte {
	context := user + "@" + clusterName
	b64 := base64.StdEncoding.EncodeToString
	var b bytes.Buffer
	// Every string is written JSON-quoted, which is valid YAML (YAML 1.2
	// is a superset of JSON): names like "system:node:n1" contain colons
	// that a plain YAML scalar would mangle.
	w := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
		b.WriteByte('\n')
	}
	w("apiVersion: v1")
	w("kind: Config")
	w("clusters:")
	w("- name: ", q(clusterName))
	w("  cluster:")
	w("    server: ", q(serverURL))
	w("    certificate-authority-data: ", q(b64(caPEM)))
	w("users:")
	w("- name: ", q(user))
	w("  user:")
	w("    client-certificate-data: ", q(b64(client.CertPEM)))
	w("    client-key-data: ", q(b64(client.KeyPEM)))
	w("contexts:")
	w("- name: ", q(context))
	w("  context:")
	w("    cluster: ", q(clusterName))
	w("    user: ", q(user))
	w("current-context: ", q(context))
	w("preferences: {}")
	return b.Bytes()
}

// q quotes s as a JSON string, which YAML reads as a double-quoted scalar.
func q(s string) string {
	out, err := json.Marshal(s)
	if err != nil {
		// json.Marshal cannot fail on a string; invalid UTF-8 is replaced.
		panic(err)
	}
	return string(out)
}
