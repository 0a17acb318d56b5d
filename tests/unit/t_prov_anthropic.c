/* Unit tests for engine/prov_anthropic: credentials, request inspection
 * and cache-key parts, stream classification, assembly and rendering,
 * usage, error shapes. */
#include <stdio.h>
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

static const prov_ops *P = &prov_anthropic;

/* ---- fixtures: client requests ------------------------------------------ */

/* Claude Code: x-api-key, 2023-06-01, betas, a session id in metadata,
 * system blocks with cache_control, tools, thinking, a stream. */
static const rl_header claude_code_headers[] = {
    {"content-type", "application/json"},
    {"x-api-key", "sk-ant-cc"},
    {"anthropic-version", "2023-06-01"},
    {"anthropic-beta", "interleaved-thinking-2025-05-14, claude-code-20250219"},
    {"user-agent", "claude-cli/2.1.0 (external, cli)"},
    {"x-stainless-retry-count", "0"},
};
static const char claude_code_body[] =
    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":32000,\n"
    " \"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Fix the bug\","
    "\"cache_control\":{\"type\":\"ephemeral\"}}]}],\n"
    " \"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code.\",\"cache_control\":{\"type\":"
    "\"ephemeral\"}}],\n"
    " \"tools\":[{\"name\":\"Bash\",\"description\":\"Run a command\",\"input_schema\":{\"type\":"
    "\"object\",\"properties\":{\"command\":{\"type\":\"string\"}},\"required\":[\"command\"]}}],\n"
    " \"metadata\":{\"user_id\":\"user_abc_account_def_session_0f1e2d\"},\n"
    " \"thinking\":{\"type\":\"enabled\",\"budget_tokens\":10000},\n"
    " \"stream\":true}";
static const char claude_code_canonical[] =
    "{\"max_tokens\":32000,\"messages\":[{\"content\":[{\"cache_control\":{\"type\":\"ephemeral\"},"
    "\"text\":\"Fix the "
    "bug\",\"type\":\"text\"}],\"role\":\"user\"}],\"model\":\"claude-sonnet-4-5\","
    "\"system\":[{\"cache_control\":{\"type\":\"ephemeral\"},\"text\":\"You are Claude Code.\","
    "\"type\":\"text\"}],\"thinking\":{\"budget_tokens\":10000,\"type\":\"enabled\"},\"tools\":[{"
    "\"description\":\"Run a command\",\"input_schema\":{\"properties\":{\"command\":{\"type\":"
    "\"string\"}},\"required\":[\"command\"],\"type\":\"object\"},\"name\":\"Bash\"}]}";
static const char claude_code_key_parts[] =
    "anthropic-version=2023-06-01\n"
    "anthropic-beta=claude-code-20250219,interleaved-thinking-2025-05-14\n";

/* SDK 1.x: Authorization: Bearer, 2026-10-21, no betas, no stream. */
static const rl_header sdk1_headers[] = {
    {"content-type", "application/json"},
    {"authorization", "Bearer sk-ant-sdk1"},
    {"anthropic-version", "2026-10-21"},
};
static const char sdk1_body[] =
    "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64,\"temperature\":0,"
    "\"system\":\"Be brief.\",\"messages\":[{\"role\":\"user\","
    "\"content\":\"Hello\"}]}";
static const char sdk1_canonical[] =
    "{\"max_tokens\":64,\"messages\":[{\"content\":\"Hello\",\"role\":\"user\"}],\"model\":"
    "\"claude-haiku-4-5\",\"system\":\"Be brief.\",\"temperature\":0}";

/* SDK 0.x: x-api-key, 2023-06-01, the beta namespace (?beta=true). */
static const rl_header sdk0_headers[] = {
    {"x-api-key", "sk-ant-sdk0"},
    {"anthropic-version", "2023-06-01"},
};

