/* libFuzzer target: the translators between wire formats (engine/xlate_*.c,
 * issue 17) on hostile bytes, called the way engine/translate.c calls them
 * (translate.c itself drags in the engine, so the dialects are called
 * directly).
 *
 * The first byte chooses: dialect = byte % 5 (xl_dialect_id), direction =
 * (byte / 5) % 4, and flags = byte / 20 (bit 0: the client asked for the
 * usage chunk, bit 1: a Gemini client streams a JSON array instead of SSE,
 * bit 2: a Gemini path names the model / the request streams). The rest is
 *   0 request: decode_request, then xlate_pair_tool_results, and for every
 *     dialect xlate_check_features and, when it passes, encode_request
 *     (the whole client -> upstream path);
 *   1 answer: decode_response, then encode_response into every dialect;
 *   2 error: decode_error;
 *   3 stream: the bytes split into events by frame.h in the dialect's
 *     stream_framing, each through dec_event, each model event through
 *     every dialect's enc_event; dec_finish at the end, enc_release always.
 * Everything lives in one rl_pool freed per input, so a leak is the
 * translators'. Refusals (RL_BAD_REQUEST, RL_UPSTREAM_PROTOCOL, RL_NOMEM)
 * are normal outcomes; only a crash, a leak, undefined behaviour or a body
 * an encoder says it wrote but is not JSON stops the fuzzer (abort). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xlate.h"

/* Output caps: far above what the inputs (max_len 64 KiB) can produce,
 * low enough that a runaway encoder fails instead of eating memory. */
#define FUZZ_OUT_MAX (8u << 20)
#define FUZZ_EVENT_MAX (1u << 20)

static const xl_dialect *const dialects[XL_DIALECTS] = {
    [XL_OPENAI_CHAT] = &xl_openai_chat, [XL_OPENAI_RESPONSES] = &xl_openai_responses,
    [XL_ANTHROPIC] = &xl_anthropic,     [XL_GEMINI] = &xl_gemini,
    [XL_OLLAMA] = &xl_ollama,
};

/* What an encoder says it wrote whole must be one JSON document. */
static void must_be_json(const rl_buf *b)
{
    json_error_t e;
    json_t *j = json_loadb(b->data ? b->data : "", b->len, JSON_ALLOW_NUL, &e);
    if (!j) {
        if (json_error_code(&e) == json_error_out_of_memory)
            return;
        abort();
    }
    json_decref(j);
}

/* What an encoder wrote for an upstream, its own dialect's decoder (the
 * same format, read as a client's) must accept: an encoder that writes a
 * request its format refuses would be an upstream 400 for the client. */
static void reads_back(const xl_dialect *to, const xl_request *req, const rl_buf *body,
                       rl_pool *pool)
{
    /* A client that named no model gets the upstream's 400 for it, as
     * it would without translation. */
    if (!req->model || !req->model[0])
        return;
    /* Ollama's images carry no media type, so its decoder sniffs the
     * bytes; the encoder sends the client's base64 as it came, and image
     * bytes that are not an image are the upstream's 400, as without
     * translation. */
    if (to->id == XL_OLLAMA && req->features[XL_F_IMAGE])
        return;
    /* Gemini's encoder leaves out fileData.mimeType when the URL shows no
     * image type (Gemini infers it), which its decoder, wanting images
     * only, refuses from a client. */
    if (to->id == XL_GEMINI && req->features[XL_F_IMAGE_URL])
        return;
    xl_request again;
    memset(&again, 0, sizeof again);
    rl_buf why;
    rl_buf_init(&why, 4096);
    rl_err err = to->decode_request(body->data, body->len, req->model, pool, &again, &why);
    if (err == RL_BAD_REQUEST || err == RL_BAD_JSON) {
        fprintf(stderr, "%s refuses what its encoder wrote: %.*s\n%.*s\n", to->name, (int)why.len,
                why.data ? why.data : "", (int)body->len, body->data);
        abort();
    }
    rl_buf_release(&why);
}

static void fuzz_request(const char *text, size_t len, unsigned flags, const xl_dialect *d,
                         rl_pool *pool)
{
    xl_request req;
    memset(&req, 0, sizeof req);
    rl_buf why, body, path;
    rl_buf_init(&why, 4096);
    rl_buf_init(&body, FUZZ_OUT_MAX);
    rl_buf_init(&path, 4096);
    const char *path_model = d->id == XL_GEMINI && (flags & 4) ? "gemini-fuzz" : NULL;
    if (d->decode_request(text, len, path_model, pool, &req, &why) != RL_OK ||
        xlate_pair_tool_results(&req, &why) != RL_OK)
        goto out;
    if (d->id == XL_GEMINI) /* said by the path, as translate.c does */
        req.stream = (flags & 4) != 0;
    for (int to = 0; to < XL_DIALECTS; to++) {
        rl_buf_reset(&why);
        rl_buf_reset(&body);
        rl_buf_reset(&path);
        if (xlate_check_features(&req, dialects[to], &why) != RL_OK)
            continue;
        rl_err err = dialects[to]->encode_request(&req, &body, &path, &why);
        if (err == RL_OK && rl_buf_error(&body) == RL_OK) {
            must_be_json(&body);
            reads_back(dialects[to], &req, &body, pool);
        }
    }
out:
    rl_buf_release(&why);
    rl_buf_release(&body);
    rl_buf_release(&path);
}

