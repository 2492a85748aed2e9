#!/usr/bin/env bash
# build-os.sh: builds the tiny test OS that the QEMU lab's machines boot:
#   - the real Ignition binary (github.com/coreos/ignition/v2, built static),
#   - the kernel (a copy of Debian's linux-image-amd64 vmlinuz),
#   - an initrd: static busybox, the NIC modules, ignition, init.sh as /init,
#     and passwd-shim.sh as useradd/usermod/userdel/groupadd/groupdel.
#
# Everything goes under the cache dir (default: <repo>/.cache/lab, gitignored)
# and is rebuilt only when its inputs change, so a rerun takes a second.
#
# Usage: examples/qemu-lab/build-os.sh [--force] [--ignition-only]
#   --ignition-only: build (or find cached) only the Ignition binary and print
#   its absolute path as the only line on stdout (pkg/noderun's tests use it).
# Env:   LAB_CACHE (default <repo>/.cache/lab), IGNITION_VERSION (v2.24.0),
#        LAB_KVER (kernel version; default: the newest /boot/vmlinuz-*-amd64).
# Prints the paths of the kernel and initrd it produced on its last two lines:
#   kernel=/abs/path/vmlinuz
#   initrd=/abs/path/initrd.img
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${LAB_CACHE:-$repo/.cache/lab}
ign_version=${IGNITION_VERSION:-v2.24.0}
force=0
ignition_only=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--ignition-only) ignition_only=1 ;;
	esac
done

log() { printf 'build-os: %s\n' "$*" >&2; }
die() { printf 'build-os: ERROR: %s\n' "$*" >&2; exit 1; }

