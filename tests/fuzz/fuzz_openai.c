/* libFuzzer target: the OpenAI adapter on hostile request bodies and
 * upstream streams. Nothing may crash or leak; a stream that assembles must
 * render back into a stream that assembles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/policy.h"
#include "engine/prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    rl_buf a, b, c;
    rl_buf_init(&a, 1 << 20);
    rl_buf_init(&b, 1 << 20);
    rl_buf_init(&c, 1 << 20);
    prov_info info;

    prov_request r = {.endpoint = "chat.completions",
                      .method = "POST",
                      .path = "/v1/chat/completions",
                      .query = "",
                      .body = text,
                      .body_len = size};
    prov_openai.inspect(&r, &info, &a, &c, &b);
    rl_buf_reset(&a);
    rl_buf_reset(&b);
    rl_buf_reset(&c);

    if (prov_openai.stream_to_body(FRAME_SSE, text, size, &a) == RL_OK) {
        info.include_usage = 1;
        info.framing = FRAME_SSE;
        if (prov_openai.body_to_stream(a.data, a.len, &info, &b) == RL_OK &&
            prov_openai.stream_to_body(FRAME_SSE, b.data, b.len, &c) != RL_OK)
            abort();
    }
    prov_usage u;
    prov_openai.usage(ENTRY_STREAM, FRAME_SSE, text, size, &u);
    prov_openai.usage(ENTRY_BODY, FRAME_SSE, text, size, &u);
    prov_openai.body_complete(text, size);
    prov_openai.classify_event("message", text, size);

    /* Cache-Control parsing on the same bytes, as a C string. */
    char *cc = malloc(size + 1);
    if (cc) {
        memcpy(cc, text, size);
        cc[size] = '\0';
        cache_controls ctl;
        const char *why;
        policy_parse(cc, cc, cc, &ctl, &why);
        free(cc);
    }
    rl_buf_release(&a);
    rl_buf_release(&b);
    rl_buf_release(&c);
    return 0;
}
