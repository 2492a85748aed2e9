#!/usr/bin/env bash
# build-node-os.sh: builds the lab's node OS, the stand-in for Flatcar or
# Fedora CoreOS that the demo cluster's VMs netboot (Flatcar and FCOS cannot
# be downloaded here). Like them it boots as kernel + initrd, runs Ignition
# first, before the real init, then hands over to systemd, which starts what
# Ignition wrote and enabled:
#
#   - a Debian root filesystem made by mmdebstrap from this machine's own apt
#     sources: systemd, containerd and runc, iptables, conntrack, kmod,
#     iproute2, util-linux, curl (bootsrv's report unit), busybox (udhcpc);
#   - the kernel: Debian's linux-image-amd64 vmlinuz, as the tiny OS uses,
#     and its modules for networking (virtio-net, e1000, veth, vxlan,
#     bridge, netfilter, overlayfs);
#   - the real Ignition binary (build-os.sh builds it);
#   - node-init.sh as /init: network by DHCP, Ignition's fetch and files
#     stages on the root itself, then exec systemd.
#
# The whole root rides in the initrd and lives in RAM (the kernel unpacks it
# into a tmpfs), as a live PXE-booted Flatcar does: a master needs ~3 GiB
# (its ~740 MB of binaries, etcd and the apiserver), a worker ~1.5 GiB.
#
# Cached under $BOOTSRV_TEST_CACHE/lab-node-os (default
# /var/cache/bootsrv-test/lab-node-os), named after the hash of every input
# (suite, packages, apt sources, kernel, Ignition, these scripts): a second
# run prints the paths in a second; a changed input builds anew (~2 min, 20 s
# when only the kernel, Ignition or the scripts changed) and the old builds
# are removed.
#
# Usage: examples/qemu-lab/build-node-os.sh [--force]
# Prints, on its last two lines:
#   kernel=/abs/path/vmlinuz
#   initrd=/abs/path/initrd.img
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${BOOTSRV_TEST_CACHE:-/var/cache/bootsrv-test}/lab-node-os
suite=${LAB_NODE_SUITE:-bookworm}
force=0
[[ "${1:-}" == --force ]] && force=1

