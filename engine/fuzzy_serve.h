/*
 * fuzzy_serve.h — engine-internal: answering a near-variant of a cached
 * request from it (issue 16), around the matcher (engine/fuzzy.h) and the
 * store's index (store/fuzzyidx.h).
 *
 * Flow: after the key is computed, fuzzy_prepare splits the request when
 * fuzzy matching is on for its upstream ([fuzzy] enabled, [upstream.X]
 * fuzzy) and its endpoint has prose (chat.completions, messages,
 * generateContent, Ollama's chat). After an exact miss, fuzzy_serve looks
 * up candidates by band, reads and matches their docs, and serves the best
 * one's entry with X-Cache: FUZZY and X-Relay-Similarity; never when the
 * request sent Cache-Control: no-cache or X-Relay-Fuzzy: off, nor for a
 * scope the probe guard turned it off for. When an answer is stored,
 * fuzzy_remember stores the request's doc and bands with it. A fuzzy hit
 * is never stored as an entry of its own.
 *
 * Threads: the request's own for the exchange functions; the probe guard
 * is shared by the process's threads (a mutex). Failure: every function
 * here fails quietly (a debug line) into the exact path: fuzzy matching is
 * an extra, never a reason for an error answer.
 */
#ifndef RELAY_ENGINE_FUZZY_SERVE_H
#define RELAY_ENGINE_FUZZY_SERVE_H

#include <stdint.h>

#include "engine/ckey.h"
#include "engine/exchange.h"

/* Splits x's canonical body for fuzzy matching into x->fuzzy (pool) when
 * it applies to x; key is what its cache key was computed from. */
void fuzzy_prepare(exchange *x, const ckey_input *key);

/* After an exact miss: RL_OK when x was answered from a near-variant's
 * entry, else RL_NOTFOUND (go on to the upstream). */
rl_err fuzzy_serve(exchange *x);

/* After x's answer was stored under x->key: stores its doc and bands. */
void fuzzy_remember(exchange *x);

/* Frees what fuzzy_prepare allocated outside the pool. NULL-safe. */
void fuzzy_finish(exchange *x);

/*
 * The probe guard. Fuzzy hits on distinct near-variants from one scope in
 * a burst are how someone would map what others asked (each variant
 * answered tells "a prompt like this was asked"): more than
 * FUZZY_PROBE_LIMIT distinct ones within FUZZY_PROBE_WINDOW seconds turn
 * fuzzy matching off for that scope for FUZZY_PROBE_OFF seconds (logged
 * once). Time is passed in.
 */
#define FUZZY_PROBE_LIMIT 20
#define FUZZY_PROBE_WINDOW 60
#define FUZZY_PROBE_OFF 600

typedef struct fuzzy_guard fuzzy_guard;
/* The process's guard (static storage). */
fuzzy_guard *fuzzy_guard_process(void);
/* A guard of its own, for tests; fuzzy_guard_free releases it. */
fuzzy_guard *fuzzy_guard_new(void);
void fuzzy_guard_free(fuzzy_guard *g);
/* 1 while fuzzy matching is off for scope at now. */
int fuzzy_guard_blocked(fuzzy_guard *g, const char *scope, uint64_t now);
/* Counts a fuzzy hit of the request keyed key from scope at now; 1 when
 * this hit turned fuzzy matching off for the scope. */
int fuzzy_guard_note(fuzzy_guard *g, const char *scope, const uint8_t key[STORE_KEY_LEN],
                     uint64_t now);

#endif
