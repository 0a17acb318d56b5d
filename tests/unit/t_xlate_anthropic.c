/* Unit tests for engine/xlate_anthropic: the Anthropic Messages dialect of
 * the translation model — requests both ways, refusals, answers, stop
 * reasons, usage with cache counts, errors, and streams both ways (bytes
 * compared event by event, JSON compared parsed). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *A = &xl_anthropic;
static rl_pool *pool;
static rl_buf out, path, why;

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Both texts parsed and compared as JSON values (both printed if not). */
static void json_is(const char *got, const char *want, const char *what)
{
    json_t *g = got ? json_loads(got, 0, NULL) : NULL, *w = json_loads(want, 0, NULL);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want);
    json_decref(g);
    json_decref(w);
}

static rl_err decode(const char *body, xl_request *req)
{
    rl_buf_reset(&why);
    return A->decode_request(body, strlen(body), NULL, pool, req, &why);
}

static rl_err encode(const xl_request *req)
{
    rl_buf_reset(&out);
    rl_buf_reset(&path);
    rl_buf_reset(&why);
    return A->encode_request(req, &out, &path, &why);
}

/* Decodes body, encodes it back, compares with want. */
static void round_trip(const char *body, const char *want, const char *what)
{
    xl_request req;
    rl_err err = decode(body, &req);
    if (!ok(err == RL_OK, what)) {
        printf("#   decode: %s %s\n", rl_err_text(err), why.data ? why.data : "");
        return;
    }
    err = encode(&req);
    is_int(err, RL_OK, what);
    json_is(out.data, want, what);
}

/* Decoding body is refused naming field. */
static void refused(const char *body, const char *field, const char *what)
{
    xl_request req;
    is_int(decode(body, &req), RL_BAD_REQUEST, what);
    if (!ok(why.data && strstr(why.data, field), what))
        printf("#   why:  %s\n#   want it to name: %s\n", why.data ? why.data : "(null)", field);
}

/* ---- requests ----------------------------------------------------------- */

static void test_plain(void)
{
    xl_request req;
    const char body[] = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64,\"temperature\":0,"
                        "\"top_p\":0.5,\"top_k\":40,\"stop_sequences\":[\"END\"],"
                        "\"metadata\":{\"user_id\":\"u-1\"},\"stream\":true,"
                        "\"service_tier\":\"auto\","
                        "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}";
    is_int(decode(body, &req), RL_OK, "plain: decodes");
    is_str(req.model, "claude-haiku-4-5", "plain: model");
    is_int(req.max_tokens, 64, "plain: max_tokens");
    ok(req.temperature == 0 && req.top_p == 0.5, "plain: temperature and top_p");
    is_int(req.top_k, 40, "plain: top_k");
    is_int(req.nstop, 1, "plain: one stop sequence");
    is_str(req.stop[0], "END", "plain: the stop sequence");
    is_str(req.user, "u-1", "plain: metadata.user_id is the user");
    is_int(req.stream, 1, "plain: stream");
    is_int(req.nmessages, 1, "plain: one turn");
    is_int(req.messages[0].role, XL_ROLE_USER, "plain: a user turn");
    is_str(req.messages[0].parts[0].text, "Hello", "plain: its text");
    is_str(req.features[XL_F_TOP_K], "top_k", "plain: top_k recorded");
    is_str(req.features[XL_F_STOP], "stop_sequences", "plain: stop recorded");
    ok(!req.features[XL_F_TOOLS] && !req.features[XL_F_THINKING], "plain: no other features");
    is_int(encode(&req), RL_OK, "plain: encodes");
    is_str(path.data, "/v1/messages", "plain: path");
    json_is(out.data,
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\","
            "\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}],\"stop_sequences\":[\"END\"],"
            "\"temperature\":0.0,\"top_p\":0.5,\"top_k\":40,\"metadata\":{\"user_id\":\"u-1\"},"
            "\"stream\":true}",
            "plain: the upstream body");

    /* A request from another dialect without max_tokens gets the default. */
    req.max_tokens = -1;
    req.stream = 0;
    req.user = NULL;
    req.nstop = 0;
    req.top_k = req.top_p = req.temperature = -1;
    is_int(encode(&req), RL_OK, "default max_tokens: encodes");
    json_is(out.data,
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
            "\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}]}",
            "default max_tokens: XLATE_DEFAULT_MAX_TOKENS");

    /* Nulls are unset, as some clients say it. */
    round_trip("{\"model\":\"m\",\"max_tokens\":5,\"temperature\":null,\"system\":null,"
               "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":"
               "[{\"type\":\"text\",\"text\":\"x\"}]}]}",
               "null members: unset");
}

