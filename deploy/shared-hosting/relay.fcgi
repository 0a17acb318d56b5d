#!/bin/sh
# relay.fcgi for shared hosting: what mod_fcgid starts (with the FastCGI
# socket on fd 0, which exec keeps). It runs the real binary, kept with its
# config and store outside the document root. Edit RELAY_HOME: mod_fcgid
# gives its processes almost no environment ($HOME may be unset).
RELAY_HOME=/home/USER/relay

# Libraries the host lacks, copied next to the binary (see README.md).
LD_LIBRARY_PATH="$RELAY_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$RELAY_HOME/bin/relay.fcgi" -c "$RELAY_HOME/relay.ini"