static prov_request request(const char *endpoint, const char *query, const char *body,
                            const rl_header *headers, size_t nheaders)
{
    prov_request r = {
        .endpoint = endpoint,
        .method = "POST",
        .path = strcmp(endpoint, "messages") == 0 ? "/v1/messages" : "/v1/messages/count_tokens",
        .query = query,
        .body = body,
        .body_len = strlen(body),
        .headers = headers,
        .nheaders = nheaders,
    };
    return r;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static rl_buf canon, parts, why;

static rl_err inspect(const prov_request *r, prov_info *info)
{
    rl_buf_reset(&canon);
    rl_buf_reset(&parts);
    rl_buf_reset(&why);
    return P->inspect(r, info, &canon, &parts, &why);
}

/* Inspects body as a "messages" request from SDK 0.x. */
static rl_err inspect_body(const char *body, prov_info *info)
{
    prov_request r = request("messages", "", body, sdk0_headers, N(sdk0_headers));
    return inspect(&r, info);
}

/* ---- fixtures: answers -------------------------------------------------- */

/* A stream as the API sends it: thinking with a signature, text in two
 * pieces, a tool call whose input arrives in pieces (the first empty), a
 * ping, and the final usage in message_delta. */
static const char stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XYZ\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],"
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":1200,\"output_tokens\":1,"
    "\"service_tier\":\"standard\"}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\","
    "\"thinking\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\":\"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
    "\"thinking\":\"The user wants \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
    "\"thinking\":\"the weather.\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\","
    "\"signature\":\"EqQBCgIYAhIM\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Let me \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"check \\\"Oslo\\\".\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_01A\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"location\\\": \\\"Os\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"lo\\\", \\\"unit\\\": \\\"c\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":"
    "null},\"usage\":{\"output_tokens\":89}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* What the API answers to the same request without stream. */
static const char stream_body[] =
    "{\"id\":\"msg_01XYZ\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
    "\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"The user "
    "wants the weather.\",\"signature\":\"EqQBCgIYAhIM\"},{\"type\":\"text\",\"text\":\"Let me "
    "check \\\"Oslo\\\".\"},{\"type\":\"tool_use\",\"id\":\"toolu_01A\",\"name\":\"get_weather\","
    "\"input\":{\"location\":\"Oslo\",\"unit\":\"c\"}}],\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":1200,\"output_tokens\":89,\"service_tier\":\"standard\"}}";

/* A body with blocks that stream differently: redacted thinking (no
 * deltas), text with citations, a tool call without arguments. */
static const char other_body[] =
    "{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-1\","
    "\"content\":[{\"type\":\"redacted_thinking\",\"data\":\"EmwKAhgBEgy3va3pzix\"},{\"type\":"
    "\"text\",\"text\":\"The sky is blue.\",\"citations\":[{\"type\":\"char_location\","
    "\"cited_text\":\"blue\",\"document_index\":0,\"start_char_index\":0,\"end_char_index\":4}]},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"now\",\"input\":{}}],\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":12}}";

/* A stream the API broke off with an error event. */
static const char error_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_03\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,"
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Hal\"}}\n\n"
    "event: error\n"
    "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
    "\"Overloaded\"}}\n\n";

/* ---- stream classification ---------------------------------------------- */

typedef struct counts {
    int events, data, ends, errors;
    int end_at; /* event number of the first END */
} counts;

static int count_event(void *ctx, const char *event, const char *data, size_t len)
{
    counts *c = ctx;
    c->events++;
    switch (P->classify_event(event, data, len)) {
    case PROV_EVENT_DATA:
        c->data++;
        break;
    case PROV_EVENT_END:
        if (!c->ends++)
            c->end_at = c->events;
        break;
    case PROV_EVENT_ERROR:
        c->errors++;
        break;
    }
    return 0;
}

static counts classify_all(const char *s, size_t len)
{
    counts c = {0, 0, 0, 0, 0};
    frame_each(FRAME_SSE, s, len, count_event, &c);
    return c;
}

