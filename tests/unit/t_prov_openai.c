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
    P->error_event(&out, FRAME_SSE, RL_UPSTREAM_CUT, NULL);
    ok(strncmp(out.data, "data: {\"error\":", 15) == 0 && strstr(out.data, "\n\n"),
       "error event is a data event");

    rl_buf_release(&canon);
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&back);
    return tap_done();
}
