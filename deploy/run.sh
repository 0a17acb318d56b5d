#!/usr/bin/env bash
# `make run`: Relay's pool plus a front web server on 127.0.0.1:9879, in the
# foreground. Ctrl-C or SIGTERM stops every process started here.
#
#   deploy/run.sh RELAY_INI [FRONT]      FRONT: caddy (the default)
#   RELAY_PORT=N overrides the port.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ini=${1:-$root/relay.ini}
front=${2:-caddy}
port=${RELAY_PORT:-9879}
build=${RELAY_BUILD:-$root/build}

case "$front" in
    caddy) ;;
    *) echo "run: FRONT=$front is not supported yet (only caddy)" >&2; exit 2 ;;
esac

"$build/relay-admin" -c "$ini" init
sock=$("$build/relay-admin" -c "$ini" config fcgi.listen)
case "$sock" in
    /*) ;;
    *) echo "run: the Caddy config expects a unix socket in [fcgi] listen, got $sock" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$sock")"

pids=()
stop() {
    trap - INT TERM EXIT
    [ "${#pids[@]}" -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$build/relay.fcgi" -c "$ini" &
pids+=($!)
for _ in $(seq 100); do
    [ -S "$sock" ] && break
    sleep 0.1
done
[ -S "$sock" ] || { echo "run: relay.fcgi did not create $sock" >&2; exit 1; }

RELAY_HOST=127.0.0.1 RELAY_PORT=$port RELAY_SOCKET=$sock RELAY_WWW=$root/www \
    caddy run --config "$root/deploy/caddy/Caddyfile" --adapter caddyfile &
pids+=($!)
echo "run: Relay on http://127.0.0.1:$port (dashboard /relay/admin/, health /relay/health); Ctrl-C stops"
# Whichever ends first (a crash, or a signal) stops the other.
wait -n "${pids[@]}" || true
