/*
 * pricing.h — engine-internal: what an answer costs, from the [pricing]
 * table of relay.ini (USD per million input, output, cached-input and
 * cache-write tokens).
 *
 * A model matches its row exactly, or through its family: a dated id
 * (gpt-4o-2024-08-06, claude-sonnet-4-5-20250929, gemini-2.0-flash-001) or
 * a path-style one (models/gemini-2.5-flash) is looked up without the date,
 * the version or the path. A model with no row has no price: callers show
 * its tokens and flag it, never price it at zero.
 *
 * Money is counted in nano-USD (1e-9 USD) integers, so that shared
 * counters add exactly: a token of a $0.02-per-million model is 20.
 */
#ifndef RELAY_ENGINE_PRICING_H
#define RELAY_ENGINE_PRICING_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "engine/prov.h"

/* The row for model, or NULL when it has none. */
const model_price *pricing_find(const relay_config *cfg, const char *model);

/* The family name pricing_find looks up last for model: writes at most
 * cap bytes (NUL included) to out. */
void pricing_family(const char *model, char *out, size_t cap);

/* What usage costs at price, in nano-USD (unknown counts, -1, are 0;
 * cached input at the cached price, cache writes at the cache-write
 * price, the rest of the input at the input price). */
uint64_t pricing_cost(const model_price *price, const prov_usage *usage);

/* What the provider's own prompt cache saved on usage at price, in
 * nano-USD: its cached input tokens at the input price less the cached
 * price ((input - cached_input) x cached tokens). 0 when the answer read
 * nothing from that cache, or the row prices cached input at or above
 * input. Counted apart from Relay's own savings (stats.h). */
uint64_t pricing_provider_saving(const model_price *price, const prov_usage *usage);

/* Parses an amount of USD written in decimal ("50", "0.10", "12.5") into
 * nano-USD, exactly (no floating point: "0.10" is 100000000). 0, or -1 for
 * anything else: a sign, an exponent, more than 9 decimals, more than
 * about 18 billion USD. */
int pricing_parse_usd(const char *s, uint64_t *nusd);

#endif
