#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# `make dkms-check`: the DKMS route of Documentation/kmod.rst, end to end, in
# a scratch directory instead of the system's trees: `make dkms DESTDIR=`
# the scratch dir (sources and dkms.conf under usr/src/llmp-<version>),
# then `dkms add`, `build` and `install` with --sourcetree, --dkmstree and
# --installtree pointing into it, for the kernel whose headers KDIR names
# (default: the newest /lib/modules/*/build, as `make kmod`). Checks that
# dkms reports the module installed and that the installed llmp.ko was
# built for that kernel (modinfo vermagic). Outside the scratch dir dkms
# may create its module-signing key (/var/lib/dkms/mok.*) and re-run
# depmod for that kernel; nothing of llmp is left there.
#
# Usage: tools/dkms-check.sh [KDIR]
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
kdir=${1:-${KDIR:-}}
[ -n "$kdir" ] || kdir=$(ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -n 1 || true)
die() { echo "dkms-check: $*" >&2; exit 1; }
command -v dkms >/dev/null 2>&1 || die "dkms is not installed (apt-get install dkms)"
[ -n "$kdir" ] && [ -d "$kdir" ] || die "no kernel headers (apt-get install linux-headers-amd64)"
case "$kdir" in
/lib/modules/*/build) kver=${kdir#/lib/modules/}; kver=${kver%/build} ;;
*) kver=$(make -s -C "$kdir" kernelrelease 2>/dev/null) || die "cannot tell the release of $kdir" ;;
esac

scratch=$(mktemp -d /tmp/llmp-dkms.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
make -s -C "$top" dkms DESTDIR="$scratch" >/dev/null
conf=$(ls "$scratch"/usr/src/llmp-*/dkms.conf)
# Every source of the module (kmod/Kbuild builds it from all of them).
for f in "$top"/kmod/*.c "$top"/kmod/*.h; do
	[ -f "${conf%/dkms.conf}/kmod/${f##*/}" ] || die "make dkms did not install kmod/${f##*/}"
done
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$conf")
[ -n "$ver" ] || die "no PACKAGE_VERSION in $conf"
mkdir -p "$scratch/dkms" "$scratch/modules/$kver"
trees="--sourcetree $scratch/usr/src --dkmstree $scratch/dkms --installtree $scratch/modules"
log=$scratch/dkms.log
for step in add build install; do
	# shellcheck disable=SC2086 # $trees is a list of options
	if ! dkms $step -m llmp -v "$ver" -k "$kver" $trees >> "$log" 2>&1; then
		sed 's/^/    /' "$log" >&2
		die "dkms $step failed for llmp/$ver on $kver"
	fi
done
# shellcheck disable=SC2086
status=$(dkms status -m llmp -v "$ver" -k "$kver" $trees 2>&1)
case "$status" in *": installed"*) ;; *) die "dkms status says: $status" ;; esac
ko=$(find "$scratch/modules/$kver" -name 'llmp.ko*' | head -n 1)
[ -n "$ko" ] || die "dkms install left no llmp.ko under $scratch/modules/$kver"
vermagic=$(modinfo -F vermagic "$ko")
case "$vermagic" in "$kver "*) ;; *) die "$ko has vermagic '$vermagic', not for $kver" ;; esac
echo "dkms-check: llmp/$ver added, built and installed for $kver (${ko#"$scratch"/}, vermagic ok)"