static xl_reply reply_for(const xl_dialect *client, unsigned flags)
{
    frame_kind framing = client->stream_framing;
    if (client->id == XL_GEMINI && (flags & 2))
        framing = FRAME_JSON_ARRAY;
    return (xl_reply){.model = "client-model",
                      .id = "relay-fuzz",
                      .created = 1700000000,
                      .include_usage = flags & 1,
                      .framing = framing};
}

static void fuzz_response(const char *text, size_t len, unsigned flags, const xl_dialect *d,
                          rl_pool *pool)
{
    xl_response resp;
    memset(&resp, 0, sizeof resp);
    if (d->decode_response(text, len, pool, &resp) != RL_OK)
        return;
    rl_buf out;
    rl_buf_init(&out, FUZZ_OUT_MAX);
    for (int to = 0; to < XL_DIALECTS; to++) {
        rl_buf_reset(&out);
        xl_reply reply = reply_for(dialects[to], flags);
        if (dialects[to]->encode_response(&resp, &reply, &out) == RL_OK &&
            rl_buf_error(&out) == RL_OK)
            must_be_json(&out);
    }
    rl_buf_release(&out);
}

/* A client's stream, split again in its framing: every event must be
 * one JSON document (OpenAI's "[DONE]" aside). Reading it with its own
 * dialect's decoder is too strict: Anthropic's encoder deliberately
 * writes the arguments of interleaved OpenAI calls into a closed
 * tool_use block (the SDK places deltas by index), which its decoder,
 * reading what Anthropic itself would send, refuses. */
typedef struct reader {
    frame_parser frame;
} reader;

static int reader_event(void *ctx, const char *event, const char *data, size_t len)
{
    (void)ctx;
    (void)event;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return 0;
    json_error_t e;
    json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, &e);
    if (!j && json_error_code(&e) != json_error_out_of_memory) {
        fprintf(stderr, "a client stream event is not JSON: %.*s\n", (int)len, data);
        abort();
    }
    json_decref(j);
    return 0;
}

/* One upstream stream translated for every client dialect at once. */
typedef struct stream_run {
    const xl_dialect *up;
    void *dec;
    rl_pool *pool;
    void *enc[XL_DIALECTS];
    xl_reply reply[XL_DIALECTS];
    int dead[XL_DIALECTS]; /* its encoder failed: translate.c ends that stream */
    reader back[XL_DIALECTS];
    rl_buf out;
    int failed; /* the decoder failed: translate.c stops reading */
} stream_run;

static int emit_all(void *ctx, const xl_event *ev)
{
    stream_run *s = ctx;
    int live = 0;
    for (int c = 0; c < XL_DIALECTS; c++) {
        if (s->dead[c])
            continue;
        rl_buf_reset(&s->out);
        if (dialects[c]->enc_event(s->enc[c], &s->reply[c], ev, &s->out) != RL_OK ||
            rl_buf_error(&s->out) != RL_OK ||
            frame_feed(&s->back[c].frame, s->out.data, s->out.len) != RL_OK)
            s->dead[c] = 1;
        else
            live++;
    }
    return live ? 0 : 1;
}

static int on_frame(void *ctx, const char *event, const char *data, size_t len)
{
    stream_run *s = ctx;
    if (s->up->dec_event(s->dec, s->pool, event, data, len, emit_all, s) != RL_OK)
        s->failed = 1;
    return s->failed;
}

static void fuzz_stream(const char *text, size_t len, unsigned flags, const xl_dialect *d,
                        rl_pool *pool)
{
    stream_run s;
    memset(&s, 0, sizeof s);
    s.up = d;
    s.pool = pool;
    s.dec = rl_palloc(pool, d->dec_size ? d->dec_size : 1);
    for (int c = 0; c < XL_DIALECTS; c++) {
        s.enc[c] = rl_palloc(pool, dialects[c]->enc_size ? dialects[c]->enc_size : 1);
        s.reply[c] = reply_for(dialects[c], flags);
    }
    if (!s.dec)
        return;
    for (int c = 0; c < XL_DIALECTS; c++)
        if (!s.enc[c])
            return;
    rl_buf_init(&s.out, FUZZ_OUT_MAX);
    for (int c = 0; c < XL_DIALECTS; c++)
        frame_init(&s.back[c].frame, s.reply[c].framing, FUZZ_OUT_MAX, reader_event, NULL);

    frame_parser p;
    frame_init(&p, d->stream_framing, FUZZ_EVENT_MAX, on_frame, &s);
    rl_err err = frame_feed(&p, text, len);
    if (err == RL_OK)
        err = frame_finish(&p);
    frame_release(&p);
    if (err == RL_OK && !s.failed)
        d->dec_finish(s.dec, pool, emit_all, &s);

    for (int c = 0; c < XL_DIALECTS; c++) {
        if (dialects[c]->enc_release)
            dialects[c]->enc_release(s.enc[c]);
        frame_release(&s.back[c].frame);
    }
    rl_buf_release(&s.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    const xl_dialect *d = dialects[pick % XL_DIALECTS];
    unsigned direction = (pick / XL_DIALECTS) % 4;
    unsigned flags = pick / (XL_DIALECTS * 4);
    const char *text = (const char *)data + 1;
    size--;

    rl_pool *pool = rl_pool_new();
    if (!pool)
        return 0;
    if (direction == 0)
        fuzz_request(text, size, flags, d, pool);
    else if (direction == 1)
        fuzz_response(text, size, flags, d, pool);
    else if (direction == 2) {
        xl_error e;
        memset(&e, 0, sizeof e);
        d->decode_error(text, size, pool, &e);
    } else
        fuzz_stream(text, size, flags, d, pool);
    rl_pool_free(pool);
    return 0;
}
