/*
 * alias.h — engine-internal: the cache controls of other gateways, spelled
 * as their users already send them, mapped onto Relay's own (policy.h).
 *
 *   header / body field                 Relay's control
 *   cf-aig-cache-ttl: N                 X-Relay-TTL: N
 *   cf-aig-skip-cache: true             X-Relay-Cache: off (no lookup, no store)
 *   Helicone-Cache-Enabled: true|false  X-Relay-Cache: on | off
 *   Helicone-Cache-Seed: S              a namespace (with X-Relay-Namespace's)
 *   x-portkey-cache-force-refresh: true Cache-Control: no-cache (no lookup, store)
 *   body "cache": {                     LiteLLM's per-request controls:
 *     "no-cache": true                    Cache-Control: no-cache
 *     "no-store": true                    Cache-Control: no-store
 *     "ttl": N                            X-Relay-TTL: N
 *     "s-maxage": N                       Cache-Control: max-age=N
 *     "namespace": "x" }                  a namespace (with the others)
 *
 * When two spellings say different things, Relay's own headers win
 * (Cache-Control, X-Relay-*): they are the documented interface, and a
 * client that sets both most likely added Relay's on purpose. Among the
 * others: a TTL from cf-aig-cache-ttl before the body's; "off"
 * (cf-aig-skip-cache, Helicone-Cache-Enabled: false) before "on", the safe
 * side; no-cache and no-store are asked for by any spelling that says so.
 * "false" in the boolean ones asks for nothing. A value that is none of
 * what the spelling allows is a 400, as a malformed X-Relay-TTL is: a
 * client that asks for something explicit must learn it did not work.
 *
 * The body field is LiteLLM's, not the provider's: it is removed before the
 * body goes upstream and before the body is keyed (the request is keyed
 * as if it had been sent without it; its namespace partitions the key as
 * X-Relay-Namespace does). Only a top-level member named exactly "cache"
 * (spelled without escapes) whose value is an object is taken, so a
 * provider field of that name with another shape passes untouched.
 * The alias headers are not forwarded upstream (exchange.c).
 *
 * Threads: pure functions of their arguments, plus the request's pool.
 */
#ifndef RELAY_ENGINE_ALIAS_H
#define RELAY_ENGINE_ALIAS_H

#include <stddef.h>

#include "engine/exchange.h"
#include "engine/policy.h"
#include "store/base/rl_err.h"
#include "store/base/rl_pool.h"

/* What LiteLLM's body field asked for. */
typedef struct alias_body {
    int present;    /* the body had the field (it was removed) */
    int no_cache;   /* "no-cache": true */
    int no_store;   /* "no-store": true */
    long ttl;       /* "ttl", or POLICY_UNSET */
    long s_maxage;  /* "s-maxage", or POLICY_UNSET */
    const char *ns; /* "namespace" in the request's pool, or NULL */
} alias_body;

/*
 * Finds LiteLLM's top-level "cache" object in body[0..len) and reads it
 * into *ab. When present, *out and *out_len get the body without it (in pool,
 * NUL-terminated; every other byte kept as sent except the whitespace
 * between top-level members); else they get body/len back unchanged, as
 * they do for a body that is not a JSON object (inspect reports that).
 * RL_BAD_REQUEST with *why (static text) when a member of the field has
 * the wrong type or value; RL_NOMEM when the pool is exhausted.
 */
rl_err alias_body_take(rl_pool *pool, const char *body, size_t len, const char **out,
                       size_t *out_len, alias_body *ab, const char **why);

/* The value of a request header by lower-case name, or NULL. */
typedef const char *alias_header_fn(const void *ctx, const char *name);

/*
 * Merges the alias headers (read through header) and ab (NULL: none) into
 * cc, which policy_parse filled from Relay's own headers (the precedence
 * above). RL_BAD_REQUEST with *why (static text) for a malformed value.
 */
rl_err alias_controls(alias_header_fn *header, const void *ctx, const alias_body *ab,
                      cache_controls *cc, const char **why);

/*
 * The namespace of the cache key: X-Relay-Namespace's value as it is when
 * nothing else names one (so keys made before the aliases still match),
 * else all of them together in an unambiguous form that no header value
 * alone can spell (it starts with a line feed). NULL when none or out of
 * memory (then the caller cannot key the request); in pool.
 */
const char *alias_namespace(rl_pool *pool, alias_header_fn *header, const void *ctx,
                            const alias_body *ab, int *nomem);

/* The request flow's two steps (engine.c): before inspect, LiteLLM's field
 * taken out of x's body (x->req and x->preq then carry the body without
 * it); after policy_parse, the alias controls merged into x->cc and the
 * namespace set in x->ns. Each answers a refusal itself and returns -1; 0
 * to go on. */
int alias_take(exchange *x, alias_body *ab);
int alias_apply(exchange *x, const alias_body *ab);

#endif
