#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# libfuzzer_sync_test: two real libFuzzer instances (clang -fsanitize=fuzzer)
# with separate corpus dirs and -reload=1, one llmp-broker, one
# `llmp-sync dir` each.  The target hides its stages behind a 4-byte magic
# checked through a hash (libFuzzer's comparison tracing cannot solve it),
# then nested one-byte checks; only A's corpus starts with the magic.  Both
# fuzzers finish loading their own seeds before the syncs start, so what A
# found reaches B only through llmp-sync and B's -reload: the test passes
# when B's libFuzzer prints a RELOAD line with more coverage than it had
# at INITED (it ran test cases from A and kept them), within 100 s.
# SKIPs with the reason when clang cannot build a libFuzzer target here.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=${LLMP_TOOLS_DIR:-$here/../tools}
limit=${LLMP_LF_SYNC_LIMIT:-100}

echo "TAP version 13"
echo "1..1"
result() { # $1 pass|fail|skip, $2 reason
	case $1 in
	pass) echo "ok 1 libfuzzer_sync_reloads_what_the_other_found"; t="pass:1 fail:0"; s=0; rc=0 ;;
	fail) echo "not ok 1 libfuzzer_sync_reloads_what_the_other_found # $2"; t="pass:0 fail:1"; s=0; rc=1 ;;
	skip) echo "ok 1 libfuzzer_sync_reloads_what_the_other_found # SKIP $2"; t="pass:0 fail:0"; s=1; rc=4 ;;
	esac
	echo "# Totals: $t xfail:0 xpass:0 skip:$s error:0"
	exit $rc
}

command -v clang >/dev/null || result skip "clang is not installed"
[ -x "$tools/llmp-sync" ] && [ -x "$tools/llmp-broker" ] || result skip "llmp-sync/llmp-broker not built in $tools"

work=$(mktemp -d /tmp/llmp-lf-sync.XXXXXX)
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
#include <stddef.h>
#include <stdint.h>
static volatile int sink;
__attribute__((noinline)) static void stage(int k) { sink += k; }
int LLVMFuzzerTestOneInput(const uint8_t *b, size_t n)
{
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
clang -O1 -g -fsanitize=fuzzer -o target target.c > cc.log 2>&1 ||
	result skip "clang -fsanitize=fuzzer cannot build here (libclang-rt-14-dev?): $(head -1 cc.log)"

mkdir ca cb
printf 'LLMPxxxx' > ca/seed
printf 'hello!!!' > cb/seed
port=$((20000 + $$ % 20000))
"$tools/llmp-broker" -p $port --dedup > broker.log 2>&1 &
pids="$pids $!"
# -fork and -jobs off: one process each; -reload=1 rereads the corpus dir every second
./target -reload=1 -max_total_time=$((limit + 40)) -seed=1 ca > lfA.log 2>&1 &
apid=$!
./target -reload=1 -max_total_time=$((limit + 40)) -seed=2 cb > lfB.log 2>&1 &
bpid=$!
pids="$apid $bpid $pids"
# both have run their own seeds before anything is shared
t=0
while [ $t -lt 300 ] && ! { grep -q INITED lfA.log && grep -q INITED lfB.log; }; do
	sleep 0.1
	t=$((t + 1))
done
grep -q INITED lfB.log || result fail "libFuzzer B did not start: $(tail -2 lfB.log | tr '\n' ' ')"
"$tools/llmp-sync" dir --corpus ca -p $port -H hostA -v > syncA.log 2>&1 &
spids=$!
"$tools/llmp-sync" dir --corpus cb -p $port -H hostB -v > syncB.log 2>&1 &
spids="$spids $!"
pids="$pids $spids"

# "cov: N" of B's INITED line, and the highest of its RELOAD lines
cov_of() { grep "$1" lfB.log | sed -n 's/.* cov: \([0-9]*\) .*/\1/p' | sort -n | tail -1; }
init_cov=$(cov_of INITED)
reloaded() {
	r=$(cov_of RELOAD)
	[ -n "$r" ] && [ "$r" -gt "$init_cov" ]
}
t=0
while [ $t -lt "$limit" ] && ! reloaded; do
	kill -0 $bpid 2>/dev/null || break
	sleep 1
	t=$((t + 1))
done
got=no
reloaded && got=yes
kill -INT $bpid $apid $spids 2>/dev/null
wait $bpid $apid $spids 2>/dev/null
pids=$(echo "$pids" | sed "s/\b$apid\b//; s/\b$bpid\b//")
for p in $spids; do pids=$(echo "$pids" | sed "s/\b$p\b//"); done
echo "# after ${t} s: B's coverage at INITED $init_cov, after RELOAD ${r:-none}; A corpus $(ls ca | wc -l), B corpus $(ls cb | wc -l)"
grep -h '^llmp-sync: published' syncA.log syncB.log | sed 's/^/# /'
[ $got = yes ] || result fail "B's libFuzzer reloaded nothing new from A within $limit s"
result pass
