#!/usr/bin/env bash
# make check: banned functions, then formatting (clang-format, if present).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
src=$(git ls-files '*.c' '*.h')
# Unbounded or error-blind functions: use rl_buf, snprintf, strtol instead.
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok)\s*\('
if grep -nE "$banned" $src; then
    echo "check: banned functions above"
    status=1
fi
if command -v clang-format >/dev/null; then
    if ! clang-format --dry-run --Werror $src 2>/dev/null; then
        echo "check: clang-format would change files (clang-format -i FILE)"
        status=1
    fi
else
    echo "check: clang-format not installed; formatting not checked"
    [ "${CI:-}" = true ] && status=1
fi
[ $status -eq 0 ] && echo "check: ok"
exit $status
