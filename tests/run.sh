#!/usr/bin/env bash
# Runs Relay's tests and ends with one summary line: "N passed, N failed".
#
#   tests/run.sh BUILD_DIR [unit|e2e|all]
#
# Unit tests are TAP binaries (BUILD_DIR/tests/t_*); end-to-end tests are
# node:test files under tests/e2e and tests/fake, run with the TAP reporter.
# Each "ok"/"not ok" line counts once.
set -uo pipefail

build=${1:-build}
what=${2:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p tests/out

passed=0
failed=0
broken=()

# Counts the test points of one TAP stream read from stdin, echoing it.
count_tap() {
    local p=0 f=0 line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            "ok "*|"    ok "*) p=$((p + 1)) ;;
            "not ok "*|"    not ok "*) f=$((f + 1)) ;;
        esac
    done
    echo "$p $f" > tests/out/.counts
}

run_tap() {
    local name=$1; shift
    echo "# --- $name"
    "$@" 2>&1 | count_tap
    local rc=${PIPESTATUS[0]}
    read -r p f < tests/out/.counts
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # crashed or exited non-zero without a failing test point
        f=1
        echo "not ok - $name exited with status $rc"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && broken+=("$name")
}

if [ "$what" = unit ] || [ "$what" = all ]; then
    for t in "$build"/tests/t_*; do
        [ -x "$t" ] || continue
        run_tap "$(basename "$t")" "$t"
    done
fi

if [ "$what" = e2e ] || [ "$what" = all ]; then
    # node --test prints nested subtests indented; only top-level points
    # and indented "ok" lines of subtests are counted, not both: use the
    # tap reporter with one file per run and count only top-level results.
    for f in tests/fake/*.test.mjs tests/e2e/*.test.mjs; do
        [ -f "$f" ] || continue
        echo "# --- $f"
        RELAY_BUILD="$build" node --test --test-reporter=tap --test-timeout=120000 "$f" 2>&1 \
            | tee "tests/out/$(basename "$f").tap" \
            | grep -E '^(not )?ok |^# (Subtest|fail|pass)|^    (not )?ok |^  ---|^  (error|expected|actual|stack|location):|^      |^# ' || true
        p=$(grep -cE '^    ok ' "tests/out/$(basename "$f").tap")
        x=$(grep -cE '^    not ok ' "tests/out/$(basename "$f").tap")
        # a file whose top-level test failed without subtests (e.g. harness)
        top_fail=$(grep -cE '^not ok ' "tests/out/$(basename "$f").tap")
        top_ok=$(grep -cE '^ok ' "tests/out/$(basename "$f").tap")
        if [ "$p" -eq 0 ] && [ "$x" -eq 0 ]; then
            p=$top_ok
            x=$top_fail
        elif [ "$x" -eq 0 ] && [ "$top_fail" -gt 0 ]; then
            x=$top_fail
        fi
        passed=$((passed + p))
        failed=$((failed + x))
        [ "$x" -gt 0 ] && broken+=("$f")
    done
fi

if [ "${#broken[@]}" -gt 0 ]; then
    echo "# failing: ${broken[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