static void test_requests(void)
{
    prov_info info;
    char buf[64];

    prov_request cc = request("messages", "beta=true", claude_code_body, claude_code_headers,
                              N(claude_code_headers));
    is_str(P->credential(&cc, buf, sizeof buf), "sk-ant-cc", "credential from x-api-key");
    is_int(inspect(&cc, &info), RL_OK, "Claude Code request is valid");
    is_str(canon.data, claude_code_canonical,
           "canonical: sorted, compact, stream and metadata.user_id gone, cache_control kept");
    is_str(parts.data, claude_code_key_parts, "key parts: version and sorted betas");
    is_str(info.model, "claude-sonnet-4-5", "model");
    ok(info.stream && info.framing == FRAME_SSE, "stream:true streams SSE");
    ok(!info.deterministic, "default temperature (1.0) is not deterministic");
    ok(!info.stateful && !info.include_usage && info.max_ttl == 0, "no other flags");

    prov_request sdk1 = request("messages", "", sdk1_body, sdk1_headers, N(sdk1_headers));
    is_str(P->credential(&sdk1, buf, sizeof buf), "sk-ant-sdk1",
           "credential from Authorization: Bearer");
    is_int(inspect(&sdk1, &info), RL_OK, "SDK 1.x request is valid");
    is_str(canon.data, sdk1_canonical, "SDK 1.x canonical");
    is_str(parts.data, "anthropic-version=2026-10-21\nanthropic-beta=\n",
           "key parts: absent beta is empty");
    ok(!info.stream && info.deterministic, "no stream; temperature 0 is deterministic");

    prov_request sdk0 = request("messages", "beta=true", sdk1_body, sdk0_headers, N(sdk0_headers));
    is_str(P->credential(&sdk0, buf, sizeof buf), "sk-ant-sdk0", "SDK 0.x credential");
    inspect(&sdk0, &info);
    is_str(canon.data, sdk1_canonical, "same body, same canonical whatever the SDK");
    is_str(parts.data, "anthropic-version=2023-06-01\nanthropic-beta=\n",
           "another version, other key parts; ?beta=true alone changes nothing");

    rl_header both[] = {{"authorization", "Bearer sk-b"}, {"x-api-key", "sk-a"}};
    prov_request r = request("messages", "", sdk1_body, both, 2);
    is_str(P->credential(&r, buf, sizeof buf), "sk-a", "x-api-key wins over authorization");
    prov_request none = request("messages", "", sdk1_body, NULL, 0);
    ok(P->credential(&none, buf, sizeof buf) == NULL, "no credential: NULL");
    is_str(P->missing_credential, "x-api-key header is required", "missing credential message");

    /* Betas listed in another order or with repeats are the same set. */
    rl_header betas[] = {{"anthropic-version", "2023-06-01"},
                         {"anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                            "claude-code-20250219"}};
    r = request("messages", "", claude_code_body, betas, 2);
    inspect(&r, &info);
    is_str(parts.data, claude_code_key_parts, "beta order and repeats do not matter");
    rl_header version_only[] = {{"anthropic-version", "2023-06-01"},
                                {"anthropic-beta", "claude-code-20250219"}};
    r = request("messages", "", claude_code_body, version_only, 2);
    inspect(&r, &info);
    is_str(parts.data, "anthropic-version=2023-06-01\nanthropic-beta=claude-code-20250219\n",
           "fewer betas, other key parts");
    r = request("messages", "", claude_code_body, NULL, 0);
    inspect(&r, &info);
    is_str(parts.data, "anthropic-version=\nanthropic-beta=\n", "no headers: both empty");

    /* System as a string and as blocks are different requests. */
    rl_buf first;
    rl_buf_init(&first, 0);
    inspect_body("{\"model\":\"m\",\"max_tokens\":1,\"system\":\"Be brief.\",\"messages\":[]}",
                 &info);
    rl_buf_append(&first, canon.data, canon.len);
    inspect_body("{\"model\":\"m\",\"max_tokens\":1,\"system\":[{\"type\":\"text\",\"text\":"
                 "\"Be brief.\"}],\"messages\":[]}",
                 &info);
    ok(strcmp(first.data, canon.data) != 0, "system string and system blocks stay distinct");
    is_str(canon.data,
           "{\"max_tokens\":1,\"messages\":[],\"model\":\"m\",\"system\":[{\"text\":\"Be brief.\","
           "\"type\":\"text\"}]}",
           "system blocks kept as given");
    rl_buf_release(&first);

    inspect_body("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"stream\":false,"
                 "\"metadata\":{\"user_id\":\"u1\",\"team\":\"x\"}}",
                 &info);
    is_str(canon.data,
           "{\"max_tokens\":1,\"messages\":[],\"metadata\":{\"team\":\"x\"},\"model\":\"m\"}",
           "other metadata stays; stream:false removed");
    inspect_body("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"temperature\":0.0,"
                 "\"tool_choice\":{\"type\":\"any\"}}",
                 &info);
    ok(info.deterministic, "temperature 0.0 is deterministic");
    is_str(canon.data,
           "{\"max_tokens\":1,\"messages\":[],\"model\":\"m\",\"temperature\":0,"
           "\"tool_choice\":{\"type\":\"any\"}}",
           "tool_choice kept");
    inspect_body("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"temperature\":0.2}", &info);
    ok(!info.deterministic, "temperature 0.2 is not");

    prov_request count = request("messages.count_tokens", "",
                                 "{\"model\":\"claude-haiku-4-5\",\"messages\":[{"
                                 "\"role\":\"user\",\"content\":\"Hi\"}]}",
                                 sdk0_headers, N(sdk0_headers));
    is_int(inspect(&count, &info), RL_OK, "count_tokens needs no max_tokens");
    ok(info.deterministic && !info.stream, "count_tokens is deterministic, never streamed");
    is_str(parts.data, "anthropic-version=2023-06-01\nanthropic-beta=\n", "count_tokens key parts");
}

static void test_bad_requests(void)
{
    prov_info info;
    static const struct {
        const char *body, *why;
        rl_err err;
        const char *what;
    } bad[] = {
        {"{\"model\":", NULL, RL_BAD_JSON, "truncated JSON"},
        {"", NULL, RL_BAD_JSON, "empty body"},
        {"[1,2]", "Input should be a valid dictionary or object to extract fields from",
         RL_BAD_REQUEST, "a non-object body"},
        {"{\"max_tokens\":1,\"messages\":[]}", "model: Field required", RL_BAD_REQUEST,
         "missing model"},
        {"{\"model\":7,\"max_tokens\":1,\"messages\":[]}", "model: Input should be a valid string",
         RL_BAD_REQUEST, "model not a string"},
        {"{\"model\":\"\",\"max_tokens\":1,\"messages\":[]}",
         "model: String should have at least 1 character", RL_BAD_REQUEST, "empty model"},
        {"{\"model\":\"m\",\"max_tokens\":1}", "messages: Field required", RL_BAD_REQUEST,
         "missing messages"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"messages\":{}}",
         "messages: Input should be a valid list", RL_BAD_REQUEST, "messages not an array"},
        {"{\"model\":\"m\",\"messages\":[]}", "max_tokens: Field required", RL_BAD_REQUEST,
         "missing max_tokens"},
        {"{\"model\":\"m\",\"max_tokens\":\"9\",\"messages\":[]}",
         "max_tokens: Input should be a valid integer", RL_BAD_REQUEST, "max_tokens a string"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"stream\":\"yes\"}",
         "stream: Input should be a valid boolean", RL_BAD_REQUEST, "stream not a boolean"},
    };
    for (size_t i = 0; i < N(bad); i++) {
        is_int(inspect_body(bad[i].body, &info), bad[i].err, bad[i].what);
        if (bad[i].why)
            is_str(why.data, bad[i].why, "... with Anthropic's wording");
        else
            ok(why.len > 0 && strstr(why.data, "parsing"), "... with a reason");
    }
    prov_request count =
        request("messages.count_tokens", "", "{\"model\":\"m\"}", sdk0_headers, N(sdk0_headers));
    is_int(inspect(&count, &info), RL_BAD_REQUEST, "count_tokens still needs messages");
    prov_request other = request("models", "", "", sdk0_headers, N(sdk0_headers));
    is_int(inspect(&other, &info), RL_NO_ROUTE, "an endpoint Anthropic does not have");
}

static void test_streams(void)
{
    rl_buf out, back, again;
    rl_buf_init(&out, 0);
    rl_buf_init(&back, 0);
    rl_buf_init(&again, 0);

    counts c = classify_all(stream, sizeof stream - 1);
    is_int(c.events, 18, "all events seen");
    is_int(c.ends, 1, "one END");
    is_int(c.end_at, 18, "END only at message_stop");
    is_int(c.errors, 0, "no ERROR");
    is_int(P->classify_event("ping", "{\"type\":\"ping\"}", 15), PROV_EVENT_DATA, "ping is data");
    is_int(P->classify_event("message", "{\"type\":\"message_stop\"}", 23), PROV_EVENT_END,
           "an unnamed event is judged by its type");
    is_int(P->classify_event(NULL, "{\"type\":\"error\",\"error\":{}}", 27), PROV_EVENT_ERROR,
           "an unnamed error event");
    const char *text = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                       "\"text_delta\",\"text\":\"message_stop error\"}}";
    is_int(P->classify_event("content_block_delta", text, strlen(text)), PROV_EVENT_DATA,
           "words in the text do not count");

    is_int(P->stream_to_body(FRAME_SSE, stream, sizeof stream - 1, &out), RL_OK,
           "stream assembles");
    is_str(out.data, stream_body, "assembled exactly as the non-stream answer");
    ok(P->body_complete(out.data, out.len), "the assembled body is complete");

    prov_usage u;
    is_int(P->usage(ENTRY_STREAM, FRAME_SSE, stream, sizeof stream - 1, &u), RL_OK, "stream usage");
    /* input counts every input token: 25 uncached + 1200 read from the cache */
    ok(u.input == 1225 && u.output == 89 && u.cached_input == 1200,
       "stream usage: message_start input (cache reads included), message_delta output");
    is_int(P->usage(ENTRY_BODY, FRAME_SSE, stream_body, sizeof stream_body - 1, &u), RL_OK,
           "body usage");
    ok(u.input == 1225 && u.output == 89 && u.cached_input == 1200, "body usage figures");
    const char *tokens = "{\"input_tokens\":14}";
    is_int(P->usage(ENTRY_BODY, FRAME_SSE, tokens, strlen(tokens), &u), RL_OK,
           "count_tokens usage");
    ok(u.input == -1 && u.output == -1 && u.cached_input == -1 && u.cache_write == -1,
       "a token count is no usage");
    const char *writes = "{\"type\":\"message\",\"usage\":{\"input_tokens\":10,"
                         "\"cache_creation_input_tokens\":2000,\"cache_read_input_tokens\":300,"
                         "\"output_tokens\":5}}";
    is_int(P->usage(ENTRY_BODY, FRAME_SSE, writes, strlen(writes), &u), RL_OK,
           "usage with cache writes");
    ok(u.input == 2310 && u.cached_input == 300 && u.cache_write == 2000 && u.output == 5,
       "cache writes counted in input and apart, for their price");
    ok(P->body_complete(tokens, strlen(tokens)), "a token count is a complete answer");

    prov_info info;
    memset(&info, 0, sizeof info);
    info.stream = 1;
    info.framing = FRAME_SSE;
    is_int(P->body_to_stream(stream_body, sizeof stream_body - 1, &info, &back), RL_OK,
           "body renders as a stream");
    const char *head = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{"
                       "\"id\":\"msg_01XYZ\",\"type\":\"message\",\"role\":\"assistant\","
                       "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":"
                       "null,\"stop_sequence\":null,\"usage\":{";
    ok(strncmp(back.data, head, strlen(head)) == 0, "it starts with message_start, content empty");
    const char *tail = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{"
                       "\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{"
                       "\"output_tokens\":89}}\n\nevent: message_stop\ndata: {\"type\":"
                       "\"message_stop\"}\n\n";
    ok(back.len > strlen(tail) && strcmp(back.data + back.len - strlen(tail), tail) == 0,
       "it ends with message_delta and message_stop");
    ok(strstr(back.data, "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01A\",\"name\":"
                         "\"get_weather\",\"input\":{}}") &&
           strstr(back.data, "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":"
                             "\\\"Oslo\\\",\\\"unit\\\":\\\"c\\\"}\"}"),
       "tool_use starts with empty input, then its JSON as one input_json_delta");
    ok(strstr(back.data, "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}") &&
           strstr(back.data, "{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}"),
       "thinking starts empty, signature comes as a delta");
    c = classify_all(back.data, back.len);
    ok(c.ends == 1 && c.end_at == c.events && c.errors == 0 && c.events == 13,
       "rendered stream: 13 events, END last");
    is_int(P->stream_to_body(FRAME_SSE, back.data, back.len, &again), RL_OK,
           "the rendered stream assembles");
    is_str(again.data, stream_body, "round trip body -> stream -> body is lossless");

    rl_buf_reset(&back);
    rl_buf_reset(&again);
    is_int(P->body_to_stream(other_body, sizeof other_body - 1, &info, &back), RL_OK,
           "redacted thinking, citations, empty input render");
    ok(strstr(back.data, "\"content_block\":{\"type\":\"redacted_thinking\",\"data\":"
                         "\"EmwKAhgBEgy3va3pzix\"}}") != NULL,
       "redacted_thinking starts complete");
    ok(strstr(back.data, "\"delta\":{\"type\":\"citations_delta\",\"citation\":{") != NULL,
       "citations as citations_delta");
    is_int(P->stream_to_body(FRAME_SSE, back.data, back.len, &again), RL_OK, "... and assemble");
    is_str(again.data, other_body, "... losslessly");

    /* A body without usage still streams valid usage figures. */
    rl_buf_reset(&back);
    const char *bare = "{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\","
                       "\"content\":[],\"stop_reason\":\"end_turn\",\"stop_sequence\":null}";
    is_int(P->body_to_stream(bare, strlen(bare), &info, &back), RL_OK, "a body without usage");
    ok(strstr(back.data, "\"usage\":{\"output_tokens\":1}}}\n\n") &&
           strstr(back.data, "\"usage\":{\"output_tokens\":1}}\n\nevent: message_stop"),
       "... streams output_tokens 1");
    rl_buf_reset(&back);
    ok(P->body_to_stream(tokens, strlen(tokens), &info, &back) != RL_OK,
       "a token count does not render as a stream");

    /* A stream the upstream ended with an error event. */
    c = classify_all(error_stream, sizeof error_stream - 1);
    ok(c.errors == 1 && c.ends == 0 && c.events == 4, "error event classified ERROR, no END");
    rl_buf_reset(&out);
    ok(P->stream_to_body(FRAME_SSE, error_stream, sizeof error_stream - 1, &out) != RL_OK,
       "a stream with an error does not assemble");
    is_int(P->usage(ENTRY_STREAM, FRAME_SSE, error_stream, sizeof error_stream - 1, &u), RL_OK,
           "usage of a failed stream");
    ok(u.input == 11 && u.output == 1 && u.cached_input == -1, "... what message_start said");

    /* Cut before message_stop. */
    const char *stop = strstr(stream, "event: message_stop");
    is_int(P->stream_to_body(FRAME_SSE, stream, (size_t)(stop - stream), &out), RL_UPSTREAM_CUT,
           "a stream without message_stop is cut");
    is_int(P->stream_to_body(FRAME_SSE, "event: ping\ndata: {\"type\":\"ping\"}\n\n", 34, &out),
           RL_UPSTREAM_PROTOCOL, "a stream without message_start is not a message");
    const char *bad_json =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    is_int(P->stream_to_body(FRAME_SSE, bad_json, strlen(bad_json), &out), RL_UPSTREAM_PROTOCOL,
           "tool input that is not JSON");

    const char *minimal =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
        "\"type\":\"message\",\"content\":[],\"usage\":{\"input_tokens\":2}}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}";
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, minimal, strlen(minimal), &out), RL_OK,
           "a stream without blocks or message_delta, last event unterminated");
    is_str(out.data,
           "{\"id\":\"m\",\"type\":\"message\",\"content\":[],\"usage\":{\"input_tokens\":2}}",
           "... is the message_start message");

    /* context_management comes on message_delta in a stream (context
     * editing, as Claude Code asks for it) and belongs to the message. */
    const char *edited =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
        "\"type\":\"message\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
        "\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3},"
        "\"context_management\":{\"applied_edits\":[]}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, edited, strlen(edited), &out), RL_OK,
           "a stream with context_management on message_delta");
    is_str(out.data,
           "{\"id\":\"m\",\"type\":\"message\",\"content\":[],\"stop_reason\":\"end_turn\","
           "\"stop_sequence\":null,\"usage\":{\"input_tokens\":2,\"output_tokens\":3},"
           "\"context_management\":{\"applied_edits\":[]}}",
           "... keeps it in the message");
    rl_buf_reset(&back);
    is_int(P->body_to_stream(out.data, out.len, &info, &back), RL_OK, "... and renders back");
    ok(strstr(back.data, strstr(edited, "event: message_delta")) != NULL,
       "... on message_delta, as the API sends it");
    ok(strstr(back.data, "context_management") > strstr(back.data, "event: message_delta"),
       "... and not in message_start");

    ok(!P->body_complete(
           "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}", 56),
       "an error document is not complete");
    ok(!P->body_complete(stream_body, 40), "a truncated body is not complete");
    ok(!P->body_complete("{\"type\":\"message\"}", 18), "a message without content is not");

    rl_buf_release(&out);
    rl_buf_release(&back);
    rl_buf_release(&again);
}

static void test_errors(void)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    P->error_body(&out, RL_BAD_REQUEST, "max_tokens: Field required");
    is_str(out.data,
           "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
           "\"max_tokens: Field required\"}}",
           "error body in Anthropic's shape");
    rl_buf_reset(&out);
    P->error_body(&out, RL_UNAUTHORIZED, NULL);
    is_str(out.data,
           "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":"
           "\"no credentials were provided\"}}",
           "no message: the error's text");

    static const struct {
        rl_err err;
        const char *type;
    } types[] = {
        {RL_BAD_JSON, "invalid_request_error"},
        {RL_FORBIDDEN, "permission_error"},
        {RL_NO_ROUTE, "not_found_error"},
        {RL_NOTFOUND, "not_found_error"},
        {RL_METHOD, "invalid_request_error"},
        {RL_TOO_LARGE, "request_too_large"},
        {RL_INTERNAL, "api_error"},
        {RL_UPSTREAM_UNREACHABLE, "api_error"},
        {RL_UPSTREAM_CUT, "api_error"},
        {RL_OVERLOADED, "overloaded_error"},
        {RL_STORE, "overloaded_error"},
        {RL_UPSTREAM_TIMEOUT, "api_error"},
        {RL_ONLY_IF_CACHED, "api_error"},
    };
    for (size_t i = 0; i < N(types); i++) {
        char want[128], what[96];
        rl_buf_reset(&out);
        P->error_body(&out, types[i].err, "m");
        snprintf(want, sizeof want, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",",
                 types[i].type);
        snprintf(what, sizeof what, "status %d is %s", rl_err_status(types[i].err), types[i].type);
        ok(strncmp(out.data, want, strlen(want)) == 0, what);
    }

    rl_buf_reset(&out);
    P->error_event(&out, FRAME_SSE, 1, RL_UPSTREAM_CUT, NULL);
    is_str(out.data,
           "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":"
           "\"upstream stream ended before its terminator\"}}\n\n",
           "error event");
    counts c = classify_all(out.data, out.len);
    ok(c.events == 1 && c.errors == 1, "the error event classifies as ERROR");
    rl_buf_release(&out);
}

int main(void)
{
    rl_buf_init(&canon, 0);
    rl_buf_init(&parts, 0);
    rl_buf_init(&why, 0);
    test_requests();
    test_bad_requests();
    test_streams();
    test_errors();
    rl_buf_release(&canon);
    rl_buf_release(&parts);
    rl_buf_release(&why);
    return tap_done();
}
