/* Unit tests for engine/prov_ollama: request inspection, NDJSON stream
 * assembly and rendering, usage, error shapes. */
#include <stdio.h>
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

static const prov_ops *P = &prov_ollama;

static rl_err inspect(const char *endpoint, const char *body, prov_info *info, rl_buf *canon,
                      rl_buf *why)
{
    rl_buf parts;
    rl_buf_init(&parts, 0);
    prov_request r = {.endpoint = endpoint,
                      .method = "POST",
                      .path = "/api/chat",
                      .query = "",
                      .body = body,
                      .body_len = strlen(body)};
    rl_buf_reset(canon);
    rl_buf_reset(why);
    rl_err err = P->inspect(&r, info, canon, &parts, why);
    if (parts.len)
        printf("# unexpected key parts: %s\n", parts.data);
    rl_buf_release(&parts);
    return err;
}

/* Counts the events frame_each hands over. */
static int count_line(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    (void)data;
    (void)len;
    ++*(int *)ctx;
    return 0;
}

/* The kinds of a stream's lines, one letter each: D data, E end, X error. */
typedef struct kinds {
    char s[64];
    size_t n;
} kinds;

static int kind_of_line(void *ctx, const char *event, const char *data, size_t len)
{
    kinds *k = ctx;
    prov_event_kind kind = P->classify_event(event, data, len);
    if (k->n + 1 < sizeof k->s)
        k->s[k->n++] = kind == PROV_EVENT_END ? 'E' : kind == PROV_EVENT_ERROR ? 'X' : 'D';
    k->s[k->n] = '\0';
    return 0;
}

/* The fixtures read better one stream line per row. */
/* clang-format off */

/* A chat stream as Ollama (0.12) sends it for a thinking model with tools:
 * thinking pieces, content pieces, a line with a tool call, the done line. */
#define CHAT_LINE(t, msg) \
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00." t "Z\"," \
    "\"message\":{\"role\":\"assistant\"," msg "},\"done\":false}\n"
static const char chat_stream[] =
    CHAT_LINE("1", "\"content\":\"\",\"thinking\":\"The user\"")
    CHAT_LINE("2", "\"content\":\"\",\"thinking\":\" wants the weather.\"")
    CHAT_LINE("3", "\"content\":\"Let me\"")
    CHAT_LINE("4", "\"content\":\" check \\\"Oslo\\\".\"")
    CHAT_LINE("5", "\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\","
                   "\"arguments\":{\"city\":\"Oslo\"}}}]")
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00.6Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,"
    "\"total_duration\":912000000,\"load_duration\":21000000,\"prompt_eval_count\":31,"
    "\"prompt_eval_duration\":80000000,\"eval_count\":12,\"eval_duration\":700000000}\n";

/* What Ollama answers to the same request with "stream": false. */
static const char chat_body[] =
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00.6Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"Let me check \\\"Oslo\\\".\","
    "\"thinking\":\"The user wants the weather.\","
    "\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}}]},"
    "\"done_reason\":\"stop\",\"done\":true,"
    "\"total_duration\":912000000,\"load_duration\":21000000,\"prompt_eval_count\":31,"
    "\"prompt_eval_duration\":80000000,\"eval_count\":12,\"eval_duration\":700000000}";

/* A generate stream: the done line carries the context for the next turn. */
#define GEN_LINE(t, text) \
    "{\"model\":\"llama3.2\",\"created_at\":\"2025-06-01T11:00:00." t "Z\"," \
    "\"response\":\"" text "\",\"done\":false}\n"
static const char generate_stream[] =
    GEN_LINE("1", "The")
    GEN_LINE("2", " sky")
    GEN_LINE("3", " is blue.")
    "{\"model\":\"llama3.2\",\"created_at\":\"2025-06-01T11:00:00.4Z\",\"response\":\"\","
    "\"done\":true,\"done_reason\":\"stop\",\"context\":[128006,882,78191,271],"
    "\"total_duration\":501000000,\"load_duration\":9000000,\"prompt_eval_count\":26,"
    "\"prompt_eval_duration\":40000000,\"eval_count\":4,\"eval_duration\":90000000}\n";

