/* Unit tests for engine/xlate_gemini.c: answers both ways (every finish
 * reason, usage with cached and thought tokens), error bodies, and streams
 * (chunks -> model events, events -> chunk bytes, an error event and every
 * row of the stream error table, the JSON-array framing). Requests are in
 * t_xlate_gemini_request.c; the helpers both share in xlate_test_gemini.h.
 * JSON is compared by parsing both sides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tests/unit/xlate_test_gemini.h"

/* ---- answers ----------------------------------------------------------------- */

static const char answer[] = J({
    "candidates" : [ {
        "content" : {
            "parts" : [
                {"text" : "Thinking about it", "thought" : true}, {"text" : "Checking both."}, {
                    "functionCall" : {"name" : "get_weather", "args" : {"city" : "Oslo"}},
                    "thoughtSignature" : "c2ln"
                },
                {
                    "functionCall" :
                        {"id" : "g-7", "name" : "get_weather", "args" : {"city" : "Rome"}}
                },
                {"executableCode" : {"code" : "x"}}
            ],
            "role" : "model"
        },
        "finishReason" : "STOP",
        "index" : 0
    } ],
    "usageMetadata" : {
        "promptTokenCount" : 100,
        "candidatesTokenCount" : 20,
        "thoughtsTokenCount" : 30,
        "cachedContentTokenCount" : 60,
        "totalTokenCount" : 150
    },
    "modelVersion" : "gemini-2.5-flash-001",
    "responseId" : "resp-1"
});

static void test_answers(void)
{
    xl_response r;
    is_int(G->decode_response(answer, strlen(answer), pool, &r), RL_OK, "answer: decoded");
    is_str(r.id, "resp-1", "answer: responseId kept");
    is_str(r.model, "gemini-2.5-flash-001", "answer: modelVersion");
    is_int(r.nparts, 5, "answer: thought, text, signature, two calls (executableCode left out)");
    ok(r.parts[0].kind == XL_PART_THINKING && strcmp(r.parts[0].text, "Thinking about it") == 0,
       "answer: a thought is thinking");
    ok(r.parts[2].kind == XL_PART_THINKING && strcmp(r.parts[2].signature, "c2ln") == 0,
       "answer: a call's signature is an empty thinking part before it");
    ok(r.parts[3].kind == XL_PART_TOOL_CALL && strcmp(r.parts[3].id, "call_0") == 0 &&
           strcmp(r.parts[3].name, "get_weather") == 0,
       "answer: a call without an id gets call_0");
    is_str(r.parts[3].arguments, "{\"city\":\"Oslo\"}", "answer: arguments as JSON text");
    is_str(r.parts[4].id, "g-7", "answer: an id Gemini gave is kept");
    is_int(r.stop, XL_STOP_TOOL, "answer: STOP with calls is a tool stop");
    ok(r.usage.input == 100 && r.usage.output == 50 && r.usage.cached_input == 60 &&
           r.reasoning_tokens == 30,
       "answer: usage (output = candidates + thoughts)");

    rl_buf out;
    rl_buf_init(&out, 0);
    xl_reply reply = {.model = "gemini-client-name", .id = "relay-1"};
    is_int(G->encode_response(&r, &reply, &out), RL_OK, "answer: encoded");
    is_json(
        str(&out), J({
            "candidates" : [ {
                "content" : {
                    "parts" : [
                        {"text" : "Thinking about it", "thought" : true},
                        {"text" : "Checking both."}, {
                            "functionCall" : {
                                "id" : "call_0",
                                "name" : "get_weather",
                                "args" : {"city" : "Oslo"}
                            },
                            "thoughtSignature" : "c2ln"
                        },
                        {
                            "functionCall" :
                                {"id" : "g-7", "name" : "get_weather", "args" : {"city" :
                                                                                     "Rome"}}
                        }
                    ],
                    "role" : "model"
                },
                "finishReason" : "STOP",
                "index" : 0
            } ],
            "usageMetadata" : {
                "promptTokenCount" : 100,
                "candidatesTokenCount" : 20,
                "totalTokenCount" : 150,
                "cachedContentTokenCount" : 60,
                "thoughtsTokenCount" : 30
            },
            "modelVersion" : "gemini-client-name",
            "responseId" : "resp-1"
        }),
        "answer: encoded back, the client's model named");

    /* From another format: no id (the reply's), no usage, nothing said. */
    xl_response e = {.stop = XL_STOP_LENGTH, .usage = PROV_USAGE_UNKNOWN, .reasoning_tokens = -1};
    rl_buf_reset(&out);
    G->encode_response(&e, &reply, &out);
    is_json(str(&out), J({
                "candidates" : [ {
                    "content" : {"parts" : [ {"text" : ""} ], "role" : "model"},
                    "finishReason" : "MAX_TOKENS",
                    "index" : 0
                } ],
                "modelVersion" : "gemini-client-name",
                "responseId" : "relay-1"
            }),
            "answer: an empty answer has one empty text part; the reply's id");

    /* A blocked prompt has no candidates. */
    const char *blocked = J({
        "promptFeedback" : {"blockReason" : "SAFETY"},
        "usageMetadata" : {"promptTokenCount" : 5}
    });
    is_int(G->decode_response(blocked, strlen(blocked), pool, &r), RL_OK, "blocked: decoded");
    ok(r.nparts == 0 && r.stop == XL_STOP_FILTER && r.usage.input == 5 && r.usage.output == 0,
       "blocked: a filter stop, no parts");
    is_int(G->decode_response("{\"x\":1}", 7, pool, &r), RL_UPSTREAM_PROTOCOL,
           "not an answer: protocol error");
    is_int(G->decode_response("nope", 4, pool, &r), RL_UPSTREAM_PROTOCOL,
           "not JSON: protocol error");
    rl_buf_release(&out);
}

