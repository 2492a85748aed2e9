#!/usr/bin/env bash
# lab-vm.sh: boots one more VM into a lab that is already running (a demo
# held up with DEMO_HOLD=1, say), on a tap of its own on the lab's bridge,
# and runs until Ctrl-C (then the VM and its tap go).
#
# Usage: examples/qemu-lab/lab-vm.sh NETNS NAME MAC [FW] [MiB]
#   NETNS  the lab's namespace (bootsrv-lab-<pid>: demo.sh prints it)
#   FW     bios (default), uefi or uefi-pxe; MiB default 1536
# Register the machine with bootsrv first (see README.md), so that its MAC
# gets a profile; its serial console goes to RUN/NAME.serial.log and its
# journal to RUN/NAME.journal.log, RUN being LAB_RUN_DIR (default
# .cache/lab/runs/last).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $# -ge 3 ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ns=$1 name=$2 mac=$3 fw=${4:-bios} mem=${5:-1536}
[[ $(id -u) == 0 ]] || { echo "lab-vm: needs root" >&2; exit 1; }
ip netns pids "$ns" >/dev/null 2>&1 || { echo "lab-vm: no namespace $ns (ip netns list shows the labs)" >&2; exit 1; }
[[ "$mac" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || { echo "lab-vm: $mac is not a MAC like 52:54:00:00:00:04" >&2; exit 2; }
run=${LAB_RUN_DIR:-$(readlink -f "$repo/.cache/lab/runs/last")}
[[ -d "$run" ]] || { echo "lab-vm: no run dir $run (set LAB_RUN_DIR)" >&2; exit 1; }
tap=tapx$((RANDOM % 1000))
. "$here/qemu-vm.sh"
cmd=()
qemu_vm_cmd cmd "$name" "$fw" "$mem" 1 "$mac" "b0075e00-0000-4000-8000-${mac//:/}" "$tap" "$run" ||
	{ echo "lab-vm: unknown firmware $fw (bios|uefi|uefi-pxe)" >&2; exit 2; }
cmd+=(-serial "file:$run/$name.journal.log")
ip netns exec "$ns" ip tuntap add dev "$tap" mode tap
ip netns exec "$ns" ip link set "$tap" master br0 up
qpid=
cleanup() {
	[[ -n "$qpid" ]] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	ip netns exec "$ns" ip link del "$tap" 2>/dev/null || true
	echo "lab-vm: $name stopped, $tap removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
date +%s.%N >"$run/$name.started"
setpriv --pdeathsig KILL ip netns exec "$ns" "${cmd[@]}" >"$run/$name.qemu.log" 2>&1 </dev/null &
qpid=$!
echo "lab-vm: $name ($fw, $mem MiB, $mac) started on $tap in $ns; console $run/$name.serial.log; Ctrl-C stops it"
while kill -0 "$qpid" 2>/dev/null; do
	if grep -aq 'BOOTSRV-LAB: reported booted' "$run/$name.serial.log" 2>/dev/null; then
		echo "lab-vm: $name reported booted ($(grep -a 'BOOTSRV-LAB: reported booted' "$run/$name.serial.log" | tail -n1 | tr -d '\r'))"
		break
	fi
	sleep 2
done
wait "$qpid"
