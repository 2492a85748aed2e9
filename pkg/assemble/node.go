package assemble

import (
	"sort"

	"github.com/bootsrv/bootsrv/pkg/inventory"
	"github.com/bootsrv/bootsrv/pkg/model"
	"github.com/bootsrv/bootsrv/pkg/nodeconfig"
	"github.com/bootsrv/bootsrv/pkg/render"
	"github.com/bootsrv/bootsrv/pkg/state"
)

// masters lists every master machine (hostname and IP) through the
// profile index: the cost is the number of masters, not of machines.
func (a *Assembler) masters(tx state.Tx) ([]nodeconfig.Member, error) {
	var roles []string
	if err := tx.ProfilesRaw(func(name string, v []byte) error {
		p, err := a.decoded.profile(name, v)
		if err != nil {
			return err
		}
		if p.Role == model.RoleMaster {
			roles = append(roles, p.Name)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []nodeconfig.Member
	for _, name := range roles {
		err := tx.MachinesOfProfile(name, func(mac string) error {
			var m model.Machine
			if err := inventory.GetMachine(tx, mac, &m); err != nil {
				return err
			}
			out = append(out, nodeconfig.Member{Hostname: m.Hostname, IP: m.IP})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out, nil
}

// nodeContent is what a machine's role adds to its Ignition: for master
// and worker, everything that makes it a Kubernetes node.
func (a *Assembler) nodeContent(in0 Inputs, baseURL string) (render.Config, string, error) {
	if !model.IsKubernetes(in0.Profile) {
		return render.Config{}, "", nil
	}
	in, id, err := a.nodeInput(in0, baseURL)
	if err != nil {
		return render.Config{}, "", err
	}
	if in.RenewURL, err = a.renewURL(in0.Machine, baseURL, in.CA); err != nil {
		return render.Config{}, "", err
	}
	node, err := nodeconfig.Render(in)
	if err != nil {
		return render.Config{}, "", err
	}
	return render.Config{Files: node.Files, Units: node.Units}, id, nil
}

// nodeInput gathers what nodeconfig renders a Kubernetes node from,
// issuing the machine's certificates when it has none (or they are due),
// and names the certificate set it used.
func (a *Assembler) nodeInput(in0 Inputs, baseURL string) (nodeconfig.Input, string, error) {
	m, p, c, ms := in0.Machine, in0.Profile, in0.Cluster, in0.masters
	certs, cp, id, err := a.certs.For(m, p, c, false)
	if err != nil {
		return nodeconfig.Input{}, "", err
	}
	in := nodeconfig.Input{
		Cluster: nodeconfig.Cluster{Name: c.Name, APIServer: c.APIServer, PodNetwork: c.PodNetwork, ServiceRange: c.ServiceRange,
			DNSServiceIP: c.DNSServiceIP, Domain: c.Domain, KubernetesVersion: c.KubernetesVersion,
			RegistryMirror: c.RegistryMirror, RegistryCA: []byte(c.RegistryCA), SandboxImage: c.SandboxImage, UpstreamDNS: c.Network.DNS},
		Machine:        nodeconfig.Machine{Hostname: m.Hostname, IP: m.IP, Iface: m.Iface, Role: p.Role, Labels: m.Labels},
		Host:           model.HostFor(p.OS),
		Masters:        ms,
		CA:             cp.CA.CertPEM,
		EtcdCA:         cp.EtcdCA.CertPEM,
		FrontProxyCA:   cp.FrontProxyCA.CertPEM,
		Certs:          make(map[string]nodeconfig.CertKey, len(certs)),
		ServiceAccount: nodeconfig.KeyPair{Public: cp.SAPub, Private: cp.SAKey},
		Binaries:       make(map[string]nodeconfig.Binary, len(in0.bins)),
	}
	for name, pair := range certs {
		in.Certs[name] = nodeconfig.CertKey{Cert: pair.CertPEM, Key: pair.KeyPEM}
	}
	for name, b := range in0.bins {
		b.URL = baseURL + b.URL
		in.Binaries[name] = b
	}
	return in, id, nil
}
