/*
 * t_oom_xlate_openai_chat.c — allocation failures in the OpenAI Chat
 * Completions translator (engine/xlate_openai_chat.c; the machinery:
 * tests/unit/oom_inject.h). One scenario does a translated request's
 * worth of work in every direction: a client request with system, image,
 * tools and a tool round trip decoded and encoded again; an answer with
 * thinking, text, a call and usage decoded and encoded; an error body
 * read; a stream decoded chunk by chunk and model events encoded. For
 * every N, each call gives the reference's result and bytes, or RL_NOMEM
 * (after which the run stops, as a request would), and nothing leaks.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xlate.h"
#include "store/base/rl_pool.h"
#include "tests/unit/oom_inject.h"
#include "tests/unit/tap.h"

static const xl_dialect *D = &xl_openai_chat;

static const char request[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather?\"},{\"type\":"
    "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}}]},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":"
    "\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"rain\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"w\",\"parameters\":{\"type\":"
    "\"object\"}}}],\"tool_choice\":\"auto\",\"stop\":[\"x\"],\"max_tokens\":9,\"stream\":true,"
    "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{}}}"
    "}";

static const char answer[] =
    "{\"id\":\"c9\",\"model\":\"up\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
    "\"assistant\",\"content\":\"Hi\",\"reasoning_content\":\"T\",\"tool_calls\":[{\"id\":"
    "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{}\"}}]},"
    "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
    "\"prompt_tokens_details\":{\"cached_tokens\":1}}}";

static const char *const chunks[] = {
    "{\"id\":\"c1\",\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"He\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"t\",\"tool_calls\":[{"
    "\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"w\",\"arguments\":\"{\"}}]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"}\"}}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
    "{\"error\":{\"message\":\"late\",\"type\":\"server_error\"}}",
    "[DONE]",
};

/* Appends one line per model event, unarmed: the record is the test's,
 * not the translator's, and must not fail. */
static int record(void *ctx, const xl_event *ev)
{
    int was = oom.armed;
    oom.armed = 0;
    rl_buf_printf(ctx, "%d %d %s %s %s %lld\n", (int)ev->kind, ev->index, ev->text ? ev->text : "-",
                  ev->id ? ev->id : "-", ev->name ? ev->name : "-", (long long)ev->usage.input);
    oom.armed = was;
    return 0;
}

static void work(scenario *sc, run *r)
{
    (void)sc;
    rl_pool *pool = rl_pool_new();
    rl_buf *out = call(r, "rl_pool_new");
    if (!pool) {
        done(r, RL_NOMEM);
        return;
    }
    done(r, RL_OK);

    xl_request req;
    rl_buf why, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&path, 0);
    out = call(r, "decode_request");
    rl_err err = D->decode_request(request, strlen(request), NULL, pool, &req, &why);
    done(r, err);
    if (err == RL_OK) {
        out = call(r, "encode_request");
        done(r, err = D->encode_request(&req, out, &path, &why));
    }

    xl_response resp;
    if (err == RL_OK) {
        out = call(r, "decode_response");
        done(r, err = D->decode_response(answer, strlen(answer), pool, &resp));
    }
    if (err == RL_OK) {
        xl_reply reply = {.model = "m", .id = "r", .created = 1};
        out = call(r, "encode_response");
        done(r, err = D->encode_response(&resp, &reply, out));
    }
    if (err == RL_OK) {
        xl_error e;
        const char body[] = "{\"error\":{\"message\":\"no\",\"type\":\"invalid_request_error\"}}";
        out = call(r, "decode_error");
        err = D->decode_error(body, strlen(body), pool, &e);
        int was = oom.armed; /* the test's record, not the translator's */
        oom.armed = 0;
        if (err == RL_OK)
            rl_buf_printf(out, "%s %s", e.message ? e.message : "-", e.type ? e.type : "-");
        oom.armed = was;
        done(r, err);
    }

    void *state = err == RL_OK ? rl_palloc(pool, D->dec_size) : NULL;
    if (err == RL_OK && !state)
        err = RL_NOMEM;
    for (size_t i = 0; err == RL_OK && i < sizeof chunks / sizeof chunks[0]; i++) {
        out = call(r, "dec_event");
        done(r, err = D->dec_event(state, pool, NULL, chunks[i], strlen(chunks[i]), record, out));
    }

    void *enc = err == RL_OK ? rl_palloc(pool, D->enc_size) : NULL;
    if (err == RL_OK && !enc)
        err = RL_NOMEM;
    const xl_event evs[] = {
        {.kind = XL_EV_START, .id = "up"},
        {.kind = XL_EV_TEXT, .text = "a"},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{}"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {3, 2, 1, -1, 0}, .reasoning_tokens = 1},
        {.kind = XL_EV_END},
    };
    xl_reply sreply = {.model = "m", .id = "r", .created = 1, .include_usage = 1};
    if (err == RL_OK) {
        out = call(r, "enc_event");
        for (size_t i = 0; err == RL_OK && i < sizeof evs / sizeof evs[0]; i++)
            err = D->enc_event(enc, &sreply, &evs[i], out);
        done(r, err);
    }
    void *enc2 = err == RL_OK ? rl_palloc(pool, D->enc_size) : NULL;
    if (enc2) {
        xl_event e = {.kind = XL_EV_ERROR, .text = "cut", .type = "api_error"};
        out = call(r, "enc_event: error");
        done(r, D->enc_event(enc2, &sreply, &e, out));
    }
    rl_buf_release(&why);
    rl_buf_release(&path);
    rl_pool_free(pool);
}

int main(void)
{
    oom_init();
    static const rl_err allowed[] = {RL_NOMEM};
    scenario sc = {.work = work, .allowed = allowed, .nallowed = 1};
    snprintf(sc.name, sizeof sc.name, "OpenAI Chat translator");
    sweep(&sc, 0);
    sweep(&sc, 1);
    return tap_done();
}
