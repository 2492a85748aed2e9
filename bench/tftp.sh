#!/usr/bin/env bash
# bench/tftp.sh (make bench-tftp): fetches/s of ipxe.efi from bin/bootsrv
# serve (its defaults: the embedded first stage from memory, at most 8
# transfers per address and 8192 in all), from tftpd-hpa (in.tftpd) and,
# when installed, from dnsmasq's TFTP, one after the other in the same run,
# under the same load: CLIENTS machines, each on its own address as a
# rack's are, each fetching the file FETCHES times in turn at blksize 1468,
# sha256 checked (bench/tftp: bootsrv's PXE-ROM-like client, pkg/tftp
# Fetch). Prints fetches/s, the servers' CPU time per fetch, the ratios.
#
# Everything runs on loopback inside a private network namespace
# (unshare --net, gone when the run ends): the clients use 127.0.1.1 up
# (all of 127/8 is local), the servers 127.0.0.1 and .3, and no packet leaves.
#
# Needs root, go, bin/bootsrv (make build), tftpd-hpa, ipxe; dnsmasq-base
# optional (DNSMASQ=0 skips it).
# Knobs: CLIENTS (50) FETCHES (20) BLKSIZE ROUNDS FILE IPXE_DIR BIN CPUPROFILE.
set -euo pipefail

BIN=${BIN:-bin/bootsrv}
CLIENTS=${CLIENTS:-50}
FETCHES=${FETCHES:-20}
BLKSIZE=${BLKSIZE:-1468}
ROUNDS=${ROUNDS:-2}
FILE=${FILE:-ipxe.efi}
IPXE_DIR=${IPXE_DIR:-/usr/lib/ipxe}
TFTPD=${TFTPD:-/usr/sbin/in.tftpd}
DNSMASQ=${DNSMASQ:-auto}
export CLIENTS FETCHES BLKSIZE ROUNDS FILE IPXE_DIR TFTPD DNSMASQ BIN

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

	# bootsrv serve as a user runs it: its own data dir, DHCP off (no
	# --interface), TFTP and HTTP on loopback of this private namespace.
	"$BIN" serve --data-dir "$work/data" --tftp-addr 127.0.0.3:69 --http-addr 127.0.0.3:8080 --log-level warn \
		${CPUPROFILE:+--cpuprofile "$CPUPROFILE"} 2>"$work/serve.log" &
	pids+=($!)
	pid[bootsrv]=$!
	addr[bootsrv]=127.0.0.3:69
	"$work/tftp-bench" wait -addr "${addr[bootsrv]}" -file "$FILE" || {
		cat "$work/serve.log" >&2
		die "bootsrv serve did not serve $FILE"
	}
	for s in tftpd-hpa; do "$work/tftp-bench" wait -addr "${addr[$s]}" -file "$FILE" || die "$s did not start"; done

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
	[[ -z ${pid[dnsmasq]:-} ]] || "$work/tftp-bench" wait -addr "${addr[dnsmasq]}" -file "$FILE" || die "dnsmasq did not start"

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
[[ -x $BIN ]] || die "$BIN missing: make build"
BIN=$(realpath "$BIN")
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