static void test_stop_reasons(void)
{
    static const struct {
        const char *reason;
        xl_stop stop;
    } in[] = {
        {"STOP", XL_STOP_END},
        {"MAX_TOKENS", XL_STOP_LENGTH},
        {"SAFETY", XL_STOP_FILTER},
        {"RECITATION", XL_STOP_FILTER},
        {"BLOCKLIST", XL_STOP_FILTER},
        {"PROHIBITED_CONTENT", XL_STOP_FILTER},
        {"SPII", XL_STOP_FILTER},
        {"IMAGE_SAFETY", XL_STOP_FILTER},
        {"LANGUAGE", XL_STOP_OTHER},
        {"MALFORMED_FUNCTION_CALL", XL_STOP_OTHER},
        {"UNEXPECTED_TOOL_CALL", XL_STOP_OTHER},
        {"OTHER", XL_STOP_OTHER},
        {"FINISH_REASON_UNSPECIFIED", XL_STOP_OTHER},
        {"SOMETHING_NEW", XL_STOP_OTHER},
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char body[256], what[96];
        snprintf(body, sizeof body,
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                 "\"finishReason\":\"%s\"}]}",
                 in[i].reason);
        xl_response r;
        G->decode_response(body, strlen(body), pool, &r);
        snprintf(what, sizeof what, "finishReason %s", in[i].reason);
        is_int(r.stop, in[i].stop, what);
    }
    static const struct {
        xl_stop stop;
        const char *reason;
    } out[] = {
        {XL_STOP_UNSET, "STOP"},  {XL_STOP_END, "STOP"},      {XL_STOP_LENGTH, "MAX_TOKENS"},
        {XL_STOP_TOOL, "STOP"},   {XL_STOP_SEQUENCE, "STOP"}, {XL_STOP_FILTER, "SAFETY"},
        {XL_STOP_OTHER, "OTHER"},
    };
    xl_reply reply = {.model = "m", .id = "i"};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        xl_response r = {.stop = out[i].stop, .usage = PROV_USAGE_UNKNOWN};
        rl_buf b;
        rl_buf_init(&b, 0);
        G->encode_response(&r, &reply, &b);
        char want[64], what[64];
        snprintf(want, sizeof want, "\"finishReason\":\"%s\"", out[i].reason);
        snprintf(what, sizeof what, "stop %d -> %s", out[i].stop, out[i].reason);
        has(str(&b), want, what);
        rl_buf_release(&b);
    }
}

