/* Unit tests for engine/xlate_ollama.c: the Ollama /api/chat dialect —
 * requests decoded (and re-encoded, compared as parsed JSON), refusals,
 * answers, stop-reason tables, usage, errors, NDJSON streams both ways. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *D = &xl_ollama;

#define PNG_B64 "iVBORw0KGgoAAAANSUhEUg=="
#define JPEG_B64 "/9j/4AAQSkZJRgABAQA="
#define GIF_B64 "R0lGODlhAQABAIAAAAA="
#define WEBP_B64 "UklGRiQAAABXRUJQVlA4IA=="
#define BMP_B64 "Qk0AAAAAAAAAAAAAAAA="

/* 2025-06-01T10:00:00Z */
static const xl_reply reply = {
    .model = "client-model", .id = "x-1", .created = 1748772000, .framing = FRAME_NDJSON};

/* got and want as parsed JSON documents, equal; both printed when not. */
static void is_json(const char *got, const char *want, const char *what)
{
    json_t *g = got ? json_loads(got, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *w = json_loads(want, 0, NULL);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want);
    json_decref(g);
    json_decref(w);
}

/* Decodes body into req (pool), the 400's text in why. */
static rl_err decode(rl_pool *pool, const char *body, xl_request *req, rl_buf *why)
{
    rl_buf_reset(why);
    return D->decode_request(body, strlen(body), NULL, pool, req, why);
}

/* Decodes a client body and encodes it upstream again; the upstream body
 * must be want (and the path /api/chat). */
static void through(const char *body, const char *want, const char *what)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    rl_err err = decode(pool, body, &req, &why);
    if (err != RL_OK)
        printf("# decode: %s\n", why.data ? why.data : rl_err_text(err));
    if (err == RL_OK)
        err = D->encode_request(&req, &out, &path, &why);
    is_int(err, RL_OK, what);
    is_json(out.data, want, what);
    is_str(path.data, "/api/chat", "path /api/chat");
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
    rl_pool_free(pool);
}

/* The decoder refuses body with a 400 naming field (in backquotes). */
static void refused(const char *body, const char *field)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    char what[160], quoted[96];
    snprintf(what, sizeof what, "refused: %s", field);
    snprintf(quoted, sizeof quoted, "`%s`", field);
    is_int(decode(pool, body, &req, &why), RL_BAD_REQUEST, what);
    if (!ok(why.data && strstr(why.data, quoted), "  the reason names the field"))
        printf("#   reason: %s\n", why.data ? why.data : "(none)");
    rl_buf_release(&why);
    rl_pool_free(pool);
}

static void test_plain(void)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(decode(pool,
                  "{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"Hi\"}],\"keep_alive\":\"5m\"}",
                  &req, &why),
           RL_OK, "plain: decoded");
    is_str(req.model, "llama3.2", "plain: model");
    is_int(req.stream, 1, "plain: Ollama streams by default");
    is_int(req.nmessages, 1, "plain: one turn");
    is_int(req.messages[0].role, XL_ROLE_USER, "plain: user");
    is_str(req.messages[0].parts[0].text, "Hi", "plain: text");
    is_int(req.max_tokens, -1, "plain: no max tokens");
    ok(req.temperature < 0 && req.top_p < 0 && req.top_k < 0, "plain: sampling unset");
    for (int f = 0; f < XL_FEATURES; f++)
        ok(!req.features[f], "plain: no feature used");
    is_int(decode(pool, "{\"model\":\"m\",\"stream\":false,\"messages\":[]}", &req, &why), RL_OK,
           "stream false");
    is_int(req.stream, 0, "stream false: not streamed");
    is_int(decode(pool, "{\"messages\":[]}", &req, &why), RL_BAD_REQUEST, "no model: 400");
    is_str(why.data, "model is required", "no model: Ollama's words");
    is_int(decode(pool, "[1", &req, &why), RL_BAD_JSON, "bad JSON: RL_BAD_JSON");
    rl_buf_release(&why);
    rl_pool_free(pool);

    through("{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
            "{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
            "\"stream\":true}",
            "plain: encoded with stream written");
}

static void test_system(void)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(decode(pool,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                  "{\"role\":\"system\",\"content\":\"Speak French.\"},"
                  "{\"role\":\"user\",\"content\":\"Hi\"}]}",
                  &req, &why),
           RL_OK, "system: decoded");
    is_int(req.nsystem, 2, "system: two parts");
    is_str(req.system[0].text, "Be brief.", "system: first");
    is_str(req.system[1].text, "Speak French.", "system: second");
    is_int(req.nmessages, 1, "system: not a turn");
    rl_buf_release(&why);
    rl_pool_free(pool);
    through("{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"system\",\"content\":"
            "\"Be brief.\"},{\"role\":\"system\",\"content\":\"Speak French.\"},{\"role\":"
            "\"user\",\"content\":\"Hi\"}]}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
            "{\"role\":\"system\",\"content\":\"Speak French.\"},{\"role\":\"user\",\"content\":"
            "\"Hi\"}],\"stream\":false}",
            "system: encoded as leading system messages");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
            "{\"role\":\"system\",\"content\":\"late\"}]}",
            "messages[1]");
}

