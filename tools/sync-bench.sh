#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Sync latency of llmp-sync against AFL++'s own directory sync, on the same
# target and machine: a test case that instance A finds, until it is in
# instance B's queue.  The target hides nested one-byte stages behind a
# 4-byte magic that only A's seed holds, so every entry B imports came from
# A (B cannot find them itself).  Two runs of SECONDS each (default 90):
#   llmp:   A and B in separate output dirs (-M each), one llmp-sync each,
#           one llmp-broker; B reads its llmp-sync import dir with -F;
#   native: A (-S) and B (-M) in one output dir; B syncs from A's queue.
# B is a main node (-M) in both, so afl-fuzz looks for new test cases at the
# same cadence (AFL_SYNC_TIME=1: every 30 s at most).  Trimming is off
# (AFL_DISABLE_TRIM=1) so that a queue file keeps its first bytes and time.
# Prints, per run, the latency from A's queue file to B's queue file
# (median, max, count) and, for llmp, to B's import dir; and the load
# average.  Needs afl-fuzz and afl-clang-fast (or afl-gcc-fast).
#
#   tools/sync-bench.sh [SECONDS]      (run from the tree, after make)
set -eu
secs=${1:-90}
tools=$(cd "$(dirname "$0")/.." && pwd)/${BUILD:-build}/tools
work=$(mktemp -d /tmp/llmp-sync-bench.XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
cat > target.c <<'C'
#include <stdint.h>
#include <unistd.h>
static volatile int sink;
__attribute__((noinline)) static void stage(int k) { sink += k; }
int main(void)
{
	static const char deep[] = "aflsyncdeep";
	unsigned char b[256];
	ssize_t n = read(0, b, sizeof(b));
	uint32_t h = 2166136261u;

	if (n < 4)
		return 0;
	for (int i = 0; i < 4; i++)
		h = (h ^ b[i]) * 16777619u;
	if (h != 0x61ef87b8u) /* FNV-1a of "LLMP" */
		return 0;
	for (int i = 0; i < (int)sizeof(deep) - 1 && 4 + i < n && b[4 + i] == deep[i]; i++)
		stage(i);
	return 0;
}
C
cc=afl-clang-fast
command -v $cc >/dev/null || cc=afl-gcc-fast
AFL_QUIET=1 $cc -O1 -o target target.c
mkdir inA inB
printf 'LLMPxxxxxxxxxxxx' > inA/seed
printf 'hello!!!!!!!!!!!' > inB/seed
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
	AFL_SYNC_TIME=1 AFL_DISABLE_TRIM=1 AFL_NO_CRASH_README=1

# "mtime-in-ns sha256" of every id:* file of dir
qtimes() {
	for f in "$1"/id:*; do
		[ -f "$f" ] || continue
		echo "$(stat -c %.9Y "$f") $(sha256sum < "$f" | cut -c1-64) $(basename "$f")"
	done
}
# latency of B's sync:* entries after A's entry with the same bytes: "median max n" in ms
lat() { # $1 A list, $2 B list, $3 filter on B names
	awk -v filt="$3" 'NR == FNR { if (!($2 in a) || $1 < a[$2]) a[$2] = $1; next }
		$3 ~ filt && ($2 in a) { print ($1 - a[$2]) * 1000 }' "$1" "$2" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) printf "median %.1f ms, max %.1f ms, n %d", v[int((NR + 1) / 2)], v[NR], NR; else print "n 0" }'
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- llmp-sync ----
port=$((20000 + $$ % 20000))
"$tools/llmp-broker" -p $port --dedup > broker.log 2>&1 & pids="$pids $!"
"$tools/llmp-sync" afl --out l/A/A -p $port > sA.log 2>&1 & pids="$pids $!"
"$tools/llmp-sync" afl --out l/B/B -p $port > sB.log 2>&1 & pids="$pids $!"
afl-fuzz -i inA -o l/A -M A -F l/A/A.llmp-import -- ./target > aA.log 2>&1 & pids="$pids $!"
afl-fuzz -i inB -o l/B -M B -F l/B/B.llmp-import -- ./target > aB.log 2>&1 & pids="$pids $!"
sleep "$secs"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=""
qtimes l/A/A/queue > la.txt
qtimes l/B/B/queue > lb.txt
for f in l/B/B.llmp-import/*; do
	[ -f "$f" ] && echo "$(stat -c %.9Y "$f") $(basename "$f") import"
done > li.txt
echo "llmp-sync: A queue -> B queue: $(lat la.txt lb.txt sync:)"
echo "llmp-sync: A queue -> B import dir (llmp-sync alone): $(lat la.txt li.txt import)"
echo "llmp-sync: load average at the end: $load1"

# ---- AFL++ native ----
afl-fuzz -i inA -o n -S A -- ./target > nA.log 2>&1 & pids="$pids $!"
afl-fuzz -i inB -o n -M B -- ./target > nB.log 2>&1 & pids="$pids $!"
sleep "$secs"
load2=$(cut -d' ' -f1-3 /proc/loadavg)
for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=""
qtimes n/A/queue > na.txt
qtimes n/B/queue > nb.txt
echo "native -M/-S: A queue -> B queue: $(lat na.txt nb.txt sync:)"
echo "native: load average at the end: $load2"
