#!/usr/bin/env bash
# bench/compare.sh: two bootsrv binaries side by side in one run, for a
# refactor's acceptance ("no regression beyond noise"): HTTP /ipxe and
# /ignition req/s (bench/http.sh, certificates already issued for the
# worker fleet) and DHCP DORA/s of `bootsrv serve` under perfdhcp. Prints
# the median of each side and the ratio after/before; the human judges.
#
# Usage: bench/compare.sh [BEFORE_BIN [AFTER_BIN]]
#   BEFORE_BIN default /var/cache/bootsrv-test/bench/bootsrv-c88dc13, built
#   from commit c88dc13 (git archive + make build) when missing;
#   AFTER_BIN default bin/bootsrv (make build).
#
# Knobs (environment): ROUNDS (2), PARTS ("http dhcp"); for HTTP the ones
# of bench/http.sh: SIZES ("10 10000"), ROLES ("custom worker"), DURATION
# (3s), WORKERS (16), WARM (1000); for DHCP the ones of bench/dhcp.sh:
# BENCH_DHCP_SECONDS (5), BENCH_DHCP_START (125), BENCH_DHCP_MAX (32000),
# BENCH_DHCP_THREADS (single), plus BENCH_DHCP_BISECT (1: tries between the
# last passing and the first failing rate) and DHCP_LOG_LEVEL (info, serve's
# default: one log line per exchange, as a user's server writes);
# KEEP=1 keeps the work dir (logs, perfdhcp outputs).
#
# Needs: go, make (to build BEFORE), and for DHCP root, iproute2 and
# perfdhcp (Debian kea-admin; `make deps`).
# Exit status: 1 when something could not be set up or measured (a build,
# a server that does not start, a side with no DHCP rate at all); 0
# otherwise, whatever the ratios say.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
BEFORE_REV=c88dc13
DEFAULT_BEFORE=/var/cache/bootsrv-test/bench/bootsrv-$BEFORE_REV
ROUNDS=${ROUNDS:-2}
PARTS=${PARTS:-http dhcp}
DHCP_SECONDS=${BENCH_DHCP_SECONDS:-5}
DHCP_START=${BENCH_DHCP_START:-125}
DHCP_MAX=${BENCH_DHCP_MAX:-32000}
DHCP_THREADS=${BENCH_DHCP_THREADS:-single}
DHCP_BISECT=${BENCH_DHCP_BISECT:-1}
DHCP_LOG_LEVEL=${DHCP_LOG_LEVEL:-info}

die() {
	echo "compare: $*" >&2
	exit 1
}
say() { echo "compare: $*" >&2; }
# Progress lines carry the elapsed time: a default run takes minutes.
step() { say "$* (at ${SECONDS}s)"; }

# Arguments are relative to the caller's directory, as any command's are;
# the default AFTER is the repo's own build.
abspath() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
before_arg=$(abspath "${1:-$DEFAULT_BEFORE}")
after_arg=$(abspath "${2:-$repo/bin/bootsrv}")
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: give a positive integer"

work=$(mktemp -d /tmp/bootsrv-compare.XXXXXX)
pids=()  # every background process this script started, killed by PID on exit
netns=() # namespaces this script made (deleting one deletes its veth end)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || continue
		# http.sh and bootsrv serve stop within seconds of SIGTERM (http.sh
		# after its current load run): give them that, then insist.
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ns in "${netns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	if [[ ${KEEP:-} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Nothing is meant to be written to the caller's directory (the repo, as
# often as not, where a stray file would end up in someone's commit).
cd "$work"

