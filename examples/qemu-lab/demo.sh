#!/usr/bin/env bash
# The demo behind `make demo`: boots the example cluster (examples/cluster:
# one master, two workers) as three QEMU VMs against bootsrv, with bootsrv's
# own DHCP, TFTP and HTTP, and ends with `bootsrv machine list` showing them
# provisioned. Needs root; the Makefile installs the Debian packages first.
#
# The nodes' Ignition downloads their Kubernetes, etcd, CNI, flannel and
# CoreDNS binaries from bootsrv's /assets/ (~740 MB for the master, ~250 MB
# per worker), so the real releases are imported first: examples/releases/
# build.sh builds them from their Go modules into DEMO_RELEASES (about 10
# minutes the first time, then cached) and `bootsrv assets import` verifies
# and lays them out in the data dir's assets dir, which `bootsrv serve`
# serves (it is given no --assets-dir: both default to DATA-DIR/assets).
#
#   FW="bios uefi uefi-pxe"   firmware per VM (see lab.sh)
#   LAB_MEM="2048 1024 1024"  MiB per VM: each holds its binaries in a tmpfs of half its RAM
#   DEMO_RELEASES=DIR         the release files (default $BOOTSRV_TEST_CACHE/releases,
#                             i.e. /var/cache/bootsrv-test/releases)
#   DEMO_KEEP=1               keep the data dir (state, logs) afterwards
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
[[ $(id -u) == 0 ]] || { echo "demo: needs root (network namespaces, tap devices, QEMU); run it with sudo" >&2; exit 1; }

bin=$repo/bin/bootsrv
[[ -x $bin ]] || { echo "demo: $bin is missing: run make build" >&2; exit 1; }
start=$(date +%s)

echo "demo: building the lab OS (cached in .cache/lab; the first build takes ~2 min)"
out=$("$here/build-os.sh")
kernel=$(sed -n 's/^kernel=//p' <<<"$out")
initrd=$(sed -n 's/^initrd=//p' <<<"$out")

data=$(mktemp -d "${TMPDIR:-/tmp}/bootsrv-demo.XXXXXX")
cleanup() {
	if [[ -n ${DEMO_KEEP:-} ]]; then echo "demo: state kept in $data"; else rm -rf "$data"; fi
}
trap cleanup EXIT
mkdir -p "$data/assets/lab"
cp "$kernel" "$data/assets/lab/vmlinuz"
cp "$initrd" "$data/assets/lab/initrd.img"

B=("$bin" --data-dir "$data")
echo "demo: loading examples/cluster into $data"
"${B[@]}" cluster init -f examples/cluster/cluster.yaml >/dev/null
"${B[@]}" profile add -f examples/cluster/profiles.yaml >/dev/null
"${B[@]}" machine import -f examples/cluster/machines.yaml >/dev/null

releases=${DEMO_RELEASES:-${BOOTSRV_TEST_CACHE:-/var/cache/bootsrv-test}/releases}
echo "demo: building the release files into $releases (examples/releases/build.sh; cached after the first ~10 min)"
bash examples/releases/build.sh "$releases"
echo "demo: importing them into $data/assets (bootsrv assets import verifies every file)"
"${B[@]}" assets import "$releases" >/dev/null
echo "demo: imported (served under /assets/, downloaded by each node's Ignition):"
"${B[@]}" assets list
"${B[@]}" machine list

export LAB_NO_BUILD=1 LAB_KERNEL="$kernel" LAB_INITRD="$initrd"
export LAB_NAMES="master1 worker1 worker2"
export LAB_MACS="52:54:00:00:00:01 52:54:00:00:00:02 52:54:00:00:00:03"
export FW=${FW:-bios uefi uefi-pxe}
# master1 holds ~740 MB of binaries in its tmpfs root, a worker ~250 MB.
export LAB_MEM=${LAB_MEM:-2048 1024 1024}
# The master's download of its binaries takes a minute or more under TCG
# (init.sh bounds each Ignition stage at 420 s itself).
export LAB_BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-600}
export LAB_SERVER_CMD="exec $bin serve --data-dir $data --interface \$LAB_BRIDGE --listen \$LAB_SERVER_IP --http-addr \$LAB_SERVER_IP:8080 --tftp-addr \$LAB_SERVER_IP:69"
export LAB_READY_CMD="curl -fsS -o /dev/null http://10.99.0.1:8080/healthz"
export LAB_STATUS_CMD="$bin --data-dir $data machine list"
rc=0
"$here/lab.sh" || rc=$?
echo
echo "demo: finished in $(($(date +%s) - start)) s"
exit $rc
