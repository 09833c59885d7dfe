#!/usr/bin/env bash
# scripts/test.sh - installs what is missing, then builds and runs every test
# with ctest in five configurations: plain (gcc), ASan+UBSan, TSan, clang,
# and the poll() backend of the workers (the others use the default, epoll
# on Linux), so that neither backend rots; all with -Wall -Wextra
# -Wpedantic -Werror.  Then clang-tidy and
# cppcheck over src/.  Any test failure, sanitizer report or analyzer
# finding fails the run.  clang, clang-tidy and cppcheck are installed
# when possible and skipped, with a note, when not.  The last line is
# "N passed, N failed" over all of it (each analyzer counts as one).
set -uo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

# valgrind: the shutdown suite also runs under it (destroy must leak nothing).
# curl: the file server example is tested with a real HTTP client.
ensure_packages "${IOCTX_BUILD_PACKAGES[@]}" valgrind curl || { echo "error: could not install build dependencies" >&2; exit 1; }
# doxygen and groff: the man pages are generated from the header and
# rendered (the man_pages test).
ensure_packages doxygen groff-base || { echo "error: could not install doxygen and groff" >&2; exit 1; }

# Any report makes the process fail, so that ctest sees it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1}

total_passed=0
total_failed=0
summary=()

# run_config NAME SANITIZE [CMAKE ARGS...]
run_config() {
    local name=$1 sanitize=$2 log passed failed out_of
    shift 2
    log="$IOCTX_ROOT/build/$name-ctest.log"
    if ! build_config "$name" "$sanitize" "$@"; then
        echo "==> $name: build FAILED"
        total_failed=$((total_failed + 1))
        summary+=("$name: build failed")
        return
    fi
    echo "==> $name: running ctest"
    mkdir -p "$(dirname "$log")"
    ctest --test-dir "$IOCTX_ROOT/build/$name" --output-on-failure -j "$(nproc)" --timeout 900 2>&1 | tee "$log"
    out_of=$(sed -n 's/.* tests failed out of \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    failed=$(sed -n 's/.*, \([0-9][0-9]*\) tests failed out of.*/\1/p' "$log" | tail -n 1)
    if [ -z "$out_of" ]; then
        out_of=0
        failed=1
        echo "==> $name: ctest printed no result"
    fi
    passed=$((out_of - failed))
    # A report that did not change an exit status still fails the run.
    if grep -qE '^(==[0-9]+==ERROR: |WARNING: ThreadSanitizer|SUMMARY: (Address|Thread|UndefinedBehavior|Leak)Sanitizer)|runtime error: ' "$log"; then
        echo "==> $name: sanitizer report found in $log"
        if [ "$failed" -eq 0 ]; then
            failed=1
            passed=$((passed > 0 ? passed - 1 : 0))
        fi
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summary+=("$name: $passed passed, $failed failed")
}

# have_tool COMMAND PACKAGE: true when COMMAND is there, after trying to
# install PACKAGE; otherwise says what is skipped and how to get it.
have_tool() {
    command -v "$1" >/dev/null && return 0
    ensure_packages "$2" || true
    command -v "$1" >/dev/null && return 0
    echo "==> skipping $1 (Debian: apt-get install $2)"
    summary+=("$1: skipped, not installed")
    return 1
}

# clang-tidy over src/, without its count of the warnings it suppressed
# in other headers ("N warnings generated."): only findings are printed.
tidy_src() {
    clang-tidy -p "$1" --quiet "$IOCTX_ROOT"/src/*.c 2>&1 \
        | { grep -v '^[0-9]* warnings\{0,1\} generated\.$' || true; }
}

# run_check NAME COMMAND...: one pass or one failure, by COMMAND's status.
run_check() {
    local name=$1
    shift
    echo "==> $name"
    if "$@"; then
        total_passed=$((total_passed + 1))
        summary+=("$name: passed")
    else
        echo "==> $name: FAILED (findings above)"
        total_failed=$((total_failed + 1))
        summary+=("$name: failed")
    fi
}

# The compile commands feed clang-tidy.
run_config plain "" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
run_config asan address
run_config tsan thread
run_config poll "" -DIOCTX_POLLER=poll
# The second compiler: its warnings differ from gcc's.  DWARF 4, because
# Debian 12's valgrind (shutdown_valgrind) cannot read clang 14's DWARF 5.
if have_tool clang clang; then
    run_config clang "" -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-gdwarf-4 \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
fi

# A minute of coverage-guided fuzzing of the whole API (test/fuzz/fuzz_api.c)
# under ASan+UBSan, over a copy of the seed corpus, so that the one in the
# repository stays as it is.  The library is built with libFuzzer's
# coverage too (fuzzer-no-link): the fuzzer then steers by the library's
# branches, not only the harness's.  An input that breaks a promise aborts,
# and fails the run; libFuzzer leaves it in build/fuzz/ (crash-*).
run_fuzzer() {
    local seconds=$1 dir=$IOCTX_ROOT/build/fuzz work status
    echo "==> configuring and building build/fuzz (clang, ASan+UBSan, libFuzzer)"
    cmake --log-level=NOTICE -S "$IOCTX_ROOT" -B "$dir" -DCMAKE_C_COMPILER=clang \
        -DIOCTX_WERROR=ON -DIOCTX_SANITIZE=address -DIOCTX_BUILD_BENCH=OFF \
        -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link || return 1
    cmake --build "$dir" --target fuzz_api -j "$(nproc)" -- --no-print-directory >/dev/null \
        || cmake --build "$dir" --target fuzz_api -j 1 -- --no-print-directory || return 1
    work=$(mktemp -d) || return 1
    cp "$IOCTX_ROOT"/test/fuzz/corpus/* "$work/"
    echo "==> fuzzing for $seconds s (log: $dir/fuzz.log)"
    "$dir/test/fuzz/fuzz_api" -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
        -artifact_prefix="$dir/" "$work" >"$dir/fuzz.log" 2>&1
    status=$?
    rm -rf "$work"
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$dir/fuzz.log"
        echo "==> the input that failed is in $dir/ (crash-*, or timeout-*)"
    else
        grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' \
            "$dir/fuzz.log"
    fi
    return "$status"
}
if command -v clang >/dev/null; then
    run_check fuzz_api run_fuzzer 60
else
    echo "==> skipping fuzz_api: clang is not installed (Debian: apt-get install clang)"
    summary+=("fuzz_api: skipped, clang not installed")
fi

# Static analysis of the library's sources; .clang-tidy says which checks
# and why.  clang-tidy reads the flags of the clang build when there is
# one (gcc's flags are not all clang's).
if have_tool clang-tidy clang-tidy; then
    db=$IOCTX_ROOT/build/clang
    [ -f "$db/compile_commands.json" ] || db=$IOCTX_ROOT/build/plain
    run_check clang-tidy tidy_src "$db"
fi
# warning, performance and portability; not style, which would move
# every declaration to its first use, where this code declares at the
# top of a block.  System headers are not given to cppcheck (it knows
# libc and POSIX from its library files), so it must not ask for them.
if have_tool cppcheck cppcheck; then
    run_check cppcheck cppcheck --enable=warning,performance,portability --std=c11 \
        --library=posix --inline-suppr --error-exitcode=1 --quiet \
        --suppress=missingIncludeSystem -I "$IOCTX_ROOT/include" -I "$IOCTX_ROOT/src" \
        -D_GNU_SOURCE "$IOCTX_ROOT/src"
fi

echo
for line in "${summary[@]}"; do echo "  $line"; done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
