#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# afl_sync_test: two real afl-fuzz instances (Debian's AFL++), separate
# output dirs, one llmp-broker, one llmp-sync each.  The target hides its
# stages behind a 4-byte magic checked through a hash (no comparison that
# AFL could solve), then nested one-byte checks.  Only A's seed holds the
# magic, so B can reach those stages only through what A found: the test
# passes when B's queue holds test cases with the magic and B's
# fuzzer_stats counts them as imported (corpus_imported), within 100 s.
# SKIPs with the reason when afl-fuzz or its compiler cannot run here.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=${LLMP_TOOLS_DIR:-$here/../tools}
limit=${LLMP_AFL_SYNC_LIMIT:-100}

echo "TAP version 13"
echo "1..1"
result() { # $1 pass|fail|skip, $2 reason
	case $1 in
	pass) echo "ok 1 afl_sync_imports_what_the_other_found"; t="pass:1 fail:0"; s=0; rc=0 ;;
	fail) echo "not ok 1 afl_sync_imports_what_the_other_found # $2"; t="pass:0 fail:1"; s=0; rc=1 ;;
	skip) echo "ok 1 afl_sync_imports_what_the_other_found # SKIP $2"; t="pass:0 fail:0"; s=1; rc=4 ;;
	esac
	echo "# Totals: $t xfail:0 xpass:0 skip:$s error:0"
	exit $rc
}

command -v afl-fuzz >/dev/null || result skip "afl-fuzz is not installed (apt-get install afl++)"
[ -x "$tools/llmp-sync" ] && [ -x "$tools/llmp-broker" ] || result skip "llmp-sync/llmp-broker not built in $tools"

work=$(mktemp -d /tmp/llmp-afl-sync.XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill -INT "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
cd "$work" || exit 1

cat > target.c <<'C'
#include <stdint.h>
#include <unistd.h>
static volatile int sink;
__attribute__((noinline)) static void stage(int k) { sink += k; }
int main(void)
{
	unsigned char b[256];
	ssize_t n = read(0, b, sizeof(b));
	uint32_t h = 2166136261u;

	if (n < 4)
		return 0;
	for (int i = 0; i < 4; i++)
		h = (h ^ b[i]) * 16777619u;
	if (h != 0x61ef87b8u) /* FNV-1a of "LLMP" */
		return 0;
	stage(1);
	if (n > 4 && b[4] == 'a') {
		stage(2);
		if (n > 5 && b[5] == 'f') {
			stage(3);
			if (n > 6 && b[6] == 'l')
				stage(4);
		}
	}
	return 0;
}
C
built=""
for cc in afl-clang-fast afl-gcc-fast; do
	command -v $cc >/dev/null || continue
	if AFL_QUIET=1 $cc -O1 -o target target.c > cc.log 2>&1; then built=$cc; break; fi
done
[ -n "$built" ] || result skip "neither afl-clang-fast nor afl-gcc-fast builds a target: $(tail -1 cc.log)"

mkdir inA inB
printf 'LLMPxxxx' > inA/seed
printf 'hello!!!' > inB/seed
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
	AFL_SYNC_TIME=1 AFL_QUIET=1 AFL_NO_CRASH_README=1
port=$((20000 + $$ % 20000))
"$tools/llmp-broker" -p $port --dedup > broker.log 2>&1 &
pids="$pids $!"
"$tools/llmp-sync" afl --out outA/A -p $port -H hostA -v > syncA.log 2>&1 &
spids=$!
"$tools/llmp-sync" afl --out outB/B -p $port -H hostB -v > syncB.log 2>&1 &
spids="$spids $!"
pids="$pids $spids"
afl-fuzz -i inA -o outA -M A -F outA/A.llmp-import -- ./target > aflA.log 2>&1 &
apid=$!
afl-fuzz -i inB -o outB -M B -F outB/B.llmp-import -- ./target > aflB.log 2>&1 &
bpid=$!
pids="$apid $bpid $pids"

# afl-fuzz must get going at all here (it refuses some machines' settings)
t=0
while [ $t -lt 30 ] && ! [ -f outA/A/fuzzer_stats ] && kill -0 $apid 2>/dev/null; do sleep 1; t=$((t + 1)); done
if ! [ -f outA/A/fuzzer_stats ]; then
	why=$(grep -a -E 'PROGRAM ABORT|Location|\[-\]' aflA.log | head -3 | tr '\n' ' ')
	result skip "afl-fuzz did not start here: ${why:-no fuzzer_stats after 30 s}"
fi

magic_in_b() {
	for f in outB/B/queue/id:*; do
		[ -f "$f" ] && [ "$(head -c 4 "$f")" = LLMP ] && return 0
	done
	return 1
}
t=0
while [ $t -lt "$limit" ] && ! magic_in_b; do sleep 1; t=$((t + 1)); done
got_queue=no
magic_in_b && got_queue=yes
kill -INT $bpid $apid $spids 2>/dev/null
wait $bpid $apid $spids 2>/dev/null
pids=$(echo "$pids" | sed "s/\b$apid\b//; s/\b$bpid\b//")
for p in $spids; do pids=$(echo "$pids" | sed "s/\b$p\b//"); done
imported=$(sed -n 's/^corpus_imported *: *//p' outB/B/fuzzer_stats 2>/dev/null)
nA=$(find outA/A/queue -maxdepth 1 -name 'id:*' | wc -l)
echo "# $built target; A queue $nA entries; B got the magic: $got_queue after ${t} s; B corpus_imported ${imported:-?}"
grep -h '^llmp-sync: published' syncA.log syncB.log | sed 's/^/# /'
echo "# B queue:"; ls outB/B/queue | sed 's/^/#   /'
[ "$got_queue" = yes ] || result fail "B's queue never held A's magic within $limit s (see logs)"
[ "${imported:-0}" -ge 1 ] || result fail "B's fuzzer_stats shows corpus_imported ${imported:-missing}"
result pass
