#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Run every selftest binary in DIR, print KTAP (each binary is a subtest
# whose own KTAP is indented), then "N passed, N failed[, N skipped]"
# counting the individual test cases.  Exits non-zero on any failure.
# A last case checks that the tests left no shared memory behind
# (/dev/shm entries and System V segments created during the run).
#
#   tests/run.sh DIR [NAME...]     (LLMP_TEST_TIMEOUT: seconds per binary)
set -u
dir=$1
shift
timeout_s=${LLMP_TEST_TIMEOUT:-900}

if [ $# -gt 0 ]; then
	bins=""
	for n in "$@"; do bins="$bins $dir/$n"; done
else
	bins=$(find "$dir" -maxdepth 1 -type f -perm -u+x -name '*_test' | sort)
fi

shm_snapshot() {
	{ ls /dev/shm 2>/dev/null | sed 's/^/posix /'
	  ipcs -m 2>/dev/null | awk '$2 ~ /^[0-9]+$/ {print "sysv " $2}'; } | sort
}

before=$(mktemp)
after=$(mktemp)
out=$(mktemp)
trap 'rm -f "$before" "$after" "$out"' EXIT
shm_snapshot > "$before"

n=0
for b in $bins; do n=$((n + 1)); done
n=$((n + 1))

pass=0 fail=0 skip=0 i=0
echo "KTAP version 1"
echo "1..$n"
for b in $bins; do
	i=$((i + 1))
	name=$(basename "$b")
	timeout -k 10 "$timeout_s" "$b" > "$out" 2>&1
	rc=$?
	sed 's/^/    /' "$out"
	totals=$(grep '^# Totals:' "$out" | tail -1)
	if [ -n "$totals" ]; then
		p=$(echo "$totals" | sed 's/.* pass:\([0-9]*\) fail:.*/\1/')
		f=$(echo "$totals" | sed 's/.* fail:\([0-9]*\) xfail:.*/\1/')
		s=$(echo "$totals" | sed 's/.* skip:\([0-9]*\) error:.*/\1/')
		e=$(echo "$totals" | sed 's/.* error:\([0-9]*\).*/\1/')
		pass=$((pass + p)); fail=$((fail + f + e)); skip=$((skip + s))
	else
		echo "    # $name: no totals (exit $rc): crashed or timed out"
		fail=$((fail + 1))
	fi
	if [ $rc -eq 0 ]; then
		echo "ok $i $name"
	elif [ $rc -eq 4 ]; then
		echo "ok $i $name # SKIP"
	else
		[ -n "$totals" ] && [ "$f" = 0 ] && [ "$e" = 0 ] && fail=$((fail + 1))
		echo "not ok $i $name # exit $rc"
	fi
done

# Leak hygiene: nothing the tests created may remain.
shm_snapshot > "$after"
# A segment whose creator still runs is in use by someone else (another
# job on the machine), not left behind by these tests, whose processes have
# all exited by now: POSIX names /libafl_<pid>_<n> and SysV cpids tell.
creator_alive() {
	case "$1" in
	posix) pid=$(echo "$2" | sed -n 's/^libafl_\([0-9]*\)_[0-9]*$/\1/p') ;;
	sysv) pid=$(awk -v id="$2" '$2 == id {print $5}' /proc/sysvipc/shm 2>/dev/null) ;;
	*) pid= ;;
	esac
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
leaked=$(comm -13 "$before" "$after" | while read -r kind id; do
	creator_alive "$kind" "$id" || echo "$kind $id"
done)
i=$((i + 1))
if [ -z "$leaked" ]; then
	echo "ok $i no_shared_memory_left_behind"
	pass=$((pass + 1))
else
	echo "    # left behind by the tests:"
	echo "$leaked" | sed 's/^/    #   /'
	echo "not ok $i no_shared_memory_left_behind"
	fail=$((fail + 1))
fi

if [ $skip -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
