/*
 * cluster_view_int.h — engine-internal: the cluster status (cluster_view.h)
 * as a jansson value, for the documents that embed it (the stats API).
 */
#ifndef RELAY_ENGINE_CLUSTER_VIEW_INT_H
#define RELAY_ENGINE_CLUSTER_VIEW_INT_H

#include <jansson.h>

#include "engine/cluster_view.h"

/* A new object (the caller owns the reference) as cluster_view.h
 * describes it, or NULL when out of memory: never an object with a member
 * left out. */
json_t *cluster_view_object(const store_cluster_status *st, uint64_t now);

#endif
