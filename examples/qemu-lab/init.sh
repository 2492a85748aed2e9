#!/bin/sh
# /init of the QEMU lab's tiny test OS (busybox sh, PID 1).
#
#   1. mounts proc, sys, dev, /run, /tmp and a tmpfs as /sysroot;
#   2. loads the NIC modules (virtio-net, e1000, e1000e) and gets an address
#      with udhcpc on the first NIC;
#   3. runs the real Ignition: `-stage fetch` (it reads ignition.config.url
#      from the kernel command line) then `-stage files` into /sysroot;
#   4. reads BOOTSRV_REPORT_URL from /sysroot/etc/bootsrv/report.env and POSTs
#      to "$BOOTSRV_REPORT_URL&state=booted" one line per regular file Ignition
#      wrote (paths as on the real root, /etc/...): "<sha256>  <path>" for a
#      file under 1 MiB, "size=<bytes>  <path>" for a larger one (the
#      binaries Ignition downloads: it checked their sha512 itself, and
#      hashing hundreds of MB again with busybox under TCG takes minutes);
#   5. prints "BOOTSRV-LAB: reported booted" (or "BOOTSRV-LAB: FAILED <why>")
#      on the console and powers off.
#
# /sysroot is a tmpfs (half the VM's RAM): a master's binaries are ~740 MB,
# a worker's ~250 MB, so give a master 2 GB and a worker 1 GB.
#
# Every line it prints starts with "BOOTSRV-LAB: ", so lab.sh (and tests) can
# read the serial log. Optional kernel arguments:
#   bootsrv.lab.ignition_timeout=SECONDS  bound on each Ignition stage (default
#                                         420: a master's files stage downloads
#                                         ~740 MB, 55-70 s under TCG here)
#   bootsrv.lab.dhcp_tries=N              udhcpc discover attempts (default 15)

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

say() { echo "BOOTSRV-LAB: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime 2>/dev/null; }

report_url=""

finish() {
	sync
	say "powering off (uptime $(uptime_s)s)"
	poweroff -f
	sleep 5
	echo o >/proc/sysrq-trigger 2>/dev/null
	while :; do sleep 60; done
}

post() { # post STATE BODYFILE [TRIES]: POST the file to the report URL with &state=STATE
	case "$report_url" in
	*\?*) u="$report_url&state=$1" ;;
	*) u="$report_url?state=$1" ;;
	esac
	i=0
	while [ $i -lt "${3:-5}" ]; do
		i=$((i + 1))
		# busybox 1.35's wget -T segfaults: bound it with timeout instead.
		if timeout 15 wget -q -O /tmp/report.reply --header 'Content-Type: text/plain' \
			--post-file "$2" "$u"; then
			return 0
		fi
		sleep 2
	done
	return 1
}

fail() {
	# Report first, then print the marker: lab.sh stops the VM soon after it.
	if [ -n "$report_url" ]; then
		echo "error: $*" >/tmp/failed.txt
		post failed /tmp/failed.txt 2 || say "could not report the failure to the server either"
	fi
	say "FAILED $*"
	finish
}

mkdir -p /proc /sys /dev /run /tmp /sysroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs dev /dev
[ -c /dev/console ] || mknod /dev/console c 5 1
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0755 sysroot /sysroot
mkdir -p /run/ignition
hostname bootsrv-lab

cmdline=$(cat /proc/cmdline)
arg() { # arg NAME DEFAULT: the value of NAME=... on the kernel command line
	v=""
	for w in $cmdline; do
		case "$w" in "$1"=*) v=${w#*=} ;; esac
	done
	echo "${v:-$2}"
}
ign_timeout=$(arg bootsrv.lab.ignition_timeout 420)
dhcp_tries=$(arg bootsrv.lab.dhcp_tries 15)

mem_kb() { sed -n "s/^$1: *\([0-9]*\) kB/\1/p" /proc/meminfo; }
sysroot_mb() { df -m /sysroot | awk 'NR == 2 { print $3 " of " $2 }'; }
say "init started (uptime $(uptime_s)s, kernel $(uname -r), RAM $(($(mem_kb MemTotal) / 1024)) MiB, /sysroot tmpfs $(sysroot_mb) MiB used)"
say "cmdline: $cmdline"

# ------------------------------------------------------------------ network
while read -r m; do
	insmod "/lib/modules/lab/$m" 2>/dev/null || say "insmod $m failed"
done </lib/modules/lab/order
ip link set lo up

