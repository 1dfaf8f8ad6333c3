#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Time to the deepest stage: one afl-fuzz instance alone against two
# instances in separate output dirs joined by one llmp-broker and one
# llmp-sync each (Documentation/corpus.rst).  The target checks its input
# byte by byte against an 8-byte word (nested one-byte stages, which
# afl-fuzz solves one at a time); the first execution that passes the last
# check creates a marker file (its path in DEEP_MARK, one per instance), so
# the time is that of the first instance of the run to get there.  Each
# configuration runs ROUNDS times, interleaved (1, 2, 1, 2, ...), each run
# stopped at SECONDS (a timeout counts as SECONDS in the median); prints
# every run and the medians, and the load average.  Needs afl-fuzz and
# afl-clang-fast (or afl-gcc-fast).
#
#   tools/deep-bench.sh [SECONDS [ROUNDS]]   (from the tree, after make)
set -eu
secs=${1:-180}
rounds=${2:-3}
tools=$(cd "$(dirname "$0")/.." && pwd)/${BUILD:-build}/tools
work=$(mktemp -d /tmp/llmp-deep-bench.XXXXXX)
pids=""
stop_all() {
	for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=""
}
trap 'stop_all; rm -rf "$work"' EXIT
cd "$work"
cat > target.c <<'C'
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
static volatile int sink;
__attribute__((noinline)) static void stage(int k) { sink += k; }
int main(void)
{
	static const char word[] = "llmpdeep";
	unsigned char b[64];
	ssize_t n = read(0, b, sizeof(b));
	int i;

	for (i = 0; i < (int)sizeof(word) - 1 && i < n && b[i] == (unsigned char)word[i]; i++)
		stage(i);
	if (i == (int)sizeof(word) - 1 && getenv("DEEP_MARK"))
		close(open(getenv("DEEP_MARK"), O_WRONLY | O_CREAT | O_EXCL, 0644));
	return 0;
}
C
cc=afl-clang-fast
command -v $cc >/dev/null || cc=afl-gcc-fast
AFL_QUIET=1 $cc -O1 -o target target.c
mkdir in
printf 'xxxxxxxxxxxx' > in/seed
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
	AFL_SYNC_TIME=1 AFL_NO_CRASH_README=1
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# one run: $1 = 1 or 2 instances; prints the milliseconds to the first marker, or "timeout"
run() {
	rm -rf o mark.*
	mkdir o # afl-fuzz -o makes one level only
	t0=$(now_ms)
	if [ "$1" = 2 ]; then
		port=$((20000 + ($$ + t0) % 20000))
		"$tools/llmp-broker" -p $port --dedup > broker.log 2>&1 & pids="$pids $!"
		"$tools/llmp-sync" afl --out o/A/A -p $port > sA.log 2>&1 & pids="$pids $!"
		"$tools/llmp-sync" afl --out o/B/B -p $port > sB.log 2>&1 & pids="$pids $!"
		DEEP_MARK=$work/mark.A afl-fuzz -i in -o o/A -M A -F o/A/A.llmp-import -- ./target \
			> aA.log 2>&1 & pids="$pids $!"
		DEEP_MARK=$work/mark.B afl-fuzz -i in -o o/B -M B -F o/B/B.llmp-import -- ./target \
			> aB.log 2>&1 & pids="$pids $!"
	else
		DEEP_MARK=$work/mark.A afl-fuzz -i in -o o/A -M A -- ./target > aA.log 2>&1 &
		pids="$pids $!"
	fi
	while [ $(($(now_ms) - t0)) -lt $((secs * 1000)) ] && ! ls mark.* >/dev/null 2>&1; do
		sleep 0.1
	done
	if ls mark.* >/dev/null 2>&1; then
		echo $(($(now_ms) - t0))
	elif ! grep -q "fork server is up" aA.log 2>/dev/null; then
		echo "afl-fuzz-failed($(grep -E 'PROGRAM ABORT|Location' aA.log | head -1 | tr -d '\033' | cut -c1-60))"
	else
		echo timeout
	fi
	stop_all
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
one="" two=""
for r in $(seq 1 "$rounds"); do
	a=$(run 1)
	b=$(run 2)
	echo "round $r: 1 instance $a ms, 2 instances with llmp-sync $b ms (load $(cut -d' ' -f1 /proc/loadavg))"
	# a timeout counts as the cap (the median stays a lower bound then); a failure not at all
	case $a in timeout) one="$one $((secs * 1000))" ;; *[!0-9]*) ;; *) one="$one $a" ;; esac
	case $b in timeout) two="$two $((secs * 1000))" ;; *[!0-9]*) ;; *) two="$two $b" ;; esac
done
echo "median time to the deepest stage: 1 instance $(echo "$one" | median) ms, 2 instances $(echo "$two" | median) ms (a timeout counts as the cap, $secs s; failures left out)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
