/*
 * config_values.h — engine-internal: the checks of single values that
 * engine/config.c's key table applies (base URLs, listen addresses, CORS
 * origins, [cluster] addresses). Pure functions of their arguments: no state, no logging; safe
 * from any thread.
 */
#ifndef RELAY_ENGINE_CONFIG_VALUES_H
#define RELAY_ENGINE_CONFIG_VALUES_H

#include "store/base/rl_buf.h"

struct sockaddr;

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

/* 1 when sa (AF_INET or AF_INET6) is an address no stranger on the
 * Internet can reach or be: loopback 127/8 and ::1, RFC 1918 10/8,
 * 172.16/12 and 192.168/16, link-local 169.254/16 and fe80::/10, CGNAT
 * 100.64/10 (Tailscale's and other VPNs' addresses), unique local fc00::/7,
 * and the IPv4-mapped (::ffff:a.b.c.d) forms of the IPv4 ones. Else 0
 * (any other family, and the unspecified 0.0.0.0 and ::, which listen on
 * every interface). [cluster] refuses a site that is not private: repmgr
 * neither encrypts nor authenticates (store/cluster.h). */
int config_addr_is_private(const struct sockaddr *sa);

#endif