static const char generate_body[] =
    "{\"model\":\"llama3.2\",\"created_at\":\"2025-06-01T11:00:00.4Z\",\"response\":\"The sky is blue.\","
    "\"done\":true,\"done_reason\":\"stop\",\"context\":[128006,882,78191,271],"
    "\"total_duration\":501000000,\"load_duration\":9000000,\"prompt_eval_count\":26,"
    "\"prompt_eval_duration\":40000000,\"eval_count\":4,\"eval_duration\":90000000}";

/* clang-format on */

static void test_requests(void)
{
    prov_info info;
    rl_buf canon, why, first;
    rl_buf_init(&canon, 0);
    rl_buf_init(&why, 0);
    rl_buf_init(&first, 0);

    is_int(inspect("chat",
                   "{\"model\":\"llama3.2\",\"stream\":true,\"keep_alive\":\"5m\","
                   "\"options\":{\"temperature\":0},"
                   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   &info, &canon, &why),
           RL_OK, "a valid chat request");
    is_str(canon.data,
           "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"llama3.2\","
           "\"options\":{\"temperature\":0}}",
           "canonical: sorted, compact, stream and keep_alive removed");
    ok(info.stream && info.deterministic && !info.stateful, "info flags");
    is_int(info.framing, FRAME_NDJSON, "Ollama streams NDJSON");
    is_str(info.model, "llama3.2", "model");
    rl_buf_append(&first, canon.data, canon.len);

    inspect("chat",
            "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\n \"options\":{"
            "\"temperature\":0},\"model\":\"llama3.2\"}",
            &info, &canon, &why);
    is_str(canon.data, first.data, "key order and whitespace do not matter");
    ok(info.stream, "no stream field: streamed (Ollama's default)");
    inspect("chat",
            "{\"model\":\"llama3.2\",\"stream\":false,\"keep_alive\":0,\"options\":{"
            "\"temperature\":0},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            &info, &canon, &why);
    is_str(canon.data, first.data, "stream:false and keep_alive:0 share the key");
    ok(!info.stream, "stream:false is not streamed");
    inspect("chat", "{\"model\":\"m\",\"messages\":[],\"stream\":null}", &info, &canon, &why);
    ok(info.stream, "stream:null is the default, streamed");

    inspect("chat", "{\"model\":\"m\",\"messages\":[{}],\"options\":{\"seed\":42}}", &info, &canon,
            &why);
    ok(info.deterministic, "an integer seed is deterministic");
    inspect("chat", "{\"model\":\"m\",\"messages\":[{}],\"options\":{\"seed\":-1}}", &info, &canon,
            &why);
    ok(!info.deterministic, "seed -1 (random) is not");
    inspect("chat", "{\"model\":\"m\",\"messages\":[{}],\"options\":{\"temperature\":0.7}}", &info,
            &canon, &why);
    ok(!info.deterministic, "temperature 0.7 without a seed is not");
    inspect("chat", "{\"model\":\"m\",\"messages\":[{}],\"temperature\":0}", &info, &canon, &why);
    ok(!info.deterministic, "a top-level temperature is not an Ollama option");

    inspect("generate",
            "{\"model\":\"llama3.2\",\"prompt\":\"why?\",\"context\":[1,2,3],\"stream\":false}",
            &info, &canon, &why);
    is_str(canon.data, "{\"context\":[1,2,3],\"model\":\"llama3.2\",\"prompt\":\"why?\"}",
           "generate: context stays in the key");
    ok(!info.stateful && !info.stream, "generate with context is cacheable");
    inspect("generate", "{\"model\":\"llama3.2\"}", &info, &canon, &why);
    ok(info.stateful && info.stream, "generate without a prompt loads the model: stateful");
    inspect("generate", "{\"model\":\"llama3.2\",\"prompt\":\"\",\"keep_alive\":0}", &info, &canon,
            &why);
    ok(info.stateful, "generate with an empty prompt (unload) is stateful");
    inspect("chat", "{\"model\":\"llama3.2\",\"messages\":[]}", &info, &canon, &why);
    ok(info.stateful, "chat without messages loads the model: stateful");

    is_int(inspect("embed", "{\"model\":\"all-minilm\",\"input\":\"hello\",\"keep_alive\":\"1m\"}",
                   &info, &canon, &why),
           RL_OK, "embed with a string");
    is_str(canon.data, "{\"input\":\"hello\",\"model\":\"all-minilm\"}", "embed canonical");
    ok(!info.stream && info.deterministic && !info.stateful,
       "embed: never streamed, deterministic");
    is_int(inspect("embed", "{\"model\":\"all-minilm\",\"input\":[\"a\",\"b\"],\"stream\":true}",
                   &info, &canon, &why),
           RL_OK, "embed with an array");
    ok(!info.stream, "embed does not stream even when asked");
    is_int(inspect("embed", "{\"model\":\"all-minilm\",\"input\":5}", &info, &canon, &why),
           RL_BAD_REQUEST, "embed input a number");
    is_str(why.data, "invalid input type", "Ollama's wording");
    is_int(inspect("embed", "{\"model\":\"all-minilm\",\"input\":[\"a\",1]}", &info, &canon, &why),
           RL_BAD_REQUEST, "embed input array with a number");

    is_int(inspect("chat", "{\"model\":", &info, &canon, &why), RL_BAD_JSON, "truncated JSON");
    ok(why.len > 0, "with a reason");
    is_int(inspect("chat", "", &info, &canon, &why), RL_BAD_JSON, "an empty body");
    is_str(why.data, "missing request body", "Ollama's wording for an empty body");
    is_int(inspect("chat", "[1,2]", &info, &canon, &why), RL_BAD_REQUEST, "a non-object body");
    is_int(inspect("chat", "{\"messages\":[]}", &info, &canon, &why), RL_BAD_REQUEST,
           "missing model");
    is_str(why.data, "model is required", "Ollama's wording for a missing model");
    is_int(inspect("generate", "{\"model\":\"\",\"prompt\":\"x\"}", &info, &canon, &why),
           RL_BAD_REQUEST, "an empty model");
    is_int(inspect("chat", "{\"model\":\"m\",\"messages\":{}}", &info, &canon, &why),
           RL_BAD_REQUEST, "messages not an array");
    is_int(inspect("generate", "{\"model\":\"m\",\"prompt\":5}", &info, &canon, &why),
           RL_BAD_REQUEST, "prompt not a string");
    is_int(inspect("chat", "{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}", &info, &canon,
                   &why),
           RL_BAD_REQUEST, "stream not a boolean");
    is_int(inspect("chat", "{\"model\":\"m\",\"messages\":[],\"options\":[]}", &info, &canon, &why),
           RL_BAD_REQUEST, "options not an object");
    is_int(rl_err_status(RL_BAD_REQUEST), 400, "bad requests are 400s");

    rl_buf_release(&canon);
    rl_buf_release(&why);
    rl_buf_release(&first);
}

static void test_credential(void)
{
    rl_header h[] = {{"content-type", "application/json"}, {"authorization", "Bearer k1"}};
    prov_request r = {.endpoint = "chat", .headers = h, .nheaders = 2};
    char buf[64];
    is_str(P->credential(&r, buf, sizeof buf), "Bearer k1", "the Authorization header");
    r.nheaders = 1;
    ok(P->credential(&r, buf, sizeof buf) == NULL, "none without one (Ollama has no auth)");
    is_str(P->missing_credential, "Authorization header required", "the 401 message");
    is_str(P->format, "ollama", "format");
}

static void test_streams(void)
{
    rl_buf out, back, again;
    rl_buf_init(&out, 0);
    rl_buf_init(&back, 0);
    rl_buf_init(&again, 0);
    prov_usage u;

    kinds k = {{0}, 0};
    is_int(frame_each(FRAME_NDJSON, chat_stream, sizeof chat_stream - 1, kind_of_line, &k), RL_OK,
           "the chat stream parses");
    is_str(k.s, "DDDDDE", "END only at done:true");
    const char *err_line = "{\"error\":\"model runner has unexpectedly stopped\"}";
    is_int(P->classify_event(NULL, err_line, strlen(err_line)), PROV_EVENT_ERROR, "an error line");
    const char *word = "{\"message\":{\"content\":\"the \\\"error\\\" word\"},\"done\":false}";
    is_int(P->classify_event(NULL, word, strlen(word)), PROV_EVENT_DATA,
           "the word error inside content is data");
    is_int(P->classify_event(NULL, "not json", 8), PROV_EVENT_ERROR, "a line that is not JSON");

    is_int(P->stream_to_body(FRAME_NDJSON, chat_stream, sizeof chat_stream - 1, &out), RL_OK,
           "chat stream assembles");
    is_str(out.data, chat_body,
           "chat: the done line with content, thinking joined and tool calls collected");
    ok(P->body_complete(out.data, out.len), "the assembled body is a complete answer");
    is_int(P->usage(ENTRY_STREAM, FRAME_NDJSON, chat_stream, sizeof chat_stream - 1, &u), RL_OK,
           "usage of a stream");
    ok(u.input == 31 && u.output == 12 && u.cached_input == -1,
       "stream usage: prompt_eval_count, eval_count, no cached count");
    is_int(P->usage(ENTRY_BODY, FRAME_NDJSON, chat_body, sizeof chat_body - 1, &u), RL_OK,
           "usage of a body");
    ok(u.input == 31 && u.output == 12 && u.cached_input == -1, "body usage");

    /* The last line without its newline. */
    int lines = 0;
    is_int(frame_each(FRAME_NDJSON, chat_stream, sizeof chat_stream - 2, count_line, &lines), RL_OK,
           "a stream without a final newline parses");
    is_int(lines, 6, "and hands over its last line");
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_NDJSON, chat_stream, sizeof chat_stream - 2, &out), RL_OK,
           "and assembles");
    is_str(out.data, chat_body, "to the same body");

    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_NDJSON, generate_stream, sizeof generate_stream - 1, &out),
           RL_OK, "generate stream assembles");
    is_str(out.data, generate_body, "generate: response joined, context and counters kept");
    ok(P->body_complete(out.data, out.len), "a complete generate answer");
    is_int(P->usage(ENTRY_STREAM, FRAME_NDJSON, generate_stream, sizeof generate_stream - 1, &u),
           RL_OK, "generate usage");
    ok(u.input == 26 && u.output == 4, "generate counts");

    /* body -> stream -> body */
    prov_info info = {.stream = 1, .framing = FRAME_NDJSON};
    is_int(P->body_to_stream(chat_body, sizeof chat_body - 1, &info, &back), RL_OK,
           "chat body renders as a stream");
    lines = 0;
    frame_each(FRAME_NDJSON, back.data, back.len, count_line, &lines);
    is_int(lines, 2, "two lines: content, then done");
    ok(back.len && back.data[back.len - 1] == '\n', "each line ends with a newline");
    k.n = 0;
    frame_each(FRAME_NDJSON, back.data, back.len, kind_of_line, &k);
    is_str(k.s, "DE", "data, then the end");
    const char *nl = strchr(back.data, '\n');
    ok(nl && !memmem(back.data, (size_t)(nl - back.data), "total_duration", 14) &&
           !memmem(back.data, (size_t)(nl - back.data), "done_reason", 11),
       "the content line has no durations or done_reason");
    ok(nl && strstr(nl, "\"done_reason\":\"stop\",\"done\":true") != NULL &&
           strstr(nl, "\"eval_count\":12") != NULL,
       "the done line carries done_reason and the counters");
    is_int(P->stream_to_body(FRAME_NDJSON, back.data, back.len, &again), RL_OK,
           "the rendered stream assembles");
    is_str(again.data, chat_body, "round trip chat body -> stream -> body is lossless");
    is_int(P->usage(ENTRY_STREAM, FRAME_NDJSON, back.data, back.len, &u), RL_OK,
           "usage of the rendered stream");
    ok(u.input == 31 && u.output == 12, "counts survive the rendering");

    rl_buf_reset(&back);
    rl_buf_reset(&again);
    is_int(P->body_to_stream(generate_body, sizeof generate_body - 1, &info, &back), RL_OK,
           "generate body renders as a stream");
    nl = strchr(back.data, '\n');
    ok(nl && !memmem(back.data, (size_t)(nl - back.data), "context", 7) &&
           strstr(nl, "\"context\":[128006,882,78191,271]") != NULL,
       "context only on the done line");
    is_int(P->stream_to_body(FRAME_NDJSON, back.data, back.len, &again), RL_OK,
           "the rendered generate stream assembles");
    is_str(again.data, generate_body, "round trip generate body -> stream -> body is lossless");

    const char *thinking = "{\"model\":\"m\",\"created_at\":\"t\",\"response\":\"4\",\"thinking\":"
                           "\"2+2\",\"done\":true,\"done_reason\":\"stop\"}";
    rl_buf_reset(&back);
    rl_buf_reset(&again);
    P->body_to_stream(thinking, strlen(thinking), &info, &back);
    P->stream_to_body(FRAME_NDJSON, back.data, back.len, &again);
    is_str(again.data, thinking, "generate thinking survives the round trip, after response");

    rl_buf_reset(&back);
    is_int(P->body_to_stream("{\"error\":\"x\"}", 13, &info, &back), RL_UPSTREAM_PROTOCOL,
           "an error body does not render as a stream");

    /* Incomplete and failed streams. */
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_NDJSON, generate_stream, strlen(GEN_LINE("1", "The")), &out),
           RL_UPSTREAM_CUT, "a stream without its done line does not assemble");
    static const char failed[] = GEN_LINE("1", "The") "{\"error\":\"out of memory\"}\n";
    is_int(P->stream_to_body(FRAME_NDJSON, failed, sizeof failed - 1, &out), RL_UPSTREAM_PROTOCOL,
           "a stream with an error line does not assemble");
    k.n = 0;
    frame_each(FRAME_NDJSON, failed, sizeof failed - 1, kind_of_line, &k);
    is_str(k.s, "DX", "the error line is classified as one");
    is_int(P->usage(ENTRY_STREAM, FRAME_NDJSON, failed, sizeof failed - 1, &u), RL_OK,
           "usage of a stream without a done line");
    ok(u.input == -1 && u.output == -1, "has none");

    rl_buf_release(&out);
    rl_buf_release(&back);
    rl_buf_release(&again);
}

