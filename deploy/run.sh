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
#
# apache-fcgid: Apache starts relay.fcgi itself (mod_fcgid), so no pool runs
# and no socket is used. Run as root, Apache runs those processes as
# www-data, which must own the store: they then use a copy of RELAY_INI in
# the run directory, whose relative paths put a store of their own there
# for the run (it goes when the run ends).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ini=${1:-$root/relay.ini}
given_ini=$ini
front=${2:-caddy}
port=${RELAY_PORT:-9879}
build=$(cd "${RELAY_BUILD:-$root/build}" && pwd)

case "$front" in
    caddy | nginx | apache-proxy-fcgi | apache-fcgid) ;;
    *) echo "run: FRONT=$front is not one of caddy, nginx, apache-proxy-fcgi, apache-fcgid" >&2; exit 2 ;;
esac

pids=()
stop() {
    trap - INT TERM EXIT
    [ "${#pids[@]}" -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
rundir=$(mktemp -d "${TMPDIR:-/tmp}/relay-run-XXXXXX")
trap 'stop; rm -rf "$rundir"' INT TERM EXIT

# relay-admin init creates the key file, the store and the admin token. When
# it fails (a key file other users can read, an empty or wrong key, a
# read-only store), relay.fcgi still serves, uncached, with /relay/health
# "degraded" saying why: so start anyway, and say so where it cannot be
# missed. $1...: the relay-admin command line (as the right user).
init_store() {
    if "$@" -c "$ini" init; then
        return 0
    fi
    {
        echo
        echo "run: ================================================================"
        echo "run: relay-admin init failed (see above). Relay starts anyway: it serves"
        echo "run: every request uncached, and /relay/health says \"degraded\", until"
        echo "run: the store opens. To find out what to fix, run:"
        echo "run:     ${*:-relay-admin} -c $ini doctor"
        echo "run: ================================================================"
        echo
    } >&2
}

# Whoever runs relay.fcgi runs relay-admin too: the store's files and shared
# memory belong to whoever creates them.
as_relay=()
fcgi=$build/relay.fcgi
sock=
if [ "$front" = apache-fcgid ]; then
    if [ "$(id -u)" = 0 ]; then
        chmod 0755 "$rundir"
        cp "$ini" "$rundir/relay.ini"
        ini=$rundir/relay.ini
        for key in store.home store.key_file; do
            case "$("$build/relay-admin" -c "$ini" config "$key")" in
                "$rundir"/*) ;;
                *) echo "run: as root, FRONT=apache-fcgid runs relay.fcgi as www-data with a store of its own: $key must be a relative path in $given_ini" >&2; exit 2 ;;
            esac
        done
        # www-data cannot reach into a private checkout: a copy of the binary.
        cp "$fcgi" "$rundir/relay.fcgi"
        fcgi=$rundir/relay.fcgi
        chown www-data:www-data "$rundir" "$ini"
        as_relay=(runuser -u www-data --)
    fi
    init_store "${as_relay[@]}" "$build/relay-admin"
else
    init_store "$build/relay-admin"
    sock=$("$build/relay-admin" -c "$ini" config fcgi.listen)
    case "$sock" in
        /*) ;;
        *) echo "run: the front configs expect a unix socket in [fcgi] listen, got $sock" >&2; exit 2 ;;
    esac
    mkdir -p "$(dirname "$sock")"
    "$fcgi" -c "$ini" &
    pids+=($!)
    for _ in $(seq 100); do
        [ -S "$sock" ] && break
        sleep 0.1
    done
    [ -S "$sock" ] || { echo "run: relay.fcgi did not create $sock" >&2; exit 1; }
fi

# The fronts' own limit on a request body: a little above Relay's, so that
# Relay frees its thread before the front ends the client's request.
body_timeout=$(( $("$build/relay-admin" -c "$ini" config fcgi.body_timeout) + 5 ))

# deploy/TEMPLATE rendered into the run directory; prints the new path.
render() {
    local out
    out="$rundir/$(basename "$1")"
    sed -e "s|@RELAY_HOST@|127.0.0.1|g" -e "s|@RELAY_PORT@|$port|g" \
        -e "s|@RELAY_SOCKET@|$sock|g" -e "s|@RELAY_WWW@|$www|g" \
        -e "s|@RELAY_RUNDIR@|$rundir|g" -e "s|@RELAY_SITE@|${2:-}|g" \
        -e "s|@RELAY_FCGI@|$fcgi|g" -e "s|@RELAY_INI@|$ini|g" \
        -e "s|@RELAY_BODY_TIMEOUT@|$body_timeout|g" \
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
    cp -R "$root/www" "$rundir/www"
    www=$rundir/www
fi
if [ -n "$sock" ] && [ "$front" != caddy ] && [ "$(id -u)" = 0 ]; then
    chgrp www-data "$sock" "$(dirname "$sock")"
    chmod g+x "$(dirname "$sock")"
    if ! runuser -u www-data -- test -w "$sock"; then
        echo "run: www-data cannot reach $sock (a parent directory is private): use [fcgi] listen under /run or /tmp" >&2
        exit 2
    fi
fi

case "$front" in
    caddy)
        RELAY_HOST=127.0.0.1 RELAY_PORT=$port RELAY_SOCKET=$sock RELAY_WWW=$root/www \
            RELAY_BODY_TIMEOUT=$body_timeout \
            HOME=$rundir caddy run --config "$root/deploy/caddy/Caddyfile" --adapter caddyfile &
        ;;
    nginx)
        site=$(render nginx/relay.conf)
        main=$(render nginx/nginx-foreground.conf "$site")
        nginx -c "$main" -p "$rundir" -g 'daemon off;' &
        ;;
    apache-proxy-fcgi | apache-fcgid)
        site=$(render "apache/relay-${front#apache-}.conf")
        main=$(render apache/apache2-foreground.conf "$site")
        apache2 -f "$main" -DFOREGROUND &
        ;;
esac
pids+=($!)
echo "run: Relay on http://127.0.0.1:$port (dashboard /relay/admin/, health /relay/health); Ctrl-C stops"
# Whichever ends first (a crash, or a signal) stops the other.
wait -n "${pids[@]}" || true
