/*
 * params.h — a request's line and headers from its FastCGI parameters.
 *
 * Kept apart from front.c (which owns libfcgi) so that it can be tested
 * and fuzzed on plain arrays: the parameters come from the web server, but
 * their values (path, query, headers) are the client's bytes.
 */
#ifndef RELAY_FCGI_PARAMS_H
#define RELAY_FCGI_PARAMS_H

#include "engine/engine.h"

/*
 * Fills req's method, path, query, headers and nheaders from envp (a
 * NULL-terminated array of "NAME=value" strings, as FCGX_Request.envp),
 * copying into req->pool:
 *  - method: REQUEST_METHOD, "GET" when absent;
 *  - path and query: REQUEST_URI split at its first '?' (the raw URI under
 *    every front), else SCRIPT_NAME + PATH_INFO and QUERY_STRING;
 *  - headers: every HTTP_X_Y as "x-y", and CONTENT_TYPE as "content-type".
 * Returns 0, or -1 when out of memory.
 *
 * A header sent as X_Y (underscores) reaches Relay, if at all, as the same
 * HTTP_X_Y as X-Y: every front builds the name by upper-casing and turning
 * '-' into '_' (seen with Caddy 2.6, nginx 1.22, Apache 2.4), so the client's
 * spelling cannot be told from here. The fronts drop header names with
 * underscores instead: nginx and Apache by default, the shipped Caddyfile
 * with request_header -*_* (tests/e2e/headers.test.mjs).
 */
int params_parse(char **envp, engine_request *req);

#endif
