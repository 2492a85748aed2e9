// Package kubeconfig writes kubeconfig files (clientcmd's Config, kind
// Config, apiVersion v1) with one cluster, one user and one context: the
// one writer for the operator's admin kubeconfig (credentials embedded, so
// the file stands alone) and the nodes' component kubeconfigs (paths to
// the PEM files Ignition writes, so a renewed certificate needs no new
// kubeconfig).
package kubeconfig

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// Config is the subset of clientcmd v1 bootsrv writes.
type Config struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []NamedCluster `json:"clusters"`
	Users          []NamedUser    `json:"users"`
	Contexts       []NamedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
	Preferences    *struct{}      `json:"preferences,omitempty"`
}

// NamedCluster is a cluster entry: its server and CA, as a file or data.
type NamedCluster struct {
	Name    string  `json:"name"`
	Cluster Cluster `json:"cluster"`
}

// Cluster is where the apiserver is and what signs its certificate.
type Cluster struct {
	Server                   string `json:"server"`
	CertificateAuthority     string `json:"certificate-authority,omitempty"`
	CertificateAuthorityData []byte `json:"certificate-authority-data,omitempty"`
}

// NamedUser is a user entry: a client certificate and key.
type NamedUser struct {
	Name string `json:"name"`
	User User   `json:"user"`
}

// User is a client certificate and key, as files or data.
type User struct {
	ClientCertificate     string `json:"client-certificate,omitempty"`
	ClientKey             string `json:"client-key,omitempty"`
	ClientCertificateData []byte `json:"client-certificate-data,omitempty"`
	ClientKeyData         []byte `json:"client-key-data,omitempty"`
}

// NamedContext ties the cluster and the user.
type NamedContext struct {
	Name    string  `json:"name"`
	Context Context `json:"context"`
}

// Context is one cluster and one user.
type Context struct {
	Cluster string `json:"cluster"`
	User    string `json:"user"`
}

// New is a config of one cluster, user and context (named ctx), current.
func New(cluster string, c Cluster, user string, u User, ctx string) Config {
	return Config{
		APIVersion: "v1", Kind: "Config",
		Clusters:       []NamedCluster{{Name: cluster, Cluster: c}},
		Users:          []NamedUser{{Name: user, User: u}},
		Contexts:       []NamedContext{{Name: ctx, Context: Context{Cluster: cluster, User: user}}},
		CurrentContext: ctx,
	}
}

// Marshal writes c as YAML; []byte fields are base64, as clientcmd reads
// its *-data fields.
func (c Config) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig for %s: %w", c.CurrentContext, err)
	}
	return b, nil
}