# forget PID: it has been waited for; the trap must not signal a recycled PID.
forget() {
	local p keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# Build BEFORE from its commit when it is the default and missing: from a
# git archive, so no worktree is registered in the repo the other side is
# working in, with the Makefile's own build line (iPXE embedded).
if [[ $before_arg == "$DEFAULT_BEFORE" && ! -x $before_arg ]]; then
	say "building $BEFORE_REV into $before_arg"
	command -v make >/dev/null || die "make missing (make deps)"
	src=$work/before-src
	mkdir -p "$src" "$(dirname "$before_arg")"
	git -C "$repo" archive "$BEFORE_REV" | tar -x -C "$src" || die "git archive $BEFORE_REV failed"
	# VERSION: there is no .git in the archive for `git describe`.
	make -C "$src" build BIN="$work/bootsrv-before.new" VERSION="$BEFORE_REV" >"$work/build-before.log" 2>&1 || {
		tail -20 "$work/build-before.log" >&2
		die "building $BEFORE_REV failed"
	}
	mv -f "$work/bootsrv-before.new" "$before_arg"
	rm -rf "$src"
fi
[[ -x $before_arg ]] || die "BEFORE $before_arg missing or not executable"
[[ -x $after_arg ]] || die "AFTER $after_arg missing or not executable (make build)"

# Run private copies: bin/bootsrv may be rebuilt while this runs, and the
# two sides must each be one binary from the first round to the last.
cp "$before_arg" "$work/bootsrv-before"
cp "$after_arg" "$work/bootsrv-after"
declare -A bin=([before]=$work/bootsrv-before [after]=$work/bootsrv-after)
declare -A version path=([before]=$before_arg [after]=$after_arg)
for side in before after; do
	v=$("${bin[$side]}" version 2>/dev/null) || die "${path[$side]} version failed: not a bootsrv binary?"
	version[$side]=${v#bootsrv }
done
say "before=${path[before]} (${version[before]}) after=${path[after]} (${version[after]}), $ROUNDS round(s), parts: $PARTS"

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }'; }

summary=()
failed=0

# ---- HTTP: bench/http.sh once per side per round, alternating, so that
# whatever else loads the machine lands on both sides alike.
declare -A http=() seen=() # http[side|key]: "req/s req/s ..." (one per round)
http_keys=()               # in http.sh's order
if [[ " $PARTS " == *" http "* ]]; then
	command -v go >/dev/null || die "go missing: bench/http.sh builds its load generator"
	# bench/http.sh predates two things bootsrv serve now insists on, and
	# fails without them (until it is fixed itself):
	#  - its load comes from 127.0.0.1 for machines at 10.100.x.x, which
	#    --token-bind address (the default) answers with 403: it needs
	#    --token-bind any;
	#  - a Kubernetes node's Ignition (ROLE worker, the "certificates
	#    issued" case) needs the release files imported, else 404: it gets
	#    pkg/release/releasetest's stand-ins (ELF headers with their
	#    checksums, what pkg/httpd's benchmarks import), written once from
	#    $BEFORE_REV's source so as not to depend on the tree under
	#    refactoring.
	# Both go in through a wrapper that http.sh runs as its BIN: on `serve`
	# it imports, then execs the real serve (same PID: http.sh's own stop
	# still reaches bootsrv). A binary without the flag or the command gets
	# neither.
	releases=$work/releases
	gen=$work/relgen
	mkdir -p "$gen/relstub"
	git -C "$repo" archive "$BEFORE_REV" go.mod go.sum pkg/release/releasetest | tar -x -C "$gen" ||
		die "git archive $BEFORE_REV (release stand-ins) failed"
	cat >"$gen/relstub/stub_test.go" <<'GO'
package relstub

import (
	"os"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/release/releasetest"
)

func TestWrite(t *testing.T) { releasetest.Write(t, os.Getenv("RELEASES_OUT"), releasetest.Default) }
GO
	(cd "$gen" && RELEASES_OUT=$releases go test -count=1 -run '^TestWrite$' ./relstub) >"$work/releases.log" 2>&1 || {
		cat "$work/releases.log" >&2
		die "writing the release stand-ins failed"
	}
	declare -A httpbin=()
	for side in before after; do
		real=${bin[$side]}
		help=$("$real" serve --help 2>&1 || true)
		bind=
		[[ $help == *--token-bind* ]] && bind="--token-bind any"
		rel=
		"$real" assets import --help >/dev/null 2>&1 && rel=$releases
		httpbin[$side]=$work/http-wrap-$side
		sed -e "s|@REAL@|$real|" -e "s|@RELEASES@|$rel|" -e "s|@BIND@|$bind|" >"${httpbin[$side]}" <<'SH'
#!/bin/sh
# bench/compare.sh's wrapper for bench/http.sh (see there for why).
real=@REAL@ releases=@RELEASES@
if [ "$1" = serve ]; then
	shift
	if [ -n "$releases" ]; then
		data=${BOOTSRV_DATA_DIR:-} assets= prev=
		for a in "$@"; do
			case $prev in --data-dir) data=$a ;; --assets-dir) assets=$a ;; esac
			prev=$a
		done
		"$real" assets import --data-dir "$data" ${assets:+--assets-dir "$assets"} "$releases" >/dev/null || exit 1
	fi
	exec "$real" serve @BIND@ "$@"
