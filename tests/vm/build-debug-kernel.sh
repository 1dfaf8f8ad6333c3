#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Build the llmp debug kernel (KASAN, lockdep, kmemleak, failslab, KUnit) from
# Debian's linux-source tarball: tinyconfig + tests/vm/debug.config.
# Cached outside the clone: the tree lives in $LLMP_CACHE/debug-kernel-<hash>,
# where <hash> covers the tarball (name, size, mtime) and the fragment, so a
# fresh clone (CI) reuses it and a changed input builds a new one. Prints the
# path of the tree on the last line.
#
# Usage: tests/vm/build-debug-kernel.sh [-f]   (-f: rebuild even if cached)
# Env:   LLMP_CACHE (default /var/cache/llmp when it can be created and
#        written, else build/cache), LLMP_KERNEL_TARBALL (default: newest
#        /usr/src/linux-source-*.tar.xz), LLMP_VM_JOBS (default: nproc)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${LLMP_CACHE:-/var/cache/llmp}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=$top/build/cache
fi
frag=$here/debug.config
jobs=${LLMP_VM_JOBS:-$(nproc)}
force=0
[ "${1:-}" = "-f" ] && force=1

die() { echo "build-debug-kernel: $*" >&2; exit 1; }

tarball=${LLMP_KERNEL_TARBALL:-}
if [ -z "$tarball" ]; then
	tarball=$(ls -1 /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$tarball" ] && [ -r "$tarball" ] ||
	die "no kernel source tarball (apt-get install linux-source-6.1)"

want=$( (cat "$frag"; ls -l --time-style=+%s "$tarball") | sha256sum | cut -d' ' -f1)
tree=$cache/debug-kernel-$(echo "$want" | cut -c1-16)
stamp=$tree/.llmp-stamp

if [ "$force" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
   [ -f "$tree/arch/x86/boot/bzImage" ]; then
	echo "build-debug-kernel: cached ($tree)" >&2
	echo "$tree"
	exit 0
fi

mkdir -p "$cache"
if [ ! -f "$tree/Makefile" ]; then
	echo "build-debug-kernel: extracting $tarball" >&2
	rm -rf "$tree.tmp"
	mkdir -p "$tree.tmp"
	tar -xJf "$tarball" -C "$tree.tmp" --strip-components=1
	rm -rf "$tree"
	mv "$tree.tmp" "$tree"
fi
rm -f "$stamp"

cd "$tree"
kmake() { nice -n 10 make -s ARCH=x86_64 "$@"; }

echo "build-debug-kernel: configuring (tinyconfig + $(basename "$frag"))" >&2
kmake tinyconfig >/dev/null
# Later assignments override earlier ones; olddefconfig then resolves
# dependencies and drops whatever cannot be satisfied (checked below).
cat "$frag" >> .config
kmake olddefconfig >/dev/null 2>&1
kmake olddefconfig >/dev/null 2>&1

missing=0
for sym in $(sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=y$/\1/p' "$frag"); do
	if ! grep -qx "$sym=y" .config; then
		echo "build-debug-kernel: $sym is not =y after olddefconfig" >&2
		missing=1
	fi
done
for sym in $(sed -n 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1/p' "$frag"); do
	if grep -q "^$sym=y" .config; then
		echo "build-debug-kernel: $sym is set but the fragment says off" >&2
		missing=1
	fi
done
[ "$missing" = 0 ] || die "config fragment not satisfied; see $tree/.config"

echo "build-debug-kernel: building with -j$jobs (several minutes)" >&2
kmake -j"$jobs" bzImage modules
[ -f arch/x86/boot/bzImage ] || die "no bzImage produced"
[ -f Module.symvers ] || die "no Module.symvers produced"
echo "$want" > "$stamp"
echo "build-debug-kernel: done" >&2
echo "$tree"
