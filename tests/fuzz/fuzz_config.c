/* libFuzzer target: relay.ini on hostile bytes. The input is written to a
 * file in /dev/shm (config_load reads a path, as inih does) and loaded;
 * a configuration that loads must answer every lookup relay-admin config
 * makes, route every kind of path, and price any model, without crashing
 * or leaking; one that does not load must say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/pricing.h"
#include "engine/route.h"

static const char *const lookups[] = {
    "fcgi.listen",
    "fcgi.workers",
    "fcgi.max_body",
    "store.home",
    "store.key_file",
    "store.max_bytes",
    "cache.policy",
    "cache.scope",
    "coalesce.mode",
    "admin.token_file",
    "metrics.access",
    "log.level",
    "cluster.site",
    "cluster.home",
    "cluster.ack_policy",
    "upstream.openai.base_url",
    "upstream.a.mount",
    "pricing.gpt-4o",
    "nosuch.key",
    "",
    ".",
};
static const char *const paths[] = {
    "/v1/chat/completions",
    "/v1/messages",
    "/v1beta/models/g:streamGenerateContent",
    "/api/chat",
    "/openai/deployments/d/chat/completions",
    "/relay/health",
    "/relay/admin/api/stats",
    "/a/v1/chat/completions",
    "/claude/v1/messages",
    "/",
    "",
};
static const char *const models[] = {
    "gpt-4o", "gpt-4o-2024-08-06", "claude-sonnet-4-5", "gemini-2.5-flash", "", "-", "x-2024"};

static char file[64];

static void remove_file(void)
{
    unlink(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!file[0]) {
        snprintf(file, sizeof file, "/dev/shm/relay-fuzz-config-%ld.ini", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(file, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    rl_err e = config_load(file, &cfg, &why);
    if (e == RL_OK) {
        if (!cfg || cfg->nupstreams == 0)
            abort(); /* loaded, yet nowhere to send requests */
        for (size_t i = 0; i < sizeof lookups / sizeof lookups[0]; i++) {
            rl_buf out;
            rl_buf_init(&out, 0);
            (void)config_get_text(cfg, lookups[i], &out);
            rl_buf_release(&out);
        }
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
            route r;
            route_match(cfg, paths[i], &r);
            if (r.kind == ROUTE_API && (!r.upstream || !r.prov || !r.path))
                abort(); /* an API route always names where it goes */
        }
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
            char family[128];
            pricing_family(models[i], family, sizeof family);
            (void)pricing_find(cfg, models[i]);
        }
        config_free(cfg);
    } else if (why.len == 0) {
        abort(); /* a refusal always says why */
    }
    rl_buf_release(&why);
    return 0;
}
