/*
 * rl_version.h — which Relay this is, for relay.fcgi --version, relay-admin
 * status, /relay/health?verbose and the stats API.
 */
#ifndef RELAY_STORE_BASE_RL_VERSION_H
#define RELAY_STORE_BASE_RL_VERSION_H

/* The release this source tree is. Bumped by hand at a release. */
#define RELAY_VERSION "0.12.0"

/* RELAY_VERSION, followed by " (git REV)" when the build knew the commit
 * (the Makefile passes it to rl_version.c alone, so a new commit rebuilds
 * one file). A static string. */
const char *rl_version(void);

#endif
