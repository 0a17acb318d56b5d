#include "engine/route.h"

#include <string.h>

/* The cacheable endpoints of the OpenAI format. */
static const struct {
    const char *path;
    const char *endpoint;
} openai_endpoints[] = {
    {"/v1/chat/completions", "chat.completions"},
};

void route_match(const relay_config *cfg, const char *path, route *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(path, "/relay/health") == 0) {
        out->kind = ROUTE_HEALTH;
        return;
    }
    if (strncmp(path, "/v1/", 4) == 0) {
        const upstream_config *up = config_upstream_of_type(cfg, UPSTREAM_TYPE_OPENAI);
        if (!up)
            return;
        out->kind = ROUTE_API;
        out->upstream = up;
        out->prov = &prov_openai;
        for (size_t i = 0; i < sizeof openai_endpoints / sizeof openai_endpoints[0]; i++)
            if (strcmp(path, openai_endpoints[i].path) == 0)
                out->endpoint = openai_endpoints[i].endpoint;
    }
}
