/* libFuzzer target: the SSE parser, fed the input split at a point taken
 * from the first byte. Whatever the split, the events must be the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sse.h"

typedef struct digest {
    uint64_t h;
    size_t n;
} digest;

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
    digest *d = ctx;
    for (const char *p = event; *p; p++)
        d->h = d->h * 131 + (unsigned char)*p;
    for (size_t i = 0; i < len; i++)
        d->h = d->h * 131 + (unsigned char)data[i];
    d->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = data[0] % size;
    const char *text = (const char *)data + 1;
    size--;
    if (cut > size)
        cut = size;

    digest whole = {0, 0}, split = {0, 0};
    sse_parser p;
    sse_init(&p, 1 << 16, on_event, &whole);
    rl_err a = sse_feed(&p, text, size);
    sse_release(&p);

    sse_init(&p, 1 << 16, on_event, &split);
    rl_err b = sse_feed(&p, text, cut);
    if (b == RL_OK)
        b = sse_feed(&p, text + cut, size - cut);
    sse_release(&p);

    if (a == RL_OK && b == RL_OK && (whole.h != split.h || whole.n != split.n))
        abort();
    return 0;
}
