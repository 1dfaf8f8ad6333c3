#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Extract the kernel's kselftest headers from Debian's linux-source tarball
# into $1 (never committed: build/ is ignored).
set -eu
out=$1
hdrs="kselftest_harness.h kselftest.h"
ok=1
for h in $hdrs; do [ -s "$out/$h" ] || ok=0; done
[ $ok = 1 ] && exit 0
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
if [ -z "$tarball" ]; then
	echo "get-harness: no /usr/src/linux-source-*.tar.xz; apt-get install linux-source-6.1" >&2
	exit 1
fi
top=$(basename "$tarball" .tar.xz)
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
members=""
for h in $hdrs; do members="$members $top/tools/testing/selftests/$h"; done
# shellcheck disable=SC2086
tar -xJf "$tarball" -C "$tmp" $members
for h in $hdrs; do cp "$tmp/$top/tools/testing/selftests/$h" "$out/$h"; done
echo "get-harness: $hdrs from $(basename "$tarball")" >&2
