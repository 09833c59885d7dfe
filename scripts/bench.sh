#!/usr/bin/env bash
# scripts/bench.sh - runs the benchmarks side by side with their peers and
# prints the medians of 5 runs of each, and ioctx's ratio to each peer.
# Runs are interleaved (A B C D E A B C D E ...) so that a noisy
# neighbour hurts all alike.  Installs the peers it needs (g++,
# libasio-dev, libuv1-dev, liburing-dev); a peer that still cannot be
# built, or that the kernel refuses (io_uring in a sandbox), is skipped,
# and said so.
#
# 1. The write benchmark (test/bench/bench_write*, bench_write_common.h):
#    64 socketpairs, 4 producers, 2 run threads; 64 B, 4 KiB and 1 MiB
#    messages; ioctx, Asio, libuv, io_uring and raw blocking writev.
#    Then light load: 1 connection, 1 producer, 1 message in flight, where
#    the figure that counts is the latency (p99 ratio column).
# 2. Posting handlers through strands, ioctx against Asio.
#
#   scripts/bench.sh [--quick] [--runs N] [--pipes] [--workers W]
#     --quick    1 run each, a tenth of the messages: a fast check
#     --runs N   runs of each program per scenario (default 5)
#     --pipes    pipes instead of socketpairs in the write benchmark
#     --workers  ioctx's worker threads (default 1)
set -euo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

usage() {
    sed -n '15,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

runs=""
quick=0
workers=1
pipes=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --pipes) pipes=(--pipes); shift ;;
        --workers) workers=${2:?--workers needs a number}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage; exit 2 ;;
    esac
done
if [ -z "$runs" ]; then
    runs=$((quick ? 1 : 5))
fi

ensure_packages "${IOCTX_BUILD_PACKAGES[@]}" g++ libasio-dev libuv1-dev liburing-dev \
    || echo "warning: could not install every peer; the missing ones are skipped" >&2
build_config bench "" -DCMAKE_BUILD_TYPE=Release -DIOCTX_BUILD_TESTS=OFF
bin="$IOCTX_ROOT/build/bench/test/bench"
failures=0

# ------------------------------------------------------------------
# 1. The write benchmark
# ------------------------------------------------------------------

# name:program:Debian packages it needs
write_impls=(
    ioctx:bench_write:
    asio:bench_write_asio:"g++ libasio-dev"
    uv:bench_write_uv:libuv1-dev
    uring:bench_write_uring:liburing-dev
    raw:bench_write_raw:
)
# size:messages per producer (~0.5-2 s a run on 2 cores)
scenarios=(64:125000 4096:50000 1048576:250)
light_messages=20000
if [ "$quick" -eq 1 ]; then
    scenarios=(64:12500 4096:5000 1048576:25)
    light_messages=2000
fi
flood=(--connections 64 --producers 4 --run-threads 2 --workers "$workers" "${pipes[@]}")
light=(--connections 1 --producers 1 --window 1 --run-threads 2 --workers "$workers" "${pipes[@]}")

names=()
programs=()
for entry in "${write_impls[@]}"; do
    IFS=: read -r name program packages <<<"$entry"
    if [ -x "$bin/$program" ]; then
        names+=("$name")
        programs+=("$program")
    else
        echo "==> $name: skipped, $program was not built (Debian: apt-get install $packages)"
    fi
done

# table RESULTS_FILE NAMES... : medians per program and column, and
# ioctx's messages/s over each peer's.
table() {
    local file=$1
    shift
    awk -v order="$*" '
        function median(name, col,    n, i, j, v, t) {
            n = 0
            for (i = 1; i <= count[name]; i++)
                if (val[name, i, col] != "na")
                    v[++n] = val[name, i, col] + 0
            if (n == 0)
                return "na"
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
                    t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
                }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        function cell(width, prec, x) {
            return x == "na" ? sprintf("%" width "s", "n/a") : sprintf("%" width "." prec "f", x)
        }
        { c = ++count[$1]; for (k = 2; k <= 9; k++) val[$1, c, k] = $k }
        END {
            printf "    %-6s %11s %9s %7s %10s %9s %10s %10s %11s %11s %10s\n", "", "msgs/s", "MB/s", "CPU s",
                   "writes/msg", "p50 us", "p99 us", "mallocs/op", "peak RSS kB", "ioctx/peer", "p99 ratio"
            n = split(order, names, " ")
            base = count["ioctx"] ? median("ioctx", 2) : "na"
            base99 = count["ioctx"] ? median("ioctx", 7) : "na"
            for (i = 1; i <= n; i++) {
                name = names[i]
                if (!count[name])
                    continue
                m = median(name, 2)
                m99 = median(name, 7)
                ratio = (name == "ioctx" || base == "na" || m == "na" || m == 0) ? "" : sprintf("%.2f", base / m)
                ratio99 = (name == "ioctx" || name == "raw" || base99 == "na" || m99 == "na" || m99 == 0) ? "" : sprintf("%.2f", base99 / m99)
                printf "    %-6s %s %s %s %s %s %s %s %s %11s %10s\n", name,
                       cell(11, 0, m), cell(9, 1, median(name, 3)), cell(7, 2, median(name, 4)),
                       cell(10, 3, median(name, 5)), cell(9, 1, median(name, 6)),
                       cell(10, 1, m99), cell(10, 3, median(name, 8)),
                       cell(11, 0, median(name, 9)), ratio, ratio99
            }
        }' "$file"
}

