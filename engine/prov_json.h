/*
 * prov_json.h — jansson helpers shared by the provider adapters (internal
 * to engine/prov_*.c: the JSON library stays out of prov.h).
 */
#ifndef RELAY_ENGINE_PROV_JSON_H
#define RELAY_ENGINE_PROV_JSON_H

#include <jansson.h>

#include "engine/prov.h"
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
 * non-recursive scan that refuses nesting deeper than PROV_JSON_MAX_DEPTH.
 * A new reference, or NULL with err filled (err NULL: the caller does not
 * care why), its text for the client (err->position the byte) and
 * json_error_code(err) saying why: json_error_stack_overflow past the
 * depth limit, json_error_out_of_memory when the parse ran out of memory
 * (not the document's fault: see prov_json_failed), jansson's own code
 * otherwise.
 */
json_t *prov_json_load(const char *data, size_t len, json_error_t *err);

/* What a failed prov_json_load means for its caller: RL_NOMEM when it ran
 * out of memory, else invalid (the caller's word for JSON it cannot use:
 * RL_BAD_JSON for a request, RL_UPSTREAM_PROTOCOL for an answer). */
rl_err prov_json_failed(const json_error_t *err, rl_err invalid);

/* For the usage readers, after prov_json_load failed with err: out of
 * memory makes u lost (prov.h) and is RL_NOMEM; JSON that cannot be read
 * leaves u as it is (its usage is unknown) and is RL_OK. */
rl_err prov_usage_failed(prov_usage *u, const json_error_t *err);

/* j when every jansson call that built it succeeded (their failures or-ed
 * into failed: json_object_set_new and the like return -1); else NULL and
 * j dropped. A document missing a member is never rendered as if whole. */
json_t *prov_json_check(json_t *j, int failed);

/* A shallow copy of the object j (its members shared), or NULL when j is
 * not an object or out of memory. Instead of json_copy, which (jansson
 * 2.14, value.c) leaves out a member it could not add and returns the rest
 * as the copy. (json_deep_copy, json_object_update and json_array_extend
 * do report such a failure.) */
json_t *prov_json_copy(json_t *j);

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

/* max_output (prov.h) from a positive integer cap (-1 when absent or not
 * positive) and a count of choices (absent or below 1 counts as 1). */
int64_t prov_max_output(int64_t cap, int64_t choices);

#endif