static void test_bodies(void)
{
    static const char embed[] = "{\"model\":\"all-minilm\",\"embeddings\":[[0.010071,-0.0017],"
                                "[0.2,0.3]],\"total_duration\":14143917,\"load_duration\":"
                                "1019500,\"prompt_eval_count\":8}";
    prov_usage u;
    ok(P->body_complete(embed, sizeof embed - 1), "an embed answer is complete");
    is_int(P->usage(ENTRY_BODY, FRAME_NDJSON, embed, sizeof embed - 1, &u), RL_OK, "embed usage");
    ok(u.input == 8 && u.output == -1 && u.cached_input == -1,
       "embed: prompt_eval_count is the input");

    ok(P->body_complete(chat_body, sizeof chat_body - 1), "a chat answer is complete");
    ok(P->body_complete(generate_body, sizeof generate_body - 1), "a generate answer is complete");
    ok(!P->body_complete("{\"error\":\"model 'x' not found\"}", 31), "an error is not complete");
    ok(!P->body_complete("{\"model\":\"m\",\"response\":\"a\",\"done\":false}", 41),
       "a line that is not done is not complete");
    ok(!P->body_complete("{\"model\":\"m\",", 13), "a truncated body is not complete");
    is_int(P->usage(ENTRY_BODY, FRAME_NDJSON, "{\"model\":", 9, &u), RL_UPSTREAM_PROTOCOL,
           "usage of a body that is not JSON");
}

static void test_errors(void)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    P->error_body(&out, RL_TOO_LARGE, "too big");
    is_str(out.data, "{\"error\":\"too big\"}", "error body in Ollama's shape");
    rl_buf_reset(&out);
    P->error_body(&out, RL_TOO_LARGE, NULL);
    is_str(out.data, "{\"error\":\"request body too large\"}", "no message: the error's text");
    rl_buf_reset(&out);
    P->error_event(&out, FRAME_NDJSON, 1, RL_UPSTREAM_CUT, NULL);
    is_str(out.data, "{\"error\":\"upstream stream ended before its terminator\"}\n",
           "error event is one NDJSON line");
    is_int(P->classify_event(NULL, out.data, out.len - 1), PROV_EVENT_ERROR,
           "which classifies as an error");
    rl_buf_release(&out);
}

int main(void)
{
    test_requests();
    test_credential();
    test_streams();
    test_bodies();
    test_errors();
    return tap_done();
}
