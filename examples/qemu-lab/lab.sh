#!/usr/bin/env bash
# lab.sh: boots QEMU virtual machines over the network against a boot server,
# all inside a network namespace of its own, and watches them to the end.
#
#   netns bootsrv-lab-<pid>:  br0 10.99.0.1/24 + fd99:b007:5e00::1/64
#                             ├─ tap1 ── QEMU vm1 (52:54:00:00:00:01)
#                             ├─ tap2 ── QEMU vm2 (52:54:00:00:00:02) ...
#                             radvd (router advertisements: iPXE stalls without them)
#                             $LAB_SERVER_CMD (DHCP + TFTP + HTTP, e.g. bootsrv serve)
#
# Each VM network-boots (FW=bios: SeaBIOS + the NIC's iPXE ROM; uefi: OVMF +
# the NIC's iPXE EFI ROM; uefi-pxe: OVMF's own PXE, no NIC ROM, so the server
# must hand out ipxe.efi over TFTP), runs the tiny OS of build-os.sh, and is
# done when its serial console shows "BOOTSRV-LAB: reported booted".
# Everything is torn down on every exit path; only the PIDs started here are
# killed. Exit status: 0 when every VM reported booted, 1 otherwise.
#
# Environment (all optional but LAB_SERVER_CMD):
#   LAB_SERVER_CMD     shell command started (bash -c) inside the netns, in its own
#                      process group; killed (TERM, then KILL) at teardown. It sees
#                      the LAB_* variables listed under "exported" below.
#   LAB_READY_CMD      command (in the netns) that succeeds once the server is ready;
#                      default: wait until something listens on UDP port 67.
#   LAB_STATUS_CMD     command (in the netns) run every LAB_STATUS_INTERVAL seconds
#                      (default 2) while VMs boot, its output shown as a live table
#                      (e.g. "bootsrv machine list"), and once more at the end.
#   LAB_BEFORE_CMD     command (in the netns) run once the server is ready, before the
#                      first VM starts (say, filling a registry); its failure ends the run.
#   LAB_AFTER_CMD      command (in the netns) run after all VMs finished, before
#                      teardown, with the server still up; its failure fails the run.
#   LAB_DONE_REGEX     extended regex on the serial log that ends a VM with success
#                      instead of the OS's marker, result "matched" (for a second
#                      boot told to boot locally, e.g. 'No bootable device');
#                      LAB_FAIL_REGEX likewise ends it with "failed:regex".
#   LAB_STAY=1         the VMs run an OS that stays up (the node OS of
#                      build-node-os.sh): a VM that reached its marker keeps
#                      running (result "booted", state "up") until teardown,
#                      LAB_AFTER_CMD runs with all of them up, and a guest reset
#                      netboots again instead of ending QEMU. Each VM gets a QEMU
#                      monitor on 127.0.0.1:PORT inside the namespace (PORT in
#                      RUN/NAME.monitor; "system_reset" there is a power cycle),
#                      and its journal on a second serial port (RUN/NAME.journal.log).
#   LAB_N              number of VMs (default 3)
#   FW                 firmware: one of bios|uefi|uefi-pxe for all VMs, or a list
#                      ("bios uefi-pxe" or "bios,uefi"), used per VM and cycled.
#                      Default: bios, uefi, uefi-pxe, bios, ...
#   LAB_MACS, LAB_UUIDS, LAB_NAMES   space-separated per-VM overrides. Defaults:
#                      52:54:00:00:00:NN, b0075e00-0000-4000-8000-5254000000NN, vmN
#   LAB_NIC            QEMU NIC model: virtio-net-pci (default) or e1000
#   LAB_MEM            MiB of RAM: one value for all VMs, or a list used per VM and
#                      cycled like FW ("2048 1024 1024"). Default 512. A VM whose
#                      Ignition downloads Kubernetes binaries into its tmpfs root
#                      needs more (bootsrv's master ~2048, worker ~1024).
#   LAB_SMP            virtual CPUs: one value or a per-VM list like LAB_MEM (default 1);
#                      under TCG each one is a host thread (MTTCG)
#   LAB_NICE           host scheduling niceness of each VM's QEMU: one value or a
#                      per-VM list like LAB_MEM (default 0). Under TCG every vCPU is
#                      a host thread; on a small host a VM on the critical path (a
#                      master) can be favoured over the others
#   LAB_PARALLEL       VMs running at once (default 3)
#   LAB_BOOT_TIMEOUT   seconds from a VM's QEMU start to its marker (default 120)
#   LAB_SERVER_TIMEOUT seconds for the server to become ready (default 30)
#   LAB_ACCEL          tcg (default) or kvm
#   LAB_NO_RADVD=1     do not start radvd (to see iPXE stall without it)
#   LAB_NO_BUILD=1     do not run build-os.sh (LAB_KERNEL/LAB_INITRD must exist)
#   LAB_RUN_DIR        where logs go (default <repo>/.cache/lab/runs/<time>-<pid>)
#   LAB_NETNS          namespace name (default bootsrv-lab-<pid>)
#
# Exported to the LAB_*_CMD commands: LAB_NETNS LAB_BRIDGE (br0) LAB_SERVER_IP
# (10.99.0.1) LAB_PREFIX (24) LAB_SUBNET (10.99.0.0/24) LAB_SERVER_IP6 LAB_KERNEL
# LAB_INITRD LAB_RUN_DIR LAB_VMS_FILE (lines "name fw mac uuid", one per VM)
# LAB_RESULTS_FILE (lines "name fw mac uuid result seconds ip", written at the end).
# Each VM's QEMU start time (epoch seconds) is in RUN/NAME.started.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${LAB_CACHE:-$repo/.cache/lab}

