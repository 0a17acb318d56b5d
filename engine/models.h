/*
 * models.h — routing by the model a request names ([models] in relay.ini)
 * and which client formats an upstream serves ([upstream.X] accepts).
 *
 * Routing happens twice: by the path first (engine/route.h: the first
 * upstream of the path's kind, else the first that accepts the path's
 * format), then, once the body is read and the model known, by the first
 * [models] line whose pattern matches the model. A request whose format
 * the chosen upstream neither speaks nor accepts is refused with a 400 in
 * the client's format, naming the upstream and `accepts`: Relay never
 * sends an upstream a format it was not told it takes.
 *
 *   [models]
 *   claude-* = claude        ; an [upstream.NAME]'s name ...
 *   gpt-*    = openai        ; ... or a type: its first upstream
 *   local/'*' = ollama      ; PREFIX/ then '*': PREFIX/ is removed upstream
 *                            ; (written local/ and a star; C comments cannot show it)
 *
 * Threads: models_route, models_serves and models_glob are pure functions
 * of their arguments (the configuration is immutable); models_reroute
 * works on one request's exchange, on its thread.
 */
#ifndef RELAY_ENGINE_MODELS_H
#define RELAY_ENGINE_MODELS_H

#include "engine/config.h"
#include "engine/prov.h"

struct exchange;

/* Where a request for a model goes. */
typedef struct models_choice {
    const upstream_config *upstream;
    /* The model to name upstream: the client's, or what follows the
     * "PREFIX/" of a line "PREFIX/" + '*' (points into the client's string). */
    const char *model;
    const model_route *rule; /* the [models] line that matched, NULL: none */
} models_choice;

/* 1 when s matches pattern, whose '*' stands for any run of characters
 * (none included, '/' included); every other character stands for itself
 * (case counts: model names are case-sensitive upstream). */
int models_glob(const char *pattern, const char *s);

/* Routes model (the client's, "" when the request names none): the first
 * [models] line matching it, else by_path (routing by the path) with the
 * model unchanged. */
void models_route(const relay_config *cfg, const char *model, const upstream_config *by_path,
                  models_choice *out);

/* 1 when up serves requests in client format `format` (prov_ops.format):
 * its own wire format, or one its `accepts` lists. */
int models_serves(const upstream_config *up, const char *format);

/* The bit of wire_format `format` (prov_ops.format), 0 when unknown. */
unsigned models_format_bit(const char *format);

/*
 * The request flow's hook, once x->info.model is known (engine/engine.c,
 * before the budget checks and the cache key, which both depend on the
 * upstream): moves x to the upstream its model routes to, checks that
 * upstream serves the client's format, re-checks a Relay client token
 * against the new upstream (it may be limited to some upstreams, and the
 * key Relay holds is the new upstream's), and, when the model sent
 * upstream differs from the client's, sets x->upstream_model and — when no
 * translation happens (the upstream speaks the client's format) — rewrites
 * the body's "model" (or a Gemini path's model) for the upstream.
 * 0 to go on; -1 when it answered the client (a refusal, out of memory).
 */
int models_reroute(struct exchange *x);

#endif
