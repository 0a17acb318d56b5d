/* Unit tests for engine/prov_openai: request inspection, stream assembly
 * and rendering, error shapes. */
#include <stdio.h>
#include <string.h>

#include "engine/prov.h"
#include "tests/unit/tap.h"

static const prov_ops *P = &prov_openai;

/* A request to endpoint at path (query q) with body and headers. */
static rl_err inspect_at(const char *endpoint, const char *path, const char *q, const char *body,
                         prov_info *info, rl_buf *canon, rl_buf *parts, rl_buf *why)
{
    rl_buf_reset(canon);
    rl_buf_reset(parts);
    rl_buf_reset(why);
    prov_request r = {.endpoint = endpoint,
                      .method = "POST",
                      .path = path,
                      .query = q,
                      .body = body,
                      .body_len = body ? strlen(body) : 0};
    return P->inspect(&r, info, canon, parts, why);
}

static rl_err inspect(const char *body, prov_info *info, rl_buf *canon, rl_buf *why)
{
    rl_buf parts;
    rl_buf_init(&parts, 0);
    rl_err err =
        inspect_at("chat.completions", "/v1/chat/completions", "", body, info, canon, &parts, why);
    rl_buf_release(&parts);
    return err;
}

/* A stream as OpenAI sends it: role, content in two parts, a tool call in
 * two parts, finish, usage, [DONE]. */
static const char stream[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":"
    "null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}],\"usage\":"
    "null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
    "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"ci\"}}]},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
    "\"ty\\\":\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-x\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}"
    "\n\n"
    "data: [DONE]\n\n";

/* A Responses API stream as OpenAI sends it (abridged fields). */
static const char response_stream[] =
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\","
    "\"output\":[],\"usage\":null,\"error\":null}}\n\n"
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
    "\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,"
    "\"delta\":\"Hi\"}\n\n"
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\","
    "\"error\":null,\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"status\":"
    "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":"
    "\"Hi\",\"annotations\":[]}]},{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":"
    "\"completed\",\"call_id\":\"call_1\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}],"
    "\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":2},"
    "\"output_tokens\":3,\"total_tokens\":8}}}\n\n";

/* Checks the Responses API, the legacy Completions API, Embeddings, the
 * model list and Azure's key parts. */
