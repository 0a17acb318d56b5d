/*
 * cluster_view.h — the replication group (store/cluster.h) as Relay shows
 * it. One rendering of a store_cluster_status, so that relay-admin cluster
 * status --json, the stats API's "cluster" member and the dashboard read
 * the same members, and one rule for when the group makes /relay/health
 * degraded.
 *
 * The JSON object (an e2e test and the dashboard depend on these names):
 *   {"role": "master"|"replica"|"none", "master": "host:port" or "",
 *    "master_since": N, "beat": N, "lag": now - beat (null: no beat yet),
 *    "elections": N, "forwarded": N, "forward_failed": N, "perm_failed": N,
 *    "sites": [{"addr", "self", "master", "connected"}]}
 * Times are unix seconds, 0 for "not yet".
 *
 * Pure functions of their arguments (now is passed in): any thread. The
 * jansson value itself is in cluster_view_int.h, for engine/ only.
 */
#ifndef RELAY_ENGINE_CLUSTER_VIEW_H
#define RELAY_ENGINE_CLUSTER_VIEW_H

#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/cluster.h"

/* Appends the object above as compact JSON text to out. RL_NOMEM (or the
 * buffer's cap) on failure, when out must not be used. */
rl_err cluster_view_json(const store_cluster_status *st, uint64_t now, rl_buf *out);

/* Seconds since the master's last beat this site has into *lag: 1, or 0
 * when there was none yet (*lag 0). A beat "in the future" (clocks of two
 * hosts apart) is a lag of 0, not a wrap-around. */
int cluster_view_lag(const store_cluster_status *st, uint64_t now, uint64_t *lag);

/* Sites this site's listener is connected to, itself included (so a whole
 * three-site group reads 3). */
unsigned cluster_view_connected(const store_cluster_status *st);

/* Why the group makes this host degraded ("no master": no site is known to
 * be master, so reservations and token writes are refused after
 * [cluster] partition_grace), or NULL when it does not. */
const char *cluster_view_problem(const store_cluster_status *st);

#endif