N=${LAB_N:-3}
FW_LIST=${FW:-bios uefi uefi-pxe}
MEM_LIST=${LAB_MEM:-512}
SMP_LIST=${LAB_SMP:-1}
NICE_LIST=${LAB_NICE:-0}
PARALLEL=${LAB_PARALLEL:-3}
BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-120}
SERVER_TIMEOUT=${LAB_SERVER_TIMEOUT:-30}
STATUS_INTERVAL=${LAB_STATUS_INTERVAL:-2}
ACCEL=${LAB_ACCEL:-tcg}
NS=${LAB_NETNS:-bootsrv-lab-$$}
STAY=${LAB_STAY:-}
BR=br0
SERVER_IP=10.99.0.1
PREFIX=24
SUBNET=10.99.0.0/24
SERVER_IP6=fd99:b007:5e00::1
PREFIX6=fd99:b007:5e00::/64
MARK_OK='BOOTSRV-LAB: reported booted'
MARK_FAIL='BOOTSRV-LAB: FAILED'

OVMF_CODE=${LAB_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${LAB_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}

t0=$(date +%s.%N)
ts() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1fs", b - a }'; }
log() { printf '[lab %s] %s\n' "$(ts)" "$*"; }
die() { printf '[lab %s] ERROR: %s\n' "$(ts)" "$*" >&2; exit 1; }

# ------------------------------------------------------------------ checks
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, taps)"
[[ -n "${LAB_SERVER_CMD:-}" ]] || die "LAB_SERVER_CMD is not set: the boot server to start inside the namespace (see README.md)"
missing=()
for c in ip qemu-system-x86_64 awk timeout setsid setpriv ss; do command -v "$c" >/dev/null || missing+=("$c"); done
[[ -n "${LAB_NO_RADVD:-}" ]] || command -v radvd >/dev/null || missing+=(radvd)
((${#missing[@]} == 0)) || die "missing: ${missing[*]} (Debian: iproute2 qemu-system-x86 ipxe-qemu ovmf radvd)"
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 250 ]] || die "LAB_N must be 1..250"
[[ "$ACCEL" != kvm || -w /dev/kvm ]] || die "LAB_ACCEL=kvm but /dev/kvm is not usable"

# ------------------------------------------------------------------ VM table
read -r -a fws <<<"${FW_LIST//,/ }"
read -r -a macs_in <<<"${LAB_MACS:-}"
read -r -a uuids_in <<<"${LAB_UUIDS:-}"
read -r -a names_in <<<"${LAB_NAMES:-}"
read -r -a mems <<<"${MEM_LIST//,/ }"
read -r -a smps <<<"${SMP_LIST//,/ }"
read -r -a nices <<<"${NICE_LIST//,/ }"
declare -a name fw mem smp nice mac uuid state result secs vmip pid start
for ((i = 0; i < N; i++)); do
	n=$((i + 1))
	name[i]=${names_in[i]:-vm$n}
	fw[i]=${fws[i % ${#fws[@]}]}
	mem[i]=${mems[i % ${#mems[@]}]}
	[[ "${mem[i]}" =~ ^[0-9]+$ && "${mem[i]}" -ge 128 ]] || die "LAB_MEM: '${mem[i]}' is not a number of MiB (>= 128)"
	smp[i]=${smps[i % ${#smps[@]}]}
	[[ "${smp[i]}" =~ ^[1-8]$ ]] || die "LAB_SMP: '${smp[i]}' is not a number of CPUs (1-8)"
	nice[i]=${nices[i % ${#nices[@]}]}
	[[ "${nice[i]}" =~ ^[0-9]+$ && "${nice[i]}" -le 19 ]] || die "LAB_NICE: '${nice[i]}' is not a niceness (0-19)"
	mac[i]=${macs_in[i]:-$(printf '52:54:00:00:00:%02x' "$n")}
	uuid[i]=${uuids_in[i]:-$(printf 'b0075e00-0000-4000-8000-5254000000%02x' "$n")}
	state[i]=waiting result[i]=- secs[i]=- vmip[i]=- pid[i]= start[i]=
	case "${fw[i]}" in
	bios) ;;
	uefi | uefi-pxe) [[ -r "$OVMF_CODE" && -r "$OVMF_VARS" ]] || die "no $OVMF_CODE (apt-get install ovmf)" ;;
	*) die "FW: unknown firmware '${fw[i]}' (bios|uefi|uefi-pxe)" ;;
	esac
done

# ------------------------------------------------------------------ OS build
if [[ -z "${LAB_NO_BUILD:-}" ]]; then
	out=$("$here/build-os.sh") || die "build-os.sh failed"
	LAB_KERNEL=$(sed -n 's/^kernel=//p' <<<"$out")
	LAB_INITRD=$(sed -n 's/^initrd=//p' <<<"$out")
fi
LAB_KERNEL=${LAB_KERNEL:-$cache/vmlinuz}
LAB_INITRD=${LAB_INITRD:-$cache/initrd.img}
[[ -f "$LAB_KERNEL" && -f "$LAB_INITRD" ]] || die "no kernel/initrd ($LAB_KERNEL, $LAB_INITRD): run build-os.sh"

RUN=${LAB_RUN_DIR:-$cache/runs/$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$RUN"
ln -sfn "$RUN" "$cache/runs/last" 2>/dev/null || true
# keep the last 10 runs' logs
# (no match is fine: under pipefail a failing ls must not end the script)
{ ls -1d "$cache"/runs/2* 2>/dev/null || true; } | sort | head -n -10 | while read -r d; do rm -rf "$d"; done
VMS_FILE=$RUN/vms
RESULTS_FILE=$RUN/results
for ((i = 0; i < N; i++)); do echo "${name[i]} ${fw[i]} ${mac[i]} ${uuid[i]}"; done >"$VMS_FILE"
: >"$RESULTS_FILE"

export LAB_NETNS=$NS LAB_BRIDGE=$BR LAB_SERVER_IP=$SERVER_IP LAB_PREFIX=$PREFIX LAB_SUBNET=$SUBNET \
	LAB_SERVER_IP6=$SERVER_IP6 LAB_KERNEL LAB_INITRD LAB_RUN_DIR=$RUN LAB_VMS_FILE=$VMS_FILE \
	LAB_RESULTS_FILE=$RESULTS_FILE

# ------------------------------------------------------------------ teardown
ns_created=0 server_pid= radvd_pid= cleaned=0
kill_group_or_pid() { # kill_group_or_pid PID what: TERM its process group (or itself), wait, then KILL
	local p=$1 what=$2 k
	[[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
	kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
	for k in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$p" 2>/dev/null; then
		log "$what ($p) did not stop on TERM: KILL"
		kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	fi
	wait "$p" 2>/dev/null || true
}
cleanup() {
	local rc=$? i p
	((cleaned)) && return
	cleaned=1
	trap '' INT TERM
	for ((i = 0; i < N; i++)); do
		[[ -n "${pid[i]:-}" ]] && kill -0 "${pid[i]}" 2>/dev/null && kill -TERM "${pid[i]}" 2>/dev/null
	done
	for ((i = 0; i < N; i++)); do kill_group_or_pid "${pid[i]:-}" "QEMU ${name[i]}"; done
	kill_group_or_pid "$server_pid" "server"
	kill_group_or_pid "$radvd_pid" "radvd"
	if ((ns_created)); then
		# Anything still in our namespace was started by this run (a server's child
		# that left its process group, say): end it before removing the namespace.
		for p in $(ip netns pids "$NS" 2>/dev/null); do
			log "left in $NS: pid $p ($(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | cut -c1-80)): KILL"
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$NS" 2>/dev/null || log "could not remove netns $NS"
		log "torn down (netns $NS removed, logs in ${RUN:-nowhere yet})"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# A run that was SIGKILLed cannot clean up: its QEMUs, radvd and server die
# with it (parent-death signal), but a server's own children may stay, and the
# namespace stays. Only this script makes bootsrv-lab-<its pid> namespaces, so
# one whose owner is gone is a leftover of ours: end what runs in it, remove it.
for old in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^bootsrv-lab-[0-9]*$' || true); do
	op=${old#bootsrv-lab-}
	[[ "$old" != "$NS" ]] || continue
	if ! kill -0 "$op" 2>/dev/null; then
		for p in $(ip netns pids "$old" 2>/dev/null); do
			log "stale $old: killing pid $p ($(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | cut -c1-80))"
			kill -KILL "$p" 2>/dev/null || true
		done
		log "removing stale namespace $old (its lab.sh, pid $op, is gone)"
		ip netns del "$old" || true
	fi
done

# ------------------------------------------------------------------ network
nsx() { ip netns exec "$NS" "$@"; }
ip netns add "$NS"
ns_created=1
nsx ip link set lo up
nsx ip link add "$BR" type bridge stp_state 0 forward_delay 0
nsx sysctl -qw "net.ipv6.conf.$BR.accept_dad=0" net.ipv6.conf.all.forwarding=1
# A veth pair on the bridge gives it a carrier at once, so its IPv6 link-local
# address (which radvd needs) exists before the first VM opens its tap. (A
# dummy device would do, but some kernels here have no dummy driver.)
nsx ip link add labveth0 type veth peer name labveth1
nsx ip link set labveth0 master "$BR" up
nsx ip link set labveth1 up
nsx ip addr add "$SERVER_IP/$PREFIX" dev "$BR"
nsx ip -6 addr add "$SERVER_IP6/64" dev "$BR" nodad
for ((i = 0; i < N; i++)); do
	nsx ip tuntap add dev "tap$((i + 1))" mode tap
	nsx ip link set "tap$((i + 1))" master "$BR" up
done
nsx ip link set "$BR" up
log "netns $NS: $BR $SERVER_IP/$PREFIX $SERVER_IP6/64, taps tap1..tap$N; run dir $RUN"

if [[ -z "${LAB_NO_RADVD:-}" ]]; then
	cat >"$RUN/radvd.conf" <<EOF
interface $BR {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 10;
	AdvDefaultLifetime 0;   # not a default router: nothing is routed anywhere
	prefix $PREFIX6 {
		AdvOnLink on;
		AdvAutonomous on;
	};
};
EOF
	setsid setpriv --pdeathsig KILL ip netns exec "$NS" radvd --nodaemon --config "$RUN/radvd.conf" \
		--pidfile "$RUN/radvd.pid" --logmethod stderr >"$RUN/radvd.log" 2>&1 &
	radvd_pid=$!
fi

# ------------------------------------------------------------------ server
log "server: $LAB_SERVER_CMD"
setsid setpriv --pdeathsig KILL ip netns exec "$NS" bash -c "$LAB_SERVER_CMD" >"$RUN/server.log" 2>&1 </dev/null &
server_pid=$!
ready_cmd=${LAB_READY_CMD:-ss -Hlun 'sport = :67' | grep -q .}
deadline=$(($(date +%s) + SERVER_TIMEOUT))
until nsx bash -c "$ready_cmd" >/dev/null 2>&1; do
	if ! kill -0 "$server_pid" 2>/dev/null; then
		tail -n 30 "$RUN/server.log" | sed 's/^/  server: /'
		die "the server exited before it was ready"
	fi
	(($(date +%s) < deadline)) || { tail -n 30 "$RUN/server.log" | sed 's/^/  server: /'; die "the server was not ready in ${SERVER_TIMEOUT}s"; }
	sleep 0.2
done
log "server ready"
[[ -z "$radvd_pid" ]] || kill -0 "$radvd_pid" 2>/dev/null || { cat "$RUN/radvd.log"; die "radvd exited"; }
if [[ -n "${LAB_BEFORE_CMD:-}" ]]; then
	log "before: $LAB_BEFORE_CMD"
	ip netns exec "$NS" bash -c "$LAB_BEFORE_CMD" || die "LAB_BEFORE_CMD failed"
fi

# ------------------------------------------------------------------ VMs
. "$here/qemu-vm.sh"
start_vm() {
	local i=$1 n=$(($1 + 1)) cmd=()
	qemu_vm_cmd cmd "${name[i]}" "${fw[i]}" "${mem[i]}" "${smp[i]}" "${mac[i]}" "${uuid[i]}" "tap$n" "$RUN"
	# A VM that stays up reboots like a machine (and netboots again); one
	# that only reports ends when it resets. Its monitor listens on the
	# namespace's own loopback, so nothing outside the lab reaches it.
	if [[ -n "$STAY" ]]; then
		cmd+=(-monitor "tcp:127.0.0.1:$((4500 + n)),server,nowait" -serial "file:$RUN/${name[i]}.journal.log")
		echo $((4500 + n)) >"$RUN/${name[i]}.monitor"
	else
		cmd+=(-no-reboot)
	fi
	printf '%q ' "${cmd[@]}" >"$RUN/${name[i]}.qemu-cmd"
	setpriv --pdeathsig KILL nice -n "${nice[i]}" ip netns exec "$NS" "${cmd[@]}" >"$RUN/${name[i]}.qemu.log" 2>&1 </dev/null &
	pid[i]=$!
	start[i]=$(date +%s.%N)
	echo "${start[i]}" >"$RUN/${name[i]}.started"
	state[i]=firmware
	log "${name[i]}: started (${fw[i]}, ${mem[i]} MiB, ${smp[i]} CPU, nice ${nice[i]}, ${mac[i]}, uuid ${uuid[i]}, pid ${pid[i]})"
}

elapsed() { awk -v a="${start[$1]}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage_of() { # what the serial log says the VM is doing
	local f=$RUN/${name[$1]}.serial.log
	[[ -f "$f" ]] || { echo firmware; return; }
	if [[ -n "${LAB_DONE_REGEX:-}" ]] && tr -d '\r' <"$f" | grep -aqE -- "$LAB_DONE_REGEX"; then echo matched
	elif [[ -n "${LAB_FAIL_REGEX:-}" ]] && tr -d '\r' <"$f" | grep -aqE -- "$LAB_FAIL_REGEX"; then echo failed-regex
	elif grep -aq "$MARK_OK" "$f"; then echo booted
	elif grep -aq "$MARK_FAIL" "$f"; then echo failed
	elif grep -aq 'BOOTSRV-LAB: ignition done' "$f"; then echo reporting
	elif grep -aq 'BOOTSRV-LAB: ignition -stage' "$f"; then echo ignition
	elif grep -aq 'BOOTSRV-LAB: dhcp' "$f"; then echo os-network
	elif grep -aq 'BOOTSRV-LAB: init started' "$f"; then echo os
	elif grep -aqE 'Linux version|EFI stub|Decompressing Linux' "$f"; then echo kernel
	elif grep -aq 'iPXE' "$f"; then echo ipxe
	elif grep -aqE 'PXE|Booting from ROM' "$f"; then echo pxe
	else echo firmware
	fi
}

status_out= status_last= live=0
[[ -t 1 && -z "${CI:-}" && -z "${LAB_NO_LIVE:-}" ]] && live=1
show_table() {
	local i
	printf '  %-10s %-9s %-17s %-11s %7s  %s\n' VM FW MAC STATE SECONDS IP
	for ((i = 0; i < N; i++)); do
		local s=${secs[i]}
		[[ "$s" == - && -n "${start[i]}" ]] && s=$(elapsed "$i")
		printf '  %-10s %-9s %-17s %-11s %7s  %s\n' "${name[i]}" "${fw[i]}" "${mac[i]}" "${state[i]}" "$s" "${vmip[i]}"
	done
}
run_status() {
	[[ -n "${LAB_STATUS_CMD:-}" ]] || return 0
	status_out=$(timeout 10 ip netns exec "$NS" bash -c "$LAB_STATUS_CMD" 2>&1) || true
}
draw() {
	if ((live)); then
		printf '\033[H\033[2J'
		log "netns $NS, server $SERVER_IP, $N VMs, logs $RUN"
		show_table
		[[ -z "${LAB_STATUS_CMD:-}" ]] || { echo; echo "  \$ $LAB_STATUS_CMD"; sed 's/^/  /' <<<"$status_out"; }
	elif [[ -n "${LAB_STATUS_CMD:-}" && "$status_out" != "$status_last" ]]; then
		log "status ($LAB_STATUS_CMD):"
		sed 's/^/  /' <<<"$status_out"
	fi
	status_last=$status_out
}

running() { local i c=0; for ((i = 0; i < N; i++)); do [[ "${state[i]}" != waiting && "${result[i]}" == - ]] && c=$((c + 1)); done; echo $c; }
finish_vm() { # finish_vm i result
	local i=$1
	result[i]=$2
	secs[i]=$(elapsed "$i")
	if [[ -n "$STAY" && "$2" == booted ]] && kill -0 "${pid[i]}" 2>/dev/null; then
		state[i]=up # keeps running until teardown
	elif kill -0 "${pid[i]}" 2>/dev/null; then
		# After its marker line the OS powers off by itself: give it a moment.
		if [[ "$2" == booted || "${state[i]}" == failed ]]; then # not for "matched": firmware does not power off
			for _ in $(seq 50); do kill -0 "${pid[i]}" 2>/dev/null || break; sleep 0.1; done
		fi
		kill_group_or_pid "${pid[i]}" "QEMU ${name[i]}"
		pid[i]=
	else
		wait "${pid[i]}" 2>/dev/null || true
		pid[i]=
	fi
	vmip[i]=$(sed -n 's/.*BOOTSRV-LAB: dhcp ip=\([0-9.]*\).*/\1/p' "$RUN/${name[i]}.serial.log" 2>/dev/null | tail -n1)
	vmip[i]=${vmip[i]:--}
	echo "${name[i]} ${fw[i]} ${mac[i]} ${uuid[i]} $2 ${secs[i]} ${vmip[i]}" >>"$RESULTS_FILE"
	if [[ "$2" == booted || "$2" == matched ]]; then
		log "${name[i]}: $2 after ${secs[i]}s (${fw[i]}, ip ${vmip[i]})"
	else
		log "${name[i]}: $2 after ${secs[i]}s (${fw[i]}); last lines of $RUN/${name[i]}.serial.log:"
		tail -n 15 "$RUN/${name[i]}.serial.log" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/^/    /' || true
	fi
}

next=0 last_status=0
while :; do
	while ((next < N)) && (($(running) < PARALLEL)); do start_vm "$next"; next=$((next + 1)); done
	alldone=1
	for ((i = 0; i < N; i++)); do
		[[ "${result[i]}" == - ]] || continue
		alldone=0
		[[ -n "${start[i]}" ]] || continue
		st=$(stage_of "$i")
		if [[ "$st" != "${state[i]}" ]]; then
			state[i]=$st
			((live)) || log "${name[i]}: $st ($(elapsed "$i")s)"
		fi
		case "$st" in
		booted) finish_vm "$i" booted ;;
		matched) finish_vm "$i" matched ;;
		failed-regex) finish_vm "$i" "failed:regex" ;;
		failed) finish_vm "$i" "failed:$(sed -n "s/.*$MARK_FAIL //p" "$RUN/${name[i]}.serial.log" | head -n1 | tr -d '\r' | tr ' ' '_')" ;;
		*)
			if ! kill -0 "${pid[i]}" 2>/dev/null; then
				state[i]=failed
				finish_vm "$i" "failed:qemu_exited"
				sed 's/^/    qemu: /' "$RUN/${name[i]}.qemu.log" | tail -n 5
			elif awk -v a="${start[i]}" -v b="$(date +%s.%N)" -v t="$BOOT_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
				state[i]=timeout
				finish_vm "$i" "failed:timeout_${BOOT_TIMEOUT}s"
			fi
			;;
		esac
	done
	now=$(date +%s)
	if ((alldone)) || ((now - last_status >= STATUS_INTERVAL)); then
		run_status
		draw
		last_status=$now
	fi
	((alldone)) && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		tail -n 30 "$RUN/server.log" | sed 's/^/  server: /'
		die "the server exited while VMs were booting"
	fi
	sleep 1
done

echo
log "results:"
show_table | sed -e '1s/STATE  /RESULT /'
if [[ -n "${LAB_STATUS_CMD:-}" ]]; then
	echo
	echo "\$ $LAB_STATUS_CMD"
	echo "$status_out"
fi
ok=1
for ((i = 0; i < N; i++)); do [[ "${result[i]}" == booted || "${result[i]}" == matched ]] || ok=0; done
if [[ -n "${LAB_AFTER_CMD:-}" && -n "$STAY" ]] && ((!ok)); then
	log "not running LAB_AFTER_CMD: it needs every VM up"
elif [[ -n "${LAB_AFTER_CMD:-}" ]]; then
	log "after: $LAB_AFTER_CMD"
	ip netns exec "$NS" bash -c "$LAB_AFTER_CMD" || { log "LAB_AFTER_CMD failed"; ok=0; }
fi
if ((ok)); then
	log "all $N VMs $([[ -n "${LAB_DONE_REGEX:-}" ]] && echo "matched '$LAB_DONE_REGEX' or ")reported booted"
	exit 0
fi
log "some VMs did not report booted"
exit 1