need() {
	local missing=()
	for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
	((${#missing[@]} == 0)) || die "missing commands: ${missing[*]} (Debian: busybox-static cpio kmod golang/gcc libblkid-dev)"
}
if ((ignition_only)); then
	need go gcc
else
	need go gcc cpio gzip modprobe sha256sum
fi

mkdir -p "$cache"

# ---------------------------------------------------------------- ignition
# Built in its own throwaway module under the cache, never in bootsrv's module.
ign_dir=$cache/ignition-$ign_version
ign_bin=$ign_dir/ignition
# -s -w: no symbols or DWARF (62 MB -> ~45 MB, less for the VMs to download).
ign_ldflags="-s -w -linkmode external -extldflags -static \
-X github.com/coreos/ignition/v2/internal/distro.selinuxRelabel=false \
-X github.com/coreos/ignition/v2/internal/version.Raw=$ign_version"
build_ignition() {
	[[ -f /usr/include/blkid/blkid.h ]] || die "libblkid-dev is not installed (Ignition links libblkid)"
	log "building Ignition $ign_version statically (takes a few minutes the first time)"
	mkdir -p "$ign_dir/mod"
	cat >"$ign_dir/mod/go.mod" <<EOF
module bootsrv.lab/ignition-build

go 1.24

require github.com/coreos/ignition/v2 $ign_version
EOF
	# An empty go file is not needed: we build a package of the dependency.
	(
		cd "$ign_dir/mod"
		export CGO_ENABLED=1 GOFLAGS=-mod=mod GOWORK=off
		go build -trimpath -tags osusergo,netgo \
			-ldflags "$ign_ldflags" \
			-o "$ign_bin.tmp.$$" github.com/coreos/ignition/v2/internal
	) || die "go build of Ignition failed"
	mv "$ign_bin.tmp.$$" "$ign_bin"
	echo "$ign_ldflags" >"$ign_dir/ldflags"
}
if ((force)) || [[ ! -x "$ign_bin" ]] || [[ "$(cat "$ign_dir/ldflags" 2>/dev/null)" != "$ign_ldflags" ]]; then
	build_ignition
else
	log "Ignition $ign_version: cached ($ign_bin)"
fi
# A static binary has no interpreter; check, since a dynamic one would not run in the initrd.
if command -v file >/dev/null 2>&1 && ! file "$ign_bin" | grep -q 'statically linked'; then
	die "$ign_bin is not statically linked"
fi
if ((ignition_only)); then
	echo "$ign_bin"
	exit 0
fi

# ---------------------------------------------------------------- kernel
kver=${LAB_KVER:-}
if [[ -z "$kver" ]]; then
	kver=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n1 || true)
fi
[[ -n "$kver" && -f /boot/vmlinuz-$kver ]] || die "no /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64)"
[[ -d /lib/modules/$kver ]] || die "no /lib/modules/$kver"
kernel=$cache/vmlinuz
if ((force)) || ! cmp -s "/boot/vmlinuz-$kver" "$kernel"; then
	log "kernel: copying /boot/vmlinuz-$kver"
	cp "/boot/vmlinuz-$kver" "$kernel.tmp.$$" && mv "$kernel.tmp.$$" "$kernel"
fi
chmod 0644 "$kernel"

# ---------------------------------------------------------------- initrd
busybox=${LAB_BUSYBOX:-/bin/busybox}
[[ -x "$busybox" ]] || die "no $busybox (apt-get install busybox-static)"
if command -v file >/dev/null 2>&1 && ! file -L "$busybox" | grep -q 'statically linked'; then
	die "$busybox is not static (apt-get install busybox-static)"
fi

# NIC modules (virtio-net, e1000, e1000e) with their dependencies, in load order, deduplicated.
mapfile -t mods < <(
	for m in virtio_pci virtio_net e1000 e1000e; do
		modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'
	done | awk '!seen[$0]++'
)
((${#mods[@]} > 0)) || die "modprobe --show-depends found no NIC modules for $kver"
for m in "${mods[@]}"; do
	[[ "$m" == *.ko ]] || die "module $m is compressed; this init loads plain .ko with busybox insmod"
done

initrd=$cache/initrd.img
stamp=$cache/initrd.inputs
inputs=$(
	{
		echo "kver=$kver"
		sha256sum "$here/init.sh" "$here/passwd-shim.sh" "$here/build-os.sh" "$busybox" "$ign_bin" "${mods[@]}"
	} | sha256sum | cut -d' ' -f1
)
if ((force)) || [[ ! -f "$initrd" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]]; then
	log "initrd: building ($((${#mods[@]})) modules, busybox, ignition)"
	root=$(mktemp -d "$cache/initrd-root.XXXXXX")
	trap 'rm -rf "$root"' EXIT
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,sysroot,lib/modules/lab,root}
	cp "$busybox" "$root/bin/busybox"
	# The applet links (busybox --list-full gives bin/sh, sbin/ip, usr/bin/wget, ...).
	while read -r applet; do
		[[ -z "$applet" || "$applet" == "bin/busybox" ]] && continue
		mkdir -p "$root/$(dirname "$applet")"
		ln -sf /bin/busybox "$root/$applet"
	done < <("$busybox" --list-full)
	cp "$ign_bin" "$root/usr/bin/ignition"
	# Ignition's files stage runs useradd/usermod/groupadd --root /sysroot for
	# passwd.users/groups; busybox has none of them: a small shim does.
	cp "$here/passwd-shim.sh" "$root/usr/sbin/lab-passwd-shim"
	chmod 0755 "$root/usr/sbin/lab-passwd-shim"
	for n in useradd usermod userdel groupadd groupdel; do ln -sf lab-passwd-shim "$root/usr/sbin/$n"; done
	: >"$root/lib/modules/lab/order"
	for m in "${mods[@]}"; do
		cp "$m" "$root/lib/modules/lab/"
		basename "$m" >>"$root/lib/modules/lab/order"
	done
	cp "$here/init.sh" "$root/init"
	chmod 0755 "$root/init"
	echo "bootsrv-lab" >"$root/etc/hostname"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	echo "$kver" >"$root/etc/lab-kernel-version"
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$initrd.tmp.$$"
	mv "$initrd.tmp.$$" "$initrd"
	echo "$inputs" >"$stamp"
	rm -rf "$root"
	trap - EXIT
else
	log "initrd: cached ($initrd)"
fi

log "kernel $(du -h "$kernel" | cut -f1), initrd $(du -h "$initrd" | cut -f1), Ignition $ign_version, modules: $(printf '%s ' "${mods[@]##*/}")"
echo "kernel=$kernel"
echo "initrd=$initrd"
