# sed script: turns the repository's relay.ini (paths relative to the file,
# for `make run`) into the config `make install` puts in /etc/relay/relay.ini
# for relay.service. Every other key keeps its shipped default.
1a\
;\
; Installed for the systemd service (relay.service): the store and its key\
; file live in /var/lib/relay (the service's StateDirectory, owned by the\
; relay user), the socket in /run/relay (its RuntimeDirectory), the log goes\
; to the journal (journalctl -u relay). Run relay-admin as the service user:\
;   sudo -u relay relay-admin -c /etc/relay/relay.ini stats\
; After a change: systemctl reload relay ([fcgi] listen: restart).
/^\[fcgi\]/,/^\[/ s|^listen = .*|listen = /run/relay/relay.sock|
/^\[fcgi\]/,/^\[/ s|^status_file = .*|status_file = /run/relay/relay.status|
/^\[fcgi\]/,/^\[/ s|^\(; Seconds a stopping worker waits.*\)$|\1\
; Keep relay.service's TimeoutStopSec (45 s) above this + 5.|
/^\[store\]/,/^\[/ s|^home = .*|home = /var/lib/relay/store|
/^\[store\]/,/^\[/ s|^key_file = .*|key_file = /var/lib/relay/relay.key|
/^\[admin\]/,/^\[/ s|^token_file = .*|token_file = /var/lib/relay/admin.token|
