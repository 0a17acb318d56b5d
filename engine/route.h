/*
 * route.h — which upstream, wire format and endpoint a request is for.
 *
 * Routing looks at the raw path only (never the query). Relay's own paths
 * (/relay/...) come first; then API paths by shape, as DESIGN.md lists.
 */
#ifndef RELAY_ENGINE_ROUTE_H
#define RELAY_ENGINE_ROUTE_H

#include "engine/config.h"
#include "engine/prov.h"

typedef enum {
    ROUTE_NONE,   /* unknown path: 404 */
    ROUTE_HEALTH, /* GET /relay/health */
    ROUTE_API,    /* an upstream API path */
} route_kind;

typedef struct route {
    route_kind kind;
    const upstream_config *upstream;
    const prov_ops *prov;
    /* The cacheable endpoint ("chat.completions"), or NULL for paths that
     * are forwarded as they are and never cached. */
    const char *endpoint;
} route;

void route_match(const relay_config *cfg, const char *path, route *out);

#endif
