#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make check-windows: cross-compile libllmp for 64-bit Windows with mingw-w64
# (-Wall -Wextra -Werror) into build/win/, build the Windows test programs
# (tests/windows/*_test.c) and run them under wine.  Prints their KTAP, then
# "N passed, N failed[, N skipped]"; exits non-zero on any failure, and also
# when the cross compiler or wine is missing (CI installs both:
# LLMP_DEPS=windows make deps).
#
# Environment:
#   MINGW_CC        cross compiler       (default x86_64-w64-mingw32-gcc)
#   MINGW_AR        its archiver         (default x86_64-w64-mingw32-ar)
#   WINE            wine binary          (default wine)
#   WINESERVER      its wineserver       (default wineserver)
#   LLMP_WIN_BUILD  output directory     (default build/win)
#   LLMP_WIN_EXCLUDE  lib/*.c files left out of the Windows build, by base
#                   name, for files that have no meaning on Windows
#                   (default: the event loop, TCP and B2B files; set it
#                   empty to build everything)
#   LLMP_TEST_TIMEOUT  seconds per test program (default 600)
set -u
cd "$(dirname "$0")/../.." || exit 1

cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
ar=${MINGW_AR:-x86_64-w64-mingw32-ar}
wine=${WINE:-wine}
wineserver=${WINESERVER:-wineserver}
out=${LLMP_WIN_BUILD:-build/win}
exclude=${LLMP_WIN_EXCLUDE-loop loop_wait loop_nap loop_lossless tcp tcp_client client_reconnect b2b b2b_allow b2b_codec b2b_dial b2b_resume auth nats_bridge nats_codec nats_conn}
timeout_s=${LLMP_TEST_TIMEOUT:-600}

# Why a file is left out by default (files written for Linux only).
why_excluded() {
	case "$1" in
	loop|loop_*) echo " (the broker's Linux event loop: io_uring, futex, signalfd, eventfd)" ;;
	tcp|tcp_client|client_reconnect|b2b|b2b_*) echo " (BSD sockets; no Winsock port yet)" ;;
	nats_*) echo " (the NATS bridge rides on the Linux event loop)" ;;
	*) echo " (LLMP_WIN_EXCLUDE)" ;;
	esac
}

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "check-windows: '$1' not found: $2" >&2
		echo "check-windows: install it with: apt-get install -y gcc-mingw-w64-x86-64 wine wine64" >&2
		echo "check-windows: (or as root: LLMP_DEPS=windows make deps)" >&2
		echo "0 passed, 1 failed"
		exit 1
	fi
}
need "$cc" "the mingw-w64 cross compiler (Debian package gcc-mingw-w64-x86-64)"
need "$ar" "the mingw-w64 archiver (Debian package binutils-mingw-w64-x86-64)"
need "$wine" "wine runs the Windows tests (Debian packages wine, wine64)"

# The same warnings as the native build (Makefile WARN).
cflags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
-Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wformat=2 \
-D__USE_MINGW_ANSI_STDIO=1 -Iinclude -Ilib"

mkdir -p "$out/lib" || exit 1
log=$out/build.log
: > "$log"
: > "$out/wine.log"

