#!/usr/bin/env bash
# Installs what Relay needs to build, run and test on Debian 12, and nothing
# when all of it is already present. Safe to run repeatedly (make calls it).
#
#   deploy/install-deps.sh            build + run deps (libraries, Caddy)
#   deploy/install-deps.sh --test     also the test tools and npm packages
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

here=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(build-essential pkg-config libfcgi-dev libcurl4-openssl-dev libssl-dev
      libdb-dev db5.3-util libinih-dev libjansson-dev caddy curl)
if [ "$want_test" = 1 ]; then
    pkgs+=(nodejs spawn-fcgi)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_test" = 1 ]; then
    # Node packages for the end-to-end tests, pinned in tests/package.json.
    # npm ci is skipped when the lock file is unchanged since the last install.
    cd "$here/tests"
    stamp=node_modules/.relay-installed
    if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
        echo "install-deps: installing npm packages for tests"
        npm ci --no-audit --no-fund --loglevel=error
        touch "$stamp"
    fi
fi