static void other_endpoints(void)
{
    prov_info info;
    rl_buf canon, parts, why, out, back;
    rl_buf_init(&canon, 0);
    rl_buf_init(&parts, 0);
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&back, 0);

    is_int(inspect_at("responses", "/v1/responses", "", "{\"model\":\"m\",\"input\":\"hi\"}", &info,
                      &canon, &parts, &why),
           RL_OK, "a responses request");
    ok(!info.stateful, "without store or previous_response_id it may be cached");
    inspect_at("responses", "/v1/responses", "",
               "{\"model\":\"m\",\"input\":\"hi\",\"previous_response_id\":\"resp_0\"}", &info,
               &canon, &parts, &why);
    ok(info.stateful, "previous_response_id: never cached");
    inspect_at("responses", "/v1/responses", "",
               "{\"model\":\"m\",\"input\":\"hi\",\"store\":true}", &info, &canon, &parts, &why);
    ok(info.stateful, "store: true: never cached");
    is_int(inspect_at("embeddings", "/v1/embeddings", "",
                      "{\"model\":\"e\",\"input\":\"x\",\"stream\":true}", &info, &canon, &parts,
                      &why),
           RL_OK, "an embeddings request");
    ok(info.deterministic && !info.stream, "embeddings: deterministic, never streamed");
    is_int(inspect_at("embeddings", "/v1/embeddings", "", "{\"model\":\"e\"}", &info, &canon,
                      &parts, &why),
           RL_BAD_REQUEST, "embeddings without input");
    is_int(inspect_at("completions", "/v1/completions", "", "{\"model\":\"i\"}", &info, &canon,
                      &parts, &why),
           RL_BAD_REQUEST, "completions without prompt");
    is_int(inspect_at("models", "/v1/models", "", NULL, &info, &canon, &parts, &why), RL_OK,
           "the model list needs no body");
    ok(info.deterministic && info.max_ttl == 300, "the model list is kept five minutes at most");

    is_int(inspect_at("chat.completions", "/openai/deployments/prod/chat/completions",
                      "api-version=2024-10-21", "{\"messages\":[]}", &info, &canon, &parts, &why),
           RL_OK, "Azure needs no model in the body");
    is_str(info.model, "prod", "the deployment names the model");
    is_str(parts.data, "deployment=prod\napi-version=2024-10-21\n", "Azure's key parts");
    inspect_at("chat.completions", "/v1/chat/completions", "api-version=1",
               "{\"model\":\"m\",\"messages\":[]}", &info, &canon, &parts, &why);
    is_int(parts.len, 0, "OpenAI's own paths have no key parts (the query is ignored)");

    rl_header h[] = {{"api-key", "k1"}};
    prov_request r = {.endpoint = "chat.completions",
                      .path = "/openai/v1/chat/completions",
                      .query = "",
                      .headers = h,
                      .nheaders = 1};
    char buf[64];
    is_str(P->credential(&r, buf, sizeof buf), "k1", "Azure's api-key is a credential");
    r.nheaders = 0;
    ok(P->credential(&r, buf, sizeof buf) == NULL, "no credential");

    is_int(P->classify_event("response.completed", "{}", 2), PROV_EVENT_END,
           "response.completed ends a Responses stream");
    is_int(P->classify_event("response.incomplete", "{}", 2), PROV_EVENT_END,
           "so does response.incomplete");
    is_int(P->classify_event("response.failed", "{}", 2), PROV_EVENT_ERROR,
           "response.failed is an error");
    is_int(P->classify_event("message", "{\"type\":\"response.completed\"}", 29), PROV_EVENT_END,
           "the data's type counts when the event has no name");
    is_int(P->classify_event("response.created", "{\"response\":{\"error\":null}}", 27),
           PROV_EVENT_DATA, "an error: null inside a response is no error");

    is_int(P->stream_to_body(FRAME_SSE, response_stream, sizeof response_stream - 1, &out), RL_OK,
           "a Responses stream assembles");
    ok(strstr(out.data, "\"status\":\"completed\"") &&
           strncmp(out.data, "{\"id\":\"resp_1\",", 15) == 0,
       "into the final response object");
    ok(P->body_complete(out.data, out.len), "which is a complete answer");
    prov_usage u;
    P->usage(ENTRY_STREAM, FRAME_SSE, response_stream, sizeof response_stream - 1, &u);
    ok(u.input == 5 && u.output == 3 && u.cached_input == 2, "Responses usage from a stream");
    P->usage(ENTRY_BODY, FRAME_SSE, out.data, out.len, &u);
    ok(u.input == 5 && u.output == 3 && u.cached_input == 2, "Responses usage from a body");

    info.framing = FRAME_SSE;
    is_int(P->body_to_stream(out.data, out.len, &info, &back), RL_OK,
           "a response renders as a stream");
    ok(strstr(back.data, "event: response.created\n") == back.data, "starting response.created");
    ok(strstr(back.data, "event: response.output_text.delta") &&
           strstr(back.data, "event: response.function_call_arguments.done"),
       "with the text and the call's arguments");
    ok(strstr(back.data, "[DONE]") == NULL, "and no [DONE]");
    rl_buf again;
    rl_buf_init(&again, 0);
    is_int(P->stream_to_body(FRAME_SSE, back.data, back.len, &again), RL_OK,
           "the rendered stream assembles");
    is_str(again.data, out.data, "back into the same response");
    rl_buf_release(&again);

    static const char legacy[] =
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"i\","
        "\"choices\":[{\"text\":\"He\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"i\","
        "\"choices\":[{\"text\":\"llo\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n"
        "data: [DONE]\n\n";
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, legacy, sizeof legacy - 1, &out), RL_OK,
           "a legacy Completions stream assembles");
    ok(strstr(out.data, "\"object\":\"text_completion\"") &&
           strstr(out.data, "\"text\":\"Hello\"") && strstr(out.data, "\"finish_reason\":\"stop\""),
       "into a text_completion with the whole text");
    rl_buf_reset(&back);
    is_int(P->body_to_stream(out.data, out.len, &info, &back), RL_OK,
           "a text_completion renders as a stream");
    ok(strstr(back.data, "\"text\":\"Hello\"") && strstr(back.data, "data: [DONE]\n\n"),
       "its text, then [DONE]");

    rl_buf_release(&canon);
    rl_buf_release(&parts);
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&back);
}

/* Azure's content filtering survives both conversions, and its first
 * chunk (only prompt_filter_results, empty identity) names nothing. */