static void test_images(void)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(decode(pool,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"What?\","
                  "\"images\":[\"" PNG_B64 "\",\"" JPEG_B64 "\",\"" GIF_B64 "\",\"" WEBP_B64
                  "\",\"data:image/png;base64," PNG_B64 "\"]}]}",
                  &req, &why),
           RL_OK, "images: decoded");
    const xl_message *m = &req.messages[0];
    is_int(m->nparts, 6, "images: text and five images");
    is_int(m->parts[0].kind, XL_PART_TEXT, "images: text first");
    static const char *const types[] = {"image/png", "image/jpeg", "image/gif", "image/webp",
                                        "image/png"};
    for (int i = 0; i < 5; i++) {
        is_int(m->parts[1 + i].kind, XL_PART_IMAGE, "images: an image part");
        is_str(m->parts[1 + i].media_type, types[i], "images: media type sniffed");
    }
    is_str(m->parts[1].data, PNG_B64, "images: the base64 kept");
    is_str(m->parts[5].data, PNG_B64, "images: a data URL split");
    ok(!m->parts[1].url, "images: no URL");
    is_str(req.features[XL_F_IMAGE], "images", "images: feature named");
    rl_buf_release(&why);
    rl_pool_free(pool);
    through("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"What?\",\"images\":"
            "[\"" PNG_B64 "\"]}]}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"What?\",\"images\":"
            "[\"" PNG_B64 "\"]}],\"stream\":true}",
            "images: encoded as base64 again");
    refused(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"" BMP_B64
        "\"]}]}",
        "messages[0].images[0]");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[7]}]}",
            "messages[0].images[0]");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":"
            "[\"data:impng;base64,AAAA\"]}]}",
            "messages[0].images[0]");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\",\"images\":"
            "[\"" PNG_B64 "\"]}]}",
            "messages[0].images");
}

/* The tool round trip: tools, an assistant turn calling two tools without
 * ids, the results in two tool messages (the second named). */
static const char tools_request[] =
    "{\"model\":\"qwen3:8b\",\"stream\":false,"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
    "\"Weather of a city\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":"
    "{\"type\":\"string\"}},\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":"
    "{\"name\":\"get_time\"}}],"
    "\"messages\":[{\"role\":\"user\",\"content\":\"Weather and time in Oslo?\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Two tools.\",\"tool_calls\":["
    "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}},"
    "{\"function\":{\"index\":1,\"name\":\"get_time\",\"arguments\":{}}}]},"
    "{\"role\":\"tool\",\"content\":\"12C\"},"
    "{\"role\":\"tool\",\"tool_name\":\"get_time\",\"content\":\"10:00\"},"
    "{\"role\":\"user\",\"content\":\"Thanks\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"abc\",\"function\":"
    "{\"name\":\"get_time\",\"arguments\":\"{\\\"tz\\\":\\\"UTC\\\"}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"abc\",\"content\":\"08:00\"}]}";