fi
exec "$real" "$@"
SH
		chmod +x "${httpbin[$side]}"
	done
	for round in $(seq "$ROUNDS"); do
		for side in before after; do
			log=$work/http-$side-$round.log
			step "http round $round/$ROUNDS: $side"
			# TMPDIR: http.sh's work dir (and go build's) inside ours, so
			# that whatever it leaves behind, even killed, goes with ours.
			BIN=${httpbin[$side]} TMPDIR=$work bash "$repo/bench/http.sh" >"$log" 2>&1 &
			pids+=($!)
			rc=0
			wait "$!" || rc=$?
			forget "$!"
			if ((rc != 0)); then
				tail -20 "$log" >&2
				die "bench/http.sh with $side failed (exit $rc)"
			fi
			# httpload's line: "ROLE n=N  ENDPOINT machines=.. errors=E req/s=R p50=.. p99=..".
			while read -r role n ep rest; do
				[[ $rest == *req/s=* ]] || continue
				key="/$ep $role ${n#n=}"
				[[ $role == worker ]] && key+=" (issued)"
				rps=$(sed -n 's/.*req\/s=\([0-9.]*\).*/\1/p' <<<"$rest")
				errs=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$rest")
				# Failed requests are left out of req/s: a side with errors
				# is not comparable, so say so next to its number.
				[[ ${errs:-0} == 0 ]] || say "WARNING: $side $key: $errs failed requests (see $log, KEEP=1)"
				[[ -n ${seen[$key]:-} ]] || { seen[$key]=1 && http_keys+=("$key"); }
				http[$side|$key]="${http[$side|$key]:-} $rps"
				echo "  $side $key: $rps req/s" >&2
			done <"$log"
		done
	done
	echo
	printf '%-32s %-22s %-22s %9s %9s %6s\n' "HTTP req/s (median)" "before (each round)" "after (each round)" before after ratio
	for key in "${http_keys[@]}"; do
		b=$(median <<<"${http[before|$key]:-}")
		a=$(median <<<"${http[after|$key]:-}")
		r=$(ratio "$b" "$a")
		printf '%-32s %-22s %-22s %9.0f %9.0f %6s\n' "$key" "${http[before|$key]# }" "${http[after|$key]# }" "$b" "$a" "$r"
		summary+=("$(printf '%s: before %.0f req/s, after %.0f req/s, ratio %s' "$key" "$b" "$a" "$r")")
	done
fi

