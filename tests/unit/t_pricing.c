/* Unit tests for engine/pricing and the [pricing] table of engine/config:
 * rows, families of dated and versioned model ids, costs, bad rows, and
 * the shipped relay.ini's table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/pricing.h"
#include "tests/unit/tap.h"

static char dir[] = "/tmp/relay-t-pricing-XXXXXX";

static rl_err load(const char *text, relay_config **cfg, rl_buf *why)
{
    char path[256];
    snprintf(path, sizeof path, "%s/t.ini", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    rl_buf_reset(why);
    rl_err e = config_load(path, cfg, why);
    unlink(path);
    return e;
}

static void family_is(const char *model, const char *want)
{
    char got[64], what[160];
    pricing_family(model, got, sizeof got);
    snprintf(what, sizeof what, "family of %s", model);
    is_str(got, want, what);
}

static const char *price_row(const relay_config *cfg, const char *model)
{
    const model_price *p = pricing_find(cfg, model);
    return p ? p->model : "(none)";
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);

    family_is("gpt-4o-2024-08-06", "gpt-4o");
    family_is("gpt-4o-mini-2024-07-18", "gpt-4o-mini");
    family_is("claude-sonnet-4-5-20250929", "claude-sonnet-4-5");
    family_is("claude-3-5-haiku-latest", "claude-3-5-haiku");
    family_is("gemini-2.0-flash-001", "gemini-2.0-flash");
    family_is("models/gemini-2.5-flash", "gemini-2.5-flash");
    family_is("claude-opus-4-1@20250805", "claude-opus-4-1");
    family_is("gpt-4o", "gpt-4o");
    family_is("o3", "o3");
    family_is("llama3:8b", "llama3:8b");
    family_is("gpt-4-0613", "gpt-4-0613"); /* four digits: not a version suffix */

    is_int(load("[upstream.openai]\ntype = openai\n"
                "[pricing]\n"
                "gpt-4o = 2.50 10.00 1.25\n"
                "gpt-4o-mini = 0.15 0.60\n"
                "local = 0 0\n"
                "claude-sonnet-4-5 = 3 15 0.30 3.75\n",
                &cfg, &why),
           RL_OK, "a [pricing] table loads");
    if (cfg) {
        is_int(cfg->nprices, 4, "four rows");
        is_str(price_row(cfg, "gpt-4o"), "gpt-4o", "an exact id");
        is_str(price_row(cfg, "gpt-4o-2024-08-06"), "gpt-4o", "a dated id: its family");
        is_str(price_row(cfg, "gpt-4o-mini-2024-07-18"), "gpt-4o-mini",
               "a dated id of a longer family: that family, not a shorter prefix");
        is_str(price_row(cfg, "gpt-4o-audio-preview"), "(none)",
               "another model sharing a prefix is not priced by it");
        is_str(price_row(cfg, "claude-3-haiku"), "(none)", "an unknown model has no price");
        is_str(price_row(cfg, ""), "(none)", "no model, no price");
        const model_price *mini = pricing_find(cfg, "gpt-4o-mini");
        ok(mini && mini->cached_input == mini->input, "cached input defaults to the input price");
        ok(mini && mini->cache_write == mini->input, "cache writes default to the input price");

        const model_price *p = pricing_find(cfg, "gpt-4o");
        prov_usage u = {.input = 1000000, .output = 1000000, .cached_input = 0};
        is_int((long long)pricing_cost(p, &u), 12500000000LL, "1M in + 1M out of gpt-4o: $12.50");
        u = (prov_usage){.input = 1000, .output = 100, .cached_input = 400};
        /* 600 x 2.50 + 400 x 1.25 + 100 x 10.00, per million: $0.003 */
        is_int((long long)pricing_cost(p, &u), 3000000LL, "cached input at the cached price");
        u = (prov_usage){.input = -1, .output = -1, .cached_input = -1};
        is_int((long long)pricing_cost(p, &u), 0, "unknown counts cost nothing");
        u = (prov_usage){.input = 10, .output = 0, .cached_input = 50};
        is_int((long long)pricing_cost(p, &u), 12500LL, "more cached than input: capped at input");
        const model_price *sonnet = pricing_find(cfg, "claude-sonnet-4-5-20250929");
        ok(sonnet && sonnet->cache_write == 3.75, "a fourth column: the cache-write price");
        u = (prov_usage){
            .input = 1000000, .output = 0, .cached_input = 200000, .cache_write = 300000};
        /* 500k x 3 + 200k x 0.30 + 300k x 3.75, per million: $2.685 */
        is_int((long long)pricing_cost(sonnet, &u), 2685000000LL,
               "cache writes at the cache-write price, reads at the cached one");
        u = (prov_usage){.input = 100, .output = 0, .cached_input = 60, .cache_write = 90};
        /* writes capped at the 40 input tokens left: 60 x 0.30 + 40 x 3.75 */
        is_int((long long)pricing_cost(sonnet, &u), 168000LL,
               "more written than input left: capped");
        u = (prov_usage){.input = 1000, .output = 100, .cached_input = 400};
        /* 400 x (2.50 - 1.25) per million: $0.0005 */
        is_int((long long)pricing_provider_saving(p, &u), 500000LL,
               "the provider's cache saved (input - cached price) x cached tokens");
        u = (prov_usage){.input = 10, .output = 0, .cached_input = 50};
        is_int((long long)pricing_provider_saving(p, &u), 12500LL,
               "provider saving: more cached than input, capped at input");
        u = (prov_usage){.input = -1, .output = -1, .cached_input = 400};
        is_int((long long)pricing_provider_saving(p, &u), 0,
               "provider saving: unknown input saves nothing");
        u = (prov_usage){.input = 1000, .output = 0, .cached_input = 400};
        is_int((long long)pricing_provider_saving(mini, &u), 0,
               "provider saving: no cached price below input, nothing saved");
        const model_price *local = pricing_find(cfg, "local");
        u = (prov_usage){.input = 5000, .output = 5000, .cached_input = 0};
        ok(local && pricing_cost(local, &u) == 0, "a free model costs zero (and is priced)");
        config_free(cfg);
    }

    const char *bad[] = {"x = 1\n",    "x = 1 2 3 4 5\n",    "x = a b\n",  "x = -1 2\n",
                         "x = 1 2x\n", "x = 1 2\nx = 3 4\n", "x = nan 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], what[160];
        snprintf(text, sizeof text, "[upstream.openai]\ntype = openai\n[pricing]\n%s", bad[i]);
        snprintf(what, sizeof what, "a bad row is refused: %.*s", (int)strcspn(bad[i], "\n"),
                 bad[i]);
        is_int(load(text, &cfg, &why), RL_CONFIG, what);
        ok(strstr(why.data ? why.data : "", "[pricing] x") != NULL, "the reason names the row");
    }

    /* The shipped table: every row parses and the common models are priced. */
    rl_buf_reset(&why);
    is_int(config_load("relay.ini", &cfg, &why), RL_OK, "the shipped relay.ini loads");
    if (cfg) {
        ok(cfg->nprices >= 30, "it prices the common models");
        const char *models[] = {"gpt-4o-2024-08-06",
                                "gpt-4o-mini",
                                "gpt-4.1",
                                "claude-sonnet-4-5-20250929",
                                "claude-3-5-haiku-latest",
                                "gemini-2.5-flash",
                                "gemini-2.0-flash-001"};
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
            char what[160];
            snprintf(what, sizeof what, "the shipped table prices %s", models[i]);
            ok(pricing_find(cfg, models[i]) != NULL, what);
        }
        config_free(cfg);
    }
    rl_buf_release(&why);
    rmdir(dir);
    return tap_done();
}
