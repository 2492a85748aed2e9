#!/bin/sh
# /init of the lab's node OS (build-node-os.sh): what Flatcar's and Fedora
# CoreOS's initramfs do on a first boot, on a Debian root that the kernel
# unpacked into RAM:
#
#   0. moves the root from the initramfs into a tmpfs (switch_root);
#   1. mounts proc, sys, dev and /run; loads the NIC driver;
#   2. takes a DHCP lease with busybox udhcpc (bootsrv-lab-dhcp.service keeps
#      it once systemd runs);
#   3. runs the real Ignition, `-stage fetch` (ignition.config.url from the
#      kernel command line) then `-stage files`, with the root itself as
#      Ignition's root: it writes the node's files, users and units, and
#      enables units through a systemd preset file;
#   4. execs systemd, which (first boot: no machine id) applies the presets
#      and starts containerd, the kubelet, ... and bootsrv-report.service.
#
# A failure before systemd prints "BOOTSRV-LAB: FAILED <why>" on the serial
# console, reports "failed" to bootsrv when Ignition got as far as writing
# the report URL, and powers off. Every line starts with "BOOTSRV-LAB: ".
# Kernel arguments it reads: ignition.config.url (required),
# bootsrv.lab.ignition_timeout=SECONDS (default 420).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022
say() { echo "BOOTSRV-LAB: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime 2>/dev/null; }

# The kernel unpacked the initrd into "rootfs", which the kubelet cannot
# use (cAdvisor finds no filesystem for device "rootfs" and the kubelet
# stops: "failed to get rootfs info"). So, first of all, move the root
# into a tmpfs of its own (most of the RAM: a node keeps its binaries,
# images and logs there, as a live Flatcar does) and start again there.
if [ "$1" != --on-tmpfs ]; then
	mount -t proc proc /proc && say "moving the root into a tmpfs (uptime $(uptime_s)s)" && umount /proc
	mkdir -p /sysroot
	mount -t tmpfs -o size=85%,mode=0755 root /sysroot
	tar -C / --one-file-system --exclude=./sysroot -cf - . | tar -C /sysroot -xf -
	exec switch_root /sysroot /init --on-tmpfs
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /run
mount -t tmpfs -o mode=0755,nosuid,nodev run /run
mkdir -p /run/bootsrv-lab /run/ignition

fail() {
	say "FAILED $*"
	url=$(sed -n 's/^BOOTSRV_REPORT_URL="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/bootsrv/report.env 2>/dev/null)
	if [ -n "$url" ]; then
		echo "error: $*" | curl -fsS -m 15 -X POST -H 'Content-Type: text/plain' --data-binary @- "$url&state=failed" >/dev/null ||
			say "could not report the failure to bootsrv either"
	fi
	sync
	say "powering off (uptime $(uptime_s)s)"
	echo o >/proc/sysrq-trigger
	# PID 1 must never return: wait for the power to go.
	while :; do sleep 60; done
}

cmdline=$(cat /proc/cmdline)
ign_timeout=420
for w in $cmdline; do
	case "$w" in bootsrv.lab.ignition_timeout=*) ign_timeout=${w#*=} ;; esac
done
say "init started (node OS, uptime $(uptime_s)s, kernel $(uname -r), RAM $(($(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024)) MiB, root $(df -m / | awk 'NR == 2 { print $3 " of " $2 }') MiB used)"

# ------------------------------------------------------------------ network
# No udev yet: load the NIC drivers by hand (virtio_pci first: it makes the
# virtio devices that virtio_net binds).
for m in virtio_pci virtio_net e1000 e1000e; do modprobe -q "$m" 2>/dev/null; done
ip link set lo up
nic=""
i=0
while [ $i -lt 50 ] && [ -z "$nic" ]; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] || { nic=$n; break; }
	done
	[ -n "$nic" ] || sleep 0.1
	i=$((i + 1))
done
[ -n "$nic" ] || fail "no network interface appeared"
echo "NIC=$nic" >/run/bootsrv-lab/nic.env
ip link set "$nic" up
say "nic $nic mac $(cat "/sys/class/net/$nic/address")"
if ! busybox udhcpc -i "$nic" -s /usr/lib/bootsrv-lab/udhcpc.script -q -f -n -t 15 -T 2 -V bootsrv-lab >/run/bootsrv-lab/udhcpc.log 2>&1; then
	cat /run/bootsrv-lab/udhcpc.log
	fail "no DHCP lease on $nic"
fi
. /run/bootsrv-lab/dhcp.env
say "dhcp ip=$ip/$mask router=$router server=$serverid (uptime $(uptime_s)s)"

# ------------------------------------------------------------------ ignition
case " $cmdline " in
*" ignition.config.url="*) ;;
*) fail "no ignition.config.url= on the kernel command line" ;;
esac
for stage in fetch files; do
	say "ignition -stage $stage (timeout ${ign_timeout}s)"
	t=$(uptime_s)
	timeout "$ign_timeout" /usr/lib/bootsrv-lab/ignition -platform metal -stage "$stage" -root / \
		-config-cache /run/ignition.json -state-file /run/ignition/state -log-to-stdout >"/run/ignition-$stage.log" 2>&1
	rc=$?
	say "ignition -stage $stage: rc $rc after $(awk -v a="$t" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s, root $(df -m / | awk 'NR == 2 { print $3 }') MiB used"
	if [ $rc -ne 0 ]; then
		sed 's/^/  ignition: /' "/run/ignition-$stage.log" | tail -n 40
		fail "ignition $stage stage failed (rc $rc)"
	fi
	grep -E 'CRITICAL|ERROR|WARNING' "/run/ignition-$stage.log" | sed 's/^/  ignition: /' | tail -n 20
done
say "ignition done (uptime $(uptime_s)s): exec systemd"
exec /lib/systemd/systemd
