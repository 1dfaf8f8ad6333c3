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
#      (tools/fresh-root.sh; apt's downloads cached in LLMP_FRESH_CACHE/
#      apt-archives): `apt-get install ./*.deb` with linux-headers-amd64, gcc,
#      pkg-config, systemd and man-db from the mirror, then inside it
#        - compile README.md's example with `pkg-config --cflags --libs
#          libllmp` against the installed shared library, and run it;
#        - llmp-broker serves and llmp-client sends a message and reads it
#          back through it (private /dev/shm);
#        - `llmp-broker --help`; the unit passes `systemd-analyze verify`
#          and is enabled; the defaults file, the user and group llmp, the
#          udev rule and the man pages are there;
#        - llmp.ko was built by DKMS (llmp-dkms's postinst, else `dkms
#          build`) for the kernel whose headers are installed: vermagic;
#        - `apt-get purge` leaves no file of the packages and nothing named
#          *llmp*; the system user and group llmp stay (Debian practice).
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
lintian --fail-on error,warning --display-info "$changes" > "$out/lintian.log" 2>&1
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
# A private /dev/shm (the root's /dev is the host's, bound), so the broker and
# client below neither see nor leave segments of anything else.
mount -t tmpfs -o mode=1777,size=256m llmp-shm "$R/dev/shm" && mounted+=("$R/dev/shm")
# What apt downloads is kept between runs in $cache/apt-archives: apt-get
# update still asks the mirror, and only what changed there is fetched again.
debcache=$cache/apt-archives
mkdir -p "$debcache/partial"
mount --bind "$debcache" "$R/var/cache/apt/archives" && mounted+=("$R/var/cache/apt/archives")
mkdir -p "$R/debs"
cp "${debs[@]}" "$R/debs/"
say "root ready ($(took))"

pkgs="libllmp0 libllmp-dev llmp-tools llmp-dkms"
step "apt-get install ./*.deb (with linux-headers-amd64, gcc, pkg-config, systemd, man-db)"
if ! in_root "apt-get update -q && cd /debs && apt-get install -y -q --no-install-recommends \
	linux-headers-amd64 gcc libc6-dev pkg-config systemd man-db ./*.deb" > "$R/install.log" 2>&1; then
	tail -40 "$R/install.log" >&2
	die "apt-get install of the packages failed"
fi
grep -E '^Fetched |InRelease' "$R/install.log" | sed 's/^/    | /'
grep -E 'dkms|llmp' "$R/install.log" | grep -vE '^(Get|Selecting|Preparing|Unpacking)' | sed 's/^/    | /' | tail -12
for p in $pkgs; do
	in_root "dpkg-query -W -f='\${Status}' $p" | grep -q 'install ok installed' || die "$p is not installed"
done
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
# /lib is /usr/lib in Debian 12 (merged /usr): ldd may name either.
case "$lib" in /usr/lib/*/libllmp.so.0|/lib/*/libllmp.so.0) ;;
*) die "the example is not linked to the packaged libllmp.so.0 (ldd: '$lib')" ;; esac
in_root "dpkg -S /usr${lib#/usr}" | grep -q '^libllmp0:' || die "$lib does not belong to libllmp0"
in_root 'timeout 30 /tmp/example' | sed 's/^/    | /' || die "the README example failed"
say "example built with '$(in_root 'pkg-config --cflags --libs libllmp')', linked to $lib (libllmp0), ran ($(took))"

step "llmp-broker serves; llmp-client sends a message and reads it back"
port=$((20000 + RANDOM % 20000))
tok="check-debs-$$-$RANDOM"
cat > "$R/tmp/exchange.sh" <<EOF
set -e
llmp-broker --port $port --stats-interval 0 > /tmp/broker.log 2>&1 &
b=\$!
trap 'kill \$b 2>/dev/null || true' EXIT
i=0
until echo '$tok' | llmp-client --port $port send 2> /tmp/send.err; do
	i=\$((i + 1))
	[ \$i -lt 100 ] || { cat /tmp/send.err; exit 1; }
	sleep 0.1
done
timeout 20 llmp-client --port $port recv --count 1 --wait 5000 > /tmp/recv.out
kill -TERM \$b
wait \$b
EOF
if ! in_root 'sh /tmp/exchange.sh'; then
	sed 's/^/    broker| /' "$R/tmp/broker.log" >&2
	die "llmp-broker and llmp-client did not exchange a message (port $port)"
fi
grep -q ": $tok\$" "$R/tmp/recv.out" || { cat "$R/tmp/recv.out" >&2; die "llmp-client recv did not get '$tok'"; }
sed 's/^/    | /' "$R/tmp/recv.out"
say "broker on port $port forwarded the message, exited 0 on SIGTERM ($(took))"