static void test_tools(void)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(decode(pool, tools_request, &req, &why), RL_OK, "tools: decoded");
    if (why.data)
        printf("# %s\n", why.data);
    is_int(req.ntools, 2, "tools: two");
    is_str(req.tools[0].name, "get_weather", "tools: name");
    is_str(req.tools[0].description, "Weather of a city", "tools: description");
    is_json(req.tools[0].parameters,
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
            "\"required\":[\"city\"]}",
            "tools: schema");
    ok(!req.tools[1].parameters && !req.tools[1].description, "tools: a bare tool");
    is_int(req.tool_choice, XL_CHOICE_UNSET, "tools: Ollama has no tool choice");
    is_str(req.features[XL_F_TOOLS], "tools", "tools: feature");
    is_int(req.nmessages, 6, "tools: six turns (the tool messages merged)");
    const xl_message *a = &req.messages[1];
    is_int(a->nparts, 3, "tools: thinking and two calls");
    is_int(a->parts[0].kind, XL_PART_THINKING, "tools: thinking kept");
    is_str(a->parts[1].id, "call_0", "tools: the first call's id by order");
    is_str(a->parts[2].id, "call_1", "tools: the second call's id by order");
    is_json(a->parts[1].arguments, "{\"city\":\"Oslo\"}", "tools: arguments");
    is_str(a->parts[2].arguments, "{}", "tools: empty arguments");
    const xl_message *t = &req.messages[2];
    is_int(t->role, XL_ROLE_TOOL, "tools: a tool turn");
    is_int(t->nparts, 2, "tools: both results in it");
    is_str(t->parts[0].id, "call_0", "tools: first result paired by order");
    is_str(t->parts[0].name, "get_weather", "tools: its name from the call");
    is_str(t->parts[1].id, "call_1", "tools: second result paired by tool_name");
    is_str(t->parts[1].text, "10:00", "tools: result text");
    is_str(req.messages[4].parts[0].id, "abc", "tools: a call's own id kept");
    is_json(req.messages[4].parts[0].arguments, "{\"tz\":\"UTC\"}",
            "tools: string arguments read as an object");
    is_str(req.messages[5].parts[0].id, "abc", "tools: result paired by tool_call_id");
    is_str(req.messages[5].parts[0].name, "get_time", "tools: named from its call");

    /* Found by fuzz_xlate: a result with tool_name and a tool_call_id no
     * call has was let through (named, so never looked up by
     * xlate_pair_tool_results) and written as an orphan tool result
     * every other format refuses. */
    static const char orphan[] =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_0\","
        "\"function\":{\"name\":\"f\",\"arguments\":{}}}]},"
        "{\"role\":\"tool\",\"content\":\"r\",\"tool_name\":\"f\",\"tool_call_id\":\"abc\"}]}";
    refused(orphan, "abc");
    rl_buf_release(&why);
    rl_pool_free(pool);

    through(tools_request,
            "{\"model\":\"qwen3:8b\",\"messages\":["
            "{\"role\":\"user\",\"content\":\"Weather and time in Oslo?\"},"
            "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Two tools.\",\"tool_calls\":["
            "{\"id\":\"call_0\",\"function\":{\"index\":0,\"name\":\"get_weather\",\"arguments\":"
            "{\"city\":\"Oslo\"}}},{\"id\":\"call_1\",\"function\":{\"index\":1,\"name\":"
            "\"get_time\",\"arguments\":{}}}]},"
            "{\"role\":\"tool\",\"content\":\"12C\",\"tool_name\":\"get_weather\","
            "\"tool_call_id\":\"call_0\"},"
            "{\"role\":\"tool\",\"content\":\"10:00\",\"tool_name\":\"get_time\","
            "\"tool_call_id\":\"call_1\"},"
            "{\"role\":\"user\",\"content\":\"Thanks\"},"
            "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"abc\",\"function\":"
            "{\"index\":0,\"name\":\"get_time\",\"arguments\":{\"tz\":\"UTC\"}}}]},"
            "{\"role\":\"tool\",\"content\":\"08:00\",\"tool_name\":\"get_time\","
            "\"tool_call_id\":\"abc\"}],"
            "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
            "\"description\":\"Weather of a city\",\"parameters\":{\"type\":\"object\","
            "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
            "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}],\"stream\":false}",
            "tools: the round trip encoded with ids and names");

    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
            "messages[0]");
    refused(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":"
        "[{\"function\":{\"name\":\"f\"}}]},{\"role\":\"tool\",\"content\":\"1\"},"
        "{\"role\":\"tool\",\"content\":\"2\"}]}",
        "messages[2]");
    refused("{\"model\":\"m\",\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0]");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
            "{\"name\":\"f\",\"arguments\":[1]}}]}]}",
            "messages[0].tool_calls[0]");
}

