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
#    Then the latency-throughput curve: the 64 B flood (64 connections, 4
#    producers) with at most W messages in flight per producer, W = 1, 4,
#    16, 64, 256; per W, each program's msgs/s, p50, p99 and CPU per
#    message, and ioctx's msgs/s and p99 over the best peer's (Asio,
#    libuv, io_uring; raw is shown as a reference) and its CPU per message
#    over Asio's.
#    Then 4,096 busy connections (64 B messages).
#    Then slow consumers (--slow K, K = 0, 2,000, 8,000): beside the 64 B
#    flood, K connections with 4 KiB buffers whose readers never read,
#    each with a 256 KiB write stuck in it; the healthy traffic's
#    throughput, ioctx's over each peer's and each program's over its own
#    at K = 0, and the time to close the K stuck connections (ioctx,
#    Asio, libuv; raw and io_uring sit out).
#    Then heap bytes kept per idle connection after bursts of 64 writes
#    on each of 8,000 connections (ioctx, Asio, libuv).
# 2. Posting handlers through strands, ioctx against Asio.
# 3. Timers (test/bench/bench_timer*, bench_timer_common.h): ioctx's
#    io_timer, Asio's steady_timer and libuv's uv_timer_t, with P = 1,
#    1,000 and 100,000 timers pending.  The lateness of 2,000 waits run
#    one after another, 1 to 2 ms ahead (handler's clock minus the
#    expiry; p50, p99, max; 2 run threads, libuv its one loop thread);
#    the wall and CPU time per start and cancel, 100,000 of them on 1,000
#    timers, until every cancelled handler has run (libuv: uv_timer_start
#    and uv_timer_stop, no handler); ioctx's p50, p99 and costs over each
#    peer's.  Then the CPU of an idle process with 1,000 far-off waits.
# 4. Serving a file (test/bench/bench_sendfile.c): a 64 MiB file to 8
#    concurrent clients over TCP loopback, 4 times over to each (2 GiB a
#    run), three ways: ioctx's async_sendfile of the whole file, ioctx's
#    pread + async_write in 64 KiB chunks (4 in flight per client), and
#    raw blocking sendfile from a thread per client; MB/s, CPU and write
#    calls, and async_sendfile's MB/s over the other two's.
#
#   scripts/bench.sh [--quick] [--runs N] [--pipes] [--workers W] [--only S]
#     --quick    1 run each, a tenth of the messages, K, connections, waits and starts
#                (and the file sent once to each client, not 4 times): a fast check
#     --runs N   runs of each program per scenario (default 5)
#     --pipes    pipes instead of socketpairs in the write benchmark
#     --workers  ioctx's worker threads (default 2: one per core of a 2-core machine,
#                as many as the run threads; the second joins only under a backlog)
#     --only S   just one section: write, strand, timer or sendfile
set -euo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

usage() {
    sed -n '/^#   scripts\/bench.sh \[/,/^#     --only/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

runs=""
quick=0
only_section=""
workers=2
pipes=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --pipes) pipes=(--pipes); shift ;;
        --workers) workers=${2:?--workers needs a number}; shift 2 ;;
        --only) only_section=${2:?--only needs a section}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage; exit 2 ;;
    esac
done
if [ -z "$runs" ]; then
    runs=$((quick ? 1 : 5))
fi
case $only_section in
    ""|write|strand|timer|sendfile) ;;
    *) echo "unknown section: $only_section" >&2; usage; exit 2 ;;
esac

# want SECTION: whether that section is to run.
want() {
    [ -z "$only_section" ] || [ "$only_section" = "$1" ]
}

ensure_packages "${IOCTX_BUILD_PACKAGES[@]}" g++ libasio-dev libuv1-dev liburing-dev \
    || echo "warning: could not install every peer; the missing ones are skipped" >&2
