/* libFuzzer target: FastCGI parameters (fcgi/params.c) on hostile bytes.
 * The input is split at newlines into "NAME=value" parameters. Whatever
 * they hold, the request has a method, a path without '?' when it came
 * from REQUEST_URI, and header names in lower case without underscores. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/params.h"

#define MAX_PARAMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *envp[MAX_PARAMS + 1];
    size_t n = 0;
    for (char *p = text, *nl; n < MAX_PARAMS && p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        envp[n++] = p;
    }
    envp[n] = NULL;

    rl_pool *pool = rl_pool_new();
    engine_request req = {.pool = pool};
    if (pool && params_parse(envp, &req) == 0) {
        if (!req.method || !req.path || !req.query)
            abort();
        int from_uri = 0;
        for (size_t i = 0; i < n; i++)
            from_uri |= strncmp(envp[i], "REQUEST_URI=", 12) == 0;
        if (from_uri && strchr(req.path, '?'))
            abort();
        for (size_t i = 0; i < req.nheaders; i++)
            for (const char *c = req.headers[i].name; *c; c++)
                if (*c == '_' || (*c >= 'A' && *c <= 'Z'))
                    abort();
    }
    rl_pool_free(pool);
    free(text);
    return 0;
}