static void test_options(void)
{
    rl_pool *pool = rl_pool_new();
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(decode(pool,
                  "{\"model\":\"m\",\"format\":\"json\",\"think\":true,\"options\":{"
                  "\"temperature\":0.7,\"top_p\":0.9,\"top_k\":20,\"seed\":42,\"num_predict\":100,"
                  "\"stop\":[\"END\",\"###\"],\"presence_penalty\":0.5,\"frequency_penalty\":0,"
                  "\"num_thread\":8,\"num_gpu\":1,\"use_mmap\":true,\"mirostat\":null}}",
                  &req, &why),
           RL_OK, "options: decoded");
    ok(req.temperature == 0.7 && req.top_p == 0.9, "options: temperature, top_p");
    is_int(req.top_k, 20, "options: top_k");
    is_int(req.seed, 42, "options: seed");
    is_int(req.max_tokens, 100, "options: num_predict is max tokens");
    is_int(req.nstop, 2, "options: stop");
    is_str(req.stop[1], "###", "options: stop sequence");
    ok(req.presence_penalty == 0.5, "options: presence penalty");
    is_str(req.features[XL_F_TOP_K], "options.top_k", "feature: top_k named");
    is_str(req.features[XL_F_SEED], "options.seed", "feature: seed named");
    is_str(req.features[XL_F_STOP], "options.stop", "feature: stop named");
    is_str(req.features[XL_F_PENALTIES], "options.presence_penalty", "feature: penalty named");
    is_str(req.features[XL_F_JSON_OBJECT], "format", "feature: JSON mode named");
    is_str(req.features[XL_F_THINKING], "think", "feature: think named");
    is_int(req.format, XL_FORMAT_JSON_OBJECT, "format json");
    is_str(req.reasoning_effort, "medium", "think true: medium effort");

    is_int(decode(pool,
                  "{\"model\":\"m\",\"think\":\"high\",\"format\":{\"type\":\"object\"},"
                  "\"options\":{\"num_predict\":-1,\"seed\":-1,\"frequency_penalty\":0}}",
                  &req, &why),
           RL_OK, "options 2: decoded");
    is_str(req.reasoning_effort, "high", "think level kept");
    is_int(req.format, XL_FORMAT_JSON_SCHEMA, "format schema");
    is_json(req.format_schema, "{\"type\":\"object\"}", "format schema text");
    is_int(req.max_tokens, -1, "num_predict -1: no cap");
    ok(!req.features[XL_F_SEED], "seed -1: a random seed, none asked for");
    ok(!req.features[XL_F_PENALTIES], "penalty 0: the default, no feature");
    is_int(decode(pool, "{\"model\":\"m\",\"think\":false,\"logprobs\":false}", &req, &why), RL_OK,
           "think false, logprobs false: decoded");
    ok(!req.reasoning_effort && !req.features[XL_F_THINKING], "think false: no reasoning");

    through("{\"model\":\"m\",\"messages\":[],\"format\":\"json\",\"think\":\"low\",\"options\":{"
            "\"temperature\":0.7,\"top_p\":0.9,\"top_k\":20,\"seed\":42,\"num_predict\":100,"
            "\"stop\":[\"END\"],\"presence_penalty\":0.5,\"frequency_penalty\":0.25,"
            "\"num_thread\":8}}",
            "{\"model\":\"m\",\"messages\":[],\"format\":\"json\",\"options\":{\"temperature\":0.7,"
            "\"top_p\":0.9,\"top_k\":20,\"seed\":42,\"num_predict\":100,\"stop\":[\"END\"],"
            "\"presence_penalty\":0.5,\"frequency_penalty\":0.25},\"stream\":true,\"think\":"
            "\"low\"}",
            "options: encoded (runner options gone)");

    static const char *const refused_options[] = {
        "num_ctx",      "num_keep",     "repeat_penalty",   "repeat_last_n",
        "min_p",        "tfs_z",        "typical_p",        "mirostat",
        "mirostat_tau", "mirostat_eta", "penalize_newline", "made_up"};
    for (size_t i = 0; i < sizeof refused_options / sizeof refused_options[0]; i++) {
        char body[160], field[64];
        snprintf(body, sizeof body, "{\"model\":\"m\",\"options\":{\"%s\":1}}", refused_options[i]);
        snprintf(field, sizeof field, "options.%s", refused_options[i]);
        refused(body, field);
    }
    refused("{\"model\":\"m\",\"options\":{\"temperature\":\"hot\"}}", "options.temperature");
    refused("{\"model\":\"m\",\"logprobs\":true}", "logprobs");
    refused("{\"model\":\"m\",\"top_logprobs\":3}", "top_logprobs");
    refused("{\"model\":\"m\",\"think\":\"extreme\"}", "think");
    refused("{\"model\":\"m\",\"format\":\"yaml\"}", "format");
    refused("{\"model\":\"m\",\"template\":\"{{ .Prompt }}\"}", "template");
    refused(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"bob\"}]}",
        "messages[0].name");
    refused("{\"model\":\"m\",\"messages\":[{\"role\":\"critic\",\"content\":\"x\"}]}",
            "messages[0].role");
    rl_buf_release(&why);
    rl_pool_free(pool);
}

