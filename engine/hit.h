/*
 * hit.h — engine-internal: answering a request from the cache.
 *
 * Threads: the request's own (one exchange, one thread). The entry read is
 * the caller's until hit_serve returns; nothing is kept.
 */
#ifndef RELAY_ENGINE_HIT_H
#define RELAY_ENGINE_HIT_H

#include "engine/exchange.h"

/*
 * Looks x's key up and, when the entry may be used under x->cc (fresh, or
 * stale within what the request accepts), sends it: RL_OK when the request
 * was answered (a 503 for a process short of memory counts as answered,
 * the entry kept). RL_NOTFOUND when there is nothing usable: no entry, one
 * the request may not take, or one that cannot be rendered (then removed).
 * Counts the hit for recency and reads the usage it saved.
 */
rl_err hit_serve(exchange *x);

/* The same for the entry at key, which is another request's (a fuzzy
 * match, engine/fuzzy_serve.h): served only while fresh, with X-Cache:
 * label. */
rl_err hit_serve_other(exchange *x, const uint8_t key[STORE_KEY_LEN], const char *label);

#endif
