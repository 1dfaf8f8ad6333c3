#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The wake-up benchmark inside the Debian-kernel guest, where /dev/llmp
# exists: builds llmp-bench statically, then boots the guest through
# tests/vm/run.sh with it and tests/vm/wake_bench_test as extra tests, and
# runs those and loop_wake_test (the bell variants run there).  Prints
# run.sh's output; the figures are the "# figure: wake ..." lines.
#
#   tests/vm/wake-bench.sh     (LLMP_VM_DIR as for run.sh, default build/vm;
#                               LLMP_WAKE_BENCH_TESTS: the guest's tests,
#                               default "loop_wake_test wake_bench_test")
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
vmdir=${LLMP_VM_DIR:-$top/build/vm}
static=$vmdir/static
mkdir -p "$static/tools"
make -s -C "$top" harness >/dev/null || exit 1
make -s -C "$top" BUILD="$static" lib >/dev/null || exit 1
rm -f "$static/tools/llmp-bench"
uring=""
printf '#include <liburing.h>\nint main(void){return 0;}\n' |
	${CC:-gcc} -x c - -o /dev/null -luring 2>/dev/null && uring=-luring
zlib=""
printf '#include <zlib.h>\nint main(void){return 0;}\n' |
	${CC:-gcc} -x c - -o /dev/null -lz 2>/dev/null && zlib=-lz
printf '#include <zstd.h>\nint main(void){return 0;}\n' |
	${CC:-gcc} -x c - -o /dev/null -lzstd 2>/dev/null && zlib="$zlib -lzstd"
# shellcheck disable=SC2086 # $uring and $zlib are empty or words
${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
	-I"$top/include" "$top/tools/llmp-bench.c" -o "$static/tools/llmp-bench" \
	"$static/libllmp.a" -pthread -lrt $uring $zlib -static 2>&1 |
	grep -v 'statically linked applications requires at runtime' | grep -v 'in function'
[ -x "$static/tools/llmp-bench" ] || exit 1
LLMP_VM_KERNELS=${LLMP_VM_KERNELS:-debian} \
	LLMP_VM_TESTS=${LLMP_WAKE_BENCH_TESTS:-loop_wake_test wake_bench_test} \
	LLMP_VM_EXTRA_TESTS="$here/wake_bench_test $static/tools/llmp-bench" \
	LLMP_VM_DIR="$vmdir" exec "$here/run.sh"
