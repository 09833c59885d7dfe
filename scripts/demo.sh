#!/usr/bin/env bash
# scripts/demo.sh - installs what is missing, builds, and runs the main job.
#
# Until the fan-out server exists, the main job is the strand example:
# several run threads drain a million handlers posted over many strands,
# and print handlers per second and whether order held.  Arguments are
# passed to the example (try --help).
set -euo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

ensure_packages "${IOCTX_BUILD_PACKAGES[@]}"
build_config release "" -DCMAKE_BUILD_TYPE=Release
echo "==> running test/examples/strand_throughput $*"
exec "$IOCTX_ROOT/build/release/test/examples/strand_throughput" "$@"