/* What the model can hold and Ollama cannot say: refused when encoding. */
static void test_encode_limits(void)
{
    xl_part text = {.kind = XL_PART_TEXT, .text = "Hi"};
    xl_part url = {.kind = XL_PART_IMAGE, .url = "https://example.com/a.png"};
    xl_message turn = {.role = XL_ROLE_USER, .parts = &text, .nparts = 1};
    xl_tool tool = {.name = "f", .strict = -1};
    xl_request req = {.model = "m",
                      .messages = &turn,
                      .nmessages = 1,
                      .tools = &tool,
                      .ntools = 1,
                      .parallel_tool_calls = -1,
                      .max_tokens = -1,
                      .temperature = -1,
                      .top_p = -1,
                      .top_k = -1,
                      .n = 1,
                      .thinking_budget = -1};
    rl_buf out, path, why;
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    rl_buf_init(&why, 0);

    req.tool_choice = XL_CHOICE_NONE;
    is_int(D->encode_request(&req, &out, &path, &why), RL_OK, "tool_choice none: encoded");
    is_json(out.data,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
            "\"stream\":false}",
            "tool_choice none: no tools offered");
    req.tool_choice = XL_CHOICE_NAMED;
    req.tool_choice_name = "f";
    is_int(D->encode_request(&req, &out, &path, &why), RL_BAD_REQUEST, "named tool: refused");
    ok(why.data && strstr(why.data, "`tool_choice`"), "named tool: the reason names tool_choice");
    req.tool_choice = XL_CHOICE_REQUIRED;
    is_int(D->encode_request(&req, &out, &path, &why), RL_BAD_REQUEST, "required tool: refused");
    req.tool_choice = XL_CHOICE_AUTO;

    req.n = 2;
    req.features[XL_F_CHOICES] = "n";
    rl_buf_reset(&why);
    is_int(D->encode_request(&req, &out, &path, &why), RL_BAD_REQUEST, "n 2: refused");
    ok(why.data && strstr(why.data, "`n`"), "n 2: named");
    req.n = 1;
    req.features[XL_F_CHOICES] = NULL;
    req.parallel_tool_calls = 0;
    req.features[XL_F_PARALLEL_OFF] = "parallel_tool_calls";
    is_int(D->encode_request(&req, &out, &path, &why), RL_BAD_REQUEST, "parallel off: refused");
    req.parallel_tool_calls = -1;
    req.features[XL_F_PARALLEL_OFF] = NULL;

    turn.parts = &url;
    is_int(D->encode_request(&req, &out, &path, &why), RL_BAD_REQUEST, "image URL: refused");
    turn.parts = &text;

    /* Reasoning as think levels, from an effort or a budget. */
    static const struct {
        const char *effort;
        int64_t budget;
        const char *think;
    } thinks[] = {
        {"minimal", -1, "\"low\""}, {"low", -1, "\"low\""},     {"medium", -1, "\"medium\""},
        {"high", -1, "\"high\""},   {"none", -1, "false"},      {"other", -1, "true"},
        {NULL, 1024, "\"low\""},    {NULL, 5000, "\"medium\""}, {NULL, 30000, "\"high\""}};
    req.ntools = 0;
    for (size_t i = 0; i < sizeof thinks / sizeof thinks[0]; i++) {
        req.reasoning_effort = thinks[i].effort;
        req.thinking_budget = thinks[i].budget;
        rl_buf_reset(&out);
        char want[200];
        snprintf(want, sizeof want,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                 "\"stream\":false,\"think\":%s}",
                 thinks[i].think);
        is_int(D->encode_request(&req, &out, &path, &why), RL_OK, "think: encoded");
        is_json(out.data, want, "think: the level for an effort or a budget");
    }
    rl_buf_release(&out);
    rl_buf_release(&path);
    rl_buf_release(&why);
}

/* ---- answers ---- */

static const char answer_body[] =
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00.6Z\",\"message\":{\"role\":"
    "\"assistant\",\"content\":\"Let me check.\",\"thinking\":\"Weather.\",\"tool_calls\":["
    "{\"function\":{\"index\":0,\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}},"
    "{\"id\":\"call_x\",\"function\":{\"index\":1,\"name\":\"get_time\",\"arguments\":{}}}]},"
    "\"done_reason\":\"stop\",\"done\":true,\"total_duration\":912000000,"
    "\"prompt_eval_count\":31,\"eval_count\":12}";

static void test_answers(void)
{
    rl_pool *pool = rl_pool_new();
    xl_response resp;
    is_int(D->decode_response(answer_body, strlen(answer_body), pool, &resp), RL_OK,
           "answer: decoded");
    is_str(resp.model, "qwen3:8b", "answer: model");
    ok(!resp.id, "answer: Ollama has no id");
    is_int(resp.nparts, 4, "answer: thinking, text, two calls");
    is_int(resp.parts[0].kind, XL_PART_THINKING, "answer: thinking first");
    is_str(resp.parts[0].text, "Weather.", "answer: thinking text");
    is_str(resp.parts[1].text, "Let me check.", "answer: text");
    is_str(resp.parts[2].id, "call_0", "answer: a call without id gets call_<index>");
    is_str(resp.parts[2].name, "get_weather", "answer: call name");
    is_json(resp.parts[2].arguments, "{\"city\":\"Oslo\"}", "answer: call arguments");
    is_str(resp.parts[3].id, "call_x", "answer: a call's own id kept");
    is_int(resp.stop, XL_STOP_TOOL, "answer: stop with calls is a stop for tools");
    is_int(resp.usage.input, 31, "answer: prompt_eval_count is input");
    is_int(resp.usage.output, 12, "answer: eval_count is output");
    is_int(resp.usage.cached_input, -1, "answer: Ollama has no cached figure");

    rl_buf out;
    rl_buf_init(&out, 0);
    is_int(D->encode_response(&resp, &reply, &out), RL_OK, "answer: encoded");
    is_json(out.data,
            "{\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{"
            "\"role\":\"assistant\",\"content\":\"Let me check.\",\"thinking\":\"Weather.\","
            "\"tool_calls\":[{\"id\":\"call_0\",\"function\":{\"index\":0,\"name\":"
            "\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}},{\"id\":\"call_x\",\"function\":"
            "{\"index\":1,\"name\":\"get_time\",\"arguments\":{}}}]},\"done_reason\":\"stop\","
            "\"done\":true,\"prompt_eval_count\":31,\"eval_count\":12}",
            "answer: encoded with the client's model and created_at from the reply");

    /* Usage with cached tokens: input counts them (prov.h), and Ollama
     * has no separate figure. */
    xl_part text = {.kind = XL_PART_TEXT, .text = "Hi"};
    xl_response cached = {.parts = &text,
                          .nparts = 1,
                          .stop = XL_STOP_END,
                          .usage = {100, 7, 40, 0, 0},
                          .reasoning_tokens = 3};
    rl_buf_reset(&out);
    is_int(D->encode_response(&cached, &reply, &out), RL_OK, "cached usage: encoded");
    is_json(out.data,
            "{\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{"
            "\"role\":\"assistant\",\"content\":\"Hi\"},\"done_reason\":\"stop\",\"done\":true,"
            "\"prompt_eval_count\":100,\"eval_count\":7}",
            "cached usage: all 100 input tokens counted");

    static const char *const not_answers[] = {"{\"error\":\"boom\"}", "{\"done\":true}", "[]", "{"};
    for (size_t i = 0; i < sizeof not_answers / sizeof not_answers[0]; i++)
        is_int(D->decode_response(not_answers[i], strlen(not_answers[i]), pool, &resp),
               RL_UPSTREAM_PROTOCOL, "not an answer: protocol error");
    rl_buf_release(&out);
    rl_pool_free(pool);
}

