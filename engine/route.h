/*
 * route.h — which upstream, wire format and endpoint a request is for.
 *
 * Routing looks at the method and the raw path only (never the query).
 * Relay's own paths (/relay/...) come first; then an upstream whose
 * `mount` prefixes the path (the prefix is removed upstream); then API
 * paths by shape, as DESIGN.md lists: /v1/messages -> anthropic, other
 * /v1/... -> openai (or openai-compatible), /v1beta/models/M:... ->
 * gemini, /openai/... -> azure, /api/... -> ollama, each to the first
 * upstream of that kind in relay.ini, else to the first upstream whose
 * `accepts` lists the path's format (served translated: route.prov is then
 * the client's format, not the upstream's). Routing by the model named in
 * the body comes later, once it is read (engine/models.h).
 */
#ifndef RELAY_ENGINE_ROUTE_H
#define RELAY_ENGINE_ROUTE_H

#include "engine/config.h"
#include "engine/prov.h"

typedef enum {
    ROUTE_NONE,      /* unknown path, or no upstream of its kind: 404 */
    ROUTE_HEALTH,    /* /relay/health */
    ROUTE_METRICS,   /* /relay/metrics */
    ROUTE_ADMIN_API, /* /relay/admin/api/... (the dashboard's static files are the front's) */
    ROUTE_API,       /* an upstream API path */
} route_kind;

typedef struct route {
    route_kind kind;
    const upstream_config *upstream;
    const prov_ops *prov; /* the wire format; also for a 404 shaped like the API it resembles */
    /* The cacheable endpoint (prov.h lists them), or NULL for paths that
     * are forwarded as they are and never cached. */
    const char *endpoint;
    const char *method; /* the method the endpoint answers ("POST", "GET") */
    const char *path;   /* the path to forward: the client's, minus a mount prefix */
} route;

/*
 * Why a request target may not be forwarded, or NULL when it may. Checked
 * on every request before it is answered, so that the path sent upstream
 * (base_url + path, libcurl told not to resolve dot segments) is exactly
 * the one routed: refused are "." and ".." segments, literal or percent-
 * encoded in any case (they would climb out of base_url's path), empty
 * segments ("//"), backslashes, encoded slashes and backslashes, encoded
 * control characters, malformed percent escapes, and any byte that RFC 3986
 * does not allow in a path (in the query: in a query). A static string.
 */
const char *route_target_refusal(const char *path, const char *query);

/* The wire format an upstream type speaks (azure and openai-compatible:
 * OpenAI's). */
const prov_ops *route_type_prov(upstream_type type);

/* Fills out; out->path points into path. */
void route_match(const relay_config *cfg, const char *path, route *out);

#endif
