#!/usr/bin/env bash
# `make run`: Relay's pool plus a front web server on 127.0.0.1:9879, in the
# foreground. Ctrl-C or SIGTERM stops every process started here.
#
#   deploy/run.sh RELAY_INI [FRONT]
#       FRONT: caddy (the default), nginx, apache-proxy-fcgi, apache-fcgid
#   RELAY_PORT=N overrides the port.
#
# Each front serves the config that ships in deploy/ (rendered from its
# template into a private run directory), as the end-to-end tests do.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ini=${1:-$root/relay.ini}
front=${2:-caddy}
port=${RELAY_PORT:-9879}
build=${RELAY_BUILD:-$root/build}

case "$front" in
    caddy | nginx | apache-proxy-fcgi) ;;
    *) echo "run: FRONT=$front is not one of caddy, nginx, apache-proxy-fcgi" >&2; exit 2 ;;
esac

"$build/relay-admin" -c "$ini" init
sock=$("$build/relay-admin" -c "$ini" config fcgi.listen)
case "$sock" in
    /*) ;;
    *) echo "run: the front configs expect a unix socket in [fcgi] listen, got $sock" >&2; exit 2 ;;
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

rundir=$(mktemp -d "${TMPDIR:-/tmp}/relay-run-XXXXXX")
remove_rundir() { rm -rf "$rundir"; }
trap 'stop; remove_rundir' INT TERM EXIT

# deploy/TEMPLATE rendered into the run directory; prints the new path.
render() {
    local out
    out="$rundir/$(basename "$1")"
    sed -e "s|@RELAY_HOST@|127.0.0.1|g" -e "s|@RELAY_PORT@|$port|g" \
        -e "s|@RELAY_SOCKET@|$sock|g" -e "s|@RELAY_WWW@|$www|g" \
        -e "s|@RELAY_RUNDIR@|$rundir|g" -e "s|@RELAY_SITE@|${2:-}|g" \
        "$root/deploy/$1" > "$out"
    if grep -q '@RELAY_[A-Z_]*@' "$out"; then
        echo "run: $1 has a variable run.sh does not know: $(grep -o '@RELAY_[A-Z_]*@' "$out" | head -1)" >&2
        exit 2
    fi
    echo "$out"
}

# nginx's and Apache's workers run as www-data when started as root: open
# the socket (0660) and the way to it to that group, and serve the
# dashboard from a copy they can read (a checkout may be private).
www=$root/www
if [ "$front" != caddy ] && [ "$(id -u)" = 0 ]; then
    chmod 0755 "$rundir"
    chgrp www-data "$sock" "$(dirname "$sock")"
    chmod g+x "$(dirname "$sock")"
    cp -R "$root/www" "$rundir/www"
    www=$rundir/www
    if ! runuser -u www-data -- test -w "$sock"; then
        echo "run: www-data cannot reach $sock (a parent directory is private): use [fcgi] listen under /run or /tmp" >&2
        exit 2
    fi
fi

case "$front" in
    caddy)
        RELAY_HOST=127.0.0.1 RELAY_PORT=$port RELAY_SOCKET=$sock RELAY_WWW=$root/www \
            HOME=$rundir caddy run --config "$root/deploy/caddy/Caddyfile" --adapter caddyfile &
        ;;
    nginx)
        site=$(render nginx/relay.conf)
        main=$(render nginx/nginx-foreground.conf "$site")
        nginx -c "$main" -p "$rundir" -g 'daemon off;' &
        ;;
    apache-proxy-fcgi)
        site=$(render apache/relay-proxy-fcgi.conf)
        main=$(render apache/apache2-foreground.conf "$site")
        apache2 -f "$main" -DFOREGROUND &
        ;;
esac
pids+=($!)
echo "run: Relay on http://127.0.0.1:$port (dashboard /relay/admin/, health /relay/health); Ctrl-C stops"
# Whichever ends first (a crash, or a signal) stops the other.
wait -n "${pids[@]}" || true
