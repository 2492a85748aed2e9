#!/usr/bin/env bash
# bench/http.sh (make bench-http): /ipxe and /ignition requests per second
# and latency (p50, p99) of bin/bootsrv serve on a loopback port, with 10
# and with 10,000 stored machines, 16 concurrent clients on random
# machines, a few seconds each, plus the static /boot.ipxe once (the
# ceiling of this box, client and server sharing its cores); then the ratio
# 10,000 / 10, which should be about 1 (the cost per request must not grow
# with the fleet). Allocations
# per request: `go test -run '^$' -bench . -benchmem ./pkg/httpd`.
#
# Two fleets: ROLE custom (bootsrv's own files and a profile snippet; all
# machines asked) and ROLE worker (Kubernetes workers and one master, the
# PERFORMANCE.md case "certificates already issued": /ignition asks
# WARM=1000 random machines, each rendered once before timing).
#
# Needs: go, bin/bootsrv (make build). Knobs: SIZES ("10 10000"), ROLES
# ("custom worker"), WORKERS (16), DURATION (3s), WARM (1000), BIN,
# KEEP=1 keeps the work dir, BENCH_STORE runs it on etcd.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${SIZES:-10 10000}
ROLES=${ROLES:-custom worker}
WARM=${WARM:-1000}
WORKERS=${WORKERS:-16}
DURATION=${DURATION:-3s}
BIN=${BIN:-bin/bootsrv}

die() {
	echo "bench-http: $*" >&2
	exit 1
}
[[ -x $BIN ]] || die "$BIN missing: run make build"

work=$(mktemp -d)
pid=
cleanup() {
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [[ ${KEEP:-} == 1 ]]; then echo "bench-http: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$work/httpload" ./bench/httpload
load=$work/httpload
mkdir -p "$work/assets/bench"
head -c 1048576 /dev/zero >"$work/assets/bench/vmlinuz"
head -c 1048576 /dev/zero >"$work/assets/bench/initrd.img"
cat >"$work/snippet.ign" <<'IGN'
{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","mode":420,"contents":{"source":"data:,provisioned%20by%20bootsrv%0A"}}]}}
IGN

declare -A rate
for role in $ROLES; do
	for n in $SIZES; do
		data=$work/data-$role-$n
		mkdir -p "$data"
		export BOOTSRV_DATA_DIR=$data
		# BENCH_STORE=etcd://HOST:PORT,...[/PREFIX]: the same on etcd
		# (BOOTSRV_ETCD_* from the environment), one prefix per run.
		if [[ -n ${BENCH_STORE:-} ]]; then
			export BOOTSRV_STORE=${BENCH_STORE%/}/bench-$role-$n
		fi
		"$BIN" cluster init --name bench --api-server 10.100.1.1 --subnet 10.100.0.0/16 >/dev/null
		"$BIN" profile add --role "$role" --os flatcar --kernel /assets/bench/vmlinuz --initrd /assets/bench/initrd.img \
			--ignition "$work/snippet.ign" bench >/dev/null
		master=
		if [[ $role != custom ]]; then
			# Kubernetes nodes need a master: the first machine, at 10.100.1.1.
			"$BIN" profile add --role master --os flatcar --kernel /assets/bench/vmlinuz master >/dev/null
			master=master
		fi
		if [[ $role != custom ]]; then
			# A Kubernetes role's Ignition names the release binaries it
			# runs: import stand-ins (pkg/release/releasetest), once.
			[[ -d $work/releases ]] || "$load" releases "$work/releases"
			"$BIN" assets import --assets-dir "$work/assets" "$work/releases" >/dev/null
		fi
		"$load" csv "$n" $master >"$work/machines-$role-$n.csv"
		"$BIN" machine import -f "$work/machines-$role-$n.csv" >/dev/null 2>"$work/import-$role-$n.log" || {
			cat "$work/import-$role-$n.log" >&2
			die "import of $n machines failed"
		}
		port=$("$load" port)
		base=http://127.0.0.1:$port
		# --token-bind any: the load comes from 127.0.0.1 for machines
		# whose addresses are 10.100.x.x.
		"$BIN" serve --data-dir "$data" --http-addr "127.0.0.1:$port" --assets-dir "$work/assets" \
			--token-bind any --log-level warn 2>"$work/serve-$role-$n.log" &
		pid=$!
		"$load" wait "$base/healthz" || {
			cat "$work/serve-$role-$n.log" >&2
			die "server did not start"
		}
		if [[ $role == custom ]]; then
			eps="ipxe ignition"
			# The static /boot.ipxe once: the ceiling of this box with the
			# client on the same cores.
			[[ $n == "${SIZES%% *}" ]] && eps="boot.ipxe $eps"
		else
			eps=ignition
		fi
		for ep in $eps; do
			extra=()
			[[ $role != custom ]] && extra=(-subset "$WARM" -warm)
			line=$("$load" run -base "$base" -csv "$work/machines-$role-$n.csv" -endpoint "$ep" \
				-workers "$WORKERS" -duration "$DURATION" -label "$role n=$n" "${extra[@]}")
			echo "$line"
			rate[$role-$ep-$n]=$(sed -n 's/.*req\/s=\([0-9]*\).*/\1/p' <<<"$line")
		done
		kill -TERM "$pid"
		wait "$pid" || die "bootsrv serve exited $? after SIGTERM"
		pid=
		unset BOOTSRV_DATA_DIR
	done
done

sizes=($SIZES)
if ((${#sizes[@]} >= 2)); then
	small=${sizes[0]} large=${sizes[-1]}
	for key in "${!rate[@]}"; do
		[[ $key == *-$small ]] || continue
		k=${key%-"$small"}
		[[ -n ${rate[$k-$large]:-} ]] || continue
		awk -v k="$k" -v s="$small" -v l="$large" -v a="${rate[$k-$small]}" -v b="${rate[$k-$large]}" \
			'BEGIN { printf "%-18s %d machines / %d machines: %.2f (%s vs %s req/s)\n", k, l, s, (a > 0 ? b / a : 0), b, a }'
	done | sort
fi
echo "aims (PERFORMANCE.md): /ipxe >= 20000 req/s, /ignition >= 5000 req/s at 10000 machines, ratio ~1"
