/*
 * models_list.h — GET /v1/models (OpenAI's shape, or Anthropic's when the
 * request carries anthropic-version or x-api-key) and GET /v1beta/models
 * (Gemini's) answered with every model a client can reach through Relay,
 * once routing by model or translation makes more than one upstream's
 * list matter.
 *
 * The upstreams listed: the path's own (engine/route.h) and every
 * [models] target, those that serve the client's format (models.h). For
 * each, its own list is fetched in its own format (OpenAI /v1/models,
 * Anthropic /v1/models, Gemini /v1beta/models, Ollama /api/tags) and kept
 * in the cache like any model list (at most 300 s, and the upstream's
 * max_ttl), per upstream and credential scope. Listed are its models
 * that route back to it (with a "PREFIX/" added where a [models] line
 * "PREFIX/" + star routes there), then the literal (star-free) [models]
 * patterns, each id once, in that order.
 *
 * Nothing changes when there is nothing to merge: without [models], a
 * list whose upstream speaks the client's shape is forwarded as before.
 *
 * Threads: on the request's thread, with its worker's upstream client.
 */
#ifndef RELAY_ENGINE_MODELS_LIST_H
#define RELAY_ENGINE_MODELS_LIST_H

struct exchange;

/* 1 when x asks for a model list that is merged (see above), else 0 (x
 * goes on as before, untouched). Called before the credential is read:
 * it sets x->prov to the shape asked for (an Anthropic client's x-api-key
 * is read as such on /v1/models) and x->rt.upstream to the first upstream
 * serving that shape (what a Relay client token is checked against). */
int models_list_claim(struct exchange *x);

/* Answers a claimed x: the merged list, or an error in the client's
 * format. credential: the client's (engine.c read it), NULL when none. */
void models_list_serve(struct exchange *x, const char *credential);

#endif
