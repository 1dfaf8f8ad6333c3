#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make check-fresh: the README's two commands, on their first run, on a
# freshly installed Debian 12.  A minimal root (debootstrap --variant=minbase
# bookworm, from the mirror apt is configured with) is built once and kept as
# a tarball; each run unpacks it, copies `git archive HEAD` into /src, and
# inside it (chroot, with /proc, /dev and /sys bind-mounted):
#
#   1. as root: apt-get install make (a fresh system has no make);
#   2. as a non-root user (nobody), in a copy of the tree: `make demo` must
#      fail with a non-zero exit that prints the exact `apt-get install`
#      line to run (checked with apt-get -s), having written nothing;
#   3. as root: `make demo`, then `make check`; in the chroot the VM tests
#      cannot run and must say so; everything else must pass.
#
# Everything mounted is unmounted on exit, failure included, and the trial
# root is deleted (LLMP_FRESH_KEEP=1 keeps it for a look).  Needs root.
#
#   tools/check-fresh.sh
#   LLMP_FRESH_CACHE   where the root tarball is kept (default /var/cache/llmp):
#                      fresh-root-<hash of the debootstrap inputs>.tar, or
#                      fresh-root.tar when that exists
#   LLMP_FRESH_MIRROR  the Debian mirror (default: apt's, from
#                      /etc/apt/sources.list.d/debian.sources or sources.list)
#   LLMP_FRESH_DIR     where trial roots are unpacked (default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

say() { echo "check-fresh: $*"; }
die() { echo "check-fresh: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts); run: sudo make check-fresh"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
git -C "$top" rev-parse --verify -q HEAD >/dev/null || die "$top is not a git checkout"

# The cached root, a trial root unpacked and mounted, in_root, step/took:
# shared with tools/check-debs.sh.
# shellcheck source=tools/fresh-root.sh
. "$top/tools/fresh-root.sh"

mkdir -p "$R/src"
git -C "$top" archive HEAD | tar -C "$R/src" -x
say "HEAD $(git -C "$top" rev-parse --short HEAD) in $R/src"

# 1. make, which a fresh system lacks (apt-get update is the user's first step too).
step "as root: apt-get install make"
in_root "apt-get update -q >/dev/null && apt-get install -y -q make >/dev/null" ||
	die "apt-get install make"
say "make installed ($(took))"

# 2. Not root: the exact line to run, a non-zero exit, nothing built.
step "as nobody: make demo (must refuse, printing the apt-get line)"
cp -a "$R/src" "$R/tmp/src"
chown -R nobody:nogroup "$R/tmp/src"
set +e
out=$(chroot --userspec=nobody:nogroup "$R" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp \
	LC_ALL=C /bin/sh -c 'cd /tmp/src && make demo' 2>&1)
rc=$?
set -e
printf '%s\n' "$out" | sed 's/^/    | /'
[ "$rc" != 0 ] || die "make demo as non-root exited 0 without the packages"
line=$(echo "$out" | sed -n 's/^ *\(apt-get update && apt-get install -y .*\)$/\1/p' | head -1)
[ -n "$line" ] || die "make demo as non-root printed no 'apt-get install' line"
# `git archive` has no build/: whatever is there, this make wrote (the
# configure step included: the goals that install first probe nothing).
built=""
[ ! -d "$R/tmp/src/build" ] || built=$(cd "$R/tmp/src" && find build -type f | head -5)
[ -z "$built" ] || die "make demo as non-root wrote files: $built"
# The line is exact: every package it names exists (apt-get's simulation).
in_root "apt-get install -s -y ${line#*apt-get install -y } >/dev/null" ||
	die "the printed line does not install: $line"
say "refused with exit $rc, printed '$line' (apt-get -s resolves it), built nothing"
rm -rf "$R/tmp/src"

# 3. As root: the README's two commands.
step "as root: make demo"
if ! in_root "cd /src && make demo" 2>&1 | sed 's/^/    | /'; then
	die "make demo failed on its first run"
fi
say "make demo passed on its first run ($(took))"

step "as root: make check"
log=$R/check.log
set +e
in_root "cd /src && make check" > "$log" 2>&1
rc=$?
set -e
grep -E '^(not ok|ok .* # SKIP|check:|tests/vm:)|^[0-9]+ passed' "$log" | sed 's/^/    | /'
if [ "$rc" != 0 ]; then
	grep -B30 '^ *not ok' "$log" | tail -80 >&2
	die "make check failed in the fresh root (exit $rc)"
fi
if ! grep -q '^check: VM tests skipped' "$log" || ! grep -q '^tests/vm: ' "$log"; then
	die "make check in the chroot did not say why the VM tests were skipped"
fi
say "make check passed: $(grep -E '^[0-9]+ passed' "$log" | tail -1); VM tests skipped: \
$(grep '^tests/vm: ' "$log" | head -1) ($(took))"
say "all passed"
