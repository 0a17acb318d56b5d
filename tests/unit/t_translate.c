/*
 * t_translate.c — translated calls through the whole engine (engine/
 * translate.h), in-process with engine_harness.h: an OpenAI Chat
 * Completions client routed by model ([models]) to an Anthropic upstream
 * that accepts OpenAI's format. What the upstream gets (its path, its
 * headers, the body in its format), what the client gets (its own format,
 * streamed as the upstream streams), that the translated answer is stored
 * and replayed (HIT, the fake not called again), and the failures: a
 * field that cannot be carried (400 naming it, no call), an upstream error
 * (its status, the client's error shape), a cut stream (the client's
 * error event, nothing stored).
 *
 * The exact mapping of each field is the fixtures' business
 * (t_xlate_fixtures.c); here the glue is checked.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/engine_harness.h"

static const char anthropic_body[] =
    "{\"id\":\"msg_fake1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Paris.\"}],\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"output_tokens\":3,"
    "\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":0}}";

/* Anthropic's stream of the same answer, in pieces as they would come. */
static const char *const anthropic_stream[] = {
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_fake2\","
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],"
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,"
    "\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"Par\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"is.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
};

static json_t *stream_reply(void)
{
    json_t *pieces = json_array();
    for (size_t i = 0; i < NELEM(anthropic_stream); i++)
        json_array_append_new(pieces, json_string(anthropic_stream[i]));
    return json_pack("{s:i,s:{s:s},s:o}", "status", 200, "headers", "content-type",
                     "text/event-stream", "body", pieces);
}

static const char *header(const client *c, const char *name)
{
    return json_string_value(json_object_get(c->headers, name));
}

/* The request of every case: a system prompt OpenAI's way, temperature 0
 * (deterministic: cached), the marker making each case's key its own. */
static void send_chat(const relay *r, const char *marker, int stream, const char *extra, client *c)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\":\"claude-x\",\"temperature\":0,%s%s\"messages\":["
             "{\"role\":\"system\",\"content\":\"Answer in one word.\"},"
             "{\"role\":\"user\",\"content\":\"Capital of France? %s\"}]}",
             stream ? "\"stream\":true," : "", extra ? extra : "", marker);
    json_t *h = json_pack("{s:s,s:s}", "authorization", "Bearer sk-client-key", "content-type",
                          "application/json");
    client_init(c, 0);
    handle(r, "POST", "/v1/chat/completions", h, body, strlen(body), c);
    json_decref(h);
}

/* The text of an OpenAI chat stream: its deltas' content joined; *done set
 * when it ends with data: [DONE]. */
static void stream_text(const client *c, rl_buf *text, int *done, int *usage_chunks)
{
    *done = 0;
    *usage_chunks = 0;
    const char *p = c->body.data ? c->body.data : "";
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        size_t n = strcspn(p, "\n");
        if (n == 6 && strncmp(p, "[DONE]", 6) == 0) {
            *done = 1;
            break;
        }
        json_t *ev = json_loadb(p, n, 0, NULL);
        const char *piece = json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(ev, "choices"), 0), "delta"),
            "content"));
        if (piece)
            rl_buf_puts(text, piece);
        if (json_object_get(ev, "usage") && !json_is_null(json_object_get(ev, "usage")))
            (*usage_chunks)++;
        json_decref(ev);
        p += n;
    }
}

