/*
 * t_oom_xlate_responses.c — allocation failures in the OpenAI Responses
 * dialect (engine/xlate_responses.c; the machinery: oom_inject.h). For
 * every N, each direction either gives the same bytes as without a
 * failure or RL_NOMEM, and frees everything: a request decoded and encoded
 * again, an answer decoded and encoded, an error body, an upstream stream
 * decoded event by event, and model events encoded into a client stream
 * (ending with END, and with ERROR; a stream that failed midway is
 * released with its enc_release, as the caller must).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/frame.h"
#include "engine/xlate.h"
#include "tests/unit/oom_inject.h"
#include "tests/unit/tap.h"

static const xl_dialect *D = &xl_openai_responses;

static const char request[] =
    "{\"model\":\"m\",\"instructions\":\"Be brief.\",\"stream\":true,\"max_output_tokens\":99,"
    "\"temperature\":0.5,\"reasoning\":{\"effort\":\"low\"},\"text\":{\"format\":{\"type\":"
    "\"json_schema\",\"name\":\"a\",\"schema\":{\"type\":\"object\"},\"strict\":true}},"
    "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":\"d\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\"}}}},{\"type\":\"function\","
    "\"name\":\"g\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},"
    "\"parallel_tool_calls\":false,\"user\":\"u\",\"input\":["
    "{\"role\":\"developer\",\"content\":\"Dev.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Look\"},"
    "{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,iVBO\"},"
    "{\"type\":\"input_image\",\"image_url\":\"https://x.test/a.png\"}]},"
    "{\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"T\"}]},"
    "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},"
    "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":[{\"type\":"
    "\"input_text\",\"text\":\"ok\"}]},"
    "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
    "\"text\":\"Done\"}]}]}";

static const char answer[] =
    "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"incomplete\","
    "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"model\":\"o3\",\"output\":["
    "{\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"a\"},{\"type\":"
    "\"summary_text\",\"text\":\"b\"}]},{\"type\":\"message\",\"content\":[{\"type\":"
    "\"output_text\",\"text\":\"x\"},{\"type\":\"output_text\",\"text\":\"y\"}]},"
    "{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{}\"}],"
    "\"usage\":{\"input_tokens\":3,\"input_tokens_details\":{\"cached_tokens\":1},"
    "\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":1}}}";

static const char stream[] =
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\","
    "\"model\":\"m\"}}\n\n"
    "event: response.reasoning_summary_text.delta\ndata: {\"type\":"
    "\"response.reasoning_summary_text.delta\",\"delta\":\"th\"}\n\n"
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
    "\"delta\":\"Hi\"}\n\n"
    "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\","
    "\"output_index\":2,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\","
    "\"arguments\":\"\"}}\n\n"
    "event: response.function_call_arguments.delta\ndata: {\"type\":"
    "\"response.function_call_arguments.delta\",\"output_index\":2,\"delta\":\"{}\"}\n\n"
    "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\","
    "\"output_index\":3,\"item\":{\"type\":\"function_call\",\"call_id\":\"d\",\"name\":\"g\","
    "\"arguments\":\"\"}}\n\n"
    "event: response.function_call_arguments.done\ndata: {\"type\":"
    "\"response.function_call_arguments.done\",\"output_index\":3,\"arguments\":\"{}\"}\n\n"
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":"
    "\"completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}}\n\n";

/* Writes without the allocator armed: the test's own records must not
 * fail. */
static void record(rl_buf *out, const char *fmt, const char *a, long long b)
{
    int was = oom.armed;
    oom.armed = 0;
    rl_buf_printf(out, fmt, a ? a : "-", b);
    oom.armed = was;
}

static void request_work(scenario *sc, run *r)
{
    (void)sc;
    rl_buf *out = call(r, "rl_pool_new");
    rl_pool *pool = rl_pool_new();
    done(r, pool ? RL_OK : RL_NOMEM);
    if (!pool)
        return;
    rl_buf why, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&path, 0);
    xl_request req;
    out = call(r, "decode_request");
    rl_err err = D->decode_request(request, strlen(request), NULL, pool, &req, &why);
    done(r, err);
    if (err == RL_OK) {
        out = call(r, "encode_request");
        err = D->encode_request(&req, out, &path, &why);
        done(r, err);
    }
    rl_buf_release(&why);
    rl_buf_release(&path);
    rl_pool_free(pool);
}