static void test_errors(void)
{
    xl_error e;
    const char *body = J(
        {"error" : {"code" : 429, "message" : "Quota exceeded", "status" : "RESOURCE_EXHAUSTED"}});
    is_int(G->decode_error(body, strlen(body), pool, &e), RL_OK, "error: decoded");
    is_str(e.message, "Quota exceeded", "error: message");
    is_str(e.type, "RESOURCE_EXHAUSTED", "error: the status is the type");
    body = J([ {"error" : {"code" : 400, "message" : "Bad", "status" : "INVALID_ARGUMENT"}} ]);
    G->decode_error(body, strlen(body), pool, &e);
    ok(strcmp(e.message, "Bad") == 0 && strcmp(e.type, "INVALID_ARGUMENT") == 0,
       "error: inside an array (a stream without alt=sse)");
    is_int(G->decode_error("<html>502</html>", 16, pool, &e), RL_OK, "error: not JSON is no error");
    ok(!e.message && !e.type, "error: ... with nothing said");
}

/* ---- streams ------------------------------------------------------------------ */

/* Model events as lines of text. */
static int record(void *ctx, const xl_event *ev)
{
    static const char *const kinds[] = {"START", "TEXT",  "THINKING", "TOOL_CALL", "TOOL_ARGS",
                                        "STOP",  "USAGE", "END",      "ERROR"};
    rl_buf *b = ctx;
    rl_buf_printf(b, "%s", kinds[ev->kind]);
    if (ev->kind == XL_EV_START)
        rl_buf_printf(b, " %s %s", ev->id ? ev->id : "-", ev->model ? ev->model : "-");
    if (ev->kind == XL_EV_TEXT || ev->kind == XL_EV_THINKING || ev->kind == XL_EV_ERROR)
        rl_buf_printf(b, " [%s]", ev->text ? ev->text : "");
    if (ev->signature)
        rl_buf_printf(b, " sig=%s", ev->signature);
    if (ev->kind == XL_EV_TOOL_CALL)
        rl_buf_printf(b, " %d %s %s", ev->index, ev->id, ev->name);
    if (ev->kind == XL_EV_TOOL_ARGS)
        rl_buf_printf(b, " %d %s", ev->index, ev->text);
    if (ev->kind == XL_EV_STOP)
        rl_buf_printf(b, " %d", ev->stop);
    if (ev->kind == XL_EV_USAGE)
        rl_buf_printf(b, " in=%lld out=%lld cached=%lld reasoning=%lld", (long long)ev->usage.input,
                      (long long)ev->usage.output, (long long)ev->usage.cached_input,
                      (long long)ev->reasoning_tokens);
    if (ev->kind == XL_EV_ERROR && ev->type)
        rl_buf_printf(b, " %s", ev->type);
    rl_buf_puts(b, "\n");
    return 0;
}

#define TAIL "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-1\"}"
#define EARLY "\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12},"
#define CHUNK(part)                                                                                \
    "{\"candidates\":[{\"content\":{\"parts\":[" part                                              \
    "],\"role\":\"model\"},\"index\":0}]," EARLY TAIL

