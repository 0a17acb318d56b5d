/*
 * xlate_ollama_int.h — what the three files of the Ollama dialect share
 * (xlate_ollama_request.c: client requests in; xlate_ollama_request_encode.c:
 * upstream requests out; xlate_ollama.c: answers, errors, NDJSON streams and
 * the xl_ollama table). Not for use outside the dialect's three files.
 * Same contracts as xlate.h: no state, any thread; text returned is
 * borrowed from the pool given.
 */
#ifndef RELAY_ENGINE_XLATE_OLLAMA_INT_H
#define RELAY_ENGINE_XLATE_OLLAMA_INT_H

#include "engine/prov_json.h"
#include "engine/xlate.h"

/* How the JSON the files write is rendered: insertion order (Ollama's own
 * field order) and reals with 15 digits, so 0.7 is written "0.7" and not
 * jansson's default 17 digits "0.69999999999999996". */
#define OLLAMA_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* xl_dialect.decode_request of xl_ollama (xlate_ollama_request.c;
 * contract in xlate.h). */
rl_err ollama_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                             xl_request *out, rl_buf *why);

/* xl_dialect.encode_request of xl_ollama (xlate_ollama_request_encode.c;
 * contract in xlate.h). */
rl_err ollama_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

/* xlate_ollama.c: v's compact JSON text, copied into pool; NULL when out of
 * memory. v is borrowed. */
const char *ollama_json_text(rl_pool *pool, json_t *v);

/* xlate_ollama_request_encode.c, also used to write an answer's message: */

/* The TEXT (or THINKING) parts of a turn joined with "\n" as a new JSON
 * string; NULL when out of memory. */
json_t *ollama_joined(const xl_message *m, xl_part_kind kind);

/* 1 when the turn has a non-redacted part of kind with text. */
int ollama_has_kind(const xl_message *m, xl_part_kind kind);

/* A TOOL_CALL part as an Ollama tool call (a new reference); NULL with
 * *err RL_BAD_REQUEST (its arguments are not a JSON object) or RL_NOMEM. */
json_t *ollama_enc_tool_call(const xl_part *p, int index, rl_err *err);

#endif