nic=""
i=0
while [ $i -lt 50 ] && [ -z "$nic" ]; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		nic=$n
		break
	done
	[ -z "$nic" ] && sleep 0.1
	i=$((i + 1))
done
[ -n "$nic" ] || fail "no network interface appeared"
say "nic $nic mac $(cat /sys/class/net/$nic/address)"
ip link set "$nic" up

cat >/run/udhcpc.script <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface" && break; done
	: >/etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
	{ echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "serverid=$serverid"; } >/run/dhcp.env
	;;
esac
exit 0
EOF
chmod 0755 /run/udhcpc.script
# -V: a vendor class that says what this is; -x hostname: none, bootsrv names machines.
if ! udhcpc -i "$nic" -s /run/udhcpc.script -q -f -n -t "$dhcp_tries" -T 2 -V bootsrv-lab >/run/udhcpc.log 2>&1; then
	cat /run/udhcpc.log
	fail "no DHCP lease on $nic"
fi
. /run/dhcp.env
say "dhcp ip=$ip/$mask router=$router server=$serverid (uptime $(uptime_s)s)"

# ------------------------------------------------------------------ ignition
case " $cmdline " in
*" ignition.config.url="*) ;;
*) fail "no ignition.config.url= on the kernel command line" ;;
esac

run_ignition() {
	say "ignition -stage $1 (timeout ${ign_timeout}s)"
	t_start=$(uptime_s)
	# The files stage downloads the node's binaries: show how far it got.
	( while sleep 15; do say "ignition -stage $1: /sysroot $(sysroot_mb) MiB used (uptime $(uptime_s)s)"; done ) &
	progress=$!
	timeout "$ign_timeout" ignition -platform metal -stage "$1" -root /sysroot \
		-config-cache /run/ignition.json -state-file /run/ignition/state \
		-log-to-stdout >"/run/ignition-$1.log" 2>&1
	rc=$?
	kill "$progress" 2>/dev/null
	say "ignition -stage $1: rc $rc after $(awk -v a="$t_start" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s, /sysroot $(sysroot_mb) MiB used"
	# Ignition logs a lot; show the lines that matter (and everything on failure).
	if [ $rc -ne 0 ]; then
		sed 's/^/  ignition: /' "/run/ignition-$1.log" | tail -n 40
		return $rc
	fi
	grep -E 'GET |\[finished\]|CRITICAL|ERROR|WARNING' "/run/ignition-$1.log" |
		sed 's/^/  ignition: /' | tail -n 40
	return 0
}
run_ignition fetch || fail "ignition fetch stage failed (rc $?)"
run_ignition files || fail "ignition files stage failed (rc $?)"
say "ignition done (uptime $(uptime_s)s, /sysroot $(sysroot_mb) MiB used, RAM available $(($(mem_kb MemAvailable) / 1024)) of $(($(mem_kb MemTotal) / 1024)) MiB)"

# ------------------------------------------------------------------ report
env_file=/sysroot/etc/bootsrv/report.env
[ -f "$env_file" ] || fail "Ignition wrote no /etc/bootsrv/report.env"
# Parsed, not sourced: take BOOTSRV_REPORT_URL=..., with or without quotes.
report_url=$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}BOOTSRV_REPORT_URL=//p' "$env_file" |
	tail -n 1 | sed -e "s/^\"\(.*\)\"[[:space:]]*$/\1/" -e "s/^'\(.*\)'[[:space:]]*$/\1/")
case "$report_url" in
http://* | https://*) ;;
*) report_url=""; fail "no BOOTSRV_REPORT_URL=http... in /etc/bootsrv/report.env" ;;
esac

# Small files by sha256; large ones (the downloaded binaries, which Ignition
# refused unless their sha512 matched the config's) by size.
(cd /sysroot && find . -type f | LC_ALL=C sort | while IFS= read -r f; do
	size=$(stat -c %s "$f")
	if [ "$size" -lt 1048576 ]; then
		sha256sum "$f" | sed 's|  \./|  /|'
	else
		echo "size=$size  ${f#.}"
	fi
done) >/tmp/report.txt
[ -s /tmp/report.txt ] || fail "Ignition wrote no files"
while IFS= read -r l; do say "file $l"; done </tmp/report.txt

if post booted /tmp/report.txt; then
	say "reported booted (uptime $(uptime_s)s, $(wc -l </tmp/report.txt) files)"
else
	say "FAILED could not POST the report to $report_url"
fi
finish
