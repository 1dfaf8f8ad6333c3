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

# ---- the mirror apt uses -------------------------------------------------------
apt_mirror() {
	local f=/etc/apt/sources.list.d/debian.sources m=""
	if [ -f "$f" ]; then
		# deb822: the first stanza whose Suites has "bookworm" itself.
		m=$(awk 'BEGIN { RS = "" } /(^|\n)Suites:([^\n]* )?bookworm( |\n|$)/ {
				if (match($0, /(^|\n)URIs: *[^ \n]+/)) {
					s = substr($0, RSTART, RLENGTH); sub(/.*URIs: */, "", s); print s; exit
				} }' "$f")
	fi
	if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}
mirror=${LLMP_FRESH_MIRROR:-$(apt_mirror)}
arch=$(dpkg --print-architecture)
inputs="debootstrap $(dpkg-query -W -f='${Version}' debootstrap) --variant=minbase --arch=$arch bookworm $mirror"
hash=$(echo "$inputs" | sha256sum | cut -c1-16)
cache=${LLMP_FRESH_CACHE:-/var/cache/llmp}
mkdir -p "$cache"

# ---- the root tarball, built once ---------------------------------------------
tarball=$cache/fresh-root-$hash.tar
if [ ! -f "$tarball" ] && [ -f "$cache/fresh-root.tar" ]; then
	tarball=$cache/fresh-root.tar
fi
if [ ! -f "$tarball" ]; then
	say "building the root: $inputs"
	t0=$(date +%s)
	tmp=$(mktemp -d "$cache/fresh-build.XXXXXX")
	if ! debootstrap --variant=minbase --arch="$arch" bookworm "$tmp" "$mirror" \
		> "$tmp.log" 2>&1; then
		tail -30 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		die "debootstrap failed"
	fi
	tar -C "$tmp" -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	rm -rf "$tmp" "$tmp.log"
	say "root built in $(($(date +%s) - t0)) s: $tarball"
fi
say "root: $tarball"

# ---- a trial root, mounted; unmounted and removed on any exit -----------------
R=$(mktemp -d "${LLMP_FRESH_DIR:-/var/tmp}/llmp-fresh.XXXXXX")
mounted=()
cleanup() {
	local rc=$? m busy=0
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		m=${mounted[i]}
		mountpoint -q "$m" && { umount -R "$m" 2>/dev/null || umount -R -l "$m" || busy=1; }
	done
	if [ "$busy" = 0 ] && ! findmnt -R -n -o TARGET "$R" | grep -q .; then
		if [ "${LLMP_FRESH_KEEP:-0}" = 1 ]; then
			say "kept the trial root: $R"
		else
			rm -rf --one-file-system "$R"
		fi
	else
		echo "check-fresh: something is still mounted under $R; not deleting it" >&2
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tar -C "$R" -xf "$tarball"
mkdir -p "$R/src"
git -C "$top" archive HEAD | tar -C "$R/src" -x
say "HEAD $(git -C "$top" rev-parse --short HEAD) in $R/src"
cp /etc/resolv.conf "$R/etc/resolv.conf"
mount -t proc proc "$R/proc" && mounted+=("$R/proc")
mount --rbind /dev "$R/dev" && mounted+=("$R/dev")
mount --make-rslave "$R/dev"
mount -t sysfs sysfs "$R/sys" && mounted+=("$R/sys")

# Run a command in the root: in R as root, with a plain environment.
in_root() {
	chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive /bin/sh -c "$*"
}
step_t=0
step() { step_t=$(date +%s); say "--- $*"; }
took() { echo "$(($(date +%s) - step_t)) s"; }

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
