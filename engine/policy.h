/*
 * policy.h — may this request be answered from the cache, and may its
 * answer be stored?
 *
 * Inputs are the request's controls (Cache-Control directives, X-Relay-Cache,
 * X-Relay-TTL), the configured policy and what the provider adapter learned
 * from the body (deterministic? depends on upstream state?). Pure functions:
 * time is passed in, nothing is looked up.
 */
#ifndef RELAY_ENGINE_POLICY_H
#define RELAY_ENGINE_POLICY_H

#include <stdint.h>

#include "engine/config.h"
#include "store/base/rl_err.h"
#include "store/store.h"

#define POLICY_UNSET (-1L)

typedef struct cache_controls {
    int no_cache;       /* refresh: skip the lookup, store the new answer */
    int no_store;       /* do not store this answer */
    int only_if_cached; /* never call upstream; 504 on a miss */
    long max_age;       /* accept only entries younger than this (s), or POLICY_UNSET */
    long max_stale;     /* accept entries expired at most this long ago (s); LONG_MAX
                         * for a bare "max-stale"; POLICY_UNSET if absent */
    int force;          /* X-Relay-Cache: 1 on, 0 off, -1 absent */
    long ttl;           /* X-Relay-TTL in seconds, or POLICY_UNSET */
} cache_controls;

/* Parses the header values (each may be NULL). Unknown Cache-Control
 * directives are ignored, as HTTP caches do. A malformed X-Relay-Cache or
 * X-Relay-TTL is RL_BAD_REQUEST with the reason in *why (static text): a
 * client that asks for something explicit must learn it did not work. */
rl_err policy_parse(const char *cache_control, const char *x_relay_cache, const char *x_relay_ttl,
                    cache_controls *out, const char **why);

typedef struct policy_decision {
    int lookup; /* look the key up before calling upstream */
    int store;  /* store a complete, successful answer */
    long ttl;   /* seconds to keep it fresh when stored, at most [cache] max_ttl */
} policy_decision;

/* Under up's rules (policy, default_ttl, max_ttl, cache_tools: [cache]'s
 * unless its section sets its own). deterministic: the adapter judged the
 * answer repeatable (temperature 0, a seed, embeddings, ...). stateful: the
 * answer depends on upstream state (previous_response_id, store:true) and
 * is never cached, whatever the controls say. tools: the request offers
 * the model tools, not cached under cache_tools = off unless the request
 * itself sends X-Relay-Cache: on (the same rule as for policy = never). */
policy_decision policy_decide(const upstream_config *up, const cache_controls *cc,
                              int deterministic, int stateful, int tools);

typedef enum { ENTRY_FRESH, ENTRY_STALE_OK, ENTRY_UNUSABLE } entry_use;

/* Whether an entry with meta may answer now under the controls. */
entry_use policy_entry_use(const cache_controls *cc, const store_meta *meta, uint64_t now);

#endif
