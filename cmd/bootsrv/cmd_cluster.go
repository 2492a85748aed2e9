package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
)

func clusterCommand() *command {
	return &command{
		name:    "cluster",
		summary: "Create and show the cluster the machines join",
		subs: []*command{
			{
				name:    "init",
				summary: "Create the cluster (once per data dir)",
				long: `Creates the cluster with the seed guides' defaults: pods 10.2.0.0/16,
services 10.3.0.0/24, Kubernetes service IP 10.3.0.1, DNS 10.3.0.10,
domain cluster.local. --subnet is the provisioning network the machines'
IPs must lie in (default: the /24 around --api-server).`,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.file, "f", "", "YAML file with the cluster's settings instead of flags")
					fs.StringVar(&o.cl.Name, "name", "", "cluster name (required)")
					fs.StringVar(&o.cl.APIServer, "api-server", "", "the master's IP, the Kubernetes API endpoint (required)")
					fs.StringVar(&o.cl.Network.Subnet, "subnet", "", "provisioning network in CIDR form")
					fs.StringVar(&o.cl.Network.Gateway, "gateway", "", "default gateway handed to machines")
					fs.Var(&o.dns, "dns", "DNS server handed to machines (repeatable)")
					fs.StringVar(&o.cl.PodNetwork, "pod-network", "", "pod network CIDR (default "+model.DefaultPodNetwork+")")
					fs.StringVar(&o.cl.ServiceRange, "service-range", "", "service IP range CIDR (default "+model.DefaultServiceRange+")")
					fs.StringVar(&o.cl.KubernetesServiceIP, "kubernetes-service-ip", "", "Kubernetes service IP (default: first host of --service-range)")
					fs.StringVar(&o.cl.DNSServiceIP, "dns-ip", "", "cluster DNS service IP, inside --service-range (default "+model.DefaultDNSServiceIP+
						" for the default range, else the range's 10th host)")
					fs.StringVar(&o.cl.Domain, "domain", model.DefaultDomain, "cluster domain")
					fs.StringVar(&o.cl.KubernetesVersion, "kubernetes-version", model.DefaultKubernetesVersion, "Kubernetes version the nodes run")
					fs.StringVar(&o.cl.KeyAlgorithm, "key-algorithm", "ecdsa-p256", "key type of the CAs and every node key: ecdsa-p256 or rsa2048")
					fs.IntVar(&o.cl.CertValidityDays, "cert-validity-days", 365, "how long node certificates are valid")
					fs.Var(&o.sshKeys, "ssh-key", "file of SSH public keys authorized on every node (repeatable)")
					outputFlag(fs, o)
				},
				run: runClusterInit,
			},
			{
				name:    "show",
				summary: "Show the cluster's settings",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					cl, err := api.Cluster(ctx)
					if err != nil {
						return err
					}
					return printCluster(c, o, cl)
				}),
			},
		},
	}
}

func runClusterInit(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	if o.file != "" {
		data, name, err := readInput(o.file)
		if err != nil {
			return err
		}
		cl, err := model.ParseClusterFile(name, data)
		if err != nil {
			return err
		}
		o.cl, o.dns = cl, cl.Network.DNS
	}
	if o.cl.Name == "" || o.cl.APIServer == "" {
		return usagef("--name and --api-server are required (or -f FILE)")
	}
	o.cl.Network.DNS = o.dns
	for _, f := range o.sshKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			return &fault.Error{Kind: fault.KindInvalid, Msg: fmt.Sprintf("--ssh-key %s: %v", f, err)}
		}
		for _, line := range strings.Split(string(b), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				o.cl.SSHKeys = append(o.cl.SSHKeys, l)
			}
		}
	}
	api, done, err := openAPI(o)
	if err != nil {
		return err
	}
	defer done()
	cl, err := api.ClusterInit(ctx, o.cl)
	if err != nil {
		if o.file != "" {
			// The file's own field names, and which file.
			return fault.At(o.file, err)
		}
		return fault.Reword(err, clusterFlags)
	}
	return printCluster(c, o, cl)
}

// clusterFlags names, for the cluster's fields, the flags of cluster init
// that set them: an error about a field is worded with the flag the
// operator typed.
var clusterFlags = map[string]string{
	"name": "--name", "api_server": "--api-server", "network.subnet": "--subnet", "network.gateway": "--gateway",
	"network.dns": "--dns", "pod_network": "--pod-network", "service_range": "--service-range",
	"kubernetes_service_ip": "--kubernetes-service-ip", "dns_service_ip": "--dns-ip", "domain": "--domain",
	"kubernetes_version": "--kubernetes-version", "key_algorithm": "--key-algorithm",
	"cert_validity_days": "--cert-validity-days", "ssh_keys": "--ssh-key",
}

func printCluster(c *cli, o *opts, cl model.Cluster) error {
	return emit(c.stdout, o.output, cl, func(tw *tabwriter.Writer) {
		row(tw, "NAME", cl.Name)
		row(tw, "API SERVER", cl.APIServer)
		row(tw, "SUBNET", cl.Network.Subnet)
		row(tw, "GATEWAY", cl.Network.Gateway)
		row(tw, "DNS", strings.Join(cl.Network.DNS, ","))
		row(tw, "POD NETWORK", cl.PodNetwork)
		row(tw, "SERVICE RANGE", cl.ServiceRange)
		row(tw, "K8S SERVICE IP", cl.KubernetesServiceIP)
		row(tw, "DNS SERVICE IP", cl.DNSServiceIP)
		row(tw, "DOMAIN", cl.Domain)
		row(tw, "KUBERNETES", cl.KubernetesVersion)
		row(tw, "SSH KEYS", fmt.Sprint(len(cl.SSHKeys)))
		row(tw, "KEYS", fmt.Sprintf("%s, certificates valid %d days", cl.KeyAlgorithm, cl.CertValidityDays))
	})
}
