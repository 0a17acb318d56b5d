/*
 * prov_json.h — jansson helpers shared by the provider adapters (internal
 * to engine/prov_*.c: the JSON library stays out of prov.h).
 */
#ifndef RELAY_ENGINE_PROV_JSON_H
#define RELAY_ENGINE_PROV_JSON_H

#include <jansson.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"

/*
 * The deepest nesting of arrays and objects Relay accepts in any JSON it
 * parses (request bodies, upstream answers, stream events). jansson parses
 * and dumps recursively, and request threads have 512 KiB stacks (fcgi/
 * front.c): a 3.4 KB body nested 1,700 levels overflowed that in the
 * canonical dump. Real requests stay far below: a tool's JSON schema nested
 * 30 objects deep is about 65 levels.
 */
#define PROV_JSON_MAX_DEPTH 128

/*
 * The one way the adapters parse JSON: json_loadb with JSON_ALLOW_NUL
 * ("\u0000" is legal JSON and must be forwarded and keyed as sent), after a
 * non-recursive scan that refuses nesting deeper than PROV_JSON_MAX_DEPTH
 * (err->text names the limit, err->position the byte). NULL on failure,
 * with err filled when not NULL; a new reference otherwise.
 */
json_t *prov_json_load(const char *data, size_t len, json_error_t *err);

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
