#!/usr/bin/env bash
# scripts/demo.sh - installs what is missing, builds (Release), and runs the
# main job: the fan-out server of test/examples/fanout.c on 127.0.0.1.
# Publisher threads write every message to every subscriber through ioctx,
# pausing on write-buffer water-mark events; one subscriber is slow (dropped
# at the cap), one disconnects, one stops reading a low-volume stream
# (dropped by the send timeout); every byte is verified.  Takes about 10
# seconds on a 2-core machine, and a few more for the first build.
# Options are passed to the server: scripts/demo.sh --help lists them.
set -euo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

ensure_packages "${IOCTX_BUILD_PACKAGES[@]}"
# Only what the demo runs, the library and the server: not the tests,
# examples and benchmarks that a whole build compiles.  make's progress
# lines stay on, so that a first build does not look like a hang.
configure_config release "" -DCMAKE_BUILD_TYPE=Release -DIOCTX_BUILD_BENCH=OFF
echo "==> building libioctx and the fan-out server (test/examples/fanout.c), Release, in build/release"
cmake --build "$IOCTX_ROOT/build/release" --target fanout -j "$(nproc)" -- --no-print-directory
echo "==> running test/examples/fanout $*"
status=0
"$IOCTX_ROOT/build/release/test/examples/fanout" "$@" || status=$?
case " $* " in
    *" --help "*|*" -h "*) ;;
    *) cat <<'MORE'

Read more: README.md (what ioctx is, the API in one page), include/ioctx.h
(every function), test/examples/fanout.c (this server), scripts/test.sh
(the tests), scripts/bench.sh (the benchmarks).
MORE
       ;;
esac
exit "$status"