# IOCTX_BENCH_BUILD: the build directory's name under build/ (default
# bench), for a second checkout or user that must not share it.
build_name=${IOCTX_BENCH_BUILD:-bench}
build_config "$build_name" "" -DCMAKE_BUILD_TYPE=Release -DIOCTX_BUILD_TESTS=OFF
bin="$IOCTX_ROOT/build/$build_name/test/bench"
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
# window W:messages per producer, more as W lets more through, for about
# 0.3-2 s a run (some 80k msgs/s at W = 1, up to 2M at W = 256)
curve=(1:15000 4:25000 16:50000 64:100000 256:125000)
many_connections=4096
many_messages=125000
slow_counts=(0 2000 8000)
slow_messages=250000
idle_connections=8000
if [ "$quick" -eq 1 ]; then
    scenarios=(64:12500 4096:5000 1048576:25)
    light_messages=2000
    curve=(1:1500 4:2500 16:5000 64:10000 256:12500)
    many_connections=512
    many_messages=12500
    slow_counts=(0 200 800)
    slow_messages=25000
    idle_connections=800
fi
idle_burst=64
flood=(--connections 64 --producers 4 --run-threads 2 --workers "$workers" "${pipes[@]}")
light=(--connections 1 --producers 1 --window 1 --run-threads 2 --workers "$workers" "${pipes[@]}")
many=(--connections "$many_connections" --producers 4 --run-threads 2 --workers "$workers" "${pipes[@]}")

# find_programs NAME:PROGRAM:PACKAGES... : sets names and programs to
# those of the given programs that were built, and says which were not.
find_programs() {
    local entry name program packages
    names=()
    programs=()
    for entry in "$@"; do
        IFS=: read -r name program packages <<<"$entry"
        if [ -x "$bin/$program" ]; then
            names+=("$name")
            programs+=("$program")
        else
            echo "==> $name: skipped, $program was not built (Debian: apt-get install $packages)"
        fi
    done
}

