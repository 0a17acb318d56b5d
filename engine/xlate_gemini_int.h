/*
 * xlate_gemini_int.h — what the Gemini dialect's files share: the request
 * functions the xl_gemini table (xlate_gemini.c) points to, and the helpers
 * of xlate_gemini.c that the request side uses too. Not for use outside
 * the dialect's files (xlate_gemini.c, xlate_gemini_request.c,
 * xlate_gemini_request_encode.c). Threads: pure (xlate.h).
 *
 * Internal (tests/check.sh INTERNAL), so jansson's types may appear here:
 * the helpers take and give json_t. They carry the gem_ prefix because,
 * no longer static, they share librelay.a's one namespace with the other
 * dialects' helpers (xlate_ollama.c has a static pool_str of its own).
 */
#ifndef RELAY_ENGINE_XLATE_GEMINI_INT_H
#define RELAY_ENGINE_XLATE_GEMINI_INT_H

#include "engine/prov_json.h"
#include "engine/xlate.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* xl_dialect.decode_request (xlate_gemini_request.c). */
rl_err gemini_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                             xl_request *out, rl_buf *why);

/* xl_dialect.encode_request (xlate_gemini_request_encode.c). */
rl_err gemini_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

/* j's compact text, copied into pool; NULL when out of memory. */
const char *gem_pool_dump(rl_pool *pool, json_t *j);

/* A JSON string's value copied into pool (NULL when out of memory). */
const char *gem_pool_str(rl_pool *pool, json_t *s);

/* A JSON object text -> new reference (NULL text or "": {}); *err
 * RL_BAD_REQUEST when it is not an object, RL_NOMEM. */
json_t *gem_object_of(const char *text, rl_err *err);

/* Appends parts, as Gemini's, to the array `to`; RL_BAD_REQUEST (a call's
 * arguments that are not an object), RL_NOMEM. */
rl_err gem_put_parts(json_t *to, const xl_part *parts, size_t n);

#endif
