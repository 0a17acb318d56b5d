/* libFuzzer target: every provider adapter and every stream framing on
 * hostile bytes. The first byte picks an adapter and a framing; the rest is
 * a request body, a stored stream and a stored body at once. Nothing may
 * crash or leak; a stream that assembles must render back into a stream
 * that assembles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prov.h"

static const prov_ops *const adapters[] = {&prov_openai, &prov_anthropic, &prov_gemini,
                                           &prov_ollama};
static const char *const endpoints[][3] = {
    {"chat.completions", "responses", "embeddings"},
    {"messages", "messages.count_tokens", "messages"},
    {"generateContent", "countTokens", "embedContent"},
    {"chat", "generate", "embed"},
};
static const char *const paths[] = {"/v1/chat/completions", "/v1/messages",
                                    "/v1beta/models/g:streamGenerateContent", "/api/chat"};

static int ignore(void *ctx, const char *event, const char *data, size_t len)
{
    (void)ctx;
    (void)event;
    (void)data;
    (void)len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    const char *text = (const char *)data + 1;
    size--;
    const prov_ops *P = adapters[pick % 4];
    frame_kind framing = (frame_kind)((pick / 4) % 3);

    frame_each(framing, text, size, ignore, NULL);

    rl_buf a, b, c, d;
    rl_buf_init(&a, 1 << 20);
    rl_buf_init(&b, 1 << 20);
    rl_buf_init(&c, 1 << 20);
    rl_buf_init(&d, 1 << 20);
    prov_info info;
    rl_header h[] = {{"anthropic-version", "2023-06-01"}, {"x-api-key", "k"}};
    prov_request r = {.endpoint = endpoints[pick % 4][(pick / 12) % 3],
                      .method = "POST",
                      .path = paths[pick % 4],
                      .query = "alt=sse&key=x",
                      .body = text,
                      .body_len = size,
                      .headers = h,
                      .nheaders = 2};
    char buf[64];
    P->credential(&r, buf, sizeof buf);
    P->inspect(&r, &info, &a, &b, &c);
    rl_buf_reset(&a);

    if (P->stream_to_body(framing, text, size, &a) == RL_OK) {
        memset(&info, 0, sizeof info);
        info.framing = framing;
        info.stream = 1;
        if (P->body_to_stream(a.data, a.len, &info, &d) == RL_OK) {
            rl_buf_reset(&c);
            /* Only Gemini streams in more than one framing: OpenAI and
             * Anthropic always render SSE, Ollama NDJSON. */
            frame_kind back = P == &prov_gemini   ? framing
                              : P == &prov_ollama ? FRAME_NDJSON
                                                  : FRAME_SSE;
            if (P->stream_to_body(back, d.data, d.len, &c) != RL_OK)
                abort();
        }
    }
    prov_usage u;
    P->usage(ENTRY_STREAM, framing, text, size, &u);
    P->usage(ENTRY_BODY, framing, text, size, &u);
    P->body_complete(text, size);
    P->classify_event("message", text, size);
    P->classify_event(NULL, text, size);
    rl_buf_reset(&a);
    P->error_event(&a, framing, 1, RL_UPSTREAM_CUT, NULL);

    rl_buf_release(&a);
    rl_buf_release(&b);
    rl_buf_release(&c);
    rl_buf_release(&d);
    return 0;
}
