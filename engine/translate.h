/*
 * translate.h — engine-internal: an upstream call whose upstream speaks
 * another wire format than the client (issue 17).
 *
 * The client's request is decoded once into the common model (xlate.h)
 * and encoded for each upstream the call tries (a fallback may speak yet
 * another format). The upstream's answer is translated as it arrives,
 * inside the upstream handler: the rest of the engine (framing, cache
 * entries, followers, usage, error events) only ever sees the client's
 * format, so a translated answer is stored, replayed and shared exactly
 * like an untranslated one.
 *
 * Threads: the request's own. Everything is in the request's pool.
 */
#ifndef RELAY_ENGINE_TRANSLATE_H
#define RELAY_ENGINE_TRANSLATE_H

#include "engine/exchange.h"
#include "engine/upstream.h"
#include "engine/xlate.h"

typedef struct translate translate;

/* The dialect of xl_dialect_id id. */
const xl_dialect *translate_dialect(xl_dialect_id id);

/* The dialect a client speaks on this routed endpoint (prov.h's endpoint
 * names), or -1 when the endpoint is not one Relay translates
 * (embeddings, token counts, legacy completions, model lists). */
int translate_client_dialect(const prov_ops *prov, const char *endpoint);

/* The dialect Relay speaks to an upstream of this type (OpenAI's kinds:
 * Chat Completions, which every OpenAI-compatible server has). */
xl_dialect_id translate_upstream_dialect(upstream_type type);

/* Whether a call of x to up is translated: up's wire format is not the
 * client's. */
int translate_needed(const exchange *x, const upstream_config *up);

/*
 * Prepares the call of x to up: decodes x's request (once per exchange,
 * kept in x->xl), checks it against up's dialect and encodes it; fills
 * *body, *len with the upstream's body and *path with the path and query
 * to append to up's base_url (all in x's pool; prepared again for the
 * same upstream, the request encoded last is given back). RL_BAD_REQUEST with the
 * client's message in why when the request cannot be translated (a field
 * named), RL_NOMEM.
 */
rl_err translate_prepare(exchange *x, const upstream_config *up, const char **body, size_t *len,
                         const char **path, rl_buf *why);

/* The handler to give upstream_perform for a translated call: it reads
 * the upstream's answer in up's format and hands inner the client's (a
 * stream event by event as it comes, a body or an error whole once it
 * ended: see translate_finish). Resets the translation state for a new
 * attempt. */
void translate_handler(exchange *x, const upstream_config *up, const upstream_handler *inner,
                       upstream_handler *out);

/* After upstream_perform returned err: hands inner what the answer left
 * (a whole body translated, or a stream's last events). Returns err, or
 * RL_UPSTREAM_PROTOCOL when a successful body could not be read. */
rl_err translate_finish(exchange *x, rl_err err);

/* Whether a client header goes to an upstream of another format: not the
 * client format's own (anthropic-*, openai-*, x-goog-*), nor the body's
 * type or the accepted types, which translate_upstream_headers sets. */
int translate_forwards_header(const char *name);

/* Appends to h (room for TRANSLATE_MAX_HEADERS) the headers a translated
 * call to up needs: content-type, and anthropic-version for Anthropic.
 * Returns how many; the values are static. */
#define TRANSLATE_MAX_HEADERS 2
size_t translate_upstream_headers(const upstream_config *up, rl_header *h);

/* The endpoint name (prov.h) of the translated call to up, for what keys
 * on it upstream (promptcache.h). */
const char *translate_upstream_endpoint(const upstream_config *up);

#endif