static void test_system(void)
{
    xl_request req;
    round_trip("{\"model\":\"m\",\"max_tokens\":5,\"system\":\"Be brief.\","
               "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "{\"model\":\"m\",\"max_tokens\":5,\"system\":\"Be brief.\",\"messages\":[{\"role\":"
               "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]}",
               "system: a string");

    /* Claude Code: text blocks with cache_control (skipped), and a role
     * "system" message adding to the prompt. */
    const char body[] =
        "{\"model\":\"m\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"One.\","
        "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"Two.\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"system\","
        "\"content\":\"Three.\"}],\"context_management\":{\"edits\":[]}}";
    is_int(decode(body, &req), RL_OK, "system blocks: decode");
    is_int(req.nsystem, 3, "system blocks: three parts (two blocks, a system message)");
    is_str(req.system[2].text, "Three.", "system blocks: the system message last");
    is_int(req.nmessages, 1, "system blocks: the system message is no turn");
    is_int(encode(&req), RL_OK, "system blocks: encode");
    json_is(out.data,
            "{\"model\":\"m\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"One.\"},"
            "{\"type\":\"text\",\"text\":\"Two.\"},{\"type\":\"text\",\"text\":\"Three.\"}],"
            "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]}",
            "system blocks: text blocks upstream");
}

static void test_images(void)
{
    xl_request req;
    const char body[] =
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
        "\"data\":\"iVBORw0KGgo=\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://e.x/a.jpg\"}},"
        "{\"type\":\"text\",\"text\":\"What is this?\"}]}]}";
    is_int(decode(body, &req), RL_OK, "images: decode");
    const xl_part *p = req.messages[0].parts;
    is_int(p[0].kind, XL_PART_IMAGE, "images: base64 is an image");
    is_str(p[0].media_type, "image/png", "images: media_type");
    is_str(p[0].data, "iVBORw0KGgo=", "images: data");
    is_str(p[1].url, "https://e.x/a.jpg", "images: url");
    ok(req.features[XL_F_IMAGE] && req.features[XL_F_IMAGE_URL], "images: features recorded");
    is_int(encode(&req), RL_OK, "images: encode");
    json_is(out.data,
            "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
            "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
            "\"data\":\"iVBORw0KGgo=\"}},"
            "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://e.x/a.jpg\"}},"
            "{\"type\":\"text\",\"text\":\"What is this?\"}]}]}",
            "images: both sources upstream");
}

/* Tools offered, a tool_choice, then the round trip: the assistant's
 * tool_use turn and the user's tool_result turn (with text after it). */
static void test_tools(void)
{
    xl_request req;
    const char body[] =
        "{\"model\":\"m\",\"max_tokens\":100,"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather now\","
        "\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
        "\"required\":[\"city\"]},\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\","
        "\"disable_parallel_tool_use\":true},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Oslo?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"Call it.\","
        "\"signature\":\"sig1\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":"
        "\"get_weather\",\"input\":{\"city\":\"Oslo\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"-3 C\"},{\"type\":\"text\",\"text\":\"snow\"}],"
        "\"is_error\":false},{\"type\":\"text\",\"text\":\"And tomorrow?\"}]}]}";
    is_int(decode(body, &req), RL_OK, "tools: decode");
    is_int(req.ntools, 1, "tools: one tool");
    is_str(req.tools[0].parameters,
           "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":["
           "\"city\"]}",
           "tools: the schema's text");
    is_int(req.tool_choice, XL_CHOICE_NAMED, "tools: tool_choice tool");
    is_str(req.tool_choice_name, "get_weather", "tools: its name");
    is_int(req.parallel_tool_calls, 0, "tools: parallel off");
    ok(req.features[XL_F_TOOLS] && req.features[XL_F_PARALLEL_OFF], "tools: features recorded");
    is_int(req.nmessages, 4, "tools: user, assistant, tool, user turns");
    is_int(req.messages[2].role, XL_ROLE_TOOL, "tools: the results are a tool turn");
    is_int(req.messages[3].role, XL_ROLE_USER, "tools: the text after them a user turn");
    const xl_part *call = &req.messages[1].parts[1], *res = &req.messages[2].parts[0];
    is_str(call->arguments, "{\"city\":\"Oslo\"}", "tools: input as arguments text");
    is_str(res->id, "toolu_1", "tools: the result's id");
    is_str(res->name, "get_weather", "tools: the result named from its call");
    is_str(res->text, "-3 C\nsnow", "tools: text blocks joined");
    is_str(req.messages[1].parts[0].signature, "sig1", "tools: thinking signature kept");
    is_int(encode(&req), RL_OK, "tools: encode");
    json_is(out.data,
            "{\"model\":\"m\",\"max_tokens\":100,\"messages\":["
            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in Oslo?\"}]},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"Call it.\","
            "\"signature\":\"sig1\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":"
            "\"get_weather\",\"input\":{\"city\":\"Oslo\"}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
            "\"content\":\"-3 C\\nsnow\"},{\"type\":\"text\",\"text\":\"And tomorrow?\"}]}],"
            "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather now\",\"input_schema\":"
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":"
            "[\"city\"]}}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\","
            "\"disable_parallel_tool_use\":true}}",
            "tools: tool_use and tool_result turns upstream");

    /* As another dialect says it (OpenAI chat): two calls, two tool turns,
     * a user turn: one user turn upstream, results first. An unsigned
     * thinking part is not sent; an error result keeps is_error. */
    xl_part u0[] = {{.kind = XL_PART_TEXT, .text = "Two cities?"}};
    xl_part a1[] = {
        {.kind = XL_PART_THINKING, .text = "hmm"},
        {.kind = XL_PART_TOOL_CALL, .id = "call_a", .name = "w", .arguments = "{}"},
        {.kind = XL_PART_TOOL_CALL, .id = "call_b", .name = "w", .arguments = "{\"c\":1}"}};
    xl_part t2[] = {{.kind = XL_PART_TOOL_RESULT, .id = "call_a", .text = "1"}};
    xl_part t3[] = {{.kind = XL_PART_TOOL_RESULT, .id = "call_b", .text = "oops", .is_error = 1}};
    xl_part u4[] = {{.kind = XL_PART_TEXT, .text = "Thanks"}};
    xl_message msgs[] = {{XL_ROLE_USER, u0, 1},
                         {XL_ROLE_ASSISTANT, a1, 3},
                         {XL_ROLE_TOOL, t2, 1},
                         {XL_ROLE_TOOL, t3, 1},
                         {XL_ROLE_USER, u4, 1}};
    xl_tool tool = {.name = "w", .strict = 1};
    xl_request o = {.model = "gpt-x",
                    .messages = msgs,
                    .nmessages = N(msgs),
                    .tools = &tool,
                    .ntools = 1,
                    .tool_choice = XL_CHOICE_REQUIRED,
                    .parallel_tool_calls = -1,
                    .max_tokens = 10,
                    .temperature = -1,
                    .top_p = -1,
                    .top_k = -1,
                    .thinking_budget = -1};
    is_int(encode(&o), RL_OK, "openai-shaped: encode");
    json_is(out.data,
            "{\"model\":\"gpt-x\",\"max_tokens\":10,\"messages\":["
            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Two cities?\"}]},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"call_a\","
            "\"name\":\"w\",\"input\":{}},{\"type\":\"tool_use\",\"id\":\"call_b\",\"name\":\"w\","
            "\"input\":{\"c\":1}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_a\","
            "\"content\":\"1\"},{\"type\":\"tool_result\",\"tool_use_id\":\"call_b\",\"content\":"
            "\"oops\",\"is_error\":true},{\"type\":\"text\",\"text\":\"Thanks\"}]}],"
            "\"tools\":[{\"name\":\"w\",\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],"
            "\"tool_choice\":{\"type\":\"any\"}}",
            "openai-shaped: turns merged, results first, schema defaulted");

    /* Refusals when encoding. */
    a1[1].arguments = "[1]";
    is_int(encode(&o), RL_BAD_REQUEST, "arguments not an object: refused");
    ok(why.data && strstr(why.data, "call_a"), "arguments not an object: names the call");
    a1[1].arguments = "{}";
    msgs[0].role = XL_ROLE_ASSISTANT;
    is_int(encode(&o), RL_BAD_REQUEST, "assistant first: refused");
    ok(why.data && strstr(why.data, "first turn"), "assistant first: says why");
    msgs[0].role = XL_ROLE_USER;

    /* tool_choice rows, and parallel off with no choice. */
    static const struct {
        xl_tool_choice c;
        int parallel;
        const char *want;
    } choices[] = {
        {XL_CHOICE_AUTO, -1, "{\"type\":\"auto\"}"},
        {XL_CHOICE_NONE, 0, "{\"type\":\"none\"}"},
        {XL_CHOICE_REQUIRED, 0, "{\"type\":\"any\",\"disable_parallel_tool_use\":true}"},
        {XL_CHOICE_UNSET, 0, "{\"type\":\"auto\",\"disable_parallel_tool_use\":true}"},
    };
    for (size_t i = 0; i < N(choices); i++) {
        o.tool_choice = choices[i].c;
        o.parallel_tool_calls = choices[i].parallel;
        is_int(encode(&o), RL_OK, "tool_choice row: encodes");
        json_t *j = json_loads(out.data, 0, NULL);
        char *got = json_dumps(json_object_get(j, "tool_choice"), JSON_COMPACT);
        json_is(got, choices[i].want, "tool_choice row");
        free(got);
        json_decref(j);
    }
    o.tool_choice = XL_CHOICE_UNSET;
    o.parallel_tool_calls = -1;
    is_int(encode(&o), RL_OK, "no tool_choice: encodes");
    ok(!strstr(out.data, "tool_choice"), "no tool_choice: none sent");

    /* The decoded choices. */
    static const struct {
        const char *body;
        xl_tool_choice c;
    } dchoices[] = {
        {"{\"type\":\"auto\"}", XL_CHOICE_AUTO},
        {"{\"type\":\"any\"}", XL_CHOICE_REQUIRED},
        {"{\"type\":\"none\"}", XL_CHOICE_NONE},
    };
    for (size_t i = 0; i < N(dchoices); i++) {
        char b[512];
        snprintf(b, sizeof b,
                 "{\"model\":\"m\",\"max_tokens\":5,\"tool_choice\":%s,\"messages\":[]}",
                 dchoices[i].body);
        is_int(decode(b, &req), RL_OK, "tool_choice decoded");
        is_int(req.tool_choice, dchoices[i].c, "tool_choice decoded: its value");
    }
}

static void test_thinking(void)
{
    xl_request req;
    round_trip("{\"model\":\"m\",\"max_tokens\":16000,\"thinking\":{\"type\":\"enabled\","
               "\"budget_tokens\":10000},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "{\"model\":\"m\",\"max_tokens\":16000,\"thinking\":{\"type\":\"enabled\","
               "\"budget_tokens\":10000},\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"text\",\"text\":\"x\"}]}]}",
               "thinking: budget kept");
    const char cc[] = "{\"model\":\"m\",\"max_tokens\":64000,\"thinking\":{\"type\":\"adaptive\"},"
                      "\"output_config\":{\"effort\":\"high\"},\"messages\":[]}";
    is_int(decode(cc, &req), RL_OK, "adaptive + effort: decode");
    is_int(req.thinking_budget, -1, "adaptive: no budget");
    is_str(req.reasoning_effort, "high", "output_config.effort: the effort");
    is_str(req.features[XL_F_THINKING], "output_config.effort", "effort: feature named");
    /* An effort from OpenAI without max_tokens: budget + default. */
    req.max_tokens = -1;
    req.reasoning_effort = "low";
    is_int(encode(&req), RL_OK, "effort: encodes");
    json_is(out.data,
            "{\"model\":\"m\",\"max_tokens\":6144,\"messages\":[],\"thinking\":{\"type\":"
            "\"enabled\",\"budget_tokens\":2048}}",
            "effort low: budget 2048, max_tokens above it");
    req.max_tokens = 2000;
    req.reasoning_effort = "high";
    is_int(encode(&req), RL_OK, "effort above max_tokens: encodes");
    json_is(out.data,
            "{\"model\":\"m\",\"max_tokens\":2000,\"messages\":[],\"thinking\":{\"type\":"
            "\"enabled\",\"budget_tokens\":1999}}",
            "effort above max_tokens: budget under it");

    const char fmt[] = "{\"model\":\"m\",\"max_tokens\":5,\"output_config\":{\"format\":{\"type\":"
                       "\"json_schema\",\"schema\":{\"type\":\"object\"}}},\"messages\":[]}";
    is_int(decode(fmt, &req), RL_OK, "output_config.format: decode");
    is_int(req.format, XL_FORMAT_JSON_SCHEMA, "output_config.format: structured output");
    is_str(req.format_schema, "{\"type\":\"object\"}", "output_config.format: schema");
    is_int(xlate_check_features(&req, A, &why), RL_BAD_REQUEST,
           "structured output cannot be sent to Anthropic (caps)");

    /* Caps: what Anthropic cannot be sent. */
    xl_request r = {.model = "m", .max_tokens = 5};
    r.features[XL_F_SEED] = "seed";
    rl_buf_reset(&why);
    is_int(xlate_check_features(&r, A, &why), RL_BAD_REQUEST, "caps: seed refused");
    ok(why.data && strstr(why.data, "`seed`"), "caps: names seed");
    r.features[XL_F_SEED] = NULL;
    r.features[XL_F_TOP_K] = "topK";
    r.features[XL_F_IMAGE_URL] = "image_url";
    r.features[XL_F_THINKING] = "reasoning_effort";
    is_int(xlate_check_features(&r, A, &why), RL_OK, "caps: top_k, image urls, thinking carried");
}

static void test_refusals(void)
{
    static const struct {
        const char *body, *field;
    } cases[] = {
        {"{\"model\":\"m\",\"messages\":[]}", "max_tokens"},
        {"{\"max_tokens\":5,\"messages\":[]}", "model"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"mcp_servers\":[]}", "mcp_servers"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"container\":\"c\"}", "container"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tools\":[{\"type\":"
         "\"web_search_20250305\",\"name\":\"web_search\"}]}",
         "tools[0].type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tools\":[{\"name\":\"a\","
         "\"input_schema\":{}},{\"type\":\"bash_20250124\",\"name\":\"bash\"}]}",
         "tools[1].type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"document\",\"source\":{}}]}]}",
         "messages[0].content[0].type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
         "messages[0].content[0].source.type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":[{"
         "\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}]},{\"role\":\"user\","
         "\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":"
         "\"image\",\"source\":{}}]}]}]}",
         "messages[1].content[0].content[0].type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"impng\","
         "\"data\":\"AAAA\"}}]}]}",
         "messages[0].content[0].source.media_type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"thinking\":{\"type\":\"weird\"}}",
         "thinking.type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tool_choice\":{\"type\":\"x\"}}",
         "tool_choice.type"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"output_config\":{\"effort\":\"x\"}}",
         "output_config.effort"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "messages[0].role"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\"}]}]}",
         "messages[0].content[0]"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"tool_result\",\"tool_use_id\":\"nope\",\"content\":\"x\"}]}]}",
         "nope"},
        {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"search_result\"}]}]}",
         "search_result"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        char what[96];
        snprintf(what, sizeof what, "refused, naming %s", cases[i].field);
        refused(cases[i].body, cases[i].field, what);
    }
    xl_request req;
    is_int(decode("{\"model\":", &req), RL_BAD_JSON, "bad JSON: RL_BAD_JSON");
}

/* ---- answers ------------------------------------------------------------ */

static const char answer[] =
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
    "\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"Hm.\","
    "\"signature\":\"sg\"},{\"type\":\"redacted_thinking\",\"data\":\"blob\"},{\"type\":"
    "\"text\",\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":"
    "\"get_weather\",\"input\":{\"city\":\"Oslo\"}}],\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"
    "\"cache_read_input_tokens\":1200,\"output_tokens\":60}}";

static void test_answers(void)
{
    xl_response r;
    is_int(A->decode_response(answer, strlen(answer), pool, &r), RL_OK, "answer: decode");
    is_str(r.id, "msg_01", "answer: id");
    is_int(r.nparts, 4, "answer: four parts");
    is_int(r.parts[0].kind, XL_PART_THINKING, "answer: thinking");
    is_str(r.parts[0].signature, "sg", "answer: its signature");
    ok(r.parts[1].redacted && strcmp(r.parts[1].data, "blob") == 0, "answer: redacted thinking");
    is_str(r.parts[2].text, "Checking.", "answer: text");
    is_str(r.parts[3].arguments, "{\"city\":\"Oslo\"}", "answer: tool call arguments");
    is_str(r.parts[3].id, "toolu_9", "answer: tool call id");
    is_int(r.stop, XL_STOP_TOOL, "answer: tool_use stop");
    is_int(r.usage.input, 1325, "answer: input counts cache reads and writes");
    is_int(r.usage.cached_input, 1200, "answer: cached input");
    is_int(r.usage.cache_write, 100, "answer: cache writes");
    is_int(r.usage.output, 60, "answer: output");

    xl_reply reply = {.model = "claude-via-relay", .id = "msg_relay"};
    rl_buf_reset(&out);
    is_int(A->encode_response(&r, &reply, &out), RL_OK, "answer: encode");
    json_is(out.data,
            "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
            "\"claude-via-relay\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"Hm.\","
            "\"signature\":\"sg\"},{\"type\":\"redacted_thinking\",\"data\":\"blob\"},{\"type\":"
            "\"text\",\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":"
            "\"get_weather\",\"input\":{\"city\":\"Oslo\"}}],\"stop_reason\":\"tool_use\","
            "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":60,"
            "\"cache_read_input_tokens\":1200,\"cache_creation_input_tokens\":100}}",
            "answer: re-encoded as the API wrote it, the client's model named");

    /* From another dialect: no id, usage with cached tokens only, an
     * unsigned thinking part, a stop sequence. */
    xl_part parts[] = {{.kind = XL_PART_THINKING, .text = "r"},
                       {.kind = XL_PART_TEXT, .text = "A"}};
    xl_response o = {.parts = parts,
                     .nparts = 2,
                     .stop = XL_STOP_SEQUENCE,
                     .stop_sequence = "###",
                     .usage = {100, 7, 40, -1, 0}};
    rl_buf_reset(&out);
    is_int(A->encode_response(&o, &reply, &out), RL_OK, "foreign answer: encode");
    json_is(out.data,
            "{\"id\":\"msg_relay\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
            "\"claude-via-relay\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"r\","
            "\"signature\":\"\"},{\"type\":\"text\",\"text\":\"A\"}],\"stop_reason\":"
            "\"stop_sequence\",\"stop_sequence\":\"###\",\"usage\":{\"input_tokens\":60,"
            "\"output_tokens\":7,\"cache_read_input_tokens\":40}}",
            "foreign answer: cached tokens out of input_tokens, the reply's id");

    /* Tool arguments that are not an object cannot be an input. */
    xl_part bad[] = {{.kind = XL_PART_TOOL_CALL, .id = "c", .name = "n", .arguments = "{oops"}};
    xl_response b = {.parts = bad, .nparts = 1, .usage = PROV_USAGE_UNKNOWN};
    rl_buf_reset(&out);
    is_int(A->encode_response(&b, &reply, &out), RL_UPSTREAM_PROTOCOL,
           "answer with broken arguments: protocol error");

    static const char *const not_answers[] = {
        "{\"type\":\"message\",\"content\":[{\"type\":\"server_tool_use\",\"id\":\"s\"}]}",
        "{\"type\":\"message\",\"content\":[{\"type\":\"image\",\"source\":{}}]}",
        "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
        "\"n\",\"input\":[]}]}",
        "{\"type\":\"message\",\"content\":[{\"type\":\"text\"}]}",
    };
    for (size_t i = 0; i < N(not_answers); i++)
        is_int(A->decode_response(not_answers[i], strlen(not_answers[i]), pool, &r),
               RL_UPSTREAM_PROTOCOL, "a block an answer cannot hold: protocol error");

    const char notmsg[] = "{\"type\":\"error\",\"error\":{\"type\":\"x\",\"message\":\"y\"}}";
    is_int(A->decode_response(notmsg, strlen(notmsg), pool, &r), RL_UPSTREAM_PROTOCOL,
           "an error body is not an answer");
}

static void test_stop_reasons(void)
{
    static const struct {
        const char *name;
        xl_stop stop;
    } rows[] = {
        {"end_turn", XL_STOP_END},
        {"max_tokens", XL_STOP_LENGTH},
        {"stop_sequence", XL_STOP_SEQUENCE},
        {"tool_use", XL_STOP_TOOL},
        {"refusal", XL_STOP_FILTER},
        {"pause_turn", XL_STOP_OTHER},
        {"model_context_window_exceeded", XL_STOP_LENGTH},
        {"something_new", XL_STOP_OTHER},
    };
    for (size_t i = 0; i < N(rows); i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"type\":\"message\",\"content\":[],\"stop_reason\":\"%s\"}",
                 rows[i].name);
        xl_response r;
        is_int(A->decode_response(body, strlen(body), pool, &r), RL_OK, rows[i].name);
        is_int(r.stop, rows[i].stop, rows[i].name);
    }
    static const struct {
        xl_stop stop;
        const char *name;
    } enc[] = {
        {XL_STOP_UNSET, "end_turn"},         {XL_STOP_END, "end_turn"},
        {XL_STOP_LENGTH, "max_tokens"},      {XL_STOP_TOOL, "tool_use"},
        {XL_STOP_SEQUENCE, "stop_sequence"}, {XL_STOP_FILTER, "refusal"},
        {XL_STOP_OTHER, "end_turn"},
    };
    xl_reply reply = {.model = "m", .id = "i"};
    for (size_t i = 0; i < N(enc); i++) {
        xl_response r = {.stop = enc[i].stop, .usage = PROV_USAGE_UNKNOWN};
        rl_buf_reset(&out);
        is_int(A->encode_response(&r, &reply, &out), RL_OK, "stop encoded");
        json_t *j = json_loads(out.data, 0, NULL);
        is_str(json_string_value(json_object_get(j, "stop_reason")), enc[i].name,
               "stop encoded: its name");
        json_decref(j);
    }
}

static void test_errors(void)
{
    const char body[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
    xl_error e;
    is_int(A->decode_error(body, strlen(body), pool, &e), RL_OK, "error: decode");
    is_str(e.type, "overloaded_error", "error: type");
    is_str(e.message, "Overloaded", "error: message");
    is_int(A->decode_error("<html>", 6, pool, &e), RL_OK, "error: not JSON is no failure");
    ok(!e.type && !e.message, "error: not JSON has no fields");
}

/* ---- streams ------------------------------------------------------------ */

static const char stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,"
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":1200,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
    "\"thinking\",\"thinking\":\"\"}}\n\n"
    "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
    "\"thinking\":\"Weather.\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"signature_delta\",\"signature\":\"EqQB\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Let me check.\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\\\"Oslo\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

static const char *const stream_events[] = {
    "START msg_01 claude-x",
    "USAGE in=1225 out=1 cached=1200 write=0",
    "THINKING 'Weather.' sig=-",
    "THINKING '' sig=EqQB",
    "TEXT 'Let me check.'",
    "TOOL_CALL 0 toolu_1 get_weather",
    "TOOL_ARGS 0 '{\"city\": '",
    "TOOL_ARGS 0 '\"Oslo\"}'",
    "STOP 3 -",
    "USAGE in=1225 out=89 cached=1200 write=0",
    "END",
};

typedef struct recorder {
    char lines[32][160];
    size_t n;
    void *state;
} recorder;

static int record(void *ctx, const xl_event *ev)
{
    recorder *r = ctx;
    static const char *const names[] = {"START", "TEXT",  "THINKING", "TOOL_CALL", "TOOL_ARGS",
                                        "STOP",  "USAGE", "END",      "ERROR"};
    char *l = r->lines[r->n < 32 ? r->n++ : 31];
    size_t cap = sizeof r->lines[0];
    switch (ev->kind) {
    case XL_EV_START:
        snprintf(l, cap, "START %s %s", ev->id, ev->model);
        break;
    case XL_EV_TEXT:
        snprintf(l, cap, "TEXT '%s'", ev->text);
        break;
    case XL_EV_THINKING:
        snprintf(l, cap, "THINKING '%s' sig=%s", ev->text, ev->signature ? ev->signature : "-");
        break;
    case XL_EV_TOOL_CALL:
        snprintf(l, cap, "TOOL_CALL %d %s %s", ev->index, ev->id, ev->name);
        break;
    case XL_EV_TOOL_ARGS:
        snprintf(l, cap, "TOOL_ARGS %d '%s'", ev->index, ev->text);
        break;
    case XL_EV_STOP:
        snprintf(l, cap, "STOP %d %s", (int)ev->stop, ev->text ? ev->text : "-");
        break;
    case XL_EV_USAGE:
        snprintf(l, cap, "USAGE in=%lld out=%lld cached=%lld write=%lld",
                 (long long)ev->usage.input, (long long)ev->usage.output,
                 (long long)ev->usage.cached_input, (long long)ev->usage.cache_write);
        break;
    default:
        snprintf(l, cap, "%s%s%s", names[ev->kind], ev->text ? " " : "", ev->text ? ev->text : "");
        if (ev->kind == XL_EV_ERROR && ev->type) {
            size_t len = strlen(l);
            snprintf(l + len, cap - len, " (%s)", ev->type);
        }
    }
    return 0;
}

/* frame.h's callback: one SSE event into the dialect's decoder. */
static int feed(void *ctx, const char *event, const char *data, size_t len)
{
    recorder *r = ctx;
    return A->dec_event(r->state, pool, event, data, len, record, r) != RL_OK;
}

static void test_stream_decode(void)
{
    recorder r = {.n = 0};
    r.state = rl_palloc(pool, A->dec_size);
    is_int(frame_each(A->stream_framing, stream, strlen(stream), feed, &r), RL_OK,
           "stream decode: every event read");
    is_int(A->dec_finish(r.state, pool, record, &r), RL_OK, "stream decode: finish");
    is_int(r.n, N(stream_events), "stream decode: the model events");
    for (size_t i = 0; i < N(stream_events) && i < r.n; i++)
        is_str(r.lines[i], stream_events[i], "stream decode: event");

    const char err[] = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                       "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    recorder e = {.n = 0};
    e.state = rl_palloc(pool, A->dec_size);
    is_int(frame_each(FRAME_SSE, err, strlen(err), feed, &e), RL_OK, "stream error: read");
    is_int(e.n, 1, "stream error: one event");
    is_str(e.lines[0], "ERROR Overloaded (overloaded_error)", "stream error: message and type");

    /* A delta for a block that was never started is not a stream. */
    const char bad[] = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                       "\"index\":5,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n";
    recorder b = {.n = 0};
    b.state = rl_palloc(pool, A->dec_size);
    is_int(frame_each(FRAME_SSE, bad, strlen(bad), feed, &b), RL_STOPPED,
           "stray delta: the decoder stops");
}

/* Splits SSE bytes into events and compares each (name, then data as
 * JSON) with want: pairs of name and JSON text. */
static void events_are(const char *bytes, const char *const *want, size_t nwant, const char *what)
{
    size_t n = 0;
    const char *p = bytes ? bytes : "";
    while (*p) {
        const char *end = strstr(p, "\n\n");
        if (!end || strncmp(p, "event: ", 7) != 0) {
            ok(0, what);
            printf("#   not an SSE event at: %s\n", p);
            return;
        }
        const char *nl = strchr(p, '\n');
        char name[64], data[1024];
        snprintf(name, sizeof name, "%.*s", (int)(nl - p - 7), p + 7);
        if (strncmp(nl + 1, "data: ", 6) != 0) {
            ok(0, what);
            return;
        }
        snprintf(data, sizeof data, "%.*s", (int)(end - nl - 7), nl + 7);
        char label[160];
        snprintf(label, sizeof label, "%s: event %zu", what, n);
        if (n < nwant) {
            is_str(name, want[2 * n], label);
            json_is(data, want[2 * n + 1], label);
        }
        n++;
        p = end + 2;
    }
    is_int(n, nwant, what);
}

static rl_err enc(void *state, const xl_reply *reply, xl_event ev)
{
    return A->enc_event(state, reply, &ev, &out);
}

static void test_stream_encode(void)
{
    xl_reply reply = {.model = "claude-client", .id = "msg_relay", .framing = FRAME_SSE};
    void *s = rl_palloc(pool, A->enc_size);
    rl_buf_reset(&out);
    rl_err err = RL_OK;
    /* As OpenAI chat's decoder would give them: start, text, two calls
     * with arguments in pieces, the finish, then usage, then the end. */
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_START, .id = "chatcmpl-1", .model = "gpt-x"});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_THINKING, .text = "Think."});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Hi "});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "there"});
    err |= enc(s, &reply,
               (xl_event){.kind = XL_EV_TOOL_CALL, .index = 0, .id = "call_1", .name = "w"});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"c\":"});
    err |= enc(s, &reply,
               (xl_event){.kind = XL_EV_TOOL_CALL, .index = 1, .id = "call_2", .name = "w"});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 1, .text = "{}"});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "1}"});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_TOOL});
    err |=
        enc(s, &reply,
            (xl_event){.kind = XL_EV_USAGE, .usage = {50, 12, 30, -1, 0}, .reasoning_tokens = -1});
    err |= enc(s, &reply, (xl_event){.kind = XL_EV_END});
    is_int(err, RL_OK, "stream encode: every event written");
    static const char *const want[] = {
        "message_start",
        "{\"type\":\"message_start\",\"message\":{\"id\":\"chatcmpl-1\",\"type\":\"message\","
        "\"role\":\"assistant\",\"model\":\"claude-client\",\"content\":[],\"stop_reason\":null,"
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}",
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\","
        "\"thinking\":\"\",\"signature\":\"\"}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
        "\"thinking\":\"Think.\"}}",
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":0}",
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\","
        "\"text\":\"\"}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"Hi \"}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"there\"}}",
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":1}",
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\","
        "\"id\":\"call_1\",\"name\":\"w\",\"input\":{}}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
        "\"partial_json\":\"{\\\"c\\\":\"}}",
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":2}",
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\","
        "\"id\":\"call_2\",\"name\":\"w\",\"input\":{}}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\","
        "\"partial_json\":\"{}\"}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
        "\"partial_json\":\"1}\"}}",
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":3}",
        "message_delta",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":"
        "null},\"usage\":{\"input_tokens\":20,\"output_tokens\":12,\"cache_read_input_tokens\":"
        "30}}",
        "message_stop",
        "{\"type\":\"message_stop\"}",
    };
    events_are(out.data, want, N(want) / 2, "stream encode");

    /* After the end nothing more is written. */
    size_t len = out.len;
    is_int(enc(s, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "late"}), RL_OK,
           "after END: accepted");
    is_int(out.len, len, "after END: nothing written");

    /* Arguments for a call never announced. */
    void *s2 = rl_palloc(pool, A->enc_size);
    rl_buf_reset(&out);
    is_int(enc(s2, &reply, (xl_event){.kind = XL_EV_TOOL_ARGS, .index = 3, .text = "{}"}),
           RL_UPSTREAM_PROTOCOL, "unknown call's arguments: protocol error");

    /* A stream cut after some text: the error event ends it. A stop
     * sequence is told when the stream ends normally. */
    void *s3 = rl_palloc(pool, A->enc_size);
    rl_buf_reset(&out);
    err = enc(s3, &reply, (xl_event){.kind = XL_EV_TEXT, .text = "Par"});
    err |= enc(s3, &reply,
               (xl_event){.kind = XL_EV_ERROR,
                          .text = "upstream stream ended before its "
                                  "terminator",
                          .type = "server_error"});
    is_int(err, RL_OK, "error event: written");
    static const char *const want_err[] = {
        "message_start",
        "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_relay\",\"type\":\"message\","
        "\"role\":\"assistant\",\"model\":\"claude-client\",\"content\":[],\"stop_reason\":null,"
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}",
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
        "\"text\":\"\"}}",
        "content_block_delta",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"Par\"}}",
        "error",
        "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream stream "
        "ended before its terminator\"}}",
    };
    events_are(out.data, want_err, N(want_err) / 2, "error event");

    void *s4 = rl_palloc(pool, A->enc_size);
    rl_buf_reset(&out);
    err = enc(s4, &reply, (xl_event){.kind = XL_EV_STOP, .stop = XL_STOP_SEQUENCE, .text = "##"});
    err |= enc(s4, &reply, (xl_event){.kind = XL_EV_END});
    is_int(err, RL_OK, "empty answer with a stop sequence: written");
    static const char *const want_seq[] = {
        "message_start",
        "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_relay\",\"type\":\"message\","
        "\"role\":\"assistant\",\"model\":\"claude-client\",\"content\":[],\"stop_reason\":null,"
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}",
        "message_delta",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\","
        "\"stop_sequence\":\"##\"},\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}",
        "message_stop",
        "{\"type\":\"message_stop\"}",
    };
    events_are(out.data, want_seq, N(want_seq) / 2, "stop sequence stream");
}