step "llmp-tools and libllmp-dev contents, user and group llmp, the unit"
in_root 'llmp-broker --help' > "$R/tmp/help" || die "llmp-broker --help failed"
grep -q '^usage: llmp-broker' "$R/tmp/help" || die "llmp-broker --help printed no usage"
unit=/lib/systemd/system/llmp-broker.service
for f in $unit /etc/default/llmp-broker /usr/include/llmp/uapi/llmp.h /usr/include/llmp/llmp.h; do
	[ -f "$R$f" ] || die "$f is not installed"
done
in_root 'getent group llmp >/dev/null && getent passwd llmp >/dev/null' || die "no user/group llmp"
ls "$R"/lib/udev/rules.d/*llmp*.rules >/dev/null 2>&1 || die "no udev rule for /dev/llmp"
grep -q 'GROUP="llmp", MODE="0660"' "$R"/lib/udev/rules.d/*llmp*.rules || die "the udev rule does not give /dev/llmp to llmp 0660"
n3=$(find "$R"/usr/share/man/man3 -name 'llmp*' | wc -l)
n1=$(find "$R"/usr/share/man/man1 -name 'llmp*' | wc -l)
if ! in_root "systemd-analyze verify $unit" > "$R/tmp/verify.log" 2>&1 || [ -s "$R/tmp/verify.log" ]; then
	sed 's/^/    | /' "$R/tmp/verify.log" >&2
	die "systemd-analyze verify $unit"
fi
[ -L "$R/etc/systemd/system/multi-user.target.wants/llmp-broker.service" ] ||
	die "llmp-broker.service is not enabled after installation"
say "llmp-broker --help ok; unit (systemd-analyze verify: clean; enabled), defaults, uapi header, \
user/group llmp, udev rule; $n1 section-1 and $n3 section-3 man pages ($(took))"

step "DKMS: llmp/$ver built for the root's kernel headers"
kver=$(ls "$R/lib/modules" | sort -V | tail -1)
# (build is an absolute symlink: test it inside the root)
[ -n "$kver" ] && in_root "test -d /lib/modules/$kver/build" || die "linux-headers-amd64 left no /lib/modules/*/build"
# llmp-dkms's postinst (dh_dkms) builds and installs the module for every
# kernel whose headers are there; build it here only if it did not.
status=$(in_root "dkms status -m llmp -v $ver -k $kver")
how="by the postinst"
case "$status" in *": installed"*) ;; *)
	how="by dkms build + install"
	set +e
	in_root "dkms build -m llmp -v $ver -k $kver && dkms install -m llmp -v $ver -k $kver" > "$R/dkms.log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		tail -40 "$R/dkms.log" >&2
		cat "$R"/var/lib/dkms/llmp/"$ver"/build/make.log >&2 2>/dev/null || true
		die "dkms could not build llmp/$ver for $kver"
	fi
	status=$(in_root "dkms status -m llmp -v $ver -k $kver") ;;
esac
case "$status" in *": installed"*) ;; *) die "dkms status: $status" ;; esac
ko=$(cd "$R" && find "lib/modules/$kver" -name 'llmp.ko*' | head -1)
[ -n "$ko" ] || die "no llmp.ko under /lib/modules/$kver"
vermagic=$(in_root "modinfo -F vermagic /$ko")
case "$vermagic" in "$kver "*) ;; *) die "/$ko has vermagic '$vermagic', not $kver" ;; esac
say "dkms: $status ($how); /$ko, vermagic ok ($(took))"

step "apt-get purge: nothing of the packages is left"
in_root "dpkg -L $pkgs" > "$R/tmp/owned" || die "dpkg -L $pkgs"
if ! in_root "apt-get purge -y -q $pkgs" > "$R/purge.log" 2>&1; then
	tail -30 "$R/purge.log" >&2
	die "apt-get purge failed"
fi
for p in $pkgs; do
	! in_root "dpkg -s $p" >/dev/null 2>&1 || die "$p is still known to dpkg after purge"
done
left=""
while read -r f; do
	# Directories (and /lib, a symlink to usr/lib in Debian 12) are shared.
	[ -d "$R$f" ] && continue
	if [ -L "$R$f" ] || [ -e "$R$f" ]; then left="$left $f"; fi
done < "$R/tmp/owned"
[ -z "$left" ] || die "left after purge:$left"
left=$(cd "$R" && find . -xdev \( -path ./debs -o -path ./tmp -o -path ./proc -o -path ./sys -o -path ./dev \
	-o -path ./var/cache/apt/archives -o -path ./var/cache/man \) -prune -o -name '*llmp*' -print)
# (/var/cache/man: man-db's cache of pages formatted for systemd-analyze's
# Documentation= check above, man-db's to expire, not the packages' files.)
[ -z "$left" ] || die "left after purge: $(echo "$left" | tr "\n" " ")"
# The system user and group stay: Debian does not delete them on purge, as
# files they own may remain (the broker's /var/lib/llmp, segments, logs).
in_root 'getent passwd llmp >/dev/null && getent group llmp >/dev/null' ||
	die "user/group llmp gone after purge"
say "purged: no file of the four packages and nothing named *llmp* left; \
user and group llmp kept ($(took))"
say "all passed"
