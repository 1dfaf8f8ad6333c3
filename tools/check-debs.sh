#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make check-debs: the Debian packages, built and tried as a user would.
#
#   0. tools/check-man.sh: the man pages they ship are lint-clean, cover
#      every function of include/llmp/*.h, and their EXAMPLEs build and run;
#   1. `git archive HEAD` into build/debs/llmp-<version>/ (never the clone's
#      parent directory) and `dpkg-buildpackage -us -uc -b` there: libllmp0,
#      libllmp-dev, llmp-tools and llmp-dkms land in build/debs/;
#   2. lintian on them: no error and no warning that debian/*.lintian-overrides
#      does not justify (--fail-on error,warning);
#   3. (root only) into the cached fresh Debian 12 root of tools/check-fresh.sh
#      (tools/fresh-root.sh): apt-get install the four .debs with
#      linux-headers-amd64, gcc and pkg-config, then inside it
#        - compile README.md's example with `pkg-config --cflags --libs
#          libllmp` against the installed shared library, and run it;
#        - `llmp-broker --help`, and check the unit, the defaults file, the
#          group llmp, the udev rule and the section-3 man pages are there;
#        - `dkms build` + `dkms install` of llmp/<version> for the kernel
#          whose headers are installed there, and check llmp.ko's vermagic.
#
# Each step prints its duration.  Not root: steps 1 and 2 only, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

say() { echo "check-debs: $*"; }
die() { echo "check-debs: FAILED: $*" >&2; exit 1; }
step_t=0
step() { step_t=$(date +%s); say "--- $*"; }
took() { echo "$(($(date +%s) - step_t)) s"; }

for t in dpkg-buildpackage dh lintian fakeroot; do
	command -v $t >/dev/null || die "$t missing; run: make deps LLMP_DEPS=debs (as root)"
done
git -C "$top" rev-parse --verify -q HEAD >/dev/null || die "$top is not a git checkout"
ver=$(sed -n 's/^VERSION := //p' Makefile)
clver=$(dpkg-parsechangelog -l debian/changelog -S Version)
[ "$ver" = "$clver" ] || die "debian/changelog says $clver, the Makefile $ver"

# ---- 0. the man pages libllmp-dev and llmp-tools ship -----------------------------
step "man pages (tools/check-man.sh: mandoc -Tlint, coverage, EXAMPLEs)"
tools/check-man.sh | sed 's/^/    | /'
say "man pages ok ($(took))"

# ---- 1. build ------------------------------------------------------------------
step "dpkg-buildpackage -us -uc -b (HEAD $(git rev-parse --short HEAD), llmp $ver)"
out=$top/build/debs
rm -rf "$out"
mkdir -p "$out"
git archive --prefix="llmp-$ver/" HEAD | tar -C "$out" -x
if ! (cd "$out/llmp-$ver" && dpkg-buildpackage -us -uc -b) > "$out/build.log" 2>&1; then
	tail -40 "$out/build.log" >&2
	die "dpkg-buildpackage failed (log: $out/build.log)"
fi
debs=()
for p in libllmp0 libllmp-dev llmp-tools llmp-dkms; do
	f=$(ls "$out"/${p}_"$ver"_*.deb 2>/dev/null | head -1)
	[ -n "$f" ] || die "no $p .deb in $out"
	debs+=("$f")
