#!/usr/bin/env bash
# fetch-ipxe.sh: put the iPXE builds pinned in assets/ipxe/MANIFEST into
# assets/ipxe/, so that `go build` embeds them (`make assets` calls this).
#
# Source: Debian's ipxe package at the pinned version. When that version is
# installed, the files are copied from it; otherwise the .deb is fetched with
# `apt-get download`, its sha256 checked against the manifest, and unpacked in
# a temporary directory. Every file's size and sha256 are checked; a mismatch
# fails the build and leaves no file behind.
#
# Usage: assets/fetch-ipxe.sh [DEST_DIR]     (default: assets/ipxe)
#        assets/fetch-ipxe.sh --check [DIR]  (verify files already there)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/ipxe/MANIFEST"
check_only=0
if [[ ${1:-} == --check ]]; then
	check_only=1
	shift
fi
dest=${1:-$here/ipxe}

die() {
	echo "fetch-ipxe: $*" >&2
	exit 1
}

[[ -r $manifest ]] || die "no manifest at $manifest"
read -r _ pkg version deb_sha < <(grep -E '^package ' "$manifest") ||
	die "manifest has no package line"

# verify NAME FILE SIZE SHA256: fail with both values on a mismatch.
verify() {
	local name=$1 file=$2 size=$3 sha=$4 got_size got_sha
	got_size=$(stat -L -c %s "$file")
	got_sha=$(sha256sum <"$file" | cut -d' ' -f1)
	if [[ $got_size != "$size" || $got_sha != "$sha" ]]; then
		echo "fetch-ipxe: $name MISMATCH: $file is $got_size bytes sha256 $got_sha;" \
			"the manifest pins $size bytes sha256 $sha ($pkg $version)" >&2
		return 1
	fi
}

if ((check_only)); then
	status=0
	while read -r _ name _ size sha; do
		if [[ ! -e $dest/$name ]]; then
			echo "fetch-ipxe: $dest/$name missing" >&2
			status=1
			continue
		fi
		verify "$name" "$dest/$name" "$size" "$sha" || status=1
	done < <(grep -E '^file ' "$manifest")
	((status == 0)) && echo "fetch-ipxe: $dest matches the manifest ($pkg $version)"
	exit $status
fi

tmp=$(mktemp -d)
# Leave no half-copied file behind, whatever happens (go:embed skips
# dot-files anyway).
trap 'rm -rf "$tmp"; rm -f "$dest"/.*.tmp' EXIT

root=
installed=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
if [[ $installed == "$version" ]]; then
	echo "fetch-ipxe: copying from the installed $pkg $version"
else
	echo "fetch-ipxe: $pkg ${installed:-not installed} here, manifest pins $version: downloading the .deb"
	(cd "$tmp" && apt-get download "$pkg=$version") >&2 ||
		die "cannot download $pkg=$version (run 'apt-get update', or install it: apt-get install $pkg=$version)"
	deb=$(ls "$tmp"/*.deb)
	got=$(sha256sum <"$deb" | cut -d' ' -f1)
	[[ $got == "$deb_sha" ]] || die "$deb has sha256 $got; the manifest pins $deb_sha"
	dpkg-deb -x "$deb" "$tmp/root"
	root=$tmp/root
fi

mkdir -p "$dest"
while read -r _ name path size sha; do
	src=$root$path
	[[ -e $src ]] || die "$src not found in $pkg $version"
	cp -L "$src" "$dest/.$name.tmp"
	if ! verify "$name" "$dest/.$name.tmp" "$size" "$sha"; then
		rm -f "$dest/.$name.tmp"
		die "refusing to embed $name"
	fi
	mv -f "$dest/.$name.tmp" "$dest/$name"
	echo "fetch-ipxe: $name $size bytes sha256 $sha ok"
done < <(grep -E '^file ' "$manifest")
