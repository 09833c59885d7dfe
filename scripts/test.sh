#!/usr/bin/env bash
# scripts/test.sh - installs what is missing, then builds and runs every test
# with ctest in three configurations: plain, ASan+UBSan, and TSan.  Any test
# failure or sanitizer report fails the run.  The last line is
# "N passed, N failed" over all three configurations.
set -uo pipefail

IOCTX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$IOCTX_ROOT/scripts/lib.sh"

# valgrind: the shutdown suite also runs under it (rule 17: no leak).
ensure_packages "${IOCTX_BUILD_PACKAGES[@]}" valgrind || { echo "error: could not install build dependencies" >&2; exit 1; }

# Any report makes the process fail, so that ctest sees it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1}

total_passed=0
total_failed=0
summary=()

# run_config NAME SANITIZE
run_config() {
    local name=$1 sanitize=$2 log passed failed out_of
    log="$IOCTX_ROOT/build/$name-ctest.log"
    if ! build_config "$name" "$sanitize"; then
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

run_config plain ""
run_config asan address
run_config tsan thread

echo
for line in "${summary[@]}"; do echo "  $line"; done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
