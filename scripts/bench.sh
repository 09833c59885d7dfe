#!/usr/bin/env bash
# scripts/bench.sh - runs the benchmarks side by side with their peers and
# prints the median of 5 runs of each, and ioctx's ratio to each peer.
# Runs are interleaved (ioctx, peer, ioctx, peer, ...) so that a noisy
# neighbour hurts both alike.  Installs the peers it needs (g++ and
# libasio-dev); a peer that still cannot be built is skipped, and said so.
#
#   scripts/bench.sh [--runs N] [workload options passed to every program]
set -euo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

runs=5
if [ "${1:-}" = "--runs" ]; then
    runs=$2
    shift 2
fi

ensure_packages "${IOCTX_BUILD_PACKAGES[@]}" g++ libasio-dev \
    || echo "warning: could not install every peer; the missing ones are skipped" >&2
build_config bench "" -DCMAKE_BUILD_TYPE=Release -DIOCTX_BUILD_TESTS=OFF
bin="$IOCTX_ROOT/build/bench/test/bench"

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# compare NAME IOCTX_PROGRAM PEER_PROGRAM [ARGS...]
compare() {
    local name=$1 ours=$2 peer=$3 i ours_file peer_file m_ours m_peer
    shift 3
    if [ ! -x "$bin/$peer" ]; then
        echo "==> $name: skipped, $peer was not built (see the notice above)"
        return
    fi
    ours_file=$(mktemp)
    peer_file=$(mktemp)
    echo "==> $name: $runs runs each of $ours and $peer $*"
    for ((i = 1; i <= runs; i++)); do
        "$bin/$ours" "$@" | awk '{ print $2 }' >>"$ours_file"
        "$bin/$peer" "$@" | awk '{ print $2 }' >>"$peer_file"
    done
    m_ours=$(median <"$ours_file")
    m_peer=$(median <"$peer_file")
    rm -f "$ours_file" "$peer_file"
    printf '    ioctx  median %12.0f handlers/s\n' "$m_ours"
    printf '    peer   median %12.0f handlers/s\n' "$m_peer"
    awk -v a="$m_ours" -v b="$m_peer" 'BEGIN { printf "    ratio  ioctx/peer = %.2f\n", a / b }'
}

compare "post through strands vs Asio" bench_strand_post bench_strand_post_asio "$@"