static void test_stop_tables(void)
{
    rl_pool *pool = rl_pool_new();
    static const struct {
        const char *reason; /* NULL: absent */
        int calls;
        xl_stop stop;
    } rows[] = {
        {"stop", 0, XL_STOP_END},     {"length", 0, XL_STOP_LENGTH}, {"load", 0, XL_STOP_OTHER},
        {"unload", 0, XL_STOP_OTHER}, {"weird", 0, XL_STOP_OTHER},   {NULL, 0, XL_STOP_END},
        {"stop", 1, XL_STOP_TOOL},    {"length", 1, XL_STOP_LENGTH},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char body[300], what[80];
        snprintf(body, sizeof body,
                 "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"x\"%s}%s%s%s,"
                 "\"done\":true}",
                 rows[i].calls ? ",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]" : "",
                 rows[i].reason ? ",\"done_reason\":\"" : "", rows[i].reason ? rows[i].reason : "",
                 rows[i].reason ? "\"" : "");
        xl_response resp;
        snprintf(what, sizeof what, "done_reason %s%s", rows[i].reason ? rows[i].reason : "(none)",
                 rows[i].calls ? " with calls" : "");
        is_int(D->decode_response(body, strlen(body), pool, &resp), RL_OK, what);
        is_int(resp.stop, rows[i].stop, what);
    }
    static const struct {
        xl_stop stop;
        const char *reason;
    } out_rows[] = {
        {XL_STOP_UNSET, "stop"}, {XL_STOP_END, "stop"},      {XL_STOP_LENGTH, "length"},
        {XL_STOP_TOOL, "stop"},  {XL_STOP_SEQUENCE, "stop"}, {XL_STOP_FILTER, "stop"},
        {XL_STOP_OTHER, "stop"},
    };
    rl_buf out;
    rl_buf_init(&out, 0);
    for (size_t i = 0; i < sizeof out_rows / sizeof out_rows[0]; i++) {
        xl_response resp = {.stop = out_rows[i].stop, .usage = PROV_USAGE_UNKNOWN};
        rl_buf_reset(&out);
        is_int(D->encode_response(&resp, &reply, &out), RL_OK, "stop: encoded");
        json_t *j = json_loads(out.data, 0, NULL);
        char what[64];
        snprintf(what, sizeof what, "stop %d -> %s", (int)out_rows[i].stop, out_rows[i].reason);
        is_str(json_string_value(json_object_get(j, "done_reason")), out_rows[i].reason, what);
        json_decref(j);
    }
    rl_buf_release(&out);
    rl_pool_free(pool);
}

