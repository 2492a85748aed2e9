package model

import "github.com/bootsrv/bootsrv/pkg/nodeconfig"

// Where the first-boot report's settings go, and the unit that sends it.
const (
	ReportEnvPath = "/etc/bootsrv/report.env"
	ReportUnit    = "bootsrv-report.service"
)

// IsKubernetes says whether machines of p become Kubernetes nodes.
func IsKubernetes(p Profile) bool { return p.Role == RoleMaster || p.Role == RoleWorker }

// HostFor says where a node's files go on each OS: Flatcar's /usr is
// read-only (programs in /opt/bin) and its containerd needs a drop-in to
// read /etc/containerd/config.toml; Fedora CoreOS keeps local programs in
// /usr/local/bin; both resolve through systemd-resolved. The lab OS and
// custom images get the plain defaults.
func HostFor(os string) nodeconfig.Host {
	switch os {
	case OSFlatcar:
		return nodeconfig.Host{BinDir: "/opt/bin", ResolvConf: "/run/systemd/resolve/resolv.conf", ContainerdConfigDropin: true}
	case OSFCOS:
		return nodeconfig.Host{BinDir: "/usr/local/bin", ResolvConf: "/run/systemd/resolve/resolv.conf"}
	}
	return nodeconfig.Host{}
}

// GeneratedFor lists the paths and units bootsrv writes for every machine
// of a role on os, so that a profile's snippet can be checked up front.
func GeneratedFor(role, os string) (paths, units []string) {
	paths = []string{"/etc/hostname", ReportEnvPath}
	units = []string{ReportUnit}
	if role == RoleMaster || role == RoleWorker {
		ps, _ := nodeconfig.PathsForRole(role, HostFor(os).BinDir)
		ps = append(ps, nodeconfig.RenewalPaths()...)
		units = append(units, nodeconfig.RenewalUnits()...)
		if HostFor(os).ContainerdConfigDropin {
			units = append(units, "containerd.service") // bootsrv's drop-in
		}
		us, _ := nodeconfig.UnitsForRole(role)
		paths, units = append(paths, ps...), append(units, us...)
	}
	return paths, units
}

// StageFinal names the installed system's config in /ignition?stage=.
const StageFinal = "final"

// Report states a machine may send.
const (
	ReportInstalled = "installed"
	ReportBooted    = "booted"
	ReportFailed    = "failed"
)