static void answer_work(scenario *sc, run *r)
{
    (void)sc;
    rl_buf *out = call(r, "rl_pool_new");
    rl_pool *pool = rl_pool_new();
    done(r, pool ? RL_OK : RL_NOMEM);
    if (!pool)
        return;
    xl_error e;
    static const char body[] =
        "{\"error\":{\"message\":\"no\",\"type\":\"invalid_request_error\"}}";
    out = call(r, "decode_error");
    rl_err err = D->decode_error(body, sizeof body - 1, pool, &e);
    if (err == RL_OK) {
        record(out, "%s", e.message, 0);
        record(out, " %s", e.type, 0);
    }
    done(r, err);
    if (err != RL_OK) {
        rl_pool_free(pool);
        return;
    }
    xl_response resp;
    out = call(r, "decode_response");
    err = D->decode_response(answer, strlen(answer), pool, &resp);
    done(r, err);
    if (err == RL_OK) {
        xl_reply reply = {.model = "claude", .id = "x", .created = 5};
        out = call(r, "encode_response");
        done(r, D->encode_response(&resp, &reply, out));
    }
    rl_pool_free(pool);
}

/* ---- streams ------------------------------------------------------------- */

typedef struct feed {
    void *state;
    rl_pool *pool;
    rl_buf *out;
    rl_err err;
} feed;

static int on_model_event(void *ctx, const xl_event *ev)
{
    rl_buf *out = ctx;
    record(out, "%s %lld\n", ev->text ? ev->text : ev->id, (long long)ev->kind);
    return 0;
}

static int on_sse(void *ctx, const char *event, const char *data, size_t len)
{
    feed *f = ctx;
    f->err = D->dec_event(f->state, f->pool, event, data, len, on_model_event, f->out);
    return f->err != RL_OK;
}

static void dec_work(scenario *sc, run *r)
{
    (void)sc;
    rl_buf *out = call(r, "rl_pool_new");
    rl_pool *pool = rl_pool_new();
    void *state = pool ? rl_palloc(pool, D->dec_size) : NULL;
    done(r, state ? RL_OK : RL_NOMEM);
    if (!state) {
        rl_pool_free(pool);
        return;
    }
    out = call(r, "dec_event");
    feed f = {state, pool, out, RL_OK};
    rl_err err = frame_each(FRAME_SSE, stream, sizeof stream - 1, on_sse, &f);
    done(r, f.err != RL_OK ? f.err : err);
    rl_pool_free(pool);
}

/* Model events into a client stream: end says how it ends. */
static void enc_work(scenario *sc, run *r)
{
    const xl_event *end = sc->ctx;
    static const xl_event events[] = {
        {.kind = XL_EV_START, .id = "up"},
        {.kind = XL_EV_THINKING, .text = "th"},
        {.kind = XL_EV_TEXT, .text = "Hel"},
        {.kind = XL_EV_TEXT, .text = "lo"},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"a\""},
        {.kind = XL_EV_TOOL_CALL, .index = 1, .id = "d", .name = "g"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = ":1}"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {4, 5, 1, -1}, .reasoning_tokens = 2},
    };
    xl_reply reply = {.model = "claude", .id = "x", .created = 5};
    /* The state is the caller's (zeroed); what it holds is the
     * encoder's to free. */
    static char state[512];
    memset(state, 0, sizeof state);
    rl_buf *out = call(r, "enc_event");
    rl_err err = RL_OK;
    for (size_t i = 0; i < sizeof events / sizeof events[0] && err == RL_OK; i++)
        err = D->enc_event(state, &reply, &events[i], out);
    if (err == RL_OK)
        err = D->enc_event(state, &reply, end, out);
    done(r, err);
    xl_openai_responses.enc_release(state);
}

static const rl_err allowed[] = {RL_NOMEM};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(600);
    oom_init();
    if (!ok(D->enc_size <= 512, "the encoder's state fits the test's"))
        return tap_done();
    static const xl_event end = {.kind = XL_EV_END};
    static const xl_event error = {.kind = XL_EV_ERROR, .text = "cut", .type = "api_error"};
    scenario scs[] = {
        {.name = "request: decode, encode", .work = request_work},
        {.name = "answer: decode, encode; error body", .work = answer_work},
        {.name = "stream: upstream events to the model", .work = dec_work},
        {.name = "stream: model events to the client, END", .work = enc_work, .ctx = (void *)&end},
        {.name = "stream: model events to the client, ERROR",
         .work = enc_work,
         .ctx = (void *)&error},
    };
    for (size_t i = 0; i < sizeof scs / sizeof scs[0]; i++) {
        scs[i].allowed = allowed;
        scs[i].nallowed = 1;
        /* Each scenario runs whole without a failure. */
        run whole;
        run_init(&whole);
        scs[i].work(&scs[i], &whole);
        int all = whole.n > 0;
        for (int c = 0; c < whole.n; c++)
            all &= whole.err[c] == RL_OK;
        char what[300];
        snprintf(what, sizeof what, "%.200s: runs whole without a failure", scs[i].name);
        ok(all, what);
        run_release(&whole);
        sweep(&scs[i], 0);
        sweep(&scs[i], 1);
    }
    return tap_done();
}