static void test_body(const relay *r)
{
    const char *L = "body";
    json_t *reply = json_pack("{s:i,s:{s:s},s:s}", "status", 200, "headers", "content-type",
                              "application/json", "body", anthropic_body);
    fake_reset(reply, FAKE_REPLY);
    client c;
    send_chat(r, "b1", 0, NULL, &c);
    is_int(fake.calls, 1, point(L, "one upstream call"));
    ok(fake.url && strcmp(fake.url, FAKE_BASE "/v1/messages") == 0,
       point(L, "sent to Anthropic's path (%s)", fake.url ? fake.url : "none"));
    is_str(json_string_value(json_object_get(fake.headers, "x-api-key")), "sk-client-key",
           point(L, "the client's key moved to x-api-key"));
    ok(!json_object_get(fake.headers, "authorization"), point(L, "no Authorization upstream"));
    is_str(json_string_value(json_object_get(fake.headers, "anthropic-version")), "2023-06-01",
           point(L, "anthropic-version set"));
    json_t *up = json_loadb(fake.body.data ? fake.body.data : "", fake.body.len, 0, NULL);
    is_str(json_string_value(json_object_get(up, "system")), "Answer in one word.",
           point(L, "system lifted out of the messages"));
    is_int(json_integer_value(json_object_get(up, "max_tokens")), 4096,
           point(L, "max_tokens given its documented default"));
    is_int(json_array_size(json_object_get(up, "messages")), 1, point(L, "one user turn"));
    json_decref(up);

    is_int(c.status, 200, point(L, "200"));
    is_str(header(&c, "x-cache"), "MISS", point(L, "MISS"));
    is_str(header(&c, "x-relay-translated"), "client=openai-chat; upstream=anthropic",
           point(L, "X-Relay-Translated"));
    json_t *ans = json_loadb(c.body.data ? c.body.data : "", c.body.len, 0, NULL);
    json_t *choice = json_array_get(json_object_get(ans, "choices"), 0);
    is_str(json_string_value(json_object_get(ans, "object")), "chat.completion",
           point(L, "a chat.completion"));
    is_str(json_string_value(json_object_get(json_object_get(choice, "message"), "content")),
           "Paris.", point(L, "the text"));
    is_str(json_string_value(json_object_get(choice, "finish_reason")), "stop",
           point(L, "end_turn -> stop"));
    is_int(json_integer_value(json_object_get(json_object_get(ans, "usage"), "prompt_tokens")), 15,
           point(L, "prompt_tokens count cached reads too (11 + 4)"));
    json_decref(ans);

    client again;
    fake_reset(reply, FAKE_REPLY);
    send_chat(r, "b1", 0, NULL, &again);
    is_int(fake.calls, 0, point(L, "the repeat does not call upstream"));
    is_str(header(&again, "x-cache"), "HIT", point(L, "HIT"));
    is_bytes(again.body.data, again.body.len, c.body.data, c.body.len,
             point(L, "the same translated answer"));

    client streamed;
    fake_reset(reply, FAKE_REPLY);
    send_chat(r, "b1", 1, NULL, &streamed);
    rl_buf text;
    rl_buf_init(&text, 0);
    int done, usage;
    stream_text(&streamed, &text, &done, &usage);
    is_str(header(&streamed, "x-cache"), "HIT", point(L, "a stream request hits the body"));
    is_str(text.data, "Paris.", point(L, "rendered as an OpenAI stream"));
    ok(done, point(L, "ending with [DONE]"));
    rl_buf_release(&text);
    client_release(&c);
    client_release(&again);
    client_release(&streamed);
    json_decref(reply);
}

static void test_stream(const relay *r)
{
    const char *L = "stream";
    json_t *reply = stream_reply();
    fake_reset(reply, FAKE_REPLY);
    client c;
    send_chat(r, "s1", 1, "\"stream_options\":{\"include_usage\":true},", &c);
    is_int(fake.calls, 1, point(L, "one upstream call"));
    json_t *up = json_loadb(fake.body.data ? fake.body.data : "", fake.body.len, 0, NULL);
    ok(json_is_true(json_object_get(up, "stream")), point(L, "asked upstream as a stream"));
    ok(!json_object_get(up, "stream_options"), point(L, "no OpenAI field upstream"));
    json_decref(up);
    is_int(c.status, 200, point(L, "200"));
    ok(header(&c, "content-type") &&
           strncmp(header(&c, "content-type"), "text/event-stream", 17) == 0,
       point(L, "an event stream"));
    rl_buf text;
    rl_buf_init(&text, 0);
    int done, usage;
    stream_text(&c, &text, &done, &usage);
    is_str(text.data, "Paris.", point(L, "the text, delta by delta"));
    ok(done, point(L, "ends with [DONE]"));
    is_int(usage, 1, point(L, "one usage chunk (include_usage)"));
    rl_buf_release(&text);

    client again;
    fake_reset(reply, FAKE_REPLY);
    send_chat(r, "s1", 1, "\"stream_options\":{\"include_usage\":true},", &again);
    is_int(fake.calls, 0, point(L, "the repeat does not call upstream"));
    is_str(header(&again, "x-cache"), "HIT", point(L, "HIT"));
    is_bytes(again.body.data, again.body.len, c.body.data, c.body.len,
             point(L, "the same stream replayed"));
    client_release(&c);
    client_release(&again);

    /* Cut after three pieces: the client's error event, nothing stored. */
    fake_reset(reply, FAKE_CUT);
    fake.cut_after = 3;
    client cut;
    send_chat(r, "s2", 1, NULL, &cut);
    is_int(cut.status, 200, point(L, "cut: the head was sent"));
    ok(cut.body.data && strstr(cut.body.data, "\"error\"") != NULL,
       point(L, "cut: ends with an OpenAI error event"));
    ok(!cut.body.data || !strstr(cut.body.data, "[DONE]"), point(L, "cut: no [DONE]"));
    client_release(&cut);
    fake_reset(reply, FAKE_REPLY);
    client after;
    send_chat(r, "s2", 1, NULL, &after);
    is_int(fake.calls, 1, point(L, "cut: not stored, the next one calls"));
    client_release(&after);
    json_decref(reply);
}

