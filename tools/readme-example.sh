#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Compile and run the C program of README.md's "Example" section against
# the static library, with -Wall -Wextra -Werror, so the README never shows
# code that does not build or work.  CI runs it after make check.
#
#   tools/readme-example.sh [BUILD_DIR]     (default: build; builds the library if missing)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
cc=${CC:-cc}

[ -f "$build/libllmp.a" ] || make -s BUILD="$build" lib

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM

# The first ```c block after the "## Example" heading, up to its closing fence.
awk '/^## Example/ { sec = 1; next }
	sec && /^## / { exit }
	sec && !inb && /^```c[[:space:]]*$/ { inb = 1; next }
	inb && /^```[[:space:]]*$/ { exit }
	inb { print }' README.md > "$dir/example.c"
if [ ! -s "$dir/example.c" ]; then
	echo "readme-example: no \`\`\`c block in README.md's \"## Example\" section" >&2
	exit 1
fi

# The same optional libraries the library itself may be built with.
libs="-pthread -lrt"
probe() { printf '%s\nint main(void){return 0;}\n' "$1" | $cc -x c - -o "$dir/probe" "$2" 2>/dev/null; }
probe '#include <liburing.h>' -luring && libs="$libs -luring"
probe '#include <zlib.h>' -lz && libs="$libs -lz"
probe '#include <zstd.h>' -lzstd && libs="$libs -lzstd"

# shellcheck disable=SC2086 # $libs is a list of flags
$cc -std=gnu11 -Wall -Wextra -Werror -Iinclude -o "$dir/example" "$dir/example.c" \
	"$build/libllmp.a" $libs
echo "readme-example: $(wc -l < "$dir/example.c") lines compiled; running it"
timeout 30 "$dir/example"
echo "readme-example: ok"
