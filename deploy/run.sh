#!/usr/bin/env bash
# `make run`: Relay's pool plus a front web server on 127.0.0.1:9879, in the
# foreground. Ctrl-C, SIGTERM, SIGINT or SIGHUP (to this script, or to the
# `make` running it alone), or the death of that `make`, stops every process
# started here and removes the run's directory (see "Stopping" below).
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
#
# nginx and Apache started as root run their workers as www-data, which
# cannot reach a socket under a private directory (Debian 12 creates homes
# 0700, /root is 0700): the pool then listens in the run's own directory
# (relay.fcgi --listen) instead of [fcgi] listen, rather than open the
# user's directories to www-data. A listen path www-data can reach (e.g.
# under /run) is used as configured. Running the front's workers as the
# invoking user instead was not an option: that user is root here, and
# Apache's workers refuse to run as root (Debian's build has no
# BIG_SECURITY_HOLE), nginx's would serve the network with every privilege.
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

# ---- Stopping ----
#
# Every way this script ends goes through stop(): the EXIT trap, and a trap
# per signal that also exits (a trap alone would return into the start-up
# below and start the rest with no trap left). What it started gets SIGTERM
# (relay.fcgi drains for at most [fcgi] drain_timeout) and is waited for.
#
# `make run` adds two ways for this script to miss its end, both seen here
# (GNU make 4.3, Debian 12):
# - make ran the recipe through `sh -c`, and on SIGTERM forwards it to that
#   shell only: the shell died and run.sh, relay.fcgi and the front kept
#   running, holding the port. The recipe now `exec`s run.sh, so make's
#   child is this script and the forwarded SIGTERM reaches the trap.
# - on SIGINT, SIGHUP or SIGQUIT make forwards nothing (it assumes the
#   terminal signalled its whole process group) and blocks in its handler
#   until its children exit: kill -INT MAKE alone would wait forever. And a
#   SIGKILLed make leaves this script to init. watch_make() notices both.
# Processes started here also get PR_SET_PDEATHSIG (setpriv, util-linux,
# always installed): if this script itself is SIGKILLed they get SIGTERM.
pids=()
watcher=
stop() {
    # A repeated SIGTERM or SIGHUP (a supervisor, watch_make) must not cut
    # the clean-up short; a second Ctrl-C still may (what was started has
    # its SIGTERM by then, and its parent-death signal).
    trap - INT EXIT
    trap '' TERM HUP
    if [ -n "$watcher" ]; then
        kill -TERM "$watcher" 2>/dev/null || true
    fi
    if [ "${#pids[@]}" -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$rundir"
}
rundir=$(mktemp -d "${TMPDIR:-/tmp}/relay-run-XXXXXX")
trap stop EXIT
for sig in INT TERM HUP; do
    # shellcheck disable=SC2064 # the exit status is fixed now, per signal
    trap "stop; exit $((128 + $(kill -l "$sig")))" "$sig"
done

# Runs in the background while the parent is make: SIGTERMs this script
# once make has gone (we were given to another parent) or is blocked in its
# handler for a fatal signal. make's handler runs with that signal blocked
# (SigBlk in /proc), and make only sits there waiting for us: seen twice in
# a row, a quarter of a second apart, so a brief mask is not taken for it.
# The wait is a read on a FIFO nobody writes, not `sleep` (no process to
# leave behind when this one is killed).
watch_make() {
    local make_pid=$1 stat ppid key blk hits=0 tick
    mkfifo "$rundir/tick"
    exec {tick}<>"$rundir/tick"
    while :; do
        read -r -t 0.25 -u "$tick" _ || true
        # This script itself was SIGKILLed: what it started got its
        # parent-death signal; the run's directory is left to remove.
        if ! read -r stat 2>/dev/null < "/proc/$$/stat"; then
            rm -rf "$rundir"
            exit 0
        fi
        read -r _ ppid _ <<< "${stat##*) }"
        [ "$ppid" = "$make_pid" ] || break
        blk=0
        while read -r key stat; do
            [ "$key" = SigBlk: ] && { blk=$stat; break; }
        done < "/proc/$make_pid/status" || true
        # SIGHUP 1, SIGINT 2, SIGQUIT 3, SIGTERM 15: bits 0, 1, 2 and 14.
        if (( 16#$blk & 0x4007 )); then
            hits=$((hits + 1))
            [ "$hits" -lt 2 ] || break
        else
            hits=0
        fi
    done
    kill -TERM $$
}
read -r parent_comm < "/proc/$PPID/comm" || parent_comm=
case "$parent_comm" in
    make | gmake) watch_make "$PPID" & watcher=$! ;;
esac
# What this script starts: SIGTERM when this script dies, however it dies.
started=(setpriv --pdeathsig TERM --)

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
    listen=()
    if [ "$front" != caddy ] && [ "$(id -u)" = 0 ] &&
        ! runuser -u www-data -- test -x "$(dirname "$(dirname "$sock")")"; then
        echo "run: www-data (the front's workers) cannot reach $(dirname "$sock") (a parent directory is private): this run's socket is in its own directory instead" >&2
        chmod 0755 "$rundir"
        sock=$rundir/relay.sock
        listen=(--listen "$sock")
    fi
    "${started[@]}" "$fcgi" -c "$ini" "${listen[@]}" &
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
    chgrp www-data "$sock"
    # The socket's directory is opened to www-data's group only when it
    # cannot search it already (never touch /tmp's or /run's group).
    if ! runuser -u www-data -- test -x "$(dirname "$sock")"; then
        chgrp www-data "$(dirname "$sock")"
        chmod g+x "$(dirname "$sock")"
    fi
    if ! runuser -u www-data -- test -w "$sock"; then
        echo "run: www-data cannot reach $sock (a parent directory is private): use [fcgi] listen under /run or /tmp, and a TMPDIR www-data can reach" >&2
        exit 2
    fi
fi

case "$front" in
    caddy)
        RELAY_HOST=127.0.0.1 RELAY_PORT=$port RELAY_SOCKET=$sock RELAY_WWW=$root/www \
            RELAY_BODY_TIMEOUT=$body_timeout \
            HOME=$rundir "${started[@]}" caddy run --config "$root/deploy/caddy/Caddyfile" --adapter caddyfile &
        ;;
    nginx)
        site=$(render nginx/relay.conf)
        main=$(render nginx/nginx-foreground.conf "$site")
        "${started[@]}" nginx -c "$main" -p "$rundir" -g 'daemon off;' &
        ;;
    apache-proxy-fcgi | apache-fcgid)
        site=$(render "apache/relay-${front#apache-}.conf")
        main=$(render apache/apache2-foreground.conf "$site")
        # ErrorLog /dev/stderr is opened by name, which fails (ENXIO) when
        # stderr is a socket (systemd's journal, node's child stdio): give
        # Apache a pipe then.
        if [ -S /dev/stderr ]; then
            "${started[@]}" apache2 -f "$main" -DFOREGROUND 2> >(cat >&2) &
        else
            "${started[@]}" apache2 -f "$main" -DFOREGROUND &
        fi
        ;;
esac
pids+=($!)
echo "run: Relay on http://127.0.0.1:$port (dashboard /relay/admin/, health /relay/health); Ctrl-C stops"
# Whichever ends first (a crash, or a signal) stops the other.
wait -n "${pids[@]}" || true