static void test_stream_decode(void)
{
    static const char *const chunks[] = {
        CHUNK("{\"text\":\"**Checking**\",\"thought\":true}"),
        CHUNK("{\"text\":\"Let me\"}"),
        CHUNK("{\"text\":\" look.\"}"),
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\","
        "\"args\":{\"city\":\"Oslo\"}},\"thoughtSignature\":\"c2lnMQ==\"},{\"functionCall\":{"
        "\"name\":\"get_time\"}},{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\","
        "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":9,"
        "\"totalTokenCount\":40,\"cachedContentTokenCount\":4,\"thoughtsTokenCount\":19}," TAIL,
    };
    void *state = rl_palloc(pool, G->dec_size);
    rl_buf ev;
    rl_buf_init(&ev, 0);
    rl_err err = RL_OK;
    for (size_t i = 0; err == RL_OK && i < sizeof chunks / sizeof chunks[0]; i++)
        err = G->dec_event(state, pool, NULL, chunks[i], strlen(chunks[i]), record, &ev);
    is_int(err, RL_OK, "stream decode: every chunk read");
    is_int(G->dec_finish(state, pool, record, &ev), RL_OK, "stream decode: finished");
    is_str(str(&ev),
           "START r-1 gemini-2.5-flash\n"
           "THINKING [**Checking**]\n"
           "TEXT [Let me]\n"
           "TEXT [ look.]\n"
           "THINKING [] sig=c2lnMQ==\n"
           "TOOL_CALL 0 call_0 get_weather\n"
           "TOOL_ARGS 0 {\"city\":\"Oslo\"}\n"
           "TOOL_CALL 1 call_1 get_time\n"
           "TOOL_ARGS 1 {}\n"
           "STOP 3\n"
           "USAGE in=12 out=28 cached=4 reasoning=19\n"
           "END\n",
           "stream decode: the events, in order (a tool stop, usage, END at the end)");

    /* Cut before a finishReason: no END. */
    state = rl_palloc(pool, G->dec_size);
    rl_buf_reset(&ev);
    G->dec_event(state, pool, NULL, chunks[1], strlen(chunks[1]), record, &ev);
    G->dec_finish(state, pool, record, &ev);
    is_str(str(&ev), "START r-1 gemini-2.5-flash\nTEXT [Let me]\n",
           "stream decode: no finishReason, no END");

    /* An error inside the stream. */
    const char *err_chunk = J({
        "error" : {"code" : 503, "message" : "The model is overloaded.", "status" : "UNAVAILABLE"}
    });
    state = rl_palloc(pool, G->dec_size);
    rl_buf_reset(&ev);
    G->dec_event(state, pool, NULL, err_chunk, strlen(err_chunk), record, &ev);
    is_str(str(&ev), "ERROR [The model is overloaded.] UNAVAILABLE\n", "stream decode: an error");
    state = rl_palloc(pool, G->dec_size);
    is_int(G->dec_event(state, pool, NULL, "[1]", 3, record, &ev), RL_UPSTREAM_PROTOCOL,
           "stream decode: a chunk that is not an object");

    /* Each finish reason ends the stream with its stop. */
    const char *len_chunk = J({
        "candidates" :
            [ {"content" : {"parts" : [ {"text" : "a"} ]}, "finishReason" : "MAX_TOKENS"} ]
    });
    state = rl_palloc(pool, G->dec_size);
    rl_buf_reset(&ev);
    G->dec_event(state, pool, NULL, len_chunk, strlen(len_chunk), record, &ev);
    G->dec_finish(state, pool, record, &ev);
    is_str(str(&ev), "START - -\nTEXT [a]\nSTOP 2\nEND\n",
           "stream decode: MAX_TOKENS, no usage told");
    rl_buf_release(&ev);
}

/* Feeds one event to the encoder and returns what it wrote (in buf). */
static rl_err enc(void *state, const xl_reply *reply, xl_event ev, rl_buf *buf)
{
    rl_buf_reset(buf);
    return G->enc_event(state, reply, &ev, buf);
}

/* An SSE event's data compared as JSON, its framing byte for byte. */
static void is_sse(const rl_buf *b, const char *want, const char *what)
{
    const char *s = str(b);
    size_t n = b->len;
    int framed = n > 10 && strncmp(s, "data: ", 6) == 0 && strcmp(s + n - 4, "\r\n\r\n") == 0;
    if (!ok(framed, what))
        printf("#   got: %s\n", s);
    char *data = strndup(s + (framed ? 6 : 0), framed ? n - 10 : n);
    is_json(data, want, what);
    free(data);
}

