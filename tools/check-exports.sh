#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# libllmp.so must export only public llmp_* functions: every exported
# symbol starts with llmp_ and is declared in an installed header.
set -eu
so=$1
syms=$(nm -D --defined-only "$so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}' | sort -u)
bad=0
for s in $syms; do
	case "$s" in
	llmp_*) grep -qw "$s" include/llmp/*.h || { echo "check-exports: $s is exported but not in include/llmp/" >&2; bad=1; } ;;
	*) echo "check-exports: $s is exported and not llmp_*" >&2; bad=1 ;;
	esac
done
[ $bad = 0 ] && echo "check-exports: $(echo "$syms" | wc -l) public symbols, all declared in include/llmp/"
exit $bad