# The awk functions the tables share: median(key, col) of the values
# val[key, 1..count[key], col] that are not "na" ("na" if none);
# cell(width, prec, x), a number or "n/a" printed in width; ratio(a, b),
# a / b with 2 decimals, or "" if either is unknown; sort_numbers(a, n)
# sorts a[1..n].  For the tables with a row per program and value of a
# parameter (K, W): record(col, first, last) files fields first..last of
# the line under key = program SUBSEP $col, returns the run's number
# under that key, and keeps each value of $col once in ks[1..nk]; then
# rows(order) lists the rows, by value and, within a value, in the order
# of the blank-separated program names that have results, in
# row_name[1..n] and row_value[1..n], and returns n.
AWK_STATS='
    function sort_numbers(a, n,    i, j, t) {
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
                t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
            }
    }
    function median(key, col,    n, i, v) {
        n = 0
        for (i = 1; i <= count[key]; i++)
            if (val[key, i, col] != "na")
                v[++n] = val[key, i, col] + 0
        if (n == 0)
            return "na"
        sort_numbers(v, n)
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function cell(width, prec, x) {
        return x == "na" ? sprintf("%" width "s", "n/a") : sprintf("%" width "." prec "f", x)
    }
    function ratio(a, b) {
        return (a == "na" || b == "na" || b == 0) ? "" : sprintf("%.2f", a / b)
    }
    function record(col, first, last,    key, c, k) {
        key = $1 SUBSEP ($col + 0)
        c = ++count[key]
        for (k = first; k <= last; k++)
            val[key, c, k] = $k
        if (!(($col + 0) in seen)) {
            seen[$col + 0] = 1
            ks[++nk] = $col + 0
        }
        return c
    }
    function rows(order,    n, a, i, nn, nm) {
        sort_numbers(ks, nk)
        nn = split(order, nm, " ")
        n = 0
        for (a = 1; a <= nk; a++)
            for (i = 1; i <= nn; i++)
                if ((nm[i], ks[a]) in count) {
                    row_name[++n] = nm[i]
                    row_value[n] = ks[a]
                }
        return n
    }
'

# table RESULTS_FILE NAMES... : medians per program and column, and
# ioctx's messages/s over each peer's.
table() {
    local file=$1
    shift
    awk -v order="$*" "$AWK_STATS"'
        { c = ++count[$1]; for (k = 2; k <= 16; k++) val[$1, c, k] = $k }
        END {
            printf "    %-6s %11s %9s %7s %10s %9s %10s %10s %11s %9s %8s %11s %10s\n", "", "msgs/s", "MB/s",
                   "CPU s", "writes/msg", "p50 us", "p99 us", "mallocs/op", "peak RSS kB", "reads/msg",
                   "rd CPU s", "ioctx/peer", "p99 ratio"
            n = split(order, names, " ")
            base = count["ioctx"] ? median("ioctx", 2) : "na"
            base99 = count["ioctx"] ? median("ioctx", 7) : "na"
            for (i = 1; i <= n; i++) {
                name = names[i]
                if (!count[name])
                    continue
                m = median(name, 2)
                m99 = median(name, 7)
                vs_peer = name == "ioctx" ? "" : ratio(base, m)
                vs_peer99 = (name == "ioctx" || name == "raw") ? "" : ratio(base99, m99)
                printf "    %-6s %s %s %s %s %s %s %s %s %s %s %11s %10s\n", name,
                       cell(11, 0, m), cell(9, 1, median(name, 3)), cell(7, 2, median(name, 4)),
                       cell(10, 3, median(name, 5)), cell(9, 1, median(name, 6)),
                       cell(10, 1, m99), cell(10, 3, median(name, 8)),
                       cell(11, 0, median(name, 9)), cell(9, 3, median(name, 15)),
                       cell(8, 2, median(name, 16)), vs_peer, vs_peer99
            }
        }' "$file"
}

# A run that takes longer than this has hung (a lost handler keeps a run
# thread waiting): it is killed and counted as failed.
run_timeout=300

# run_programs RESULTS ARGS... : runs once each program k whose live[k] is
# 1 (an array the caller declares), with ARGS, appending their result
# lines to RESULTS; a program that skips is said so and dropped from live.
run_programs() {
    local results=$1 errors k out rc
    shift
    errors=$(mktemp)
    for ((k = 0; k < ${#names[@]}; k++)); do
        [ "${live[k]}" -eq 1 ] || continue
        rc=0
        out=$(timeout "$run_timeout" "$bin/${programs[k]}" "$@" 2>"$errors") || rc=$?
        if [ "$rc" -eq 77 ] || [[ "$out" == *" skipped "* ]]; then
            echo "    ${names[k]}: skipped: ${out#* skipped }"
            live[k]=0
        elif [ "$rc" -eq 124 ]; then
            echo "    ${names[k]}: FAILED: no result after ${run_timeout} s (hung?): $*"
            failures=$((failures + 1))
        elif [ "$rc" -ne 0 ]; then
            echo "    ${names[k]}: FAILED (exit $rc): $(tail -n 3 "$errors" | tr '\n' ' ')"
            failures=$((failures + 1))
        else
            echo "$out" >>"$results"
        fi
    done
    rm -f "$errors"
}

# only NAME... : sets live to run just the named programs.
only() {
    local k want
    live=()
    for ((k = 0; k < ${#names[@]}; k++)); do
        live+=(0)
        for want in "$@"; do
            [ "${names[k]}" = "$want" ] && live[k]=1
        done
    done
    return 0
}

# interleaved TABLE VARIANT... -- ARGS... : $runs rounds, each running
# every live program once with ARGS and each VARIANT (more arguments,
# split at blanks; "" for none), all into one results file, so that noise
# hits every variant and program alike; then TABLE RESULTS NAMES...
interleaved() {
    local table=$1 results i variant variants=()
    shift
    while [ "$1" != -- ]; do
        variants+=("$1")
        shift
    done
    shift
    results=$(mktemp)
    for ((i = 1; i <= runs; i++)); do
        for variant in "${variants[@]}"; do
            # shellcheck disable=SC2086 # a variant is several arguments, or none
            run_programs "$results" "$@" $variant
        done
    done
    "$table" "$results" "${names[@]}"
    rm -f "$results"
}

# write_scenario TITLE ARGS... : runs every program with ARGS, interleaved,
# and prints the table.
write_scenario() {
    local title=$1
    shift
    only "${names[@]}"
    echo
    echo "==> write, $title: median of $runs runs; $*"
    interleaved table "" -- "$@"
}

# slow_table RESULTS NAMES... : per K (field 10) and program, the medians
# of msgs/s, CPU s, p99 and close time (field 11, in us), ioctx's msgs/s
# over each peer's at the same K, and each program's over its own at K = 0.
slow_table() {
    local file=$1
    shift
    awk -v order="$*" "$AWK_STATS"'
        { record(10, 2, 11) }
        END {
            printf "    %6s %-6s %11s %7s %10s %11s %10s %12s %11s %9s\n", "K", "", "msgs/s", "CPU s", "p99 us",
                   "peak RSS kB", "close ms", "close us/fd", "ioctx/peer", "vs K=0"
            n = rows(order)
            for (r = 1; r <= n; r++) {
                name = row_name[r]
                k = row_value[r]
                key = name SUBSEP k
                base = (("ioctx", k) in count) ? median("ioctx" SUBSEP k, 2) : "na"
                m = median(key, 2)
                m0 = ((name, 0) in count) ? median(name SUBSEP 0, 2) : "na"
                close_us = median(key, 11)
                per_fd = (close_us == "na" || k == 0) ? "na" : close_us / k
                printf "    %6d %-6s %s %s %s %s %s %s %11s %9s\n", k, name, cell(11, 0, m),
                       cell(7, 2, median(key, 4)), cell(10, 1, median(key, 7)), cell(11, 0, median(key, 9)),
                       cell(10, 2, close_us == "na" ? "na" : close_us / 1000), cell(12, 2, per_fd),
                       name == "ioctx" ? "" : ratio(base, m), k == 0 ? "" : ratio(m, m0)
            }
        }' "$file"
}

# curve_table RESULTS NAMES... : per window W (field 13) and program, the
# medians of msgs/s, p50, p99 and CPU per message (CPU s over the run's
# messages, field 14, in us); for ioctx, its msgs/s over the best peer's,
# its p99 over the lowest peer p99, and its CPU per message over Asio's.
# The peers are asio, uv and uring: raw writes synchronously from the
# producers, a reference rather than a peer.
curve_table() {
    local file=$1
    shift
    awk -v order="$*" -v peers="asio uv uring" "$AWK_STATS"'
        # best(w, col, sign): the peer whose median of col at W = w is the
        # highest (sign 1) or the lowest (sign -1); "" if none has one.
        function best(w, col, sign,    i, m, b, v) {
            b = ""
            for (i = 1; i <= npeers; i++) {
                if (!((peer[i], w) in count))
                    continue
                m = median(peer[i] SUBSEP w, col)
                if (m != "na" && (b == "" || m * sign > v * sign)) {
                    b = peer[i]
                    v = m
                }
            }
            return b
        }
        # against(w, x, other, col): x over the median of col of program
        # other at W = w, followed by other, e.g. "2.47 uring"; "" if
        # either is unknown.
        function against(w, x, other, col,    r) {
            if (other == "" || !((other, w) in count))
                return ""
            r = ratio(x, median(other SUBSEP w, col))
            return r == "" ? "" : r " " other
        }
        {
            c = record(13, 2, 14)
            val[$1 SUBSEP ($13 + 0), c, 15] = $4 * 1e6 / $14
        }
        END {
            npeers = split(peers, peer, " ")
            printf "    %5s %-6s %11s %9s %10s %10s  %-13s %-13s %-10s\n", "W", "", "msgs/s", "p50 us", "p99 us",
                   "CPU us/msg", "ioctx/best", "p99/best", "CPU/asio"
            n = rows(order)
            for (r = 1; r <= n; r++) {
                name = row_name[r]
                w = row_value[r]
                key = name SUBSEP w
                m = median(key, 2)
                m99 = median(key, 7)
                cpu = median(key, 15)
                vs_best = vs_best99 = vs_asio = ""
                if (name == "ioctx") {
                    vs_best = against(w, m, best(w, 2, 1), 2)
                    vs_best99 = against(w, m99, best(w, 7, -1), 7)
                    vs_asio = against(w, cpu, "asio", 15)
                }
                printf "    %5d %-6s %s %s %s %s  %-13s %-13s %-10s\n", w, name, cell(11, 0, m),
                       cell(9, 1, median(key, 6)), cell(10, 1, m99), cell(10, 3, cpu),
                       vs_best, vs_best99, vs_asio
            }
        }' "$file"
}

# idle_table RESULTS NAMES... : the median bytes per connection (field
# 12) of each program, and ioctx's over each peer's.
idle_table() {
    local file=$1
    shift
    awk -v order="$*" "$AWK_STATS"'
        { c = ++count[$1]; val[$1, c, 12] = $12 }
        END {
            printf "    %-6s %12s %11s\n", "", "bytes/conn", "ioctx/peer"
            n = split(order, names, " ")
            base = count["ioctx"] ? median("ioctx", 12) : "na"
            for (i = 1; i <= n; i++) {
                name = names[i]
                if (!count[name])
                    continue
                m = median(name, 12)
                printf "    %-6s %12s %11s\n", name, m == "na" ? "n/a" : sprintf("%.0f", m),
                       name == "ioctx" ? "" : ratio(base, m)
            }
        }' "$file"
}

if want write; then
    find_programs "${write_impls[@]}"
    echo
    echo "==> write benchmark: ${#names[@]} programs, interleaved; columns are medians"
    echo "    msgs/s, MB/s: messages (bytes) written and verified by the readers, over the wall time"
    echo "    CPU s: getrusage user+sys of the whole process (readers included) during the run"
    echo "    writes/msg: ioctx, asio, uv: write/writev/sendmsg calls on the connections (interposer;"
    echo "      ioctx: stats.writev_calls where there is none); uring: writev SQEs; raw: its own writev calls"
    echo "    p50/p99 us: submit to completion handler (raw: before the lock to after the writev)"
    echo "    mallocs/op: malloc/calloc/realloc/aligned calls (interposer) during the run, per message"
    echo "    peak RSS kB: getrusage ru_maxrss; ioctx/peer: ioctx's msgs/s over the peer's"
    echo "    reads/msg, rd CPU s: the readers' read() calls per message and their CPU time (in CPU s):"
    echo "      readers that find several messages per read cost less, and they do where the writers keep"
    echo "      both cores busy (raw's producers never wait for a completion)"
    echo "    p99 ratio: ioctx's p99 over the peer's (below 1: ioctx is faster; raw, synchronous, is left out)"
    for scenario in "${scenarios[@]}"; do
        size=${scenario%%:*}
        messages=${scenario##*:}
        write_scenario "$size B messages, $((4 * messages)) a run" "${flood[@]}" --size "$size" --messages "$messages"
    done
    write_scenario "light load: 64 B messages one at a time, $light_messages a run" \
        "${light[@]}" --size 64 --messages "$light_messages"
    # The latency-throughput curve: every W in one results file, runs
    # interleaved over W and programs.
    curve_scenario() {
        local entry windows=() variants=()
        for entry in "${curve[@]}"; do
            windows+=("${entry%%:*}")
            variants+=("--window ${entry%%:*} --messages ${entry##*:}")
        done
        only "${names[@]}"
        echo
        echo "==> latency-throughput curve (W = ${windows[*]}): median of $runs runs;" \
            "${flood[*]} --size 64 --window W --messages M (per producer: W:M = ${curve[*]})"
        echo "    at most W messages in flight per producer; msgs/s, p50/p99 us as above; CPU us/msg: CPU s"
        echo "    (the whole process) over the run's messages, in microseconds per message"
        echo "    ioctx/best: ioctx's msgs/s over the best peer's (asio, uv, uring; raw, synchronous, is only"
        echo "      a reference; below 1: ioctx is slower); p99/best: ioctx's p99 over the lowest peer p99"
        echo "      (below 1: ioctx is faster); CPU/asio: ioctx's CPU us/msg over Asio's (below 1: cheaper)"
        interleaved curve_table "${variants[@]}" -- "${flood[@]}" --size 64
    }
    curve_scenario
    write_scenario "$many_connections busy connections, 64 B messages, $((4 * many_messages)) a run" \
        "${many[@]}" --size 64 --messages "$many_messages"

    # Slow consumers: every K in one results file, runs interleaved over K
    # and programs.  raw and io_uring sit out --slow: one short run each only
    # prints why.
    echo
    echo "==> write with K slow consumers (K = ${slow_counts[*]}): median of $runs runs;" \
        "${flood[*]} --size 64 --messages $slow_messages --slow K"
    echo "    beside the 64 B flood, K connections with 4 KiB buffers, never read, a 256 KiB write"
    echo "    stuck in each; msgs/s, CPU s, p99 us: the healthy traffic (CPU: the whole process);"
    echo "    close ms: closing the K stuck connections, the library's way, run threads stopped"
    echo "    (handlers not included; each must then run once, with ECANCELED); vs K=0: the"
    echo "    program's msgs/s over its own with no slow consumer"
    only raw uring
    run_programs /dev/null "${flood[@]}" --messages 1 --slow 1
    only ioctx asio uv
    interleaved slow_table "${slow_counts[@]/#/--slow }" -- "${flood[@]}" --size 64 --messages "$slow_messages"

    # Heap kept per idle connection after a burst.
    only ioctx asio uv
    echo
    echo "==> heap per idle connection: median of $runs runs; $idle_connections connections, bursts of" \
        "$idle_burst writes of 64 B"
    echo "    queued on one connection after the other; once every handler has run and the readers have"
    echo "    drained all: live heap bytes (all threads) less those before the context and the library's"
    echo "    per-connection objects were made, over $idle_connections (ioctx: descriptor with its private"
    echo "    strand; asio: stream_descriptor, strand, write deque; uv: uv_pipe_t, and one uv_write_t per"
    echo "    message slot); ioctx/peer below 1: ioctx keeps less"
    interleaved idle_table "" -- --connections "$idle_connections" --producers 1 --size 64 \
        --burst "$idle_burst" --messages $((idle_connections * idle_burst)) --idle-bytes "${pipes[@]}"
fi

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
if want strand; then
    compare "post through strands vs Asio" bench_strand_post bench_strand_post_asio "${post_args[@]}"
fi

# ------------------------------------------------------------------
# 3. Timers, ioctx against Asio and libuv
# ------------------------------------------------------------------

# name:program:Debian packages it needs
timer_impls=(
    ioctx:bench_timer:
    asio:bench_timer_asio:"g++ libasio-dev"
    uv:bench_timer_uv:libuv1-dev
)
timer_pending=(1 1000 100000)
# The idle CPU is measured in the runs with this many timers pending.
timer_idle_pending=1000
timer_waits=2000
timer_ops=100000
timer_idle_ms=1000
if [ "$quick" -eq 1 ]; then
    timer_waits=200
    timer_ops=10000
    timer_idle_ms=200
fi

# pending_table RESULTS KIND COLUMNS RATIOS NAMES... : for the result
# lines of KIND (field 2), per P (field 3) and program, the medians of
# COLUMNS ("field:title:decimals", comma-separated), then for each of
# RATIOS ("field:title", comma-separated) ioctx's median at that P over
# the program's.
pending_table() {
    local file=$1 kind=$2 columns=$3 ratios=$4
    shift 4
    awk -v order="$*" -v kind="$kind" -v columns="$columns" -v ratios="$ratios" "$AWK_STATS"'
        $2 == kind { record(3, 4, NF) }
        END {
            nc = split(columns, col, ",")
            nr = split(ratios, rat, ",")
            head = sprintf("    %7s %-6s", "P", "")
            for (i = 1; i <= nc; i++) {
                split(col[i], part, ":")
                cf[i] = part[1]
                cp[i] = part[3]
                head = head sprintf(" %11s", part[2])
            }
            for (i = 1; i <= nr; i++) {
                split(rat[i], part, ":")
                rf[i] = part[1]
                head = head sprintf(" %11s", part[2])
            }
            print head
            n = rows(order)
            for (r = 1; r <= n; r++) {
                name = row_name[r]
                p = row_value[r]
                key = name SUBSEP p
                line = sprintf("    %7d %-6s", p, name)
                for (i = 1; i <= nc; i++)
                    line = line " " cell(11, cp[i], median(key, cf[i]))
                for (i = 1; i <= nr; i++)
                    line = line sprintf(" %11s", (name == "ioctx" || !(("ioctx", p) in count)) ? "" \
                                        : ratio(median("ioctx" SUBSEP p, rf[i]), median(key, rf[i])))
                sub(/ +$/, "", line)
                print line
            }
        }' "$file"
}

# timer_table RESULTS NAMES... : the three measurements of bench_timer*.
timer_table() {
    local file=$1
    shift
    echo "    lateness: handler's clock minus the expiry, in us; process CPU us per wait; ratios: ioctx's"
    echo "    over the peer's (below 1: ioctx is more punctual, or cheaper)"
    pending_table "$file" lateness "5:p50 us:1,6:p99 us:1,7:max us:1,8:CPU us:1" \
        "5:p50 ratio,6:p99 ratio,8:CPU ratio" "$@"
    echo "    start + cancel: wall ns per start until every handler has run, process CPU ns per start;"
    echo "    ratios: ioctx's over the peer's (below 1: ioctx is cheaper)"
    pending_table "$file" cancel "6:ns/start:0,7:CPU ns:0" "6:ioctx/peer,7:CPU ratio" "$@"
    echo "    idle: process CPU over $timer_idle_ms ms, in % of one core, P waits pending and none due"
    pending_table "$file" idle "5:CPU %:3" "" "$@"
}

if want timer; then
    find_programs "${timer_impls[@]}"
    only "${names[@]}"
    timer_variants=()
    for p in "${timer_pending[@]}"; do
        if [ "$p" -eq "$timer_idle_pending" ]; then
            timer_variants+=("--pending $p --idle-ms $timer_idle_ms")
        else
            timer_variants+=("--pending $p")
        fi
    done
    echo
    echo "==> timers (P = ${timer_pending[*]} pending): median of $runs runs; --waits $timer_waits" \
        "--ops $timer_ops --timers 1000 --run-threads 2 --workers $workers"
    echo "    P - 1 background timers due in 30 to 60 minutes; lateness: $timer_waits waits one after"
    echo "    another, each 1 to 2 ms ahead (libuv: whole ms, from its cached clock); start + cancel:"
    echo "    $timer_ops times expires_after 1 h, async_wait, cancel, on 1,000 timers in turn (libuv:"
    echo "    uv_timer_start, uv_timer_stop; no handler runs); ioctx and asio: 2 run threads and a"
    echo "    strand per timer, libuv: its one loop thread"
    interleaved timer_table "${timer_variants[@]}" -- --waits "$timer_waits" --ops "$timer_ops" \
        --timers 1000 --run-threads 2 --workers "$workers"
fi

# ------------------------------------------------------------------
# 4. Serving a file: async_sendfile, pread + async_write, raw sendfile
# ------------------------------------------------------------------

# sendfile_table RESULTS NAMES... : per mode (field 1: sendfile, pread,
# raw), the medians of MB/s, wall s, CPU s and write calls; then
# async_sendfile's MB/s over the pread path's and over raw sendfile's,
# and its CPU over theirs.
sendfile_table() {
    local file=$1
    awk "$AWK_STATS"'
        { c = ++count[$1]; for (k = 2; k <= 5; k++) val[$1, c, k] = $k }
        END {
            printf "    %-9s %9s %8s %7s %12s\n", "", "MB/s", "wall s", "CPU s", "write calls"
            n = split("sendfile pread raw", modes, " ")
            for (i = 1; i <= n; i++) {
                m = modes[i]
                if (!count[m])
                    continue
                printf "    %-9s %s %s %s %s\n", m, cell(9, 1, median(m, 2)), cell(8, 3, median(m, 3)),
                       cell(7, 2, median(m, 4)), cell(12, 0, median(m, 5))
            }
            if (count["sendfile"] && count["pread"] && count["raw"]) {
                printf "    async_sendfile / pread path: MB/s %s, CPU s %s\n",
                       ratio(median("sendfile", 2), median("pread", 2)),
                       ratio(median("sendfile", 4), median("pread", 4))
                printf "    async_sendfile / raw sendfile: MB/s %s, CPU s %s\n",
                       ratio(median("sendfile", 2), median("raw", 2)),
                       ratio(median("sendfile", 4), median("raw", 4))
            }
        }' "$file"
}

sendfile_rounds=4
if [ "$quick" -eq 1 ]; then
    sendfile_rounds=1
fi
if want sendfile; then
    find_programs ioctx:bench_sendfile:
    only "${names[@]}"
    echo
    echo "==> serving a file: median of $runs runs; --size 64M --clients 8 --rounds $sendfile_rounds" \
        "--run-threads 2 --workers $workers"
    echo "    a 64 MiB file (cached) to 8 TCP loopback clients, $sendfile_rounds time(s) over to each;"
    echo "    sendfile: ioctx async_sendfile of the whole file; pread: ioctx pread + async_write, 64 KiB"
    echo "    chunks, 4 in flight per client; raw: blocking sendfile(), a thread per client"
    echo "    MB/s: bytes the clients received over the wall time; CPU s: the whole process (clients"
    echo "    included); write calls: the server's write system calls (sendfile, sendmsg)"
    interleaved sendfile_table "--mode sendfile" "--mode pread" "--mode raw" -- \
        --size 64M --clients 8 --rounds "$sendfile_rounds" --run-threads 2 --workers "$workers"
fi

if [ "$failures" -ne 0 ]; then
    echo
    echo "==> $failures run(s) FAILED (see above)"
    exit 1
fi
