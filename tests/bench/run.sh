#!/usr/bin/env bash
# Runs Relay's benchmarks (not part of `make test`): every tests/bench/*.mjs,
# each starting its own environment (fake upstream + relay pool + a front,
# see tests/e2e/harness.mjs) with the binaries in BUILD_DIR (throughput.mjs
# also needs BUILD_DIR/bench-baseline and bench-fill: make bench-bins;
# cluster_model.mjs is a simulation and needs neither a build nor a server).
# Each prints its numbers and writes tests/out/bench-*.json. Ends with one
# summary line.
#
#   tests/bench/run.sh [BUILD_DIR] [NAME...]     e.g. tests/bench/run.sh build coalesce_lag
#
# Extra arguments after `--` are passed to every benchmark
# (tests/bench/run.sh build -- --clients 50).
set -uo pipefail

build=${1:-build}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mkdir -p tests/out

names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do names+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
extra=("$@")

files=()
if [ "${#names[@]}" -gt 0 ]; then
    for n in "${names[@]}"; do files+=("tests/bench/${n%.mjs}.mjs"); done
else
    for f in tests/bench/*.mjs; do [ -f "$f" ] && files+=("$f"); done
fi

ok=0
failed=()
for f in "${files[@]}"; do
    echo "# --- $f"
    if [ ! -f "$f" ]; then
        echo "no such benchmark: $f"
        failed+=("$f")
        continue
    fi
    if RELAY_BUILD="$build" node "$f" ${extra[@]+"${extra[@]}"}; then
        ok=$((ok + 1))
    else
        failed+=("$f")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "# failing: ${failed[*]}"
fi
echo "benchmarks: $ok ran, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
