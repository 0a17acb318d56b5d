/*
 * pricing.c — model prices and costs (see pricing.h).
 */
#include "engine/pricing.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* Whether s (of length n) is all digits. */
static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return n > 0;
}

/* Length of model without a trailing version or date: -YYYY-MM-DD,
 * -YYYYMMDD, @YYYYMMDD (Vertex), -NNN (Gemini's -001), -latest. */
static size_t family_len(const char *m, size_t n)
{
    const char *at = memchr(m, '@', n);
    if (at)
        return (size_t)(at - m);
    if (n > 7 && strcmp(m + n - 7, "-latest") == 0)
        return n - 7;
    /* -YYYY-MM-DD */
    if (n > 11 && m[n - 11] == '-' && m[n - 6] == '-' && m[n - 3] == '-' &&
        all_digits(m + n - 10, 4) && all_digits(m + n - 5, 2) && all_digits(m + n - 2, 2))
        return n - 11;
    /* -YYYYMMDD or -NNN */
    const char *dash = NULL;
    for (size_t i = n; i-- > 0;)
        if (m[i] == '-') {
            dash = m + i;
            break;
        }
    if (dash) {
        size_t tail = n - (size_t)(dash - m) - 1;
        if ((tail == 8 || tail == 3) && all_digits(dash + 1, tail))
            return (size_t)(dash - m);
    }
    return n;
}

void pricing_family(const char *model, char *out, size_t cap)
{
    if (!cap)
        return;
    const char *slash = strrchr(model, '/'); /* models/gemini-..., publishers/.../models/... */
    const char *m = slash ? slash + 1 : model;
    size_t n = family_len(m, strlen(m));
    if (n >= cap)
        n = cap - 1;
    memcpy(out, m, n);
    out[n] = '\0';
}

static const model_price *find_exact(const relay_config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->nprices; i++)
        if (strcmp(cfg->prices[i].model, model) == 0)
            return &cfg->prices[i];
    return NULL;
}

const model_price *pricing_find(const relay_config *cfg, const char *model)
{
    if (!model || !model[0])
        return NULL;
    const model_price *p = find_exact(cfg, model);
    if (p)
        return p;
    char family[256];
    pricing_family(model, family, sizeof family);
    return find_exact(cfg, family);
}

int pricing_parse_usd(const char *s, uint64_t *nusd)
{
    uint64_t whole = 0, frac = 0;
    int digits = 0, decimals = 0, dot = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.' && !dot) {
            dot = 1;
        } else if (isdigit((unsigned char)*p)) {
            digits++;
            if (dot) {
                if (++decimals > 9)
                    return -1;
                frac = frac * 10 + (uint64_t)(*p - '0');
            } else {
                if (whole > UINT64_MAX / 1000000000 / 10)
                    return -1;
                whole = whole * 10 + (uint64_t)(*p - '0');
            }
        } else {
            return -1;
        }
    }
    if (!digits)
        return -1;
    while (decimals++ < 9)
        frac *= 10;
    *nusd = whole * 1000000000 + frac;
    return 0;
}

uint64_t pricing_cost(const model_price *price, const prov_usage *usage)
{
    double in = usage->input > 0 ? (double)usage->input : 0;
    double cached = usage->cached_input > 0 ? (double)usage->cached_input : 0;
    double written = usage->cache_write > 0 ? (double)usage->cache_write : 0;
    double out = usage->output > 0 ? (double)usage->output : 0;
    /* Both are parts of input; an answer that says otherwise is priced
     * within what it says it read. */
    if (cached > in)
        cached = in;
    if (written > in - cached)
        written = in - cached;
    /* A price is USD per million tokens: per token, price * 1e-6 USD,
     * which is price * 1e3 nano-USD. */
    double nusd = ((in - cached - written) * price->input + cached * price->cached_input +
                   written * price->cache_write + out * price->output) *
                  1e3;
    return nusd > 0 ? (uint64_t)llround(nusd) : 0;
}

uint64_t pricing_provider_saving(const model_price *price, const prov_usage *usage)
{
    double cached = usage->cached_input > 0 ? (double)usage->cached_input : 0;
    double in = usage->input > 0 ? (double)usage->input : 0;
    /* Within what the answer says it read, as pricing_cost counts it. */
    if (cached > in)
        cached = in;
    double nusd = cached * (price->input - price->cached_input) * 1e3;
    return nusd > 0 ? (uint64_t)llround(nusd) : 0;
}
