#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Self-check of the VM harness: boot the guests with a canary module
# (tests/vm/canary/, standing in for llmp.ko) that misbehaves on request,
# and check that tests/vm/run.sh reports exactly what it must:
#
#   none  (debian) the canary's cases and the kernel log pass
#   warn  (debian) a WARN_ON fails kernel_log_clean and the host's console check
#   oops  (debian) a NULL dereference (oops=panic) ends the guest early: the
#                  host sees a short plan, no "done", and fails
#   leak  (debug)  a forgotten kmalloc fails kmemleak_after_tests; the
#                  failslab pass injects failures without kernel problems
#
# Prints KTAP and "N passed, N failed"; exit 0 only if the harness caught
# everything and flagged nothing else. LLMP_VM_SELFTEST="none warn oops leak"
# picks the scenarios. Takes about 3 minutes (the debug kernel must be built
# already or is built first).
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
vmdir=${LLMP_VM_DIR:-$top/build/vm}
scenarios=${LLMP_VM_SELFTEST:-none warn oops leak}
out=$vmdir/selftest
mkdir -p "$out"

"$here/run.sh" --prereqs || { echo "1..0 # SKIP VM prerequisites missing"; exit 4; }
make -s -C "$top" harness >/dev/null || exit 1
canary=$out/kmod_canary_test
${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -Werror -Wno-sign-compare -Wno-unused-parameter -D_GNU_SOURCE \
	-I"$top/build/kselftest" "$here/canary/kmod_canary_test.c" -static -o "$canary" || exit 1

n=0
for s in $scenarios; do n=$((n + 1)); done
echo "KTAP version 1"
echo "1..$n"
pass=0 fail=0 i=0

# expect LOG PATTERN WHAT: one check of a scenario's output.
expect() {
	if grep -Eq "$2" "$1"; then
		echo "    ok - $3"
	else
		echo "    not ok - $3 (no line matching '$2')"
		bad=$((bad + 1))
	fi
}
expect_not() {
	if grep -Eq "$2" "$1"; then
		echo "    not ok - $3 (found: $(grep -E "$2" "$1" | head -n 1))"
		bad=$((bad + 1))
	else
		echo "    ok - $3"
	fi
}

for s in $scenarios; do
	i=$((i + 1))
	bad=0
	kernel=debian
	[ "$s" = leak ] && kernel=debug
	log=$out/$s.log
	LLMP_VM_KERNELS=$kernel LLMP_VM_KMOD_SRC=$here/canary LLMP_VM_TESTS=kmod_canary_test \
		LLMP_VM_EXTRA_TESTS=$canary LLMP_VM_APPEND="llmp_canary=$s" \
		LLMP_VM_TIMEOUT=600 "$here/run.sh" > "$log" 2>&1
	rc=$?
	echo "    # $s on $kernel: run.sh exit $rc, last line: $(tail -n 1 "$log")"
	case "$s" in
	none)
		[ "$rc" = 0 ] || [ "$rc" = 1 ] || bad=$((bad + 1))
		expect "$log" '^    ok [0-9]+ kmod_canary_test$' "canary test passes"
		expect "$log" '^        ok [0-9]+ # SKIP llmp_canary not set' "misbehave skipped"
		expect "$log" '^    ok [0-9]+ insmod_llmp$' "module loads"
		expect "$log" '^    ok [0-9]+ rmmod_after_release$' "module unloads"
		expect "$log" '^    ok [0-9]+ kernel_log_clean$' "kernel log clean"
		expect_not "$log" 'kernel problems on the console' "console clean"
		expect_not "$log" 'did not finish|results for a plan' "guest finished"
		;;
	warn)
		[ "$rc" = 1 ] || { echo "    # expected exit 1"; bad=$((bad + 1)); }
		expect "$log" '^    not ok [0-9]+ kernel_log_clean$' "kernel_log_clean fails"
		expect "$log" '# kernel \(kmod_canary_test\): .*WARNING' "warning attributed to the test"
		expect "$log" 'kernel problems on the console' "host console check fails"
		expect "$log" '^not ok 1 vm_debian$' "vm_debian fails"
		;;
	oops)
		[ "$rc" = 1 ] || { echo "    # expected exit 1"; bad=$((bad + 1)); }
		expect "$log" 'results for a plan of' "short plan noticed"
		expect "$log" 'the guest did not finish' "missing done noticed"
		expect "$log" 'BUG: kernel NULL pointer dereference' "oops shown"
		expect "$log" '^not ok 1 vm_debian$' "vm_debian fails"
		;;
	leak)
		[ "$rc" = 1 ] || { echo "    # expected exit 1"; bad=$((bad + 1)); }
		expect "$log" '^    not ok [0-9]+ kmemleak_after_tests$' "kmemleak_after_tests fails"
		expect "$log" 'unreferenced object .*\(size 192\)' "the leaked object is reported"
		expect "$log" '# failslab/kmod_canary_test: [1-9][0-9]* failures injected' "failslab injected failures"
		expect "$log" '^    ok [0-9]+ failslab/kmod_canary_test$' "failslab pass clean"
		expect "$log" '^    ok [0-9]+ failslab_rmmod$' "module unloads after failslab"
		expect "$log" '^    ok [0-9]+ kunit_suites # SKIP' "no KUnit suite is a skip"
		expect "$log" '^not ok 1 vm_debug$' "vm_debug fails"
		;;
	*)
		echo "    # unknown scenario $s"
		bad=$((bad + 1))
		;;
	esac
	if [ "$bad" = 0 ]; then
		echo "ok $i $s"
		pass=$((pass + 1))
	else
		echo "    # full output: $log"
		echo "not ok $i $s"
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
