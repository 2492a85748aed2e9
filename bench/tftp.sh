#!/usr/bin/env bash
# bench/tftp.sh (make bench-tftp): 50 concurrent Go clients (pin/tftp's
# client, one goroutine each) each fetch ipxe.efi 20 times at blksize 1468,
# sha256 checked, against bootsrv's TFTP server, tftpd-hpa (in.tftpd) and,
# when installed, dnsmasq's TFTP, one after the other in the same run. Prints
# fetches/s, the servers' CPU time per fetch, and the ratios.
#
# Everything runs on 127.0.0.1 inside a private network namespace
# (unshare --net, gone when the run ends), so dnsmasq can have port 69 and no
# packet leaves the namespace.
#
# Needs root, go, tftpd-hpa, ipxe; dnsmasq-base optional (DNSMASQ=0 skips it).
# Knobs: CLIENTS FETCHES BLKSIZE ROUNDS FILE IPXE_DIR CPUPROFILE.
set -euo pipefail

CLIENTS=${CLIENTS:-50}
FETCHES=${FETCHES:-20}
BLKSIZE=${BLKSIZE:-1468}
ROUNDS=${ROUNDS:-1}
FILE=${FILE:-ipxe.efi}
IPXE_DIR=${IPXE_DIR:-/usr/lib/ipxe}
TFTPD=${TFTPD:-/usr/sbin/in.tftpd}
DNSMASQ=${DNSMASQ:-auto}
export CLIENTS FETCHES BLKSIZE ROUNDS FILE IPXE_DIR TFTPD DNSMASQ

die() {
	echo "bench-tftp: $*" >&2
	exit 1
}

# Phase 2, inside the namespace: run the servers and the load.
if [[ ${BENCH_TFTP_WORK:-} ]]; then
	work=$BENCH_TFTP_WORK
	ip link set lo up
	# in.tftpd resolves its -a address with AI_ADDRCONFIG, which fails when
	# 127.0.0.1 is the only address: a second loopback address satisfies it.
	ip addr add 127.0.0.2/8 dev lo
	pids=()
	cleanup() {
		for pid in "${pids[@]}"; do
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		done
	}
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	hz=$(getconf CLK_TCK)
	sum=$(sha256sum <"$IPXE_DIR/$FILE" | cut -d' ' -f1)
	size=$(stat -L -c %s "$IPXE_DIR/$FILE")

	# cpu PID: CPU ticks of a single-process server (bootsrv, dnsmasq). Not
	# shown for in.tftpd: it forks a child per transfer and does not wait for
	# them, so their CPU time is accounted nowhere we can read.
	cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

	declare -A addr pid
	"$TFTPD" -L -a 127.0.0.1:6969 -s "$work/tftpboot" &
	pids+=($!)
	addr[tftpd-hpa]=127.0.0.1:6969 pid[tftpd-hpa]=$!

	"$work/tftp-bench" serve -addr 127.0.0.1:0 -ipxe-dir "$IPXE_DIR" ${CPUPROFILE:+-cpuprofile "$CPUPROFILE"} >"$work/serve.out" &
	pids+=($!)
	pid[bootsrv]=$!
	for _ in $(seq 100); do
		grep -q '^LISTEN' "$work/serve.out" && break
		sleep 0.1
	done
	addr[bootsrv]=$(awk '/^LISTEN/{print $2}' "$work/serve.out")
	[[ -n ${addr[bootsrv]} ]] || die "bootsrv's server did not start"

	servers=(bootsrv tftpd-hpa)
	if [[ $DNSMASQ != 0 ]] && command -v dnsmasq >/dev/null; then
		dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --user=root \
			--listen-address=127.0.0.1 --bind-interfaces --pid-file= --log-facility=/dev/null \
			--enable-tftp --tftp-root="$work/tftpboot" --tftp-max=1024 &
		pids+=($!)
		addr[dnsmasq]=127.0.0.1:69 pid[dnsmasq]=$!
		servers+=(dnsmasq)
	elif [[ $DNSMASQ == 1 ]]; then
		die "dnsmasq missing: apt-get install dnsmasq-base"
	fi
	sleep 0.3 # let in.tftpd and dnsmasq bind

	echo "bench-tftp: $CLIENTS clients x $FETCHES fetches of $FILE ($size B), blksize $BLKSIZE, $ROUNDS round(s), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
	for r in $(seq "$ROUNDS"); do
		order=("${servers[@]}")
		((r % 2)) || order=($(printf '%s\n' "${servers[@]}" | tac))
		for s in "${order[@]}"; do
			c0=$(cpu "${pid[$s]}")
			line=$("$work/tftp-bench" load -addr "${addr[$s]}" -file "$FILE" -sha256 "$sum" \
				-clients "$CLIENTS" -fetches "$FETCHES" -blksize "$BLKSIZE" -label "$s")
			c1=$(cpu "${pid[$s]}")
			if [[ $s == tftpd-hpa ]]; then
				echo "$line"
			else
				echo "$line server_cpu_ms_per_fetch=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v n=$((CLIENTS * FETCHES)) 'BEGIN{printf "%.2f", t * 1000 / hz / n}')"
			fi | tee -a "$work/results"
		done
	done

	awk '
		/^RESULT/ {
			for (i = 3; i <= NF; i++) {
				split($i, kv, "=")
				if (kv[1] == "fetches_per_s") { f[$2] += kv[2]; n[$2]++ }
				if (kv[1] == "server_cpu_ms_per_fetch") c[$2] += kv[2]
			}
		}
		END {
			for (s in n) {
				cpu = s == "tftpd-hpa" ? "n/a (forks per transfer)" : sprintf("%.2f ms", c[s] / n[s])
				printf "%-10s %7.1f fetches/s   server CPU per fetch: %s\n", s, f[s] / n[s], cpu
			}
			b = f["bootsrv"] / n["bootsrv"]
			printf "ratio bootsrv/tftpd-hpa %.2f\n", b / (f["tftpd-hpa"] / n["tftpd-hpa"])
			if (n["dnsmasq"]) printf "ratio bootsrv/dnsmasq   %.2f\n", b / (f["dnsmasq"] / n["dnsmasq"])
		}' "$work/results"
	exit 0
fi

# Phase 1: check, build (needs the module cache or the network), then run
# phase 2 in a fresh network namespace.
cd "$(dirname "$0")/.."
((EUID == 0)) || die "run as root (network namespace; in.tftpd chroots)"
[[ -x $TFTPD ]] || die "$TFTPD missing: apt-get install tftpd-hpa"
[[ -r $IPXE_DIR/$FILE ]] || die "$IPXE_DIR/$FILE missing: apt-get install ipxe"
command -v unshare >/dev/null || die "unshare missing: apt-get install util-linux"
command -v ip >/dev/null || die "ip missing: apt-get install iproute2"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/tftp-bench" ./bench/tftp
mkdir -p "$work/tftpboot"
cp -L "$IPXE_DIR/$FILE" "$work/tftpboot/$FILE"
chmod -R a+rX "$work"
BENCH_TFTP_WORK=$work unshare --net -- "$0"
