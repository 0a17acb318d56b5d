/*
 * config_values.h — engine-internal: the checks of single values that
 * engine/config.c's key table applies (base URLs, listen addresses, CORS
 * origins). Pure functions of their arguments: no state, no logging; safe
 * from any thread.
 */
#ifndef RELAY_ENGINE_CONFIG_VALUES_H
#define RELAY_ENGINE_CONFIG_VALUES_H

#include "store/base/rl_buf.h"

/* Why v is not a usable base_url (an http(s) URL with a host, no query,
 * fragment or credentials), or NULL. The reason is a static string. */
const char *config_url_refusal(const char *v);

/* Why v is neither a unix socket path nor HOST:PORT, or NULL. A path's
 * length is checked by the caller once it is resolved. */
const char *config_listen_refusal(const char *v);

/* [cors] allow_origins: origins separated by commas and/or blanks.
 * Returns 0 with *out the normalised origins separated by single spaces
 * ("" for none; malloc'ed, the caller's; NULL when out of memory), or -1
 * with the reason, naming the entry, appended to why after where. */
int config_origins_parse(const char *value, const char *where, rl_buf *why, char **out);

#endif