done
say "built $(printf '%s ' "${debs[@]##*/}")($(took))"

# ---- 2. lintian ----------------------------------------------------------------
step "lintian"
changes=$(ls "$out"/llmp_"$ver"_*.changes | head -1)
set +e
lintian --fail-on error,warning --display-info --show-overrides "$changes" > "$out/lintian.log" 2>&1
rc=$?
set -e
sed 's/^/    | /' "$out/lintian.log"
[ "$rc" = 0 ] || die "lintian reports errors or unjustified warnings"
say "lintian: $(grep -c '^E:' "$out/lintian.log" || true) errors, \
$(grep -c '^W:' "$out/lintian.log" || true) warnings, \
$(grep -c '^O:' "$out/lintian.log" || true) overridden ($(took))"

if [ "$(id -u)" != 0 ]; then
	say "installing into the fresh root needs root (chroot, mounts); not run: sudo make check-debs"
	exit 0
fi

# ---- 3. the fresh root ---------------------------------------------------------
step "fresh Debian 12 root"
# shellcheck source=tools/fresh-root.sh
. "$top/tools/fresh-root.sh"
mkdir -p "$R/debs"
cp "${debs[@]}" "$R/debs/"
say "root ready ($(took))"

step "apt-get install the .debs, linux-headers-amd64, gcc, pkg-config"
if ! in_root "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
	linux-headers-amd64 gcc libc6-dev pkg-config /debs/*.deb" > "$R/install.log" 2>&1; then
	tail -40 "$R/install.log" >&2
	die "apt-get install of the packages failed"
fi
grep -iE 'dkms|llmp' "$R/install.log" | grep -v '^Get:' | sed 's/^/    | /' | tail -20
say "installed ($(took))"

step "README example against the installed library (pkg-config --cflags --libs libllmp)"
awk '/^## Example/ { sec = 1; next }
	sec && /^## / { exit }
	sec && !inb && /^```c[[:space:]]*$/ { inb = 1; next }
	inb && /^```[[:space:]]*$/ { exit }
	inb { print }' README.md > "$R/tmp/example.c"
[ -s "$R/tmp/example.c" ] || die "no \`\`\`c block in README.md's \"## Example\" section"
in_root 'cd /tmp && cc -std=gnu11 -Wall -Wextra -Werror -o example example.c \
	$(pkg-config --cflags --libs libllmp)' || die "the README example does not build against the packages"
lib=$(in_root 'ldd /tmp/example' | awk '/libllmp/ { print $3 }')
case "$lib" in /usr/lib/*/libllmp.so.0) ;; *) die "the example is not linked to the packaged libllmp.so.0 (ldd: '$lib')" ;; esac
in_root 'timeout 30 /tmp/example' | sed 's/^/    | /' || die "the README example failed"
say "example built with '$(in_root 'pkg-config --cflags --libs libllmp')', linked to $lib, ran ($(took))"

step "llmp-tools and libllmp-dev contents"
in_root 'llmp-broker --help' > "$R/tmp/help" || die "llmp-broker --help failed"
grep -q '^usage: llmp-broker' "$R/tmp/help" || die "llmp-broker --help printed no usage"
for f in /lib/systemd/system/llmp-broker.service /etc/default/llmp-broker \
	/usr/include/llmp/uapi/llmp.h /usr/include/llmp/llmp.h; do
	[ -f "$R$f" ] || die "$f is not installed"
done
in_root 'getent group llmp >/dev/null && getent passwd llmp >/dev/null' || die "no user/group llmp"
ls "$R"/lib/udev/rules.d/*llmp*.rules >/dev/null 2>&1 || die "no udev rule for /dev/llmp"
grep -q 'GROUP="llmp", MODE="0660"' "$R"/lib/udev/rules.d/*llmp*.rules || die "the udev rule does not give /dev/llmp to llmp 0660"
n3=$(ls "$R"/usr/share/man/man3 2>/dev/null | grep -c '^llmp' || true)
n1=$(ls "$R"/usr/share/man/man1 2>/dev/null | grep -c '^llmp' || true)
say "llmp-broker --help ok; unit, defaults, uapi header, user/group llmp, udev rule; \
$n1 section-1 and $n3 section-3 man pages ($(took))"

step "DKMS: build and install llmp/$ver for the root's kernel headers"
kver=$(ls "$R/lib/modules" | sort -V | tail -1)
[ -n "$kver" ] && [ -d "$R/lib/modules/$kver/build" ] || die "linux-headers-amd64 left no /lib/modules/*/build"
set +e
in_root "dkms build -m llmp -v $ver -k $kver && dkms install -m llmp -v $ver -k $kver --force" > "$R/dkms.log" 2>&1
rc=$?
set -e
if [ "$rc" != 0 ]; then
	tail -40 "$R/dkms.log" >&2
	cat "$R"/var/lib/dkms/llmp/"$ver"/build/make.log >&2 2>/dev/null || true
	die "dkms could not build llmp/$ver for $kver"
fi
status=$(in_root "dkms status -m llmp -v $ver -k $kver")
case "$status" in *": installed"*) ;; *) die "dkms status: $status" ;; esac
ko=$(cd "$R" && find "lib/modules/$kver" -name 'llmp.ko*' | head -1)
[ -n "$ko" ] || die "no llmp.ko under /lib/modules/$kver"
vermagic=$(in_root "modinfo -F vermagic /$ko")
case "$vermagic" in "$kver "*) ;; *) die "/$ko has vermagic '$vermagic', not $kver" ;; esac
say "dkms: $status; /$ko, vermagic ok ($(took))"
say "all passed"
