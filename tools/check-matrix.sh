#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make check-matrix: build and test the build configurations a plain
# `make check` does not see, on this host (no VM):
#
#   nouring   without liburing (the loop falls back to ppoll)
#   nozlib    without zlib (no deflate on B2B links)
#   nozstd    without libzstd (no zstd between our brokers)
#   none      without all three
#   clang     clang instead of gcc, every library found
#   clang-none  clang without all three
#   m32       gcc -m32 (32-bit x86, Debian's gcc-multilib; the optional
#             libraries only where their i386 packages are installed), and
#             the 32 <-> 64-bit exchange (xarch_test) against a 64-bit
#             build of the same tree, both ways
#
# Each builds the library, the tools and the selftests with -Werror into
# build/matrix/<name>, then runs the selftest suites that configuration
# affects (a reduced set, to keep the run short; see suites_of() below and
# Documentation/testing.rst), and prints one "N passed, N failed" line per
# configuration, the reasons of the tests it skipped, and a total.  A
# configuration that does not build counts as one failure.  Exits non-zero
# on any failure.
#
#   tools/check-matrix.sh [NAME...]       (default: all of the above)
#   LLMP_MATRIX_SUITES="a_test b_test"    run these suites instead
#   LLMP_MATRIX_JOBS=N                    make -j (default 2)
set -u
cd "$(dirname "$0")/.." || exit 2
top=$(pwd)
# compat_test looks for its vectors relative to build/selftests; these are deeper.
export LLMP_VECTORS="$top/tests/selftests/vectors"

# Which selftest suites each configuration runs (LLMP_MATRIX_SUITES: these
# instead, for every configuration).  "none" (nothing optional) runs every
# suite, dos_test included (~4 minutes: its io_uring variants and zstd bombs
# are what the configurations take away).  "clang" runs every suite but
# dos_test.  The single-library configurations and "clang-none" run the
# suites that use what they change: the B2B codecs (b2b; tcp and protocol
# for the wire) and the loop's back ends (loop_wake, eop_loop, restart, and
# the loops of b2b and tcp).
ALL=$(for src in tests/selftests/*_test.c; do basename "$src" .c; done | tr '\n' ' ')
NODOS=$(echo "$ALL" | sed 's/dos_test //')
# -m32 changes the layout of what the process holds, never of what it
# shares (lib/layout_check.h proves that at build time): it runs the suites
# that read and write pages, descriptions and wire formats, the loop, and
# the exchange with a 64-bit peer.
M32="protocol_test compat_test corrupt_test eop_loop_test large_msg_test shmem_desc_test"
M32="$M32 shmem_provider_test shmem_served_test client_api_test register_test tcp_test xarch_test"
M32="$M32 protocol_broker_test shmem_served_input_test shmem_served_server_test"
M32="$M32 register_uid_test tcp_reg_test tcp_loop_test"
suites_of() {
	case "$1" in
	nouring) echo "b2b_test b2b_frames_test b2b_redial_test tcp_test tcp_reg_test tcp_loop_test loop_wake_test eop_loop_test restart_test protocol_test protocol_broker_test" ;;
	nozlib|nozstd) echo "b2b_test b2b_frames_test b2b_redial_test tcp_test tcp_reg_test tcp_loop_test protocol_test protocol_broker_test" ;;
	none) echo "$ALL" ;;
	clang) echo "$NODOS" ;;
	clang-none) echo "b2b_test b2b_frames_test b2b_redial_test tcp_test tcp_reg_test tcp_loop_test loop_wake_test protocol_test protocol_broker_test" ;;
	m32) echo "$M32" ;;
	esac
}
jobs=${LLMP_MATRIX_JOBS:-2}

all="nouring nozlib nozstd none clang clang-none m32"
[ $# -gt 0 ] && all=$*

tp=0 tf=0 ts=0
t_all=$(date +%s)
summary=$(mktemp)
log=$(mktemp)
trap 'rm -f "$summary" "$log"' EXIT

# Run SUITES of DIR (with the configuration's environment, LLMP_XARCH_PEER
# set to $xpeer); adds to p f s, prints what failed and why each SKIP skipped.
run_suites() {	# run_suites DIR SUITES...
	d=$1
	shift
	# shellcheck disable=SC2086
	env $env LLMP_XARCH_PEER="$xpeer" tests/run.sh "$d" "$@" > "$log" 2>&1
	grep -E '^(not ok|ok .* # SKIP)' "$log"
	rline=$(tail -1 "$log")
	rp=$(echo "$rline" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	rf=$(echo "$rline" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	rs=$(echo "$rline" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
	if [ -z "$rp" ] || [ -z "$rf" ]; then
		rp=0 rf=1
		echo "no totals: $rline"
	fi
	if [ "$rf" != 0 ]; then
		grep -B40 '^not ok\|    not ok' "$log" | tail -120
	fi
	# Never a silent difference: every SKIP() says why (counted per call:
	# a setup's SKIP and its test's "see the setup's reason" are two).
	grep -h '^ *# *SKIP ' "$log" | sed 's/^ *# *SKIP *//' | sort | uniq -c |
		sed 's/^ */  skip: /'
	p=$((p + rp)) f=$((f + rf)) s=$((s + ${rs:-0}))
}