static void test_stream_encode(void)
{
    xl_reply reply = {.model = "gemini-2.5-flash", .id = "relay-x", .framing = FRAME_SSE};
    void *s = rl_palloc(pool, G->enc_size);
    rl_buf b;
    rl_buf_init(&b, 0);
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_START, .id = "msg_1", .model = "claude"}, &b),
           RL_OK, "stream encode: start");
    is_int(b.len, 0, "stream encode: START writes nothing (Gemini has no such event)");
    enc(s, &reply, (xl_event){.kind = XL_EV_THINKING, .text = "Hmm"}, &b);
    is_sse(&b, J({
        "candidates" : [ {
            "content" : {"parts" : [ {"text" : "Hmm", "thought" : true} ], "role" : "model"},
            "index" : 0
        } ],
        "modelVersion" : "gemini-2.5-flash",
        "responseId" : "msg_1"
    }),
           "stream encode: a thought at once");
    enc(s, &reply, (xl_event){.kind = XL_EV_THINKING, .text = "", .signature = "EqA="}, &b);
    is_sse(&b, J({
        "candidates" : [ {
            "content" : {
                "parts" : [ {"text" : "", "thought" : true, "thoughtSignature" : "EqA="} ],
                "role" : "model"
            },
            "index" : 0
        } ],
        "modelVersion" : "gemini-2.5-flash",
        "responseId" : "msg_1"
    }),
           "stream encode: a signature");
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Hel"}, &b);
    is_str(
        str(&b),
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},"
        "\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"msg_1\"}\r\n\r\n",
        "stream encode: text at once, byte for byte");
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = ""}, &b);
    is_int(b.len, 0, "stream encode: empty text writes nothing");
    enc(s, &reply,
        (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "toolu_1", .name = "get_weather"},
        &b);
    is_int(b.len, 0, "stream encode: a call waits for its arguments");
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"city\":"}, &b);
    is_int(b.len, 0, "stream encode: ... in pieces");
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "\"Oslo\"}"}, &b);
    is_int(b.len, 0, "stream encode: ... until the call ends");
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_CALL, .index = 1, .name = "get_time"}, &b);
    is_sse(&b, J({
        "candidates" : [ {
            "content" : {
                "parts" : [ {
                    "functionCall" :
                        {"id" : "toolu_1", "name" : "get_weather", "args" : {"city" : "Oslo"}}
                } ],
                "role" : "model"
            },
            "index" : 0
        } ],
        "modelVersion" : "gemini-2.5-flash",
        "responseId" : "msg_1"
    }),
           "stream encode: the first call whole when the next starts");
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "x"}, &b),
           RL_UPSTREAM_PROTOCOL, "stream encode: arguments of a call already written");
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_CALL, .index = 1, .name = "get_time"}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 1, .text = ""}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_TOOL}, &b);
    is_int(b.len, 0, "stream encode: STOP waits for the end");
    prov_usage u = {.input = 100, .output = 50, .cached_input = 60, .cache_write = 0};
    enc(s, &reply, (xl_event){.kind = XL_EV_USAGE, .usage = u, .reasoning_tokens = 30}, &b);
    is_int(b.len, 0, "stream encode: USAGE waits for the end");
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_END}, &b), RL_OK, "stream encode: end");
    is_sse(&b, J({
        "candidates" : [ {
            "content" : {
                "parts" :
                    [ {"functionCall" : {"id" : "call_1", "name" : "get_time", "args" : {}}} ],
                "role" : "model"
            },
            "finishReason" : "STOP",
            "index" : 0
        } ],
        "usageMetadata" : {
            "promptTokenCount" : 100,
            "candidatesTokenCount" : 20,
            "totalTokenCount" : 150,
            "cachedContentTokenCount" : 60,
            "thoughtsTokenCount" : 30
        },
        "modelVersion" : "gemini-2.5-flash",
        "responseId" : "relay-x"
    }),
           "stream encode: the last chunk: the pending call, finishReason, usage (the reply's id "
           "without a START id)");
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "late"}, &b), RL_UPSTREAM_PROTOCOL,
           "stream encode: nothing after the end");

    /* A text answer ends with an empty text part; an error chunk. */
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Hi"}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_LENGTH}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_END}, &b);
    is_sse(&b, J({
        "candidates" : [ {
            "content" : {"parts" : [ {"text" : ""} ], "role" : "model"},
            "finishReason" : "MAX_TOKENS",
            "index" : 0
        } ],
        "modelVersion" : "gemini-2.5-flash",
        "responseId" : "relay-x"
    }),
           "stream encode: a last chunk without usage told");
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Hi"}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"a\""}, &b);
    is_int(enc(s, &reply,
               (xl_event){.kind = XL_EV_ERROR, .text = "Overloaded", .type = "overloaded_error"},
               &b),
           RL_OK, "stream encode: error");
    is_str(str(&b),
           "data: {\"error\":{\"code\":503,\"message\":\"Overloaded\",\"status\":\"UNAVAILABLE\"}}"
           "\r\n\r\n",
           "stream encode: the error chunk @google/genai raises as ApiError 503 (the cut call "
           "dropped)");
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_ERROR, .text = "?"}, &b);
    has(str(&b), "\"code\":500,\"message\":\"?\",\"status\":\"INTERNAL\"",
        "stream encode: an error of no known type is 500 INTERNAL");
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"}, &b);
    enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"a\""}, &b);
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_END}, &b), RL_UPSTREAM_PROTOCOL,
           "stream encode: arguments that are not JSON");

    /* Without alt=sse: one JSON array written element by element. */
    reply.framing = FRAME_JSON_ARRAY;
    s = rl_palloc(pool, G->enc_size);
    rl_buf all;
    rl_buf_init(&all, 0);
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "A"}, &b);
    rl_buf_append(&all, b.data, b.len);
    enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "B"}, &b);
    rl_buf_append(&all, b.data, b.len);
    is_str(str(&b),
           "\n,\r\n{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"B\"}],\"role\":\"model\"},"
           "\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"relay-x\"}",
           "JSON array: the next element");
    enc(s, &reply, (xl_event){.kind = XL_EV_END}, &b);
    rl_buf_append(&all, b.data, b.len);
    json_t *arr = json_loads(str(&all), 0, NULL);
    ok(json_is_array(arr) && json_array_size(arr) == 3, "JSON array: the whole stream parses");
    json_decref(arr);
    s = rl_palloc(pool, G->enc_size);
    enc(s, &reply, (xl_event){.kind = XL_EV_ERROR, .text = "x", .type = "RESOURCE_EXHAUSTED"}, &b);
    is_str(str(&b),
           "[{\"error\":{\"code\":429,\"message\":\"x\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n]",
           "JSON array: an error before anything else");
    rl_buf_release(&all);
    rl_buf_release(&b);
}

