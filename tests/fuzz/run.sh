#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Build the TCP frame parser fuzz target with clang (libFuzzer + ASan +
# UBSan) and run it for a bounded time, starting from the LibAFL frames of
# reference/vectors.  Exits non-zero on a crash or a sanitizer report;
# prints SKIP and exits 0 when clang is not installed.
#
#   tests/fuzz/run.sh [SECONDS]      (default 30, or $LLMP_FUZZ_SECONDS)
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-${LLMP_FUZZ_SECONDS:-30}}
out=build/fuzz
CLANG=${CLANG:-clang}

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "postcard_fuzz: SKIP (clang not installed; tools/deps.sh installs it)"
	exit 0
fi
make -s lib
mkdir -p "$out/corpus" "$out/crashes"
# The parser is compiled instrumented; the rest comes from libllmp.a.
"$CLANG" -std=gnu11 -g -O1 -D_GNU_SOURCE -Iinclude -Ilib \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	tests/fuzz/postcard_fuzz.c lib/postcard.c build/libllmp.a \
	-pthread -lrt $(pkg-config --libs liburing 2>/dev/null || true) -lz \
	-o "$out/postcard_fuzz"

# Seeds: the captured frames (selector byte first: 0 request, 1 response, 3 framed request).
rc=0
seed() { printf '%s' "$2" | xxd -r -p > "$out/corpus/$1"; }
seed hello    0100808040343931353238000000000000000000000000000009706565722d686f7374
seed chello   00008080403439313533300000000000000000000000000000
seed chello_f 0300000018008080403439313533300000000000000000000000000000
seed accepted 010101
seed quit     000205
seed rbhello  000104686f7374
seed b2b      020521020103616263
seed extq     00cc9801
seed extinfo  01cc9801808040343931353238000000000000000000000000000001

"$out/postcard_fuzz" -max_total_time="$secs" -timeout=5 -print_final_stats=1 \
	-artifact_prefix="$out/crashes/" "$out/corpus" > "$out/fuzz.log" 2>&1 || rc=$?
tail -n 15 "$out/fuzz.log"
if [ $rc -ne 0 ]; then
	echo "postcard_fuzz: FAILED (exit $rc); reproducer in $out/crashes/" >&2
	exit 1
fi
echo "postcard_fuzz: ok, no crash in ${secs}s"
