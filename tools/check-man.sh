#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make check-man: the manual pages are true and clean.
#   1. mandoc -Tlint -Wwarning on every Documentation/man/*.[1-8]: no
#      warning or error (style notes are not reported);
#   2. every function that include/llmp/*.h declares has a section-3 page
#      (its family's page, or a .so link page named after it);
#   3. the EXAMPLE of every section-3 family page (between .EX and .EE) is
#      compiled with -Wall -Wextra -Werror against the built static library,
#      linked and run (LLMP_MAN_RUN=0: not run); each must exit 0, saying so
#      where what it shows is missing here (no /dev/llmp, no broker).
#
#   tools/check-man.sh [BUILD_DIR]     (default: build; builds the library if missing)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
cc=${CC:-cc}
man=Documentation/man
fail=0
bad() { echo "check-man: FAILED: $*" >&2; fail=1; }
command -v mandoc >/dev/null || { echo "check-man: mandoc missing: apt-get install -y mandoc" >&2; exit 1; }

# 1. lint
n=0
for p in "$man"/*.[1-8]; do
	n=$((n + 1))
	grep -q '^\.so ' "$p" && continue
	out=$(mandoc -Tlint -Wwarning "$p" 2>&1) || bad "mandoc -Tlint $p: $out"
done
echo "check-man: $n pages linted"

# 2. coverage: every function declared in the public headers
fns=$(sed -n 's/^[a-z][a-z0-9_ ]*[ *]\(llmp_[a-z0-9_]*\)(.*/\1/p' include/llmp/*.h | sort -u)
nf=0
for f in $fns; do
	nf=$((nf + 1))
	[ -f "$man/$f.3" ] || bad "$f (include/llmp) has no page $man/$f.3"
done
for p in "$man"/*.3; do
	t=$(sed -n 's/^\.so \(.*\)$/\1/p' "$p")
	[ -z "$t" ] || echo "$fns" | grep -qx "$(basename "$p" .3)" ||
		bad "$p links a name that include/llmp/*.h does not declare"
	[ -z "$t" ] || [ -f "$man/${t#man3/}" ] || bad "$p links to missing $t"
done
echo "check-man: $nf functions of include/llmp/*.h, each with a page"

# 3. the examples
[ -f "$build/libllmp.a" ] || make -s BUILD="$build" lib
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
libs="-pthread -lrt"
[ -f "$build/config.mk" ] && libs="$libs $(sed -n 's/^CONFIG_LIBS *:*= *//p' "$build/config.mk")"
ne=0
for p in "$man"/*.3; do
	grep -q '^\.so ' "$p" && continue
	b=$(basename "$p" .3)
	awk '/^\.SH EXAMPLE/ { sec = 1; next }
		sec && /^\.SH / { exit }
		sec && /^\.EX/ { inb = 1; next }
		inb && /^\.EE/ { exit }
		inb { print }' "$p" | sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\e/\\/g' > "$dir/$b.c"
	if [ ! -s "$dir/$b.c" ]; then
		bad "$p has no EXAMPLE (.SH EXAMPLE with .EX/.EE)"
		continue
	fi
	# shellcheck disable=SC2086 # $libs is a list of flags
	if ! $cc -std=gnu11 -Wall -Wextra -Werror -Iinclude -o "$dir/$b" "$dir/$b.c" \
		"$build/libllmp.a" $libs 2> "$dir/$b.err"; then
		sed 's/^/    /' "$dir/$b.err" >&2
		bad "the EXAMPLE of $p does not compile"
	fi
	ne=$((ne + 1))
	# Run it too (each exits 0, also where its feature is missing here).
	if [ "${LLMP_MAN_RUN:-1}" = 1 ] && [ -x "$dir/$b" ]; then
		if ! timeout 60 "$dir/$b" > "$dir/$b.out" 2>&1; then
			sed 's/^/    /' "$dir/$b.out" >&2
			bad "the EXAMPLE of $p failed when run"
		fi
		echo "check-man: $b: $(tail -1 "$dir/$b.out")"
	fi
done
echo "check-man: $ne EXAMPLEs compiled, linked against $build/libllmp.a and run"
[ "$fail" = 0 ] && echo "check-man: ok"
exit "$fail"