static void test_errors(void)
{
    rl_pool *pool = rl_pool_new();
    xl_error e;
    static const struct {
        const char *body;
        const char *message, *type;
    } rows[] = {
        {"{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}",
         "model \"x\" not found, try pulling it first", NULL},
        {"{\"error\":{\"message\":\"Rate limited\",\"type\":\"rate_limit\"}}", "Rate limited",
         "rate_limit"},
        {"{\"detail\":\"nope\"}", NULL, NULL},
        {"<html>502</html>", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        is_int(D->decode_error(rows[i].body, strlen(rows[i].body), pool, &e), RL_OK,
               "error body: read");
        is_str(e.message, rows[i].message, "error body: message");
        is_str(e.type, rows[i].type, "error body: type");
    }
    rl_pool_free(pool);
}

/* ---- streams ---- */

/* The events a decoder emitted, one line each. */
typedef struct events {
    rl_buf text;
} events;

static const char *const kind_names[] = {"START", "TEXT",  "THINKING", "TOOL_CALL", "TOOL_ARGS",
                                         "STOP",  "USAGE", "END",      "ERROR"};

static int collect(void *ctx, const xl_event *ev)
{
    rl_buf *b = &((events *)ctx)->text;
    rl_buf_puts(b, kind_names[ev->kind]);
    switch (ev->kind) {
    case XL_EV_START:
        rl_buf_printf(b, " %s", ev->model ? ev->model : "-");
        break;
    case XL_EV_TOOL_CALL:
        rl_buf_printf(b, " %d %s %s", ev->index, ev->id, ev->name);
        break;
    case XL_EV_TOOL_ARGS:
        rl_buf_printf(b, " %d %s", ev->index, ev->text);
        break;
    case XL_EV_STOP:
        rl_buf_printf(b, " %d", (int)ev->stop);
        break;
    case XL_EV_USAGE:
        rl_buf_printf(b, " %lld %lld %lld", (long long)ev->usage.input, (long long)ev->usage.output,
                      (long long)ev->usage.cached_input);
        break;
    default:
        if (ev->text)
            rl_buf_printf(b, " %s", ev->text);
    }
    rl_buf_puts(b, "\n");
    return 0;
}

#define LINE(msg, done)                                                                            \
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00.1Z\",\"message\":{\"role\":"     \
    "\"assistant\"," msg "},\"done\":" done "}"

static void test_stream_decode(void)
{
    static const char *const lines[] = {
        LINE("\"content\":\"\",\"thinking\":\"Hmm\"", "false"),
        LINE("\"content\":\"Let me\"", "false"),
        LINE("\"content\":\" check.\"", "false"),
        LINE("\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\","
             "\"arguments\":{\"city\":\"Oslo\"}}},{\"id\":\"t9\",\"function\":{\"name\":\"f\","
             "\"arguments\":{}}}]",
             "false"),
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00.6Z\",\"message\":{\"role\":"
        "\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,"
        "\"prompt_eval_count\":31,\"eval_count\":12}",
        LINE("\"content\":\"after the end\"", "false"),
    };
    rl_pool *pool = rl_pool_new();
    void *state = rl_palloc(pool, D->dec_size);
    events ev;
    rl_buf_init(&ev.text, 0);
    is_int(D->stream_framing, FRAME_NDJSON, "stream: NDJSON upstream");
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        is_int(D->dec_event(state, pool, NULL, lines[i], strlen(lines[i]), collect, &ev), RL_OK,
               "stream: a line read");
    is_int(D->dec_finish(state, pool, collect, &ev), RL_OK, "stream: finished");
    is_str(ev.text.data,
           "START qwen3:8b\n"
           "THINKING Hmm\n"
           "TEXT Let me\n"
           "TEXT  check.\n"
           "TOOL_CALL 0 call_0 get_weather\n"
           "TOOL_ARGS 0 {\"city\":\"Oslo\"}\n"
           "TOOL_CALL 1 t9 f\n"
           "TOOL_ARGS 1 {}\n"
           "STOP 3\n"
           "USAGE 31 12 -1\n"
           "END\n",
           "stream: the model events, in order, nothing after the end");

    /* An error line mid-stream; a cut stream has no END. */
    memset(state, 0, D->dec_size);
    rl_buf_reset(&ev.text);
    const char *l1 = LINE("\"content\":\"Hi\"", "false");
    const char *l2 = "{\"error\":\"an error was encountered while running the model\"}";
    D->dec_event(state, pool, NULL, l1, strlen(l1), collect, &ev);
    D->dec_event(state, pool, NULL, l2, strlen(l2), collect, &ev);
    is_int(D->dec_finish(state, pool, collect, &ev), RL_OK, "stream error: finished");
    is_str(ev.text.data,
           "START qwen3:8b\nTEXT Hi\nERROR an error was encountered while running the model\n",
           "stream error: ERROR event");
    memset(state, 0, D->dec_size);
    is_int(D->dec_event(state, pool, NULL, "not json", 8, collect, &ev), RL_UPSTREAM_PROTOCOL,
           "stream: a line that is not JSON");
    rl_buf_release(&ev.text);
    rl_pool_free(pool);
}

/* Feeds ev to the encoder; the bytes it wrote must be want. */
static void enc(void *state, const xl_reply *r, xl_event ev, const char *want, const char *what)
{
    rl_buf out;
    rl_buf_init(&out, 0);
    is_int(D->enc_event(state, r, &ev, &out), RL_OK, what);
    is_str(out.data ? out.data : "", want, what);
    rl_buf_release(&out);
}

#define OUT(msg, done)                                                                             \
    "{\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{\"role\":"   \
    "\"assistant\"," msg "},\"done\":" done "}\n"

static void test_stream_encode(void)
{
    rl_pool *pool = rl_pool_new();
    void *state = rl_palloc(pool, D->enc_size);
    enc(state, &reply, (xl_event){.kind = XL_EV_START, .id = "msg_1", .model = "claude"}, "",
        "enc: START writes nothing");
    enc(state, &reply, (xl_event){.kind = XL_EV_THINKING, .text = "Hmm"},
        OUT("\"content\":\"\",\"thinking\":\"Hmm\"", "false"), "enc: thinking piece");
    enc(state, &reply, (xl_event){.kind = XL_EV_THINKING, .signature = "sig"}, "",
        "enc: a signature alone writes nothing");
    enc(state, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Let me"},
        OUT("\"content\":\"Let me\"", "false"), "enc: text piece at once");
    enc(state, &reply,
        (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "toolu_1", .name = "get_weather"}, "",
        "enc: a call is held");
    enc(state, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"ci"}, "",
        "enc: argument piece held");
    enc(state, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "ty\":\"Oslo\"}"},
        "", "enc: argument piece held");
    enc(state, &reply,
        (xl_event){.kind = XL_EV_TOOL_CALL, .index = 1, .id = "toolu_2", .name = "get_time"},
        OUT("\"content\":\"\",\"tool_calls\":[{\"id\":\"toolu_1\",\"function\":{\"index\":0,"
            "\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}}]",
            "false"),
        "enc: the next call completes the first");
    enc(state, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        OUT("\"content\":\"\",\"tool_calls\":[{\"id\":\"toolu_2\",\"function\":{\"index\":1,"
            "\"name\":\"get_time\",\"arguments\":{}}}]",
            "false"),
        "enc: STOP completes the second (no arguments: {})");
    enc(state, &reply,
        (xl_event){.kind = XL_EV_USAGE, .usage = {40, -1, 10, -1, 0}, .reasoning_tokens = -1}, "",
        "enc: usage kept for the end");
    enc(state, &reply, (xl_event){.kind = XL_EV_USAGE, .usage = {-1, 9, -1, -1, 0}}, "",
        "enc: later usage merged");
    enc(state, &reply, (xl_event){.kind = XL_EV_END},
        "{\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{"
        "\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,"
        "\"prompt_eval_count\":40,\"eval_count\":9}\n",
        "enc: END is the done line with reason and counts");
    enc(state, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "late"}, "",
        "enc: nothing after the end");

    /* Length stop; an error ends the stream with Ollama's error line. */
    memset(state, 0, D->enc_size);
    enc(state, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "a\"b"},
        OUT("\"content\":\"a\\\"b\"", "false"), "enc: text escaped");
    enc(state, &reply, (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"}, "",
        "enc: a call held");
    enc(state, &reply, (xl_event){.kind = XL_EV_ERROR, .text = "overloaded", .type = "x"},
        "{\"error\":\"overloaded\"}\n", "enc: ERROR line; the incomplete call dropped");
    memset(state, 0, D->enc_size);
    enc(state, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_LENGTH}, "", "enc: stop");
    enc(state, &reply, (xl_event){.kind = XL_EV_END},
        "{\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{"
        "\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"length\",\"done\":true}\n",
        "enc: length, no usage told: no counts");

    /* Arguments for a call it was not told of; arguments not an object. */
    memset(state, 0, D->enc_size);
    rl_buf out;
    rl_buf_init(&out, 0);
    xl_event stray = {.kind = XL_EV_TOOL_ARGS, .index = 3, .text = "{}"};
    is_int(D->enc_event(state, &reply, &stray, &out), RL_UPSTREAM_PROTOCOL,
           "enc: arguments of an unknown call");
    memset(state, 0, D->enc_size);
    xl_event call = {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"};
    xl_event bad = {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "[1]"};
    xl_event end = {.kind = XL_EV_END};
    D->enc_event(state, &reply, &call, &out);
    D->enc_event(state, &reply, &bad, &out);
    is_int(D->enc_event(state, &reply, &end, &out), RL_UPSTREAM_PROTOCOL,
           "enc: arguments that are not an object");

    /* A client stream framed as SSE gets data: events. */
    xl_reply sse = reply;
    sse.framing = FRAME_SSE;
    memset(state, 0, D->enc_size);
    enc(state, &sse, (xl_event){.kind = XL_EV_TEXT, .text = "x"},
        "data: {\"model\":\"client-model\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{"
        "\"role\":\"assistant\",\"content\":\"x\"},\"done\":false}\n\n",
        "enc: SSE framing");
    rl_buf_release(&out);
    rl_pool_free(pool);
}

int main(void)
{
    test_plain();
    test_system();
    test_images();
    test_tools();
    test_options();
    test_encode_limits();
    test_answers();
    test_stop_tables();
    test_errors();
    test_stream_decode();
    test_stream_encode();
    return tap_done();
}