static void azure_and_tool_calls(void)
{
    prov_info info;
    memset(&info, 0, sizeof info);
    rl_buf out, back;
    rl_buf_init(&out, 0);
    rl_buf_init(&back, 0);
    static const char azure[] =
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\","
        "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n"
        "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false}},"
        "\"delta\":{\"content\":\"Hi\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}]"
        ","
        "\"created\":7,\"id\":\"c1\",\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n\n"
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":"
        "\"stop\",\"index\":0}],\"created\":7,\"id\":\"c1\",\"model\":\"m\",\"object\":"
        "\"chat.completion.chunk\"}\n\n"
        "data: [DONE]\n\n";
    is_int(P->stream_to_body(FRAME_SSE, azure, sizeof azure - 1, &out), RL_OK,
           "an Azure stream assembles");
    ok(strstr(out.data, "\"id\":\"c1\",\"created\":7,\"model\":\"m\"") != NULL,
       "identity from the first chunk that has one, not the prompt-filter chunk");
    ok(strstr(out.data, "\"prompt_filter_results\":[{") &&
           strstr(out.data, "\"content_filter_results\":{\"hate\":{\"filtered\":false}}"),
       "prompt and content filter results are kept (the last non-empty verdict)");
    is_int(P->body_to_stream(out.data, out.len, &info, &back), RL_OK, "... and render back");
    static const char first[] = "data: {\"choices\":[],\"created\":0,\"id\":\"\"";
    ok(strncmp(back.data, first, sizeof first - 1) == 0 &&
           strstr(back.data, "\"prompt_filter_results\""),
       "the prompt's verdict first, in a chunk of its own, as Azure streams");

    static const char calls[] =
        "{\"id\":\"c2\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
        "\"id\":\"t\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}";
    rl_buf_reset(&back);
    is_int(P->body_to_stream(calls, sizeof calls - 1, &info, &back), RL_OK,
           "a tool-call answer renders as a stream");
    ok(strstr(back.data, "\"delta\":{\"role\":\"assistant\",\"content\":null,") != NULL,
       "its first delta has content null, as OpenAI streams tool calls");
    rl_buf_reset(&out);
    is_int(P->stream_to_body(FRAME_SSE, back.data, back.len, &out), RL_OK, "... and assembles");
    ok(strstr(out.data, "\"content\":null") != NULL, "... with content null again");
    rl_buf_release(&out);
    rl_buf_release(&back);
}

