#!/usr/bin/env bash
# The demo behind `make demo`: the example cluster (examples/cluster: one
# master, two workers) netboots as three QEMU VMs against `bootsrv serve`
# (its own DHCP, TFTP and HTTP) and becomes a working Kubernetes cluster:
#
#   1. builds (once, then cached) the lab's node OS (build-node-os.sh: a
#      Debian root with systemd, containerd and runc that runs Ignition
#      before systemd, as Flatcar does) and the release files
#      (examples/releases/build.sh: Kubernetes, etcd, CNI, flannel, CoreDNS
#      from their Go modules), and `bootsrv assets import`s the releases;
#   2. starts, in the lab's namespace, bootsrv and the site registry the
#      cluster's registry_mirror names (Debian's docker-registry), and fills
#      it with the two images the cluster needs, built from Go (labpod push):
#      the sandbox image and the lab's test pod;
#   3. boots master1 (SeaBIOS + iPXE ROM), worker1 (OVMF + iPXE ROM) and
#      worker2 (OVMF's own PXE, then ipxe.efi); each fetches its binaries from
#      bootsrv's /assets/, reports "booted" from systemd (provisioned), and
#      its kubelet joins;
#   4. demo-cluster.sh, with the VMs up: every node Ready, a pod on worker1
#      reaches a pod on worker2 by pod IP (flannel), the Service's ClusterIP
#      answers from worker1, kubernetes.default resolves through CoreDNS;
#      then worker2 is reprovisioned and power-cycled and rejoins Ready with
#      new certificates. It prints the board, `kubectl get nodes -o wide` and
#      each node's time from power-on to provisioned and to Ready.
#
# Nothing in the lab has a route anywhere but the lab's own bridge. Needs
# root; `make demo` installs the Debian packages first.
#
#   LAB_MEM="3072 1536 1536"  MiB per VM (the node OS lives in RAM: the root,
#                             the binaries, etcd and the apiserver)
#   LAB_SMP="2 1 1"           virtual CPUs per VM
#   LAB_NICE="0 10 10"        host niceness of each VM's QEMU (the master first)
#   FW="bios uefi uefi-pxe"   firmware per VM (see lab.sh)
#   DEMO_REPROVISION=0        skip the reprovision of worker2
#   DEMO_HOLD=1               keep the lab up at the end until Ctrl-C (to use it
#                             by hand: see examples/qemu-lab/README.md)
#   DEMO_KEEP=1               keep the data dir (state, logs) afterwards
#   DEMO_RELEASES=DIR         the release files (default $BOOTSRV_TEST_CACHE/releases,
#                             i.e. /var/cache/bootsrv-test/releases)
#   DEMO_OUT=DIR              where demo-cluster.sh writes its records (nodes.json,
#                             results.env, ...); default RUN/demo
#   DEMO_DIR=DIR              bootsrv's data dir (an empty dir; default a new temporary
#                             one, removed at the end unless DEMO_KEEP=1)
#   DEMO_BIN=PATH             the bootsrv binary (default bin/bootsrv: make build)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
[[ $(id -u) == 0 ]] || { echo "demo: needs root (network namespaces, tap devices, QEMU); run it with sudo" >&2; exit 1; }
for c in jq openssl docker-registry mmdebstrap go; do
	command -v "$c" >/dev/null || { echo "demo: $c is missing (make deps installs the Debian packages)" >&2; exit 1; }
done

bin=${DEMO_BIN:-$repo/bin/bootsrv}
[[ -x $bin ]] || { echo "demo: $bin is missing: run make build" >&2; exit 1; }
start=$(date +%s)

echo "demo: building the lab's node OS (cached in ${BOOTSRV_TEST_CACHE:-/var/cache/bootsrv-test}/lab-node-os; the first build takes ~3 min)"
out=$("$here/build-node-os.sh")
kernel=$(sed -n 's/^kernel=//p' <<<"$out")
initrd=$(sed -n 's/^initrd=//p' <<<"$out")

if [[ -n ${DEMO_DIR:-} ]]; then
	data=$DEMO_DIR
	mkdir -p "$data"
	[[ -z "$(ls -A "$data")" ]] || { echo "demo: DEMO_DIR $data is not empty" >&2; exit 1; }
else
	data=$(mktemp -d "${TMPDIR:-/tmp}/bootsrv-demo.XXXXXX")