static void test_failures(const relay *r)
{
    const char *L = "failures";
    fake_reset(NULL, FAKE_REPLY);
    client c;
    send_chat(r, "f1", 0, "\"logit_bias\":{\"50256\":-100},", &c);
    is_int(c.status, 400, point(L, "logit_bias: 400"));
    ok(c.body.data && strstr(c.body.data, "logit_bias"), point(L, "the message names the field"));
    ok(c.body.data && strstr(c.body.data, "\"invalid_request_error\""),
       point(L, "in OpenAI's error shape"));
    is_int(fake.calls, 0, point(L, "no upstream call"));
    client_release(&c);

    json_t *err = json_pack(
        "{s:i,s:{s:s,s:s},s:s}", "status", 429, "headers", "content-type", "application/json",
        "retry-after", "7", "body",
        "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}");
    fake_reset(err, FAKE_REPLY);
    client limited;
    send_chat(r, "f2", 0, NULL, &limited);
    is_int(limited.status, 429, point(L, "an upstream 429 keeps its status"));
    json_t *body =
        json_loadb(limited.body.data ? limited.body.data : "", limited.body.len, 0, NULL);
    is_str(json_string_value(json_object_get(json_object_get(body, "error"), "message")),
           "slow down", point(L, "its message, in OpenAI's error shape"));
    is_str(header(&limited, "retry-after"), "7", point(L, "Retry-After passed on"));
    json_decref(body);
    client_release(&limited);
    json_decref(err);

    /* An endpoint that is not translated: embeddings of a model routed to
     * Anthropic. */
    fake_reset(NULL, FAKE_REPLY);
    client emb;
    client_init(&emb, 0);
    json_t *h = json_pack("{s:s}", "authorization", "Bearer sk-client-key");
    const char *eb = "{\"model\":\"claude-x\",\"input\":\"hi\"}";
    handle(r, "POST", "/v1/embeddings", h, eb, strlen(eb), &emb);
    is_int(emb.status, 400, point(L, "embeddings to Anthropic: 400"));
    is_int(fake.calls, 0, point(L, "embeddings: no upstream call"));
    json_decref(h);
    client_release(&emb);
}

/* With [models], whether a key is needed is known once the model routed
 * the request: none for a local Ollama, one for Anthropic. */
static void test_credentials(const relay *r)
{
    const char *L = "credentials";
    json_t *reply = json_pack(
        "{s:i,s:{s:s},s:s}", "status", 200, "headers", "content-type", "application/json", "body",
        "{\"model\":\"llama3\",\"created_at\":\"2026-12-07T00:00:00Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"Hello.\"},\"done\":true,\"done_reason\":"
        "\"stop\",\"prompt_eval_count\":5,\"eval_count\":2}");
    fake_reset(reply, FAKE_REPLY);
    const char *body = "{\"model\":\"local/llama3\",\"messages\":[{\"role\":\"user\","
                       "\"content\":\"hi\"}]}";
    json_t *h = json_pack("{s:s}", "content-type", "application/json");
    client c;
    client_init(&c, 0);
    handle(r, "POST", "/v1/chat/completions", h, body, strlen(body), &c);
    is_int(c.status, 200, point(L, "no key, routed to Ollama: 200"));
    if (c.status != 200)
        printf("#   %.*s\n", (int)c.body.len, c.body.data ? c.body.data : "");
    ok(fake.url && strcmp(fake.url, FAKE_BASE "/api/chat") == 0,
       point(L, "sent to Ollama's /api/chat (%s)", fake.url ? fake.url : "none"));
    json_t *up = json_loadb(fake.body.data ? fake.body.data : "", fake.body.len, 0, NULL);
    is_str(json_string_value(json_object_get(up, "model")), "llama3",
           point(L, "local/ removed from the model sent"));
    ok(json_is_false(json_object_get(up, "stream")), point(L, "stream: false said to Ollama"));
    json_decref(up);
    json_t *ans = json_loadb(c.body.data ? c.body.data : "", c.body.len, 0, NULL);
    is_str(json_string_value(json_object_get(
               json_object_get(json_array_get(json_object_get(ans, "choices"), 0), "message"),
               "content")),
           "Hello.", point(L, "Ollama's answer as a chat.completion"));
    is_str(json_string_value(json_object_get(ans, "model")), "local/llama3",
           point(L, "named as the client named it"));
    json_decref(ans);
    client_release(&c);

    fake_reset(reply, FAKE_REPLY);
    const char *cb = "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\","
                     "\"content\":\"hi\"}]}";
    client k;
    client_init(&k, 0);
    handle(r, "POST", "/v1/chat/completions", h, cb, strlen(cb), &k);
    is_int(k.status, 401, point(L, "no key, routed to Anthropic: 401"));
    is_int(fake.calls, 0, point(L, "401: no upstream call"));
    client_release(&k);
    json_decref(h);
    json_decref(reply);
}

int main(void)
{
    char tmp[] = "/tmp/t_translate.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    relay r;
    json_t *ups =
        json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "name", "claude", "type", "anthropic", "accepts",
                  "openai", "name", "local", "type", "ollama", "accepts", "openai");
    json_t *ini = json_pack("{s:{s:s,s:s}}", "models", "claude-*", "claude", "local/*", "local");
    if (relay_start(&r, tmp, ups, ini, "start") == 0) {
        test_body(&r);
        test_stream(&r);
        test_failures(&r);
        test_credentials(&r);
    }
    relay_stop(&r);
    json_decref(ups);
    json_decref(ini);
    return harness_end(tmp);
}
