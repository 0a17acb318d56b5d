/* Allocation failures in engine/xlate_anthropic (oom_inject.h): one
 * translation's worth of work — a request with every block kind decoded
 * and encoded, an answer decoded and encoded, a stream decoded into model
 * events that are encoded again — with the 1st, 2nd, ... allocation
 * failing, once and from then on. Each call must give the same bytes as
 * without failures or RL_NOMEM, never crash, and free everything. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/frame.h"
#include "engine/xlate.h"
#include "tests/unit/oom_inject.h"
#include "tests/unit/tap.h"

static const xl_dialect *A = &xl_anthropic;

static const char request[] =
    "{\"model\":\"m\",\"max_tokens\":100,\"system\":[{\"type\":\"text\",\"text\":\"S\"}],"
    "\"tools\":[{\"name\":\"w\",\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}],"
    "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048},\"stop_sequences\":[\"X\"],"
    "\"metadata\":{\"user_id\":\"u\"},\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
    "\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA==\"}},"
    "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://e/x.png\"}},{\"type\":"
    "\"text\",\"text\":\"Q\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\","
    "\"thinking\":\"t\",\"signature\":\"s\"},{\"type\":\"redacted_thinking\",\"data\":\"r\"},"
    "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"w\",\"input\":{\"a\":1}}]},{\"role\":"
    "\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":[{"
    "\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}],\"is_error\":true},"
    "{\"type\":\"text\",\"text\":\"more\"}]},{\"role\":\"system\",\"content\":\"S2\"}]}";

static const char answer[] =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":["
    "{\"type\":\"thinking\",\"thinking\":\"h\",\"signature\":\"g\"},{\"type\":"
    "\"redacted_thinking\",\"data\":\"b\"},{\"type\":\"text\",\"text\":\"T\"},{\"type\":"
    "\"tool_use\",\"id\":\"t\",\"name\":\"w\",\"input\":{\"c\":\"O\"}}],\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,"
    "\"cache_read_input_tokens\":7,\"cache_creation_input_tokens\":1,\"output_tokens\":3}}";

static const char stream[] =
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
    "\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":2,"
    "\"output_tokens\":1}}}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"thinking_delta\",\"thinking\":\"h\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"signature_delta\",\"signature\":\"g\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"T\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,"
    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"w\",\"input\":{}}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/* The stream relayed: decoded events straight into the encoder. */
typedef struct relay {
    rl_pool *pool;
    void *dec, *enc;
    rl_buf *out;
    rl_err err;
} relay;

static int relay_emit(void *ctx, const xl_event *ev)
{
    relay *r = ctx;
    xl_reply reply = {.model = "c", .id = "x", .framing = FRAME_SSE};
    r->err = A->enc_event(r->enc, &reply, ev, r->out);
    return r->err != RL_OK;
}

static int relay_feed(void *ctx, const char *event, const char *data, size_t len)
{
    relay *r = ctx;
    rl_err err = A->dec_event(r->dec, r->pool, event, data, len, relay_emit, r);
    if (err != RL_OK && r->err == RL_OK)
        r->err = err;
    return err != RL_OK;
}

static void work(scenario *sc, run *r)
{
    (void)sc;
    rl_pool *pool = rl_pool_new();
    if (!pool) {
        call(r, "pool");
        done(r, RL_NOMEM);
        return;
    }
    rl_buf why, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&path, 0);
    xl_request req;
    rl_err err = A->decode_request(request, strlen(request), NULL, pool, &req, &why);
    call(r, "decode_request");
    done(r, err);
    /* Every call is made (a failed decode fails its encode), so a run has
     * as many calls as the reference. */
    rl_buf *out = call(r, "encode_request");
    done(r, err == RL_OK ? A->encode_request(&req, out, &path, &why) : err);
    xl_response resp;
    err = A->decode_response(answer, strlen(answer), pool, &resp);
    call(r, "decode_response");
    done(r, err);
    xl_reply reply = {.model = "c", .id = "x"};
    out = call(r, "encode_response");
    done(r, err == RL_OK ? A->encode_response(&resp, &reply, out) : err);
    relay rl = {pool, rl_palloc(pool, A->dec_size), rl_palloc(pool, A->enc_size), NULL, RL_OK};
    rl.out = call(r, "stream");
    if (!rl.dec || !rl.enc) {
        done(r, RL_NOMEM);
    } else {
        err = frame_each(FRAME_SSE, stream, strlen(stream), relay_feed, &rl);
        done(r, err == RL_STOPPED ? rl.err : err);
    }
    rl_buf_release(&why);
    rl_buf_release(&path);
    rl_pool_free(pool);
}

static const rl_err allowed[] = {RL_NOMEM};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(600);
    oom_init();
    scenario sc = {.work = work, .allowed = allowed, .nallowed = 1};
    snprintf(sc.name, sizeof sc.name, "xlate_anthropic: request, answer, stream");
    sweep(&sc, 0);
    sweep(&sc, 1);
    return tap_done();
}
