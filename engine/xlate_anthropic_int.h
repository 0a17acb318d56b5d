/*
 * xlate_anthropic_int.h — what the Anthropic Messages dialect's two files
 * share; not for use outside the dialect's two files:
 * xlate_anthropic_request.c (requests: read into the model and written
 * from it) and xlate_anthropic.c (answers, errors, streams, and the
 * xl_dialect xl_anthropic, whose table points to the request functions
 * below).
 *
 * The seam is crossed twice: the dialect table calls the request side,
 * and the answer decoder reads an answer's content blocks with the
 * request's block readers (an answer's blocks have the shapes of an
 * assistant turn's), so the reader state and table are here. jansson's
 * types appear because those readers take its values: the header is
 * engine-internal (tests/check.sh INTERNAL), like prov_json.h.
 *
 * Threads: pure functions; each call uses only its arguments.
 */
#ifndef RELAY_ENGINE_XLATE_ANTHROPIC_INT_H
#define RELAY_ENGINE_XLATE_ANTHROPIC_INT_H

#include <jansson.h>

#include "engine/xlate.h"

/* ---- in xlate_anthropic_request.c --------------------------------------- */

/* xl_dialect.decode_request and .encode_request of xl_anthropic: the
 * contracts are xlate.h's. */
rl_err anthropic_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                                xl_request *out, rl_buf *why);
rl_err anthropic_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

/* A request being read: strings are copied into pool, a refusal's reason
 * is appended to why, req is filled; root is the parsed body (NULL when
 * an answer's block is read through anth_block_types). All borrowed. */
typedef struct anth_dec {
    rl_pool *pool;
    rl_buf *why;
    xl_request *req;
    json_t *root;
} anth_dec;

/* Reads content block b (field names it for the 400) into out: RL_OK,
 * RL_BAD_REQUEST with the reason in d->why, RL_NOMEM. */
typedef rl_err (*anth_block_fn)(anth_dec *d, json_t *b, const char *field, xl_part *out);

/* The content block types a turn may hold, with their readers. */
#define ANTH_BLOCK_TYPES 6
typedef struct anth_block_type {
    const char *type;
    anth_block_fn read;
    int role; /* XL_ROLE_USER / XL_ROLE_ASSISTANT, or -1 */
} anth_block_type;
extern const anth_block_type anth_block_types[ANTH_BLOCK_TYPES];

/* ---- in xlate_anthropic.c ----------------------------------------------- */

/* A pool copy of a JSON string (NULL only when out of memory). */
const char *anth_pstr(rl_pool *pool, const json_t *s);

/* Parses JSON text the model holds (arguments, a schema), which must be
 * an object: a new reference, or NULL with *err set: RL_NOMEM, or bad
 * for anything else. */
json_t *anth_load_object(const char *text, rl_err bad, rl_err *err);

#endif