/* Anthropic -> model -> Anthropic: the decoder's events fed to the
 * encoder give back a stream the SDK reads as the same message. */
static int relay_event(void *ctx, const xl_event *ev)
{
    void **st = ctx;
    xl_reply reply = {.model = "claude-x", .id = "x", .framing = FRAME_SSE};
    return A->enc_event(st[1], &reply, ev, &out) != RL_OK;
}

static int feed_relay(void *ctx, const char *event, const char *data, size_t len)
{
    void **st = ctx;
    return A->dec_event(st[0], pool, event, data, len, relay_event, st) != RL_OK;
}

static void test_stream_round_trip(void)
{
    void *st[2] = {rl_palloc(pool, A->dec_size), rl_palloc(pool, A->enc_size)};
    rl_buf_reset(&out);
    is_int(frame_each(FRAME_SSE, stream, strlen(stream), feed_relay, st), RL_OK,
           "stream round trip: runs");
    /* The same events as the API's, but for the ping and the empty
     * input_json_delta, with the counts all in message_delta. */
    ok(out.data && strstr(out.data, "\"signature\":\"EqQB\"") &&
           strstr(out.data, "\"partial_json\":\"\\\"Oslo\\\"}\"") &&
           strstr(out.data,
                  "\"usage\":{\"input_tokens\":25,\"output_tokens\":89,"
                  "\"cache_read_input_tokens\":1200,\"cache_creation_input_tokens\":0}") &&
           strstr(out.data, "event: message_stop"),
       "stream round trip: signature, arguments, usage and terminator kept");
}

int main(void)
{
    pool = rl_pool_new();
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    rl_buf_init(&why, 0);
    test_plain();
    test_system();
    test_images();
    test_tools();
    test_thinking();
    test_refusals();
    test_answers();
    test_stop_reasons();
    test_errors();
    test_stream_decode();
    test_stream_encode();
    test_stream_round_trip();
    rl_buf_release(&out);
    rl_buf_release(&path);
    rl_buf_release(&why);
    rl_pool_free(pool);
    return tap_done();
}
