/*
 * xlate_openai_chat_int.h — what the three files of the OpenAI Chat
 * Completions dialect share (xlate_openai_chat.c: answers, errors, streams
 * and the xl_openai_chat table; xlate_openai_chat_request.c: requests
 * decoded; xlate_openai_chat_request_encode.c: requests encoded). Not for
 * use outside the dialect's files: everyone else reaches the dialect
 * through xl_openai_chat (xlate.h).
 */
#ifndef RELAY_ENGINE_XLATE_OPENAI_CHAT_INT_H
#define RELAY_ENGINE_XLATE_OPENAI_CHAT_INT_H

#include "engine/xlate.h"

/* Reals as people write them (0.7, not 0.69999999999999996): 15
 * significant digits print any value a client wrote with up to 15 as it
 * was written, and read back as the same double. (jansson's flags: only
 * the two .c files, which include it, expand this.) */
#define CHAT_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* xl_dialect.decode_request (xlate.h states the contract), in
 * xlate_openai_chat_request.c. */
rl_err chat_decode_request(const char *body, size_t len, const char *path_model, rl_pool *pool,
                           xl_request *out, rl_buf *why);

/* xl_dialect.encode_request (xlate.h states the contract), in
 * xlate_openai_chat_request_encode.c. */
rl_err chat_encode_request(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why);

/* Writes the refusal's text to why (sticky: the engine checks why before
 * use) and returns RL_BAD_REQUEST. In xlate_openai_chat_request.c; the
 * encoder words its one refusal with it too. */
rl_err chat_refuse(rl_buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A pool copy of s into *out (NULL when s is NULL); RL_NOMEM when s is not
 * NULL and the copy failed. In xlate_openai_chat.c. */
rl_err chat_dup_str(rl_pool *pool, const char *s, const char **out);

#endif
