/*
 * prov_json.h — jansson helpers shared by the provider adapters (internal
 * to engine/prov_*.c: the JSON library stays out of prov.h).
 */
#ifndef RELAY_ENGINE_PROV_JSON_H
#define RELAY_ENGINE_PROV_JSON_H

#include <jansson.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/* Appends j's JSON text (jansson flags, e.g. JSON_SORT_KEYS|JSON_COMPACT). */
rl_err prov_json_dump(json_t *j, size_t flags, rl_buf *out);

/* Appends before, j's JSON text and after; the reference to j is dropped
 * either way, and a NULL j (a failed json_pack) is RL_NOMEM. The one way
 * adapters write a rendered event, line or error document. */
rl_err prov_json_put(rl_buf *out, const char *before, json_t *j, size_t flags, const char *after);

/* The canonical form used in cache keys: sorted keys, compact. */
#define PROV_JSON_CANONICAL (JSON_SORT_KEYS | JSON_COMPACT)

/* The integer at key of obj, or -1 when absent or not an integer. */
int64_t prov_json_int(const json_t *obj, const char *key);

#endif
