/*
 * cors.h — Cross-Origin Resource Sharing for browser apps ([cors]).
 *
 * A web page on another origin (https://app.example) that holds a Relay
 * token calls Relay with fetch(). Its browser first sends a preflight
 * (OPTIONS with Origin and Access-Control-Request-*), which Relay answers
 * itself: never upstream, never asking for a credential. Every answer that
 * follows (success, error or stream) carries Access-Control-Allow-Origin
 * when the page's origin is listed in [cors] allow_origins, so the page can
 * read it; otherwise the browser keeps the answer from the page.
 *
 * Policy (README "CORS" says the same for users):
 *  - allow_origins lists exact origins, scheme://host[:port]; "*" and
 *    "null" are configuration errors (engine/config.c reads the list and
 *    keeps it as browsers send Origin: lower-case, no default port).
 *  - Relay never sends Access-Control-Allow-Credentials: a page presents
 *    its token in a header it sets itself, which needs no cookie, so a page
 *    can never ride on a user's cookies or HTTP authentication.
 *  - Only the provider API paths (and unknown paths, so that a page reads
 *    its 404) are open to other origins; Relay's own endpoints under
 *    /relay/ are not.
 *  - Access-Control-* headers an upstream sends never reach the client:
 *    Relay's policy is the only one.
 *  - A request from an origin that is not allowed is still served (CORS is
 *    the browser's check, and a server-side client or an extension that
 *    sends Origin keeps working); only its preflight is refused, with 403.
 *
 * Threads: everything here reads the immutable config and one request. A
 * cors_sink belongs to one request; like any engine_sink it may be written
 * from another thread for that request (engine/fanout.c), one at a time.
 */
#ifndef RELAY_ENGINE_CORS_H
#define RELAY_ENGINE_CORS_H

#include "engine/config.h"
#include "engine/engine.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* Whether origin (an Origin header's value) is one of cfg's allowed
 * origins: compared exactly, without regard to case. */
int cors_origin_allowed(const relay_config *cfg, const char *origin);

/* Whether req is a CORS preflight: OPTIONS with an Origin and an
 * Access-Control-Request-Method header. */
int cors_is_preflight(const engine_request *req);

/*
 * The sink the engine writes one request's answer to: it passes everything
 * to the front's sink, and its start() drops any Access-Control-* header
 * (an upstream's) and adds Access-Control-Allow-Origin (the request's own
 * Origin) and Access-Control-Expose-Headers when that origin is allowed,
 * and Vary: Origin whenever the answer depends on it. Embedded by the
 * caller (engine_handle keeps it on its stack for the whole request).
 */
typedef struct cors_sink {
    engine_sink sink;         /* hand this to the engine */
    const engine_sink *inner; /* the front's, borrowed */
    const relay_config *cfg;
    int open;           /* the route is open to other origins */
    const char *origin; /* the request's Origin (borrowed), NULL when none */
    int allowed;        /* open, and origin is in [cors] allow_origins */
} cors_sink;

/* Sets c up for req (both borrowed: they must outlive c), wrapping inner.
 * open: the route may be called from other origins (provider API paths,
 * unknown paths), not Relay's own endpoints. */
void cors_sink_init(cors_sink *c, const relay_config *cfg, const engine_request *req, int open,
                    const engine_sink *inner);

/*
 * Answers the preflight req through c's front sink: 204 with
 * Access-Control-Allow-Origin, -Methods (GET, POST, OPTIONS), -Headers (the
 * requested headers that Relay allows: the official SDKs' and Relay's own;
 * a browser names any other one in its refusal), -Max-Age ([cors] max_age)
 * and Vary. RL_OK when answered (or the client left meanwhile). RL_FORBIDDEN
 * with the reason appended to why, nothing sent, when the origin or the
 * route is not open to other origins: the caller answers that in the
 * client's format (through c->sink, so without Access-Control-Allow-Origin).
 */
rl_err cors_preflight(cors_sink *c, const engine_request *req, rl_buf *why);

#endif
