#!/usr/bin/env bash
# Runs Relay's tests and ends with one summary line: "N passed, N failed".
#
#   tests/run.sh BUILD_DIR [unit|e2e|browser|all]...
#   RELAY_FRONTS="nginx caddy"   the fronts to run the end-to-end suite
#                                behind (default: all of them, FRONTS)
#   RELAY_SANITIZER_LOGS=DIR     the sanitizers' log_path directory (make
#                                asan): each report found there after a test
#                                fails that test, whichever process wrote it
#
# Unit tests are TAP binaries (BUILD_DIR/tests/t_*); end-to-end tests are
# node:test files under tests/e2e and tests/fake, run with the TAP reporter,
# the e2e files once per front (RELAY_FRONT, see tests/e2e/fronts.mjs).
# The browser tests (tests/browser: the dashboard in headless Chromium) run
# once, behind Caddy, with e2e and all.
# Each "ok"/"not ok" line counts once.
set -uo pipefail

build=${1:-build}
shift
parts=" ${*:-all} "
# wants PART: PART was asked for (or all)
wants() {
    case "$parts" in *" $1 "* | *" all "*) return 0 ;; esac
    return 1
}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p tests/out

passed=0
failed=0
todo=0
broken=()

# Counts the test points of one TAP stream read from stdin, echoing it. A
# point marked "# TODO" (a known defect, TAP's way) counts neither as passed
# nor as failed, only in the todo total; "# SKIP" counts as passed.
count_tap() {
    local p=0 f=0 t=0 line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            *" # TODO"*) t=$((t + 1)) ;;
            "ok "*|"    ok "*) p=$((p + 1)) ;;
            "not ok "*|"    not ok "*) f=$((f + 1)) ;;
        esac
    done
    echo "$p $f $t" > tests/out/.counts
}

# Fails label once per sanitizer report that appeared in
# RELAY_SANITIZER_LOGS since the last call (log_path writes one file per
# process that had something to say: asan.PID, ubsan.PID), showing its
# start, and moves every file to seen/ under the label's name. A file with
# no error in it only lists the suppressions used (LSan writes that for a
# process whose only leaks were suppressed): not a failure.
sanitizer_reports() {
    local dir=${RELAY_SANITIZER_LOGS:-} label=$1 f n=0
    [ -n "$dir" ] || return 0
    mkdir -p "$dir/seen"
    for f in "$dir"/*; do
        [ -f "$f" ] || continue
        if grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error: ' "$f"; then
            echo "not ok - $label: sanitizer report $(basename "$f")"
            sed -n '1,60p' "$f" | sed 's/^/    # /'
            n=$((n + 1))
        fi
        mv "$f" "$dir/seen/$(echo "$label" | tr '/ []' '-___').$(basename "$f")"
    done
    failed=$((failed + n))
    if [ "$n" -gt 0 ]; then
        case " ${broken[*]} " in *" $label "*) ;; *) broken+=("$label") ;; esac
    fi
}

run_tap() {
    local name=$1; shift
    echo "# --- $name"
    "$@" 2>&1 | count_tap
    local rc=${PIPESTATUS[0]}
    read -r p f t < tests/out/.counts
    todo=$((todo + t))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # crashed or exited non-zero without a failing test point
        f=1
        echo "not ok - $name exited with status $rc"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && broken+=("$name")
    sanitizer_reports "$name"
}

if wants unit; then
    for t in "$build"/tests/t_*; do
        [ -x "$t" ] || continue
        run_tap "$(basename "$t")" "$t"
    done
fi

# Runs one node:test file with the TAP reporter and counts its results.
# label names it in the output and its saved TAP file (tests/out/).
run_node_test() {
    local label=$1 f=$2 tap
    tap="tests/out/$(echo "$label" | tr '/ []' '-___').tap"
    echo "# --- $label"
    RELAY_BUILD="$build" node --test --test-reporter=tap --test-timeout=120000 "$f" 2>&1 \
        | tee "$tap" \
        | grep -E '^(not )?ok |^# (Subtest|fail|pass)|^    (not )?ok |^  ---|^  (error|expected|actual|stack|location):|^      |^# '
    local rc=${PIPESTATUS[0]}
    # node --test prints nested subtests indented: count the subtests'
    # points, or the top-level ones for a file without subtests (or whose
    # top level failed outside them, e.g. in the harness).
    local p x top_fail top_ok
    p=$(grep -cE '^    ok ' "$tap")
    x=$(grep -cE '^    not ok ' "$tap")
    top_fail=$(grep -cE '^not ok ' "$tap")
    top_ok=$(grep -cE '^ok ' "$tap")
    if [ "$p" -eq 0 ] && [ "$x" -eq 0 ]; then
        p=$top_ok
        x=$top_fail
    elif [ "$x" -eq 0 ] && [ "$top_fail" -gt 0 ]; then
        x=$top_fail
    fi
    if [ "$rc" -ne 0 ] && [ "$x" -eq 0 ]; then
        # killed or crashed before its remaining tests reported: what did
        # not run must not pass for done
        x=1
        echo "not ok - $label: node exited with status $rc after $p passing tests"
    fi
    passed=$((passed + p))
    failed=$((failed + x))
    [ "$x" -gt 0 ] && broken+=("$label")
    sanitizer_reports "$label"
}

# The fronts a file runs behind: its "// e2e-fronts: A B (why)" line, else
# all. Files about something else than the front (the process model, the
# store, the coding agents, installation) name one, so they run once.
file_fronts() {
    local line
    line=$(grep -m1 -E '^// e2e-fronts: ' "$1" || true)
    line=${line#// e2e-fronts: }
    if [ -n "$line" ]; then echo "${line%%(*}"; else echo "$all_fronts"; fi
}

if wants e2e; then
    # The fake upstream's own tests need no front.
    for f in tests/fake/*.test.mjs; do
        [ -f "$f" ] && run_node_test "$f" "$f"
    done
    # The end-to-end suite once per front (RELAY_FRONTS, default every one
    # in FRONTS of tests/e2e/fronts.mjs).
    all_fronts=$(node -e "import('./tests/e2e/fronts.mjs').then((m) => console.log(m.FRONTS.join(' ')))")
    for front in ${RELAY_FRONTS:-$all_fronts}; do
        for f in tests/e2e/*.test.mjs; do
            [ -f "$f" ] || continue
            case " $(file_fronts "$f") " in
                *" $front "*) RELAY_FRONT=$front run_node_test "[$front] $f" "$f" ;;
            esac
        done
    done
fi

if wants e2e || wants browser; then
    # Once, not per front: the dashboard is static files, which every front
    # serves alike (tests/e2e/front.test.mjs checks that). A missing Chromium
    # fails these tests; it is never a skip.
    for f in tests/browser/*.test.mjs; do
        [ -f "$f" ] && RELAY_FRONT=caddy run_node_test "$f" "$f"
    done
fi

# A report from a process that outlived its test (written after the sweep).
sanitizer_reports "after the last test"
[ "$todo" -gt 0 ] && echo "# todo: $todo points of known defects (\"# TODO\" above)"
if [ "${#broken[@]}" -gt 0 ]; then
    echo "# failing: ${broken[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
