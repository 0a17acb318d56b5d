/*
 * observe.h — engine-internal: Relay's own endpoints, which report on it
 * rather than reach an upstream.
 *
 *   /relay/health           open: "ok", or "degraded" (503) with the reasons
 *                           (the store, the counters); ?verbose adds
 *                           "version: ..." and needs the admin token (401
 *                           without it: the version is not for strangers)
 *   /relay/metrics          Prometheus text (format 0.0.4) of the shared
 *                           counters (stats.h) and the store; open or
 *                           admin-only ([metrics] access)
 *   /relay/admin/api/stats  the dashboard's JSON (admin token): "api" (its
 *                           shape, 3), "version" (rl_version()), totals,
 *                           clients with their Relay tokens' budgets, ...
 *   /relay/admin/api/purge  POST {"all": true} or {"expired": true}: removes
 *                           cache entries, answers {"removed": N} (admin token)
 *
 * The admin token is the content of [admin] token_file (created by
 * relay-admin init), read at each request so that a new one applies at
 * once; it is accepted only as "Authorization: Bearer TOKEN", compared in
 * constant time, and refused in a query string. Errors are OpenAI-shaped
 * JSON, like the rest of Relay's own answers.
 *
 * Parts: observe.c (dispatch, health, the admin token), metrics.c (the
 * metrics page, from one table of families), admin_api.c (the admin API);
 * what they share is in observe_int.h.
 */
#ifndef RELAY_ENGINE_OBSERVE_H
#define RELAY_ENGINE_OBSERVE_H

#include "engine/exchange.h"

/* Answers x, routed to ROUTE_HEALTH, ROUTE_METRICS or ROUTE_ADMIN_API. */
void observe_serve(exchange *x);

#endif