fi
cleanup() {
	# The assets are copies of the cached releases and OS (~1 GB): never kept.
	rm -rf "$data/assets" "$data/registry"
	if [[ -n ${DEMO_KEEP:-} || -n ${DEMO_DIR:-} ]]; then echo "demo: state kept in $data"; else rm -rf "$data"; fi
}
trap cleanup EXIT
mkdir -p "$data/assets/lab" "$data/bin"
cp "$kernel" "$data/assets/lab/vmlinuz"
cp "$initrd" "$data/assets/lab/initrd.img"

echo "demo: building labpod (the lab's images are built from it)"
(cd "$here/labpod" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$data/bin/labpod" .)

B=("$bin" --data-dir "$data")
echo "demo: loading examples/cluster into $data"
"${B[@]}" cluster init -f examples/cluster/cluster.yaml >/dev/null
"${B[@]}" profile add -f examples/cluster/profiles.yaml >/dev/null
"${B[@]}" machine import -f examples/cluster/machines.yaml >/dev/null

releases=${DEMO_RELEASES:-${BOOTSRV_TEST_CACHE:-/var/cache/bootsrv-test}/releases}
echo "demo: building the release files into $releases (examples/releases/build.sh; cached after the first ~15 min)"
bash examples/releases/build.sh "$releases"
echo "demo: importing them into $data/assets (bootsrv assets import verifies every file)"
"${B[@]}" assets import "$releases" >/dev/null
"${B[@]}" assets list
kubectl=$(find "$data/assets/kubernetes" -path '*/amd64/kubectl' | head -n1)
[[ -x "$kubectl" ]] || { echo "demo: no kubectl among the imported releases" >&2; exit 1; }

# The site registry the cluster's registry_mirror names (examples/cluster/cluster.yaml).
cat >"$data/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $data/registry}
http: {addr: "10.99.0.1:5000"}
EOF

export LAB_STAY=1 LAB_NO_BUILD=1 LAB_KERNEL="$kernel" LAB_INITRD="$initrd"
export LAB_NAMES="master1 worker1 worker2"
export LAB_MACS="52:54:00:00:00:01 52:54:00:00:00:02 52:54:00:00:00:03"
export FW=${FW:-bios uefi uefi-pxe}
export LAB_MEM=${LAB_MEM:-3072 1536 1536}
# Under TCG a virtual CPU is a host thread: the master's etcd and apiserver
# on one alone answer too slowly for the controller-manager's and the
# scheduler's leader leases (they lose them and restart); the workers idle.
export LAB_SMP=${LAB_SMP:-2 1 1}
# And its QEMU comes first on the host: on 2 cores the three VMs' four vCPU
# threads share what there is, and a slower host (boots of 400 s instead of
# 230) left master1's apiserver initialising for over 7 minutes, its own
# loopback TLS handshakes timing out until a post-start hook gave up and it
# exited, while the workers' kubelets, which can do nothing before it
# answers, took their share. The workers still boot alongside. It stays so
# for the whole demo: with every VM back at nice 0 once all were up, the
# controller-manager on master1 lost its leader lease eight times in ten
# minutes (its renewals timed out) and never untainted the workers.
export LAB_NICE=${LAB_NICE:-0 10 10}
# Power-on to systemd's report takes 2-4 min per VM under TCG, three at once;
# on a slow host with the workers at nice 10, ~3 min for master1 and up to
# 14 for the workers.
export LAB_BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-1500}
export LAB_SERVER_CMD="docker-registry serve $data/registry.yml >\$LAB_RUN_DIR/registry.log 2>&1 & exec $bin serve --data-dir $data --interface \$LAB_BRIDGE --listen \$LAB_SERVER_IP --http-addr \$LAB_SERVER_IP:8080 --tftp-addr \$LAB_SERVER_IP:69"
export LAB_READY_CMD="curl -fsS -o /dev/null http://10.99.0.1:8080/healthz && curl -fsS -o /dev/null http://10.99.0.1:5000/v2/"
export LAB_BEFORE_CMD="$data/bin/labpod push 10.99.0.1:5000"
export LAB_STATUS_CMD="$bin --data-dir $data machine list"
export DEMO_BOOTSRV=$bin DEMO_DATA=$data DEMO_KUBECTL=$kubectl
export LAB_AFTER_CMD="bash $here/demo-cluster.sh"
rc=0
"$here/lab.sh" || rc=$?
echo
echo "demo: finished in $(($(date +%s) - start)) s"
exit $rc
