#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Install the Debian packages llmp's build and tests need, when missing.
# As root: apt-get installs them.  Otherwise: print the exact command, fail.
# LLMP_DEPS lists extra groups: "vm" (QEMU guest tests), "windows" (mingw+wine),
# "kmod" (module build, DKMS), "bench", "fresh" (make check-fresh: debootstrap),
# "debs" (make check-debs: Debian packaging, lintian, mandoc), "matrix" (make
# check-matrix: gcc-multilib for its 32-bit configuration), "all".
set -eu

# afl++ and libclang-rt-14-dev (clang -fsanitize=fuzzer): the llmp-sync tests run real fuzzers;
# openssl: nats_test makes a CA and a server certificate for its TLS case
pkgs="build-essential make pkg-config xz-utils linux-source-6.1 liburing-dev zlib1g-dev libzstd-dev libnats-dev nats-server clang xxd afl++ libclang-rt-14-dev openssl"
groups=" ${LLMP_DEPS:-} "
case "$groups" in *" all "*) groups=" vm windows kmod bench fresh debs matrix " ;; esac
case "$groups" in *" kmod "*|*" vm "*) pkgs="$pkgs linux-headers-amd64 sparse bc flex bison libelf-dev libssl-dev dkms" ;; esac
case "$groups" in *" vm "*) pkgs="$pkgs linux-image-amd64 qemu-system-x86 busybox-static cpio kmod gcc-multilib" ;; esac
case "$groups" in *" matrix "*) pkgs="$pkgs gcc-multilib" ;; esac
case "$groups" in *" windows "*) pkgs="$pkgs gcc-mingw-w64-x86-64 wine wine64" ;; esac
case "$groups" in *" bench "*) pkgs="$pkgs procps" ;; esac
case "$groups" in *" fresh "*) pkgs="$pkgs debootstrap git" ;; esac
case "$groups" in *" debs "*) pkgs="$pkgs debhelper dh-dkms dpkg-dev fakeroot lintian mandoc git" ;; esac

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "llmp: missing packages; run as root:" >&2
	echo "  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "llmp deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