int main(void)
{
    prov_info info;
    rl_buf canon, why, out, back;
    rl_buf_init(&canon, 0);
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&back, 0);

    is_int(inspect("{\"model\":\"gpt-x\", \"temperature\":0, \"stream\":true, "
                   "\"stream_options\":{\"include_usage\":true}, \"prompt_cache_key\":\"s1\", "
                   "\"metadata\":{\"user_id\":\"u\"}, "
                   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   &info, &canon, &why),
           RL_OK, "a valid request");
    is_str(canon.data,
           "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"gpt-x\","
           "\"temperature\":0}",
           "canonical: sorted, compact, volatile fields removed");
    ok(info.stream && info.include_usage && info.deterministic && !info.stateful, "info flags");
    is_str(info.model, "gpt-x", "model");
    rl_buf first;
    rl_buf_init(&first, 0);
    rl_buf_append(&first, canon.data, canon.len);
    inspect("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\n  "
            "\"temperature\":0,\"model\":\"gpt-x\"}",
            &info, &canon, &why);
    is_str(canon.data, first.data, "key order and whitespace do not matter");
    ok(!info.stream, "no stream field: not streamed");
    rl_buf_release(&first);

    inspect("{\"model\":\"m\",\"messages\":[],\"seed\":3,\"temperature\":0.7}", &info, &canon,
            &why);
    ok(info.deterministic, "a seed makes a request deterministic");
    inspect("{\"model\":\"m\",\"messages\":[],\"temperature\":0.7}", &info, &canon, &why);
    ok(!info.deterministic, "temperature 0.7 without a seed is not");
    inspect("{\"model\":\"m\",\"messages\":[],\"temperature\":0,\"store\":true}", &info, &canon,
            &why);
    ok(info.stateful, "store:true is stateful");
    inspect("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"a\",\"k\":\"v\"}}", &info,
            &canon, &why);
    is_str(canon.data, "{\"messages\":[],\"metadata\":{\"k\":\"v\"},\"model\":\"m\"}",
           "other metadata stays in the key");

    is_int(inspect("{\"model\":", &info, &canon, &why), RL_BAD_JSON, "truncated JSON");
    ok(why.len > 0, "with a reason");
    is_int(inspect("[1,2]", &info, &canon, &why), RL_BAD_REQUEST, "a non-object body");
    is_int(inspect("{\"messages\":[]}", &info, &canon, &why), RL_BAD_REQUEST, "missing model");
    ok(strstr(why.data, "model") != NULL, "the reason names model");
    is_int(inspect("{\"model\":\"m\"}", &info, &canon, &why), RL_BAD_REQUEST, "missing messages");
    ok(strstr(why.data, "messages") != NULL, "the reason names messages");
    is_int(inspect("{\"model\":\"m\",\"messages\":{}}", &info, &canon, &why), RL_BAD_REQUEST,
           "messages not an array");
    is_int(inspect("{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}", &info, &canon, &why),
           RL_BAD_REQUEST, "stream not a boolean");

    is_int(P->classify_event("message", "[DONE]", 6), PROV_EVENT_END, "[DONE] ends a stream");
    is_int(P->classify_event("message", "{\"error\":{\"message\":\"x\"}}", 25), PROV_EVENT_ERROR,
           "an error object in a stream");
    const char *chunk = "{\"choices\":[{\"delta\":{\"content\":\"the \\\"error\\\" word\"}}]}";
    is_int(P->classify_event("message", chunk, strlen(chunk)), PROV_EVENT_DATA,
           "the word error inside content is data");

    is_int(P->stream_to_body(FRAME_SSE, stream, sizeof stream - 1, &out), RL_OK,
           "stream assembles");
    ok(strstr(out.data, "\"object\":\"chat.completion\"") != NULL, "object is chat.completion");
    ok(strstr(out.data, "\"content\":\"Hello\"") != NULL, "content concatenated");
    ok(strstr(out.data, "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"") != NULL,
       "tool call arguments concatenated");
    ok(strstr(out.data, "\"id\":\"call_1\"") && strstr(out.data, "\"name\":\"get_weather\""),
       "tool call id and name kept");
    ok(strstr(out.data, "\"finish_reason\":\"tool_calls\"") != NULL, "finish reason kept");
    ok(strstr(out.data, "\"total_tokens\":13") != NULL, "usage kept");
    ok(strstr(out.data, "\"system_fingerprint\":\"fp\"") != NULL, "fingerprint kept");
    ok(P->body_complete(out.data, out.len), "the assembled body is a complete answer");

    info.include_usage = 1;
    is_int(P->body_to_stream(out.data, out.len, &info, &back), RL_OK, "body renders as a stream");
    ok(back.len > 14 && strcmp(back.data + back.len - 14, "data: [DONE]\n\n") == 0,
       "the rendered stream ends with [DONE]");
    ok(strstr(back.data, "chat.completion.chunk") != NULL, "chunks are chat.completion.chunk");
    rl_buf again;
    rl_buf_init(&again, 0);
    is_int(P->stream_to_body(FRAME_SSE, back.data, back.len, &again), RL_OK,
           "the rendered stream assembles");
    is_str(again.data, out.data, "round trip body -> stream -> body is lossless");
    rl_buf_release(&again);

    rl_buf_reset(&back);
    info.include_usage = 0;
    P->body_to_stream(out.data, out.len, &info, &back);
    ok(strstr(back.data, "total_tokens") == NULL, "no usage chunk unless include_usage");

    ok(!P->body_complete("{\"error\":{\"message\":\"x\"}}", 25), "an error body is not complete");
    ok(!P->body_complete("{\"choices\":[", 12), "a truncated body is not complete");

    rl_buf_reset(&out);
    P->error_body(&out, RL_TOO_LARGE, "too big");
    is_str(
        out.data,
        "{\"error\":{\"message\":\"too "
        "big\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}",
        "error body in OpenAI's shape");
    rl_buf_reset(&out);
    P->error_event(&out, FRAME_SSE, 1, RL_UPSTREAM_CUT, NULL);
    ok(strncmp(out.data, "data: {\"error\":", 15) == 0 && strstr(out.data, "\n\n"),
       "error event is a data event");

    rl_buf_release(&canon);
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&back);
    other_endpoints();
    azure_and_tool_calls();
    /* prov_query_has: a parameter by name, wherever it is and however long. */
    {
        char longq[200];
        snprintf(longq, sizeof longq, "v=1&token=%0128d&x", 7);
        prov_request q = {.query = longq};
        ok(prov_query_has(&q, "token"), "a long value, not first");
        ok(prov_query_has(&q, "x"), "a parameter without '='");
        ok(prov_query_has(&q, "v"), "the first one");
        ok(!prov_query_has(&q, "tok"), "a prefix of a name is not the name");
        q.query = "tokenizer=1";
        ok(!prov_query_has(&q, "token"), "nor is a longer name");
        q.query = NULL;
        ok(!prov_query_has(&q, "token"), "no query");
    }
    return tap_done();
}
