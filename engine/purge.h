/*
 * purge.h — which cached answers an administrator removes, and removing them.
 *
 * relay-admin purge and the admin API's POST /relay/admin/api/purge take the
 * same conditions and both call purge_run, so that the two cannot disagree
 * on what "--model gpt-4o" or "expired" means.
 *
 * Every condition that is set must hold (AND). Labels (model, namespace,
 * upstream) are those entry.h stores; an entry written before labels
 * existed matches no label condition. A filter with no condition at all
 * means "expired" (the safe default); "all" means every entry and takes no
 * other condition (purge_check says so).
 */
#ifndef RELAY_ENGINE_PURGE_H
#define RELAY_ENGINE_PURGE_H

#include <stdint.h>

#include "store/base/rl_err.h"
#include "store/store.h"

typedef struct purge_filter {
    int all;             /* every entry */
    int expired;         /* past its TTL */
    int older;           /* created older_than seconds ago or more */
    uint64_t older_than; /* seconds */
    const char *model;   /* NULL: any */
    const char *ns;      /* X-Relay-Namespace; "" is the default namespace */
    const char *upstream;
} purge_filter;

/* NULL when f makes sense, else why not (for the user). */
const char *purge_check(const purge_filter *f);

/* Removes what f selects at time now (Unix seconds), in bounded
 * transactions (store_cache_purge_match); *removed gets how many went,
 * also when it fails part way. */
rl_err purge_run(store *s, const purge_filter *f, uint64_t now, uint64_t *removed);

#endif
