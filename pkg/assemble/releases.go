package assemble

import (
	"sort"
	"strings"

	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/release"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// releaseVersion is the version of a component the cluster names.
func releaseVersion(c model.Cluster, component string) string {
	switch component {
	case nodeconfig.ComponentKubernetes:
		return c.KubernetesVersion
	case nodeconfig.ComponentEtcd:
		return c.EtcdVersion
	case nodeconfig.ComponentCNI:
		return c.CNIPluginsVersion
	case nodeconfig.ComponentFlannel:
		return c.FlannelVersion
	case nodeconfig.ComponentFlannelCNI:
		return c.FlannelCNIVersion
	case nodeconfig.ComponentCoreDNS:
		return c.CoreDNSVersion
	}
	return ""
}

// binariesFor resolves, from the catalog, every binary a node of role
// runs: its URL on this server and the hash Ignition checks. A binary that
// was never imported is an error naming the file to import.
// URLs are paths on this server (/assets/...): the caller puts the base URL
// the machine asked on in front.
func binariesFor(tx state.Tx, c model.Cluster, role string) (map[string]nodeconfig.Binary, error) {
	needs, err := nodeconfig.BinariesForRole(role)
	if err != nil {
		return nil, err
	}
	out := make(map[string]nodeconfig.Binary, len(needs))
	var missing []string
	for _, n := range needs {
		v := releaseVersion(c, n.Component)
		a, ok, err := tx.Release(n.Component, v, c.Arch, n.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, release.UpstreamFile(n.Component, v, c.Arch, n.Name))
			continue
		}
		out[n.Name] = nodeconfig.Binary{URL: "/assets/" + a.Path, Hash: "sha512-" + a.SHA512}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		missing = model.Dedupe(missing)
		return nil, fault.NotFoundf("a %s needs release files that are not imported: %s; download them and run `bootsrv assets import DIR`", role, strings.Join(missing, "; "))
	}
	return out, nil
}

// releasesID changes with every import, so that configs kept from before
// (with the hashes they carry) are rendered anew.
func releasesID(tx state.Tx) string { return tx.ReleasesGeneration() }