for name in $all; do
	cc=gcc
	case "$name" in
	nouring) env="LLMP_NO_URING=1" ;;
	nozlib) env="LLMP_NO_ZLIB=1" ;;
	nozstd) env="LLMP_NO_ZSTD=1" ;;
	none) env="LLMP_NO_URING=1 LLMP_NO_ZLIB=1 LLMP_NO_ZSTD=1 LLMP_NO_NATS=1" ;;
	clang) env="" cc=clang ;;
	clang-none) env="LLMP_NO_URING=1 LLMP_NO_ZLIB=1 LLMP_NO_ZSTD=1 LLMP_NO_NATS=1" cc=clang ;;
	m32) env="" cc="gcc -m32" ;;
	*) echo "check-matrix: unknown configuration $name" >&2; exit 2 ;;
	esac
	build=$top/build/matrix/$name
	suites=${LLMP_MATRIX_SUITES:-$(suites_of "$name")}
	t0=$(date +%s)
	p=0 f=0 s=0 built=1 xpeer=
	what="every library found"
	[ "$name" = m32 ] && what="the libraries whose i386 packages are installed"
	echo "=== $name: CC=$cc ${env:-($what)} ==="
	# The configuration is remembered in the build directory (config-choice.mk),
	# but say it on every run anyway: this script may meet an older build dir.
	# shellcheck disable=SC2086
	if ! env $env make -s -j"$jobs" CC="$cc" BUILD="$build" all selftests > "$log" 2>&1; then
		cat "$log"
		f=1 built=0
	else
		# Any warning would have failed the build (-Werror); show the config.
		grep '^configure:' "$log" | sort -u
		# The choice is remembered: a plain make there (no CC, no LLMP_NO_*)
		# must keep it and rebuild nothing (one more test case).
		if [ "$name" = m32 ]; then
			if ! env -u CC -u LLMP_NO_URING -u LLMP_NO_ZLIB -u LLMP_NO_ZSTD \
				make -j"$jobs" BUILD="$build" all selftests > "$log" 2>&1 ||
				grep -E '^[^ ]*(gcc|cc|clang) ' "$log" ||
				! grep -qx 'CHOSEN_CC := gcc -m32' "$build/config-choice.mk"; then
				cat "$log"
				echo "not ok: a plain make in $build rebuilt or left gcc -m32"
				f=$((f + 1))
			else
				echo "ok: a plain make in $build keeps gcc -m32 and rebuilds nothing"
				p=$((p + 1))
			fi
		fi
		# m32: the 64-bit side of the exchange, the library and xarch_test
		peer=$top/build/matrix/m32-peer
		if [ "$name" = m32 ] && ! { make -s -j"$jobs" CC=gcc BUILD="$peer" lib harness &&
			make -s -C tests/selftests CC=gcc LLMP_BUILD="$peer" OUTPUT="$peer/selftests" \
				"$peer/selftests/xarch_test"; } > "$log" 2>&1; then
			cat "$log"
			f=1 built=0
		elif [ "$name" = m32 ]; then
			# 32-bit broker, 64-bit client; then 64-bit broker, 32-bit client
			xpeer=$peer/selftests/xarch_test
			# shellcheck disable=SC2086
			run_suites "$build/selftests" $suites
			xpeer=$build/selftests/xarch_test
			run_suites "$peer/selftests" xarch_test
		else
			# shellcheck disable=SC2086
			run_suites "$build/selftests" $suites
		fi
	fi
	if [ "$built" = 0 ]; then
		line="build FAILED"
	else
		line="$p passed, $f failed, $s skipped"
	fi
	echo "$name: $line ($(($(date +%s) - t0)) s)"
	echo "$name: $line [$(echo "$suites" | wc -w) suites]" >> "$summary"
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
done

echo
echo "=== check-matrix: $(($(date +%s) - t_all)) s ==="
cat "$summary"
echo "total: $tp passed, $tf failed, $ts skipped"
[ "$tf" = 0 ]
