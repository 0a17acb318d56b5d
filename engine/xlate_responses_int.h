/*
 * xlate_responses_int.h — what the OpenAI Responses dialect's two files
 * share: xlate_responses_request.c (decode_request, encode_request, and the
 * helpers below) and xlate_responses.c (answers, errors, streams and the
 * xl_dialect table that points at the request functions). Not for use
 * outside the dialect's two files; everyone else uses xl_openai_responses
 * (xlate.h).
 */
#ifndef RELAY_ENGINE_XLATE_RESPONSES_INT_H
#define RELAY_ENGINE_XLATE_RESPONSES_INT_H

#include "engine/prov_json.h"
#include "engine/xlate.h"

/* xl_openai_responses.decode_request and .encode_request (contracts in
 * xlate.h's xl_dialect). */
rl_err resp_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                           xl_request *out, rl_buf *why);
rl_err resp_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

/* Appends one zeroed element of size bytes to the pool array *arr of *n
 * elements (both updated) and returns it; NULL when out of memory. Used by
 * both decoders (request turns and parts, answer parts, stream calls). */
void *resp_push(rl_pool *pool, void **arr, size_t *n, size_t size);

/* Appends the "text" members of arr's elements (a reasoning item's
 * summary or content) to b, a blank line between them; b's sticky error
 * says whether it failed. Reasoning items come in requests and answers. */
void resp_join_texts(rl_buf *b, json_t *arr);

/* Appends item (taken) to arr and returns item's "content" array, borrowed
 * from arr; NULL when out of memory. Builds message items of upstream
 * requests and of answers alike. */
json_t *resp_append_with_content(json_t *arr, json_t *item);

#endif
