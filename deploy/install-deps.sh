#!/usr/bin/env bash
# Installs what Relay needs to build, run and test on Debian 12, and nothing
# when all of it is already present. Safe to run repeatedly (make calls it).
#
#   deploy/install-deps.sh                 build + run deps (libraries, Caddy)
#   deploy/install-deps.sh --front NAME    also that front's web server
#                                          (caddy, nginx, apache-proxy-fcgi,
#                                          apache-fcgid)
#   deploy/install-deps.sh --test          also every front, the test tools
#                                          and npm packages
set -euo pipefail

want_test=0
front=caddy
while [ $# -gt 0 ]; do
    case "$1" in
        --test) want_test=1 ;;
        --front) front=${2:?--front needs a name}; shift ;;
        *) echo "install-deps: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

here=$(cd "$(dirname "$0")/.." && pwd)

front_pkgs() {
    case "$1" in
        caddy) echo caddy ;;
        nginx) echo nginx ;;
        apache-proxy-fcgi) echo apache2 ;;
        apache-fcgid) echo apache2 libapache2-mod-fcgid ;;
        *) echo "install-deps: unknown front $1" >&2; exit 2 ;;
    esac
}

pkgs=(build-essential pkg-config libfcgi-dev libcurl4-openssl-dev libssl-dev
      libdb-dev db5.3-util libinih-dev libjansson-dev caddy curl)
read -ra more <<< "$(front_pkgs "$front")"
pkgs+=("${more[@]}")
if [ "$want_test" = 1 ]; then
    # systemd: systemd-analyze verifies the shipped unit (tests/e2e/install).
    # chromium: the dashboard's browser test drives it headless through
    # playwright-core (tests/browser), which downloads no browser of its own.
    pkgs+=(nodejs spawn-fcgi nginx apache2 libapache2-mod-fcgid systemd chromium)
    # prometheus: its promtool checks /relay/metrics (tests/e2e/observability).
    pkgs+=(prometheus)
    # clang (libFuzzer) and clang-format: make fuzz and make check, which
    # .ci/run runs after make test.
    pkgs+=(clang clang-format)
    # valgrind: make bench counts the instructions of a cache hit with
    # callgrind (tests/bench/hit_instructions.mjs).
    pkgs+=(valgrind)
    # wrk: make bench's throughput table (tests/bench/throughput.mjs) loads
    # each front with it (an HTTP/1.1 keep-alive load generator with lua
    # scripts for the POST body, and latency percentiles).
    pkgs+=(wrk)
    # python3: tests/e2e/timeouts.test.mjs holds a listening socket that
    # never accepts (a full backlog drops SYNs: the connect timeout); Node's
    # net servers always accept before JavaScript sees a connection.
    pkgs+=(python3)
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
    # Installing nginx or Apache would start them as system services on
    # port 80; Relay runs them itself. A policy-rc.d that refuses keeps
    # the packages from starting anything (one already present is kept).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# install-deps.sh: start no service while installing\nexit 101\n' |
            $sudo tee "$policy" >/dev/null
        $sudo chmod 0755 "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
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