log() { printf 'build-node-os %4ss: %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'build-node-os: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (mmdebstrap makes device nodes and files owned by other users)"
missing=()
for c in mmdebstrap cpio gzip depmod sha256sum; do command -v "$c" >/dev/null || missing+=("$c"); done
((${#missing[@]} == 0)) || die "missing: ${missing[*]} (Debian: mmdebstrap cpio gzip kmod; make deps installs them)"

# The packages a node needs (the issue's list), and what Ignition's files
# stage calls (useradd: passwd is in minbase).
packages=(systemd systemd-sysv udev dbus kmod iproute2 iptables conntrack containerd runc
	util-linux mount procps curl ca-certificates busybox-static tar gzip diffutils)

# Apt sources: the machine's own, so the build reaches only what apt reaches.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
	[[ -s "$f" ]] && grep -qsE "^[^#]*(deb |Types:)" "$f" && sources+=("$f")
done
((${#sources[@]} > 0)) || die "no apt sources in /etc/apt (sources.list or sources.list.d/*.sources)"

# The Ignition binary, in the machine's test cache (as pkg/noderun keeps
# it), not the clone's: a fresh clone then neither rebuilds it (~2 min) nor
# gets a new initrd for a binary that differs only in its build.
ign=$(LAB_CACHE=${BOOTSRV_TEST_CACHE:-/var/cache/bootsrv-test} "$here/build-os.sh" --ignition-only) ||
	die "could not build Ignition (build-os.sh --ignition-only)"

kver=${LAB_KVER:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n1 || true)}
[[ -n "$kver" && -f /boot/vmlinuz-$kver && -d /lib/modules/$kver ]] ||
	die "no /boot/vmlinuz-*-amd64 with its /lib/modules (apt-get install linux-image-amd64)"
mods=/lib/modules/$kver/kernel
module_dirs=(net lib crypto fs/overlayfs drivers/virtio drivers/net/vxlan drivers/net/ethernet/intel/e1000
	drivers/net/ethernet/intel/e1000e drivers/net/virtio_net.ko drivers/net/net_failover.ko drivers/net/veth.ko
	drivers/net/tun.ko drivers/net/dummy.ko drivers/net/macvlan.ko drivers/net/ipvlan)
module_skip=(net/wireless net/mac80211 net/bluetooth)

# Two layers, each cached by the hash of its inputs: the Debian root (suite,
# packages, apt sources: ~1.5 min to make) and the initrd made from it
# (kernel, Ignition, these scripts: ~20 s), so a change to /init does not
# fetch Debian again.
root_key=$(
	{
		echo "suite=$suite recipe=1 packages=${packages[*]}"
		cat "${sources[@]}"
	} | sha256sum | cut -c1-16
)
key=$(
	{
		echo "root=$root_key modules=${module_dirs[*]} skip=${module_skip[*]}"
		sha256sum "/boot/vmlinuz-$kver" "$ign" "$here/build-node-os.sh" "$here/node-init.sh"
	} | sha256sum | cut -c1-16
)
out=$cache_root/$key
base=$cache_root/root-$root_key.tar
if ((!force)) && [[ -f "$out/done" ]]; then
	log "cached: $out (kernel $kver, $(du -h "$out/initrd.img" | cut -f1) initrd)"
	echo "kernel=$out/vmlinuz"
	echo "initrd=$out/initrd.img"
	exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.build-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

if ((force)) || [[ ! -f "$base" ]]; then
	log "root filesystem: mmdebstrap $suite (${#packages[@]} packages, from ${sources[*]})"
	# No docs, man pages or locales: the root lives in the VM's RAM.
	mmdebstrap --quiet --variant=minbase --format=tar \
		--include="$(
			IFS=,
			echo "${packages[*]}"
		)" \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		"$suite" "$work/root.tar" "${sources[@]}" >&2 || die "mmdebstrap failed"
	mv "$work/root.tar" "$base.tmp" && mv "$base.tmp" "$base"
else
	log "root filesystem: cached ($base)"
fi
mkdir -p "$root"
tar -C "$root" -xf "$base"
log "root filesystem: $(du -sh "$root" | cut -f1)"

# ------------------------------------------------------------ customize
# First boot, as a node's is: no machine id, so systemd applies presets
# (Ignition enables units by writing a preset file, as on Flatcar and FCOS).
echo uninitialized >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo bootsrv-node >"$root/etc/hostname"
: >"$root/etc/fstab"
# Kernel names (eth0): the name init.sh used is the one systemd keeps.
mkdir -p "$root/etc/systemd/network"
ln -sf /dev/null "$root/etc/systemd/network/99-default.link"
# Nothing here manages the network but the lab's DHCP keeper below.
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd.service"
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd.socket"
# No login on the serial console (the console is the lab's log); the
# journal goes to the second serial port, which lab.sh keeps as a file.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
mkdir -p "$root/etc/systemd/journald.conf.d"
cat >"$root/etc/systemd/journald.conf.d/50-bootsrv-lab.conf" <<'EOF'
# The lab reads the whole journal on the VM's second serial port (ttyS1).
[Journal]
Storage=volatile
RuntimeMaxUse=64M
ForwardToConsole=yes
TTYPath=/dev/ttyS1
MaxLevelConsole=info
EOF
# Debian's containerd unit starts containerd with /etc/containerd/config.toml,
# the file bootsrv's Ignition writes; its own default config is not wanted.
rm -f "$root/etc/containerd/config.toml"

lab=$root/usr/lib/bootsrv-lab
mkdir -p "$lab"
cp "$ign" "$lab/ignition"
cp "$here/node-init.sh" "$root/init"
chmod 0755 "$root/init" "$lab/ignition"
cat >"$lab/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's script for the node OS: sets the leased address, never removes it
# (a renewal must not take the node's address away while it runs pods).
case "$1" in
bound|renew)
	ip addr replace "$ip/${mask:-24}" dev "$interface"
	if [ -n "$router" ] && ! ip route show default | grep -q .; then
		for r in $router; do ip route replace default via "$r" dev "$interface" && break; done
	fi
	if [ ! -s /etc/resolv.conf ] || grep -q '^# bootsrv-lab' /etc/resolv.conf; then
		{ echo "# bootsrv-lab: from DHCP"; for d in $dns; do echo "nameserver $d"; done; } >/etc/resolv.conf
	fi
	{ echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "serverid=$serverid"; } >/run/bootsrv-lab/dhcp.env
	;;
esac
exit 0
EOF
chmod 0755 "$lab/udhcpc.script"
cat >"$root/etc/systemd/system/bootsrv-lab-dhcp.service" <<'EOF'
[Unit]
Description=Keep the DHCP lease that /init took (busybox udhcpc)
DefaultDependencies=no
After=systemd-udevd.service
Before=network.target network-online.target
Wants=network.target

[Service]
EnvironmentFile=/run/bootsrv-lab/nic.env
ExecStart=/bin/busybox udhcpc -f -i ${NIC} -s /usr/lib/bootsrv-lab/udhcpc.script -V bootsrv-lab -t 10 -T 3 -A 5
Restart=always

[Install]
WantedBy=multi-user.target
EOF
cat >"$root/etc/systemd/system/bootsrv-lab-up.service" <<'EOF'
[Unit]
Description=Tell the lab (serial console) that this node is up and reported to bootsrv
After=multi-user.target bootsrv-report.service

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'if [ -e /var/lib/bootsrv-reported ]; then echo "BOOTSRV-LAB: reported booted (node OS: systemd reached multi-user.target at $(cut -d" " -f1 /proc/uptime)s)"; else echo "BOOTSRV-LAB: FAILED systemd is up but bootsrv-report.service did not report"; fi'

[Install]
WantedBy=multi-user.target
EOF
for u in bootsrv-lab-dhcp.service bootsrv-lab-up.service; do
	ln -sf "/etc/systemd/system/$u" "$root/etc/systemd/system/multi-user.target.wants/$u"
done

# ------------------------------------------------------------ modules
log "kernel $kver: modules (${module_dirs[*]})"
mkdir -p "$root/lib/modules/$kver/kernel"
for d in "${module_dirs[@]}"; do
	[[ -e "$mods/$d" ]] || continue
	mkdir -p "$root/lib/modules/$kver/kernel/$(dirname "$d")"
	cp -a "$mods/$d" "$root/lib/modules/$kver/kernel/$d"
done
for d in "${module_skip[@]}"; do rm -rf "$root/lib/modules/$kver/kernel/$d"; done
cp /lib/modules/"$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"
cp "/boot/vmlinuz-$kver" "$work/vmlinuz"
chmod 0644 "$work/vmlinuz"

log "initrd: packing $(du -sh "$root" | cut -f1) (cpio, gzip -1)"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc) | gzip -1 >"$work/initrd.img"
rm -rf "$root"
echo "kernel=$kver suite=$suite packages=${packages[*]}" >"$work/inputs"
touch "$work/done"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
# Older builds (other inputs) are of no further use.
for d in "$cache_root"/*; do [[ "$d" == "$out" || "$d" == "$base" ]] || rm -rf "$d"; done
log "built $out: vmlinuz $(du -h "$out/vmlinuz" | cut -f1), initrd $(du -h "$out/initrd.img" | cut -f1)"
echo "kernel=$out/vmlinuz"
echo "initrd=$out/initrd.img"
