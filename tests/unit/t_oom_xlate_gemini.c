/*
 * t_oom_xlate_gemini.c — allocation failures in the Gemini dialect's
 * translator (the machinery: tests/unit/oom_inject.h). One run is one
 * translated call's worth of work: a client request with tools, images,
 * a tool round trip and generation settings decoded and encoded again; an
 * answer with thoughts, text and calls decoded and encoded; an error body
 * decoded; a stream decoded chunk by chunk and model events encoded into
 * chunks. For every N each step ends as without the failure (the same
 * bytes) or with RL_NOMEM, and nothing is left unfreed (the stream
 * encoder's buffers included).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/xlate.h"
#include "tests/unit/oom_inject.h"
#include "tests/unit/tap.h"

static const xl_dialect *G = &xl_gemini;

#define J(...) #__VA_ARGS__

static const char request[] = J({
    "systemInstruction" : {"parts" : [ {"text" : "Be brief."} ]},
    "contents" : [
        {
            "role" : "user",
            "parts" :
                [ {"text" : "Look"}, {"inlineData" : {"mimeType" : "image/png", "data" : "iVBO"}} ]
        },
        {"role" : "model", "parts" : [ {"text" : "Hm", "thought" : true} ]}, {
            "role" : "model",
            "parts" : [
                {"functionCall" : {"name" : "f", "args" : {"a" : [1]}}, "thoughtSignature" : "c2ln"}
            ]
        },
        {
            "role" : "user",
            "parts" : [
                {"functionResponse" : {"name" : "f", "response" : {"result" : "ok"}}},
                {"text" : "and?"}
            ]
        }
    ],
    "tools" : [ {
        "functionDeclarations" : [ {
            "name" : "f",
            "parameters" :
                {"type" : "OBJECT", "properties" : {"a" : {"type" : "ARRAY", "nullable" : true}}}
        } ]
    } ],
    "toolConfig" : {"functionCallingConfig" : {"mode" : "ANY", "allowedFunctionNames" : ["f"]}},
    "generationConfig" : {
        "temperature" : 0.5,
        "stopSequences" : ["X"],
        "responseMimeType" : "application/json",
        "responseSchema" : {"type" : "OBJECT"},
        "thinkingConfig" : {"thinkingBudget" : 1024}
    }
});

static const char answer[] = J({
    "candidates" : [ {
        "content" : {
            "parts" : [
                {"text" : "Hm", "thought" : true}, {"text" : "Sure."},
                {"functionCall" : {"name" : "f", "args" : {"a" : 1}}, "thoughtSignature" : "c2ln"}
            ],
            "role" : "model"
        },
        "finishReason" : "STOP"
    } ],
    "usageMetadata" : {
        "promptTokenCount" : 10,
        "candidatesTokenCount" : 5,
        "thoughtsTokenCount" : 2,
        "cachedContentTokenCount" : 4
    },
    "modelVersion" : "gemini-2.5-flash",
    "responseId" : "r1"
});

static const char error_body[] =
    J({"error" : {"code" : 429, "message" : "Quota", "status" : "RESOURCE_EXHAUSTED"}});

static const char *const chunks[] = {
    J({
        "candidates" : [ {"content" : {"parts" : [ {"text" : "Hm", "thought" : true} ]}} ],
        "responseId" : "r1"
    }),
    J({"candidates" : [ {"content" : {"parts" : [ {"text" : "Sure."} ]}} ]}),
    J({
        "candidates" : [ {
            "content" : {"parts" : [ {"functionCall" : {"name" : "f", "args" : {"a" : 1}}} ]},
            "finishReason" : "STOP"
        } ],
        "usageMetadata" : {"promptTokenCount" : 10, "candidatesTokenCount" : 5}
    }),
};

/* Model events as one letter and their text each. */
static int record(void *ctx, const xl_event *ev)
{
    rl_buf_printf(ctx, "%c%s%s|", "SthCAsuEX"[ev->kind], ev -> text ? ev -> text : "",
                  ev->id ? ev->id : "");
    return 0;
}

/* Whether out is whole: an append that failed makes the step RL_NOMEM. */
static rl_err whole_out(rl_err err, const rl_buf *out)
{
    return err == RL_OK ? rl_buf_error(out) : err;
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
    rl_buf *out = call(r, "decode_request");
    rl_err err = G->decode_request(request, strlen(request), "gemini-2.5-flash", pool, &req, &why);
    done(r, err);
    if (err != RL_OK)
        goto out;
    out = call(r, "encode_request");
    err = G->encode_request(&req, out, &path, &why);
    rl_buf_append(out, path.data ? path.data : "", path.len);
    done(r, whole_out(err, out));

    xl_response resp;
    xl_reply reply = {.model = "gemini-2.5-flash", .id = "relay-1", .framing = FRAME_SSE};
    out = call(r, "decode_response+encode_response");
    err = G->decode_response(answer, strlen(answer), pool, &resp);
    if (err == RL_OK)
        err = G->encode_response(&resp, &reply, out);
    done(r, whole_out(err, out));

    xl_error e;
    out = call(r, "decode_error");
    err = G->decode_error(error_body, strlen(error_body), pool, &e);
    if (err == RL_OK)
        rl_buf_printf(out, "%s %s", e.message, e.type);
    done(r, whole_out(err, out));

    out = call(r, "dec_event");
    void *dec = rl_palloc(pool, G->dec_size);
    err = dec ? RL_OK : RL_NOMEM;
    for (size_t i = 0; err == RL_OK && i < sizeof chunks / sizeof chunks[0]; i++)
        err = G->dec_event(dec, pool, NULL, chunks[i], strlen(chunks[i]), record, out);
    if (err == RL_OK)
        err = G->dec_finish(dec, pool, record, out);
    done(r, whole_out(err, out));

    out = call(r, "enc_event");
    void *enc = rl_palloc(pool, G->enc_size);
    const xl_event events[] = {
        {.kind = XL_EV_START, .id = "msg_1"},
        {.kind = XL_EV_THINKING, .text = "Hm", .signature = "sig"},
        {.kind = XL_EV_TEXT, .text = "Sure."},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "toolu_1", .name = "f"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"a\":"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "1}"},
        {.kind = XL_EV_TOOL_CALL, .index = 1, .id = "toolu_2", .name = "g"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {10, 7, 4, 0, 0}, .reasoning_tokens = 2},
        {.kind = XL_EV_END},
    };
    err = enc ? RL_OK : RL_NOMEM;
    for (size_t i = 0; err == RL_OK && i < sizeof events / sizeof events[0]; i++)
        err = G->enc_event(enc, &reply, &events[i], out);
    done(r, whole_out(err, out));
out:
    rl_buf_release(&why);
    rl_buf_release(&path);
    rl_pool_free(pool);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(300);
    oom_init();
    static const rl_err allowed[] = {RL_NOMEM};
    scenario sc = {.work = work, .allowed = allowed, .nallowed = 1};
    snprintf(sc.name, sizeof sc.name, "gemini dialect");
    sweep(&sc, 0);
    sweep(&sc, 1);
    return tap_done();
}