# ---- DHCP: DORA/s of `bootsrv serve` as a user runs it (full mode,
# --unknown discover, a pool, TFTP off), in a namespace of its own, against
# perfdhcp in another, joined by a veth; the setup and the rate search of
# pkg/dhcp/perf_test.go (bench/dhcp.sh), minus dnsmasq.
if [[ " $PARTS " == *" dhcp "* ]]; then
	(($(id -u) == 0)) || die "DHCP needs root (network namespaces); PARTS=http runs the rest"
	command -v ip >/dev/null || die "ip missing (iproute2)"
	command -v perfdhcp >/dev/null || die "perfdhcp missing (apt-get install kea-admin, or make deps)"
	command -v ss >/dev/null || die "ss missing (iproute2)"
	# Names unique to this run (the tests use bsds*/bsdc*); an interface
	# name has at most 15 characters.
	id=$$
	ns_srv=bscmps$id ns_cli=bscmpc$id if_srv=bcmps$id if_cli=bcmpc$id
	net=10.79.0 srv_ip=10.79.0.1 cli_ip=10.79.0.2
	pool=10.79.1.0-10.79.20.255 # 5,120 addresses for perfdhcp's 2,000 clients
	clients=2000
	ip netns add "$ns_srv" || die "ip netns add failed"
	netns+=("$ns_srv")
	ip netns add "$ns_cli" || die "ip netns add failed"
	netns+=("$ns_cli")
	ip link add "$if_srv" netns "$ns_srv" type veth peer name "$if_cli" netns "$ns_cli" || die "veth failed"
	ip -n "$ns_srv" addr add "$srv_ip/16" dev "$if_srv"
	ip -n "$ns_cli" addr add "$cli_ip/16" dev "$if_cli"
	ip -n "$ns_srv" link set "$if_srv" up
	ip -n "$ns_srv" link set lo up
	ip -n "$ns_cli" link set "$if_cli" up
	ip -n "$ns_cli" link set lo up
	# perfdhcp's clients say they are UEFI PXE clients (options 60 and 93),
	# so that --unknown discover answers them from the pool and records
	# each as a discovered machine, every lease durable before its ACK.
	vc=$(printf '%s' "PXEClient:Arch:00007:UNDI:003000" | od -An -tx1 | tr -d ' \n')

	srv_pid=
	start_server() { # SIDE DATA LOG
		local side=$1 data=$2 log=$3
		# A fresh state per search, made by the binary that serves it, as
		# the test's is: the same 2,000 clients arrive new on both sides.
		"${bin[$side]}" cluster init --data-dir "$data" --name bench --api-server "$srv_ip" --subnet "$net.0/16" \
			--gateway "$srv_ip" --dns "$srv_ip" >"$log.init" 2>&1 || {
			cat "$log.init" >&2
			die "$side: cluster init failed"
		}
		# ip netns exec execs the binary: $! is bootsrv serve's own PID.
		ip netns exec "$ns_srv" "${bin[$side]}" serve --data-dir "$data" --interface "$if_srv" --listen "$srv_ip" \
			--http-addr "$srv_ip:8080" --tftp-addr "" --dhcp-mode full --dhcp-range "$pool" --unknown discover \
			--log-level "$DHCP_LOG_LEVEL" >"$log" 2>&1 &
		srv_pid=$!
		pids+=("$srv_pid")
		# Ready when port 67 is bound (the log line says so too, but not at
		# --log-level warn).
		for _ in $(seq 100); do
			kill -0 "$srv_pid" 2>/dev/null || {
				tail -20 "$log" >&2
				die "$side: bootsrv serve exited at start"
			}
			[[ -n $(ip netns exec "$ns_srv" ss -Hlun 'sport = :67') ]] && return 0
			sleep 0.1
		done
		tail -20 "$log" >&2
		die "$side: bootsrv serve did not bind port 67 within 10 s"
	}
	stop_server() { # SIDE
		kill -TERM "$srv_pid"
		local rc=0
		# serve finishes what is in flight and commits queued events: 20 s
		# (the test's bound) is plenty, past that it is hung.
		for _ in $(seq 200); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$srv_pid" 2>/dev/null && { say "WARNING: $1: bootsrv serve still running 20 s after SIGTERM: killed"; kill -KILL "$srv_pid"; }
		wait "$srv_pid" || rc=$?
		forget "$srv_pid"
		srv_pid=
		# Not a setup failure: the numbers stand, but a dirty stop is news.
		((rc == 0)) || say "WARNING: $1: bootsrv serve exited $rc after SIGTERM"
	}

	# perf SIDE RATE OUT: one perfdhcp run; sets p_rate p_sent p_lost.
	perf() {
		ip netns exec "$ns_cli" perfdhcp -4 -l "$if_cli" -r "$2" -R "$clients" -p "$DHCP_SECONDS" \
			-g "$DHCP_THREADS" -W 1000000 -o "60,$vc" -o 93,0007 >"$3" 2>&1 &
		local pid=$!
		pids+=("$pid")
		# perfdhcp exits non-zero when packets were dropped; the numbers say
		# how many.
		wait "$pid" || true
		forget "$pid"
		p_rate=$(sed -n 's/^Rate: \([0-9.]*\) 4-way exchanges\/second.*/\1/p' "$3" | head -1)
		p_sent=$(sed -n 's/^sent packets: \([0-9]*\).*/\1/p' "$3" | head -1)
		p_lost=$(sed -n 's/^drops: \([0-9]*\).*/\1/p' "$3" | awk '{s += $1} END {print s + 0}')
		p_rate=${p_rate:-0} p_sent=${p_sent:-0}
	}
	# search SIDE ROUND: perf_test.go's search: double the offered rate
	# from DHCP_START while fewer than 1 % of exchanges are lost, then try
	# once between the best passing and the first failing rate; sets best,
	# perfdhcp's achieved rate (the offered one times SECONDS/(SECONDS+1)
	# when nothing is lost: -W waits a second for late answers).
	search() {
		local side=$1 round=$2 rate=$DHCP_START pass=0
		best=0
		try() {
			local out=$work/perfdhcp-$side-$round-$1.txt
			perf "$side" "$1" "$out"
			local pct
			pct=$(awk -v s="$p_sent" -v l="$p_lost" 'BEGIN { printf "%.2f", (s > 0 ? 100 * l / s : 100) }')
			printf '  %s at -r %d: %.0f DORA/s, %d/%d exchanges lost (%s %%)\n' "$side" "$1" "$p_rate" "$p_lost" "$p_sent" "$pct" >&2
			if ((p_sent == 0)); then
				tail -15 "$out" >&2
				return 1
			fi
			awk -v p="$pct" 'BEGIN { exit !(p < 1) }' || return 1
			best=$(awk -v a="$best" -v b="$p_rate" 'BEGIN { print (b > a ? b : a) }')
			return 0
		}
		while ((rate <= DHCP_MAX)) && try "$rate"; do
			pass=$rate
			rate=$((rate * 2))
		done
		# BENCH_DHCP_BISECT=1 is the test's one try between; more narrow the
		# step (the default's results lie on a coarse grid).
		local lo=$pass hi=$rate mid i
		if ((rate <= DHCP_MAX && pass > 0)); then
			for ((i = 0; i < DHCP_BISECT; i++)); do
				mid=$(((lo + hi) / 2))
				((mid > lo && mid < hi)) || break
				if try "$mid"; then lo=$mid; else hi=$mid; fi
			done
		fi
	}

	declare -A dora=()
	for round in $(seq "$ROUNDS"); do
		for side in before after; do
			step "dhcp round $round/$ROUNDS: $side"
			start_server "$side" "$work/dhcp-data-$side-$round" "$work/serve-$side-$round.log"
			search "$side" "$round"
			stop_server "$side"
			rm -rf "$work/dhcp-data-$side-$round"
			dora[$side]="${dora[$side]:-} $best"
		done
	done
	b=$(median <<<"${dora[before]}")
	a=$(median <<<"${dora[after]}")
	r=$(ratio "$b" "$a")
	echo
	printf '%-32s %-22s %-22s %9s %9s %6s\n' "DHCP DORA/s, < 1 % lost" "before (each round)" "after (each round)" before after ratio
	printf '%-32s %-22s %-22s %9.0f %9.0f %6s\n' "$clients clients, relayed" "${dora[before]# }" "${dora[after]# }" "$b" "$a" "$r"
	summary+=("$(printf 'DHCP DORA/s: before %.0f, after %.0f, ratio %s' "$b" "$a" "$r")")
	# No rate at all on a side is no measurement: the server answered
	# nothing even at the start rate.
	for side in before after; do
		if [[ " ${dora[$side]} " == *" 0 "* ]]; then
			say "$side: a round found no rate with < 1 % lost"
			failed=1
		fi
	done
fi

echo
echo "compare: before=${path[before]} (${version[before]}) after=${path[after]} (${version[after]})"
for line in "${summary[@]}"; do echo "$line"; done
say "took ${SECONDS}s"
exit $failed