# ---- the library -----------------------------------------------------------
# Files that build are archived even when another does not, so the provider
# tests still run; a file that does not build is a failed KTAP case.
rm -f "$out"/lib/*.o "$out"/*.exe
objs=""
build_failed=""
for src in lib/*.c; do
	base=$(basename "$src" .c)
	case " $exclude " in *" $base "*|*" $base.c "*)
		echo "# excluded from the Windows build: $src$(why_excluded "$base")"
		continue ;; esac
	obj=$out/lib/$base.o
	# shellcheck disable=SC2086
	if $cc $cflags -c "$src" -o "$obj" > "$out/lib/$base.log" 2>&1; then
		objs="$objs $obj"
	else
		build_failed="$build_failed $src"
	fi
	cat "$out/lib/$base.log" >> "$log"
done
rm -f "$out/libllmp.a"
# shellcheck disable=SC2086
$ar rcs "$out/libllmp.a" $objs >> "$log" 2>&1 || build_failed="$build_failed (ar)"

# ---- the test programs -----------------------------------------------------
# -lpthread: mingw-w64's winpthreads supplies clock_gettime, nanosleep and
# sched_yield, which the page layer uses.
tests=""
for src in tests/windows/*_test.c; do
	exe=$out/$(basename "$src" .c).exe
	# shellcheck disable=SC2086
	$cc $cflags -static "$src" -o "$exe" "$out/libllmp.a" -lpthread > "$exe.log" 2>&1
	cat "$exe.log" >> "$log"
	tests="$tests $exe"
done

# ---- run them under wine ---------------------------------------------------
# A prefix of our own under build/win, created on first use (that first start
# takes a while); wine's own chatter goes to a log, shown on failure.
WINEPREFIX=$(cd "$out" && pwd)/wineprefix
WINEDEBUG=-all
WINEDLLOVERRIDES="mscoree,mshtml="
export WINEPREFIX WINEDEBUG WINEDLLOVERRIDES
if [ ! -f "$WINEPREFIX/system.reg" ]; then
	echo "# creating the wine prefix $WINEPREFIX"
	timeout -k 10 300 "$wine" wineboot -i >> "$out/wine.log" 2>&1
fi

res=$(mktemp)
trap 'rm -f "$res"' EXIT
pass=0 fail=0 skip=0 i=1 n=1
for t in $tests; do n=$((n + 1)); done
echo "KTAP version 1"
echo "1..$n"
if [ -z "$build_failed" ]; then
	echo "ok 1 library_builds_for_windows"
	pass=$((pass + 1))
else
	for src in $build_failed; do
		echo "    # $src does not build with $cc:"
		base=$(basename "$src" .c)
		[ -f "$out/lib/$base.log" ] && grep -m 8 -E 'error|warning' "$out/lib/$base.log" | sed 's/^/    #   /'
	done
	echo "not ok 1 library_builds_for_windows"
	fail=$((fail + 1))
fi
for t in $tests; do
	i=$((i + 1))
	name=$(basename "$t" .exe)
	if [ ! -f "$t" ]; then
		sed 's/^/    # /' "$t.log" | head -20
		echo "not ok $i $name # does not build"
		fail=$((fail + 1))
		continue
	fi
	timeout -k 10 "$timeout_s" "$wine" "$t" > "$res" 2>> "$out/wine.log"
	rc=$?
	tr -d '\r' < "$res" > "$res.tmp" && mv "$res.tmp" "$res"
	sed 's/^/    /' "$res"
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$res" | head -1)
	p=$(grep '^ok [0-9]' "$res" | grep -vc '# SKIP')
	s=$(grep '^ok [0-9]' "$res" | grep -c '# SKIP')
	f=$(grep -c '^not ok [0-9]' "$res")
	pass=$((pass + p)); skip=$((skip + s)); fail=$((fail + f))
	ok=1
	if [ -z "$plan" ] || [ $((p + s + f)) -ne "$plan" ]; then
		echo "    # $name: planned ${plan:-no} tests, reported $((p + s + f)) (exit $rc): crashed or timed out"
		fail=$((fail + 1)); ok=0
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "    # $name: exit $rc with no failed test"
		fail=$((fail + 1)); ok=0
	fi
	if [ "$rc" -eq 0 ] && [ $ok -eq 1 ]; then
		echo "ok $i $name"
	else
		echo "not ok $i $name # exit $rc"
		sed 's/^/    # wine: /' "$out/wine.log" | tail -20
	fi
done
# Leave no wine processes of this prefix behind.
"$wineserver" -k >/dev/null 2>&1 || true

if [ $skip -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
