#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# make demo: a broker and three client processes exchange text lines and
# checksummed payloads for a few seconds on the default shared-memory
# provider; prints samples, per-client counts and the throughput.
#
#   tools/demo.sh BUILD_DIR      (DEMO_SECS: seconds, default 3;
#                                 DEMO_PROVIDER: provider kind, default "default")
set -eu
build=${1:-build}
demo=$build/tools/llmp-demo
[ -x "$demo" ] || { echo "demo.sh: $demo missing (run make)" >&2; exit 1; }
exec "$demo" --provider "${DEMO_PROVIDER:-default}" --seconds "${DEMO_SECS:-3}" --clients 3
