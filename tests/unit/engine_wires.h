/*
 * engine_wires.h — one request and one complete answer per wire format
 * (wires[]), for the t_engine* tests that are not data-driven: the failure
 * cases, a hit's accounting, tokens and budgets. wire_send() sends a
 * wire's request through the harness (engine_harness.h), wire_reply() is
 * the fake upstream's canned reply, expect_answer() checks what the client
 * got. Static functions for the test binaries that include it.
 */
#ifndef RELAY_TESTS_UNIT_ENGINE_WIRES_H
#define RELAY_TESTS_UNIT_ENGINE_WIRES_H

#include "tests/unit/engine_harness.h"

/*
 * One wire format for the failure cases: a stream request and a complete
 * stream (its last piece the format's terminator), a non-stream request and
 * a complete body. In the bodies, %s is the case's marker, so that every
 * case has a cache entry of its own.
 */
typedef struct wire {
    const char *name;
    const prov_ops *prov;
    frame_kind framing;
    const char *headers; /* a JSON object */
    const char *stream_target, *stream_body, *stream_type;
    const char *pieces[4];
    size_t npieces;
    const char *plain_target, *plain_body, *plain_reply;
} wire;

/* clang-format off */
static const wire wires[] = {
    {"openai", &prov_openai, FRAME_SSE,
     "{\"authorization\":\"Bearer sk-t-engine\",\"content-type\":\"application/json\"}",
     "/v1/chat/completions",
     "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":true}",
     "text/event-stream; charset=utf-8",
     {"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
      "data: [DONE]\n\n"}, 3,
     "/v1/chat/completions",
     "{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}"},
    {"anthropic", &prov_anthropic, FRAME_SSE,
     "{\"x-api-key\":\"sk-ant-t-engine\",\"anthropic-version\":\"2023-06-01\",\"content-type\":\"application/json\"}",
     "/v1/messages",
     "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":true}",
     "text/event-stream; charset=utf-8",
     {"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
      "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"}, 3,
     "/v1/messages",
     "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}"},
    {"gemini (SSE)", &prov_gemini, FRAME_SSE,
     "{\"x-goog-api-key\":\"AIza-t-engine\",\"content-type\":\"application/json\"}",
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "text/event-stream",
     {"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 3,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n"}, 3,
     "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 3,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.5-flash\"}\n"},
    /* A streamed JSON array is whole only with its closing bracket. */
    {"gemini (JSON array)", &prov_gemini, FRAME_JSON_ARRAY,
     "{\"x-goog-api-key\":\"AIza-t-engine\",\"content-type\":\"application/json\"}",
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "application/json; charset=UTF-8",
     {"[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}]}\n",
      ",\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 2,\"totalTokenCount\": 5}}\n",
      "]"}, 3,
     "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"%s\"}]}],\"generationConfig\":{\"temperature\":0}}",
     "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}\n"},
    {"ollama", &prov_ollama, FRAME_NDJSON,
     "{\"content-type\":\"application/json\"}",
     "/api/chat",
     "{\"model\":\"llama3.2\",\"options\":{\"temperature\":0},\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
     "application/x-ndjson",
     {"{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:02Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
      "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:03Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
      "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:04Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":3,\"eval_count\":2}\n"}, 3,
     "/api/chat",
     "{\"model\":\"llama3.2\",\"options\":{\"temperature\":0},\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":false}",
     "{\"model\":\"llama3.2\",\"created_at\":\"2025-09-15T08:30:04Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":3,\"eval_count\":2}"},
};
/* clang-format on */

/* The first n pieces of a wire's stream, joined. */
static inline void stream_text(const wire *wi, size_t n, rl_buf *out)
{
    for (size_t i = 0; i < n && i < wi->npieces; i++)
        rl_buf_puts(out, wi->pieces[i]);
}

/* A 200 reply: the first n pieces of the stream, or the whole plain body
 * in two pieces (so that it can be cut in the middle). */
static inline json_t *wire_reply(const wire *wi, int stream, size_t n)
{
    json_t *body = json_array();
    if (stream) {
        for (size_t i = 0; i < n && i < wi->npieces; i++)
            json_array_append_new(body, json_string(wi->pieces[i]));
    } else {
        size_t half = strlen(wi->plain_reply) / 2;
        json_array_append_new(body, json_stringn(wi->plain_reply, half));
        json_array_append_new(body, json_string(wi->plain_reply + half));
    }
    return json_pack("{s:i,s:{s:s},s:o}", "status", 200, "headers", "content-type",
                     stream ? wi->stream_type : "application/json", "body", body);
}

/* Sends the wire's stream (or plain) request with marker, plus one more
 * header when extra_name is set. The answer lands in c. */
static inline void wire_send(const relay *r, const wire *wi, int stream, const char *marker,
                             const char *extra_name, const char *extra_value, client *c)
{
    json_t *headers = json_loads(wi->headers, 0, NULL);
    if (extra_name)
        json_object_set_new(headers, extra_name, json_string(extra_value));
    char body[1024];
    snprintf(body, sizeof body, stream ? wi->stream_body : wi->plain_body, marker);
    handle(r, "POST", stream ? wi->stream_target : wi->plain_target, headers, body, strlen(body),
           c);
    json_decref(headers);
}

/* Points for what the client got: status, X-Cache (unless NULL), body. */
static inline void expect_answer(const char *label, const client *c, int status, const char *xcache,
                                 const char *body, size_t len)
{
    is_int(c->starts, 1, point(label, "the status line is committed once"));
    is_int(c->status, status, point(label, "client status"));
    if (xcache)
        is_str(json_string_value(json_object_get(c->headers, "x-cache")), xcache,
               point(label, "client header x-cache"));
    is_bytes(c->body.data, c->body.len, body, len, point(label, "client body"));
}

#endif