# write_scenario TITLE ARGS... : runs every program with ARGS, interleaved,
# and prints the table.
write_scenario() {
    local title=$1 results errors i k out rc live=()
    shift
    local args=("$@")
    results=$(mktemp)
    errors=$(mktemp)
    for ((k = 0; k < ${#names[@]}; k++)); do live+=(1); done
    echo
    echo "==> write, $title: median of $runs runs; ${args[*]}"
    for ((i = 1; i <= runs; i++)); do
        for ((k = 0; k < ${#names[@]}; k++)); do
            [ "${live[k]}" -eq 1 ] || continue
            rc=0
            out=$("$bin/${programs[k]}" "${args[@]}" 2>"$errors") || rc=$?
            if [ "$rc" -eq 77 ] || [[ "$out" == *" skipped "* ]]; then
                echo "    ${names[k]}: skipped: ${out#* skipped }"
                live[k]=0
            elif [ "$rc" -ne 0 ]; then
                echo "    ${names[k]}: run $i FAILED (exit $rc): $(tail -n 3 "$errors" | tr '\n' ' ')"
                failures=$((failures + 1))
            else
                echo "$out" >>"$results"
            fi
        done
    done
    table "$results" "${names[@]}"
    rm -f "$results" "$errors"
}

echo
echo "==> write benchmark: ${#names[@]} programs, interleaved; columns are medians"
echo "    msgs/s, MB/s: messages (bytes) written and verified by the readers, over the wall time"
echo "    CPU s: getrusage user+sys of the whole process (readers included) during the run"
echo "    writes/msg: ioctx stats.writev_calls; asio, uv: write/writev/sendmsg calls on the"
echo "      connections (interposer); uring: writev SQEs; raw: its own writev calls"
echo "    p50/p99 us: submit to completion handler (raw: before the lock to after the writev)"
echo "    mallocs/op: malloc/calloc/realloc/aligned calls (interposer) during the run, per message"
echo "    peak RSS kB: getrusage ru_maxrss; ioctx/peer: ioctx's msgs/s over the peer's"
echo "    p99 ratio: ioctx's p99 over the peer's (below 1: ioctx is faster; raw, synchronous, is left out)"
for scenario in "${scenarios[@]}"; do
    size=${scenario%%:*}
    messages=${scenario##*:}
    write_scenario "$size B messages, $((4 * messages)) a run" "${flood[@]}" --size "$size" --messages "$messages"
done
write_scenario "light load: 64 B messages one at a time, $light_messages a run" \
    "${light[@]}" --size 64 --messages "$light_messages"

# ------------------------------------------------------------------
# 2. Posting through strands, ioctx against Asio
# ------------------------------------------------------------------

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# compare NAME IOCTX_PROGRAM PEER_PROGRAM [ARGS...]
compare() {
    local name=$1 ours=$2 peer=$3 i ours_file peer_file m_ours m_peer
    shift 3
    echo
    if [ ! -x "$bin/$peer" ]; then
        echo "==> $name: skipped, $peer was not built (Debian: apt-get install g++ libasio-dev)"
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

post_args=()
if [ "$quick" -eq 1 ]; then
    post_args=(--handlers 200000)
fi
compare "post through strands vs Asio" bench_strand_post bench_strand_post_asio "${post_args[@]}"

if [ "$failures" -ne 0 ]; then
    echo
    echo "==> $failures run(s) FAILED (see above)"
    exit 1
fi