/* Every row of the stream error table: the code @google/genai raises. */
static void test_error_types(void)
{
    static const struct {
        const char *type;
        const char *want;
    } rows[] = {
        {"INVALID_ARGUMENT", "\"code\":400,\"message\":\"m\",\"status\":\"INVALID_ARGUMENT\""},
        {"invalid_request_error", "\"code\":400,\"message\":\"m\",\"status\":\"INVALID_ARGUMENT\""},
        {"UNAUTHENTICATED", "\"code\":401,\"message\":\"m\",\"status\":\"UNAUTHENTICATED\""},
        {"authentication_error", "\"code\":401,\"message\":\"m\",\"status\":\"UNAUTHENTICATED\""},
        {"PERMISSION_DENIED", "\"code\":403,\"message\":\"m\",\"status\":\"PERMISSION_DENIED\""},
        {"permission_error", "\"code\":403,\"message\":\"m\",\"status\":\"PERMISSION_DENIED\""},
        {"NOT_FOUND", "\"code\":404,\"message\":\"m\",\"status\":\"NOT_FOUND\""},
        {"not_found_error", "\"code\":404,\"message\":\"m\",\"status\":\"NOT_FOUND\""},
        {"RESOURCE_EXHAUSTED", "\"code\":429,\"message\":\"m\",\"status\":\"RESOURCE_EXHAUSTED\""},
        {"rate_limit_error", "\"code\":429,\"message\":\"m\",\"status\":\"RESOURCE_EXHAUSTED\""},
        {"UNAVAILABLE", "\"code\":503,\"message\":\"m\",\"status\":\"UNAVAILABLE\""},
        {"overloaded_error", "\"code\":503,\"message\":\"m\",\"status\":\"UNAVAILABLE\""},
        {"DEADLINE_EXCEEDED", "\"code\":504,\"message\":\"m\",\"status\":\"DEADLINE_EXCEEDED\""},
        {"timeout_error", "\"code\":504,\"message\":\"m\",\"status\":\"DEADLINE_EXCEEDED\""},
        {"api_error", "\"code\":500,\"message\":\"m\",\"status\":\"INTERNAL\""},
    };
    xl_reply reply = {.model = "m", .id = "i", .framing = FRAME_SSE};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        void *s = rl_palloc(pool, G->enc_size);
        rl_buf b;
        rl_buf_init(&b, 0);
        xl_event ev = {.kind = XL_EV_ERROR, .text = "m", .type = rows[i].type};
        G->enc_event(s, &reply, &ev, &b);
        char what[80];
        snprintf(what, sizeof what, "stream error type %s", rows[i].type);
        has(str(&b), rows[i].want, what);
        rl_buf_release(&b);
    }
}

int main(void)
{
    pool = rl_pool_new();
    test_answers();
    test_stop_reasons();
    test_errors();
    test_error_types();
    test_stream_decode();
    test_stream_encode();
    rl_pool_free(pool);
    return tap_done();
}
