/* Unit tests for engine/xlate_openai_chat: OpenAI Chat Completions as a
 * translation dialect — requests both ways (exact upstream bodies),
 * refusals, answers, stop reasons, usage, errors, and streams event by
 * event. JSON is compared by parsing both sides. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *D = &xl_openai_chat;

/* Compares two JSON texts by value (key order and spacing aside). */
static void is_json(const char *got, const char *want, const char *what)
{
    json_t *g = got ? json_loads(got, JSON_DECODE_ANY, NULL) : NULL;
    json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
    if (!w)
        printf("# bad expected JSON in test: %s\n", want);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want);
    json_decref(g);
    json_decref(w);
}

static int has(const rl_buf *b, const char *s)
{
    return b->data && strstr(b->data, s) != NULL;
}

/* Decodes body as a client request, encodes it again as an upstream
 * request: the upstream body in out (reset first). */
static rl_err round_trip(rl_pool *pool, const char *body, xl_request *req, rl_buf *out, rl_buf *why)
{
    rl_buf path;
    rl_buf_init(&path, 0);
    rl_buf_reset(out);
    rl_buf_reset(why);
    rl_err err = D->decode_request(body, strlen(body), NULL, pool, req, why);
    if (err == RL_OK)
        err = D->encode_request(req, out, &path, why);
    if (err == RL_OK && (!path.data || strcmp(path.data, "/v1/chat/completions") != 0))
        err = RL_INTERNAL;
    rl_buf_release(&path);
    return err;
}

static void test_plain(rl_pool *pool, rl_buf *out, rl_buf *why)
{
    xl_request req;
    rl_err err = round_trip(pool,
                            "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"user\",\"content\":"
                            "\"Hi\"}],\"temperature\":0.7,\"top_p\":1,\"max_tokens\":50,"
                            "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                            "\"store\":false,\"metadata\":{\"a\":\"b\"},\"user\":\"u1\","
                            "\"service_tier\":\"auto\",\"logprobs\":false,\"logit_bias\":{},"
                            "\"modalities\":[\"text\"],\"prompt_cache_key\":\"k\",\"seed\":null}",
                            &req, out, why);
    is_int(err, RL_OK, "plain: decodes and encodes");
    is_str(req.model, "gpt-x", "plain: model");
    is_int(req.stream, 1, "plain: stream");
    is_int(req.include_usage, 1, "plain: include_usage");
    is_int(req.max_tokens, 50, "plain: max_tokens");
    is_str(req.user, "u1", "plain: user carried");
    is_int(req.nmessages, 1, "plain: one turn");
    is_int(req.messages[0].role, XL_ROLE_USER, "plain: a user turn");
    is_str(req.messages[0].parts[0].text, "Hi", "plain: its text");
    int any = 0;
    for (int f = 0; f < XL_FEATURES; f++)
        any |= req.features[f] != NULL;
    is_int(any, 0, "plain: no features (skipped fields, null seed)");
    is_json(out->data,
            "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
            "\"max_completion_tokens\":50,\"temperature\":0.7,\"top_p\":1.0,\"user\":\"u1\","
            "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
            "plain: the upstream body");
    ok(has(out, "\"temperature\":0.7,"), "plain: 0.7 written as people write it");

    /* max_completion_tokens wins over max_tokens, whatever their order */
    err = round_trip(pool,
                     "{\"max_completion_tokens\":9,\"model\":\"m\",\"max_tokens\":50,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                     &req, out, why);
    is_int(req.max_tokens, 9, "max_completion_tokens wins over max_tokens");
}

static void test_system(rl_pool *pool, rl_buf *out, rl_buf *why)
{
    xl_request req;
    rl_err err = round_trip(
        pool,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":"
        "\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\","
        "\"text\":\"B\"}]},{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"system\","
        "\"content\":\"\"}]}",
        &req, out, why);
    is_int(err, RL_OK, "system: string and parts");
    is_int(req.nsystem, 3, "system: three parts, in order");
    is_str(req.system[0].text, "S", "system: the string");
    is_str(req.system[2].text, "B", "system: the last part");
    is_int(req.nmessages, 1, "system: an empty late system message is lifted (dropped)");
    is_json(out->data,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\\n\\nA\\n\\nB\"},"
            "{\"role\":\"user\",\"content\":\"Q\"}]}",
            "system: one system message upstream");
}

static void test_images(rl_pool *pool, rl_buf *out, rl_buf *why)
{
    xl_request req;
    rl_err err = round_trip(
        pool,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"What is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBORw0K\",\"detail\":\"low\"}},{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://example.com/cat.jpg\"}}]}]}",
        &req, out, why);
    is_int(err, RL_OK, "images: decode");
    const xl_part *p = req.messages[0].parts;
    is_int(req.messages[0].nparts, 3, "images: three parts");
    is_int(p[1].kind, XL_PART_IMAGE, "images: data URL is an image");
    is_str(p[1].media_type, "image/png", "images: media type");
    is_str(p[1].data, "iVBORw0K", "images: base64 data");
    is_str(p[2].url, "https://example.com/cat.jpg", "images: http URL kept");
    is_str(req.features[XL_F_IMAGE], "image_url", "images: feature IMAGE");
    is_str(req.features[XL_F_IMAGE_URL], "image_url.url", "images: feature IMAGE_URL");
    is_json(out->data,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
            "\"text\":\"What is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
            "\"data:image/png;base64,iVBORw0K\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":"
            "\"https://example.com/cat.jpg\"}}]}]}",
            "images: the upstream body");

    rl_buf_reset(why);
    const char *ftp = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"image_url\",\"image_url\":{\"url\":\"ftp://x/y\"}}]}]}";
    err = D->decode_request(ftp, strlen(ftp), NULL, pool, &req, why);
    is_int(err, RL_BAD_REQUEST, "images: an ftp URL is refused");

    /* Found by fuzz_xlate: a data: URL of another media type passed as an
     * image (Gemini's decoder refused what Gemini's encoder then wrote). */
    rl_buf_reset(why);
    const char *pdf = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"image_url\",\"image_url\":{\"url\":\"data:impng;base64,AAAA\"}}]}]}";
    err = D->decode_request(pdf, strlen(pdf), NULL, pool, &req, why);
    is_int(err, RL_BAD_REQUEST, "images: a data: URL that is not an image is refused");
    ok(why->data && strstr(why->data, "image_url.url"), "images: the refusal names image_url.url");
}

static const char tools_req[] =
    "{\"model\":\"m\",\"messages\":["
    "{\"role\":\"user\",\"content\":\"Weather in Oslo and Rome?\"},"
    "{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"two calls\",\"tool_calls\":["
    "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"city\\\": \\\"Oslo\\\"}\"}},"
    "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"rain\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_b\",\"content\":[{\"type\":\"text\",\"text\":"
    "\"su\"},{\"type\":\"text\",\"text\":\"n\"}]},"
    "{\"role\":\"user\",\"content\":\"Thanks\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
    "\"Weather now\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
    "\"string\"}},\"required\":[\"city\"]},\"strict\":true}}],"
    "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
    "\"parallel_tool_calls\":false}";

static void test_tools(rl_pool *pool, rl_buf *out, rl_buf *why)
{
    xl_request req;
    rl_err err = round_trip(pool, tools_req, &req, out, why);
    is_int(err, RL_OK, "tools: decode and encode");
    is_int(req.ntools, 1, "tools: one tool");
    is_str(req.tools[0].parameters,
           "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":["
           "\"city\"]}",
           "tools: the schema as compact JSON, in its order");
    is_int(req.tools[0].strict, 1, "tools: strict");
    is_int(req.tool_choice, XL_CHOICE_NAMED, "tools: named choice");
    is_str(req.tool_choice_name, "get_weather", "tools: choice name");
    is_int(req.parallel_tool_calls, 0, "tools: parallel off");
    is_str(req.features[XL_F_TOOLS], "tools", "tools: feature TOOLS");
    is_str(req.features[XL_F_PARALLEL_OFF], "parallel_tool_calls", "tools: feature PARALLEL_OFF");
    is_int(req.nmessages, 4, "tools: the two tool messages make one turn");
    const xl_message *a = &req.messages[1], *t = &req.messages[2];
    is_int(a->nparts, 3, "tools: assistant has thinking and two calls");
    is_int(a->parts[0].kind, XL_PART_THINKING, "tools: reasoning_content is thinking");
    is_str(a->parts[1].arguments, "{\"city\":\"Oslo\"}", "tools: arguments compact");
    is_str(a->parts[2].arguments, "{}", "tools: empty arguments are {}");
    is_int(t->role, XL_ROLE_TOOL, "tools: a tool turn");
    is_int(t->nparts, 2, "tools: with both results");
    is_str(t->parts[1].id, "call_b", "tools: result id kept");
    is_str(t->parts[1].name, "get_weather", "tools: result paired with its call's name");
    is_str(t->parts[1].text, "sun", "tools: text parts joined");
    is_json(out->data,
            "{\"model\":\"m\",\"messages\":["
            "{\"role\":\"user\",\"content\":\"Weather in Oslo and Rome?\"},"
            "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
            "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
            "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
            "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
            "\"arguments\":\"{}\"}}]},"
            "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"rain\"},"
            "{\"role\":\"tool\",\"tool_call_id\":\"call_b\",\"content\":\"sun\"},"
            "{\"role\":\"user\",\"content\":\"Thanks\"}],"
            "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
            "\"description\":\"Weather now\",\"parameters\":{\"type\":\"object\",\"properties\":"
            "{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]},\"strict\":true}}],"
            "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
            "\"parallel_tool_calls\":false}",
            "tools: the upstream body (thinking dropped, results as tool messages)");

    static const struct {
        const char *choice;
        xl_tool_choice want;
    } choices[] = {
        {"\"auto\"", XL_CHOICE_AUTO},
        {"\"none\"", XL_CHOICE_NONE},
        {"\"required\"", XL_CHOICE_REQUIRED},
    };
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
                 "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":%s}",
                 choices[i].choice);
        char what[64], want[320];
        err = round_trip(pool, body, &req, out, why);
        snprintf(what, sizeof what, "tool_choice %s", choices[i].choice);
        is_int(req.tool_choice, choices[i].want, what);
        snprintf(want, sizeof want,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
                 "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":%s}",
                 choices[i].choice);
        is_json(out->data, want, what);
    }

    /* A tool message answering no call cannot be paired. */
    rl_buf_reset(why);
    const char *orphan = "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":"
                         "\"nope\",\"content\":\"x\"}]}";
    err = D->decode_request(orphan, strlen(orphan), NULL, pool, &req, why);
    is_int(err, RL_BAD_REQUEST, "tools: an orphan tool result is refused");
    ok(has(why, "nope"), "tools: naming its id");
}

/* Every refusal names the client's field. */
static void test_refusals(rl_pool *pool, rl_buf *why)
{
    static const struct {
        const char *body; /* inside {"model":"m","messages":[USER] ...} */
        const char *field;
    } cases[] = {
        {",\"logit_bias\":{\"50256\":-100}", "`logit_bias`"},
        {",\"logprobs\":true", "`logprobs`"},
        {",\"top_logprobs\":2", "`top_logprobs`"},
        {",\"audio\":{\"voice\":\"alloy\"}", "`audio`"},
        {",\"modalities\":[\"text\",\"audio\"]", "`modalities`"},
        {",\"functions\":[{\"name\":\"f\"}]", "`functions`"},
        {",\"function_call\":\"auto\"", "`function_call`"},
        {",\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", "`prediction`"},
        {",\"web_search_options\":{}", "`web_search_options`"},
        {",\"verbosity\":\"low\"", "`verbosity`"},
        {",\"frobnicate\":1", "`frobnicate`"},
        {",\"reasoning_effort\":\"xhigh\"", "`reasoning_effort`"},
        {",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\","
         "\"description\":\"d\",\"schema\":{}}}",
         "`response_format.json_schema.description`"},
        {",\"response_format\":{\"type\":\"grammar\"}", "`response_format`"},
        {",\"tools\":[{\"type\":\"custom\",\"custom\":{\"name\":\"x\"}}]", "`tools[0].type`"},
        {",\"tool_choice\":{\"type\":\"allowed_tools\"}", "`tool_choice`"},
        {",\"temperature\":\"hot\"", "`temperature`"},
        {",\"max_tokens\":0", "`max_tokens`"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]%s}",
                 cases[i].body);
        xl_request req;
        rl_buf_reset(why);
        rl_err err = D->decode_request(body, strlen(body), NULL, pool, &req, why);
        char what[160];
        snprintf(what, sizeof what, "refused, naming %s", cases[i].field);
        ok(err == RL_BAD_REQUEST && has(why, cases[i].field), what);
        if (!has(why, cases[i].field))
            printf("#   why: %s\n", why->data ? why->data : "(none)");
    }

    static const struct {
        const char *messages;
        const char *field;
    } msgs[] = {
        {"{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}",
         "`messages[0].content[0]` of type `input_audio`"},
        {"{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{}}]}",
         "`messages[0].content[0]` of type `file`"},
        {"{\"role\":\"user\",\"name\":\"bob\",\"content\":\"x\"}", "`messages[0].name`"},
        {"{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"system\",\"content\":\"late\"}",
         "`messages[1]` is a system message"},
        {"{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"function\",\"name\":\"f\","
         "\"content\":\"x\"}",
         "`messages[1].role` `function`"},
        {"{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"f\","
         "\"arguments\":\"{}\"}}",
         "`messages[0].function_call`"},
        {"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":"
         "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{not json\"}}]}",
         "`messages[0].tool_calls[0].function.arguments`"},
        {"{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
         "\"https://x/y.png\"}}]}",
         "`messages[0].content[0]` of type `image_url`"},
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"model\":\"m\",\"messages\":[%s]}", msgs[i].messages);
        xl_request req;
        rl_buf_reset(why);
        rl_err err = D->decode_request(body, strlen(body), NULL, pool, &req, why);
        char what[160];
        snprintf(what, sizeof what, "refused, naming %s", msgs[i].field);
        ok(err == RL_BAD_REQUEST && has(why, msgs[i].field), what);
        if (!has(why, msgs[i].field))
            printf("#   why: %s\n", why->data ? why->data : "(none)");
    }

    xl_request req;
    rl_buf_reset(why);
    is_int(D->decode_request("{\"model\":", 9, NULL, pool, &req, why), RL_BAD_JSON,
           "bad JSON is RL_BAD_JSON");
    rl_buf_reset(why);
    is_int(D->decode_request("{\"model\":\"m\"}", 13, NULL, pool, &req, why), RL_BAD_REQUEST,
           "no messages is refused");
}

/* Features the upstream may lack, and the check against this dialect. */
static void test_features(rl_pool *pool, rl_buf *out, rl_buf *why)
{
    xl_request req;
    rl_err err = round_trip(
        pool,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":7,"
        "\"n\":2,\"presence_penalty\":0,\"frequency_penalty\":0.5,\"stop\":\"END\","
        "\"reasoning_effort\":\"low\",\"safety_identifier\":\"s1\",\"response_format\":{"
        "\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"strict\":true,\"schema\":{"
        "\"type\":\"object\"}}}}",
        &req, out, why);
    is_int(err, RL_OK, "features: decode and encode");
    is_str(req.features[XL_F_SEED], "seed", "features: seed");
    is_str(req.features[XL_F_CHOICES], "n", "features: n > 1");
    is_str(req.features[XL_F_PENALTIES], "frequency_penalty",
           "features: the non-zero penalty named");
    is_str(req.features[XL_F_STOP], "stop", "features: stop");
    is_str(req.features[XL_F_THINKING], "reasoning_effort", "features: reasoning_effort");
    is_str(req.features[XL_F_JSON_SCHEMA], "response_format", "features: json_schema");
    is_str(req.format_schema, "{\"type\":\"object\"}", "features: the schema");
    is_json(out->data,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":["
            "\"END\"],\"seed\":7,\"frequency_penalty\":0.5,\"n\":2,\"response_format\":{\"type\":"
            "\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{\"type\":\"object\"},"
            "\"strict\":true}},\"reasoning_effort\":\"low\",\"user\":\"s1\"}",
            "features: the upstream body");
    /* n > 1 reaches no upstream translated (the model's answer holds one
     * choice); the rest is carried by Chat. */
    rl_buf_reset(why);
    is_int(xlate_check_features(&req, D, why), RL_BAD_REQUEST, "features: n > 1 is refused");
    ok(has(why, "`n` cannot be translated"), "features: the 400 names n");
    req.features[XL_F_CHOICES] = NULL;
    is_int(xlate_check_features(&req, D, why), RL_OK, "features: the others carried by Chat");

    err = round_trip(pool,
                     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                     "\"top_k\":40,\"response_format\":{\"type\":\"json_object\"}}",
                     &req, out, why);
    is_str(req.features[XL_F_TOP_K], "top_k", "features: top_k");
    is_str(req.features[XL_F_JSON_OBJECT], "response_format", "features: json_object");
    rl_buf_reset(why);
    is_int(xlate_check_features(&req, D, why), RL_BAD_REQUEST, "features: top_k is not in caps");
    ok(has(why, "`top_k` cannot be translated to OpenAI Chat Completions"),
       "features: the 400 names top_k");
}

/* A model built by another dialect's decoder: budget -> effort, THINKING
 * dropped, a result in a user turn, multi-part assistant text. */
static void test_encode_model(rl_buf *out, rl_buf *why)
{
    xl_part sys[] = {{.kind = XL_PART_TEXT, .text = "Be brief."}};
    xl_part u1[] = {{.kind = XL_PART_TEXT, .text = "Go"}};
    xl_part a1[] = {{.kind = XL_PART_THINKING, .text = "hmm", .signature = "sig"},
                    {.kind = XL_PART_TEXT, .text = "One"},
                    {.kind = XL_PART_TEXT, .text = "Two"},
                    {.kind = XL_PART_TOOL_CALL, .id = "toolu_1", .name = "f", .arguments = "{}"}};
    xl_part u2[] = {
        {.kind = XL_PART_TOOL_RESULT, .id = "toolu_1", .name = "f", .text = "boom", .is_error = 1},
        {.kind = XL_PART_TEXT, .text = "And?"}};
    xl_message msgs[] = {{XL_ROLE_USER, u1, 1}, {XL_ROLE_ASSISTANT, a1, 4}, {XL_ROLE_USER, u2, 2}};
    const char *stops[] = {"\n\nHuman:"};
    xl_request req = {.model = "gpt-y",
                      .system = sys,
                      .nsystem = 1,
                      .messages = msgs,
                      .nmessages = 3,
                      .tool_choice = XL_CHOICE_AUTO,
                      .parallel_tool_calls = -1,
                      .stop = stops,
                      .nstop = 1,
                      .max_tokens = -1,
                      .temperature = -1,
                      .top_p = -1,
                      .top_k = -1,
                      .n = 1,
                      .thinking_budget = 5000,
                      .stream = 1};
    rl_buf path;
    rl_buf_init(&path, 0);
    rl_buf_reset(out);
    is_int(D->encode_request(&req, out, &path, why), RL_OK, "encode: a foreign model");
    is_str(path.data, "/v1/chat/completions", "encode: the path");
    is_json(out->data,
            "{\"model\":\"gpt-y\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
            "{\"role\":\"user\",\"content\":\"Go\"},{\"role\":\"assistant\",\"content\":[{"
            "\"type\":\"text\",\"text\":\"One\"},{\"type\":\"text\",\"text\":\"Two\"}],"
            "\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":"
            "\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\","
            "\"content\":\"boom\"},{\"role\":\"user\",\"content\":\"And?\"}],\"stop\":["
            "\"\\n\\nHuman:\"],\"reasoning_effort\":\"medium\",\"stream\":true,"
            "\"stream_options\":{\"include_usage\":true}}",
            "encode: budget 5000 -> medium; no tool_choice without tools; results first");
    rl_buf_release(&path);

    xl_part img[] = {{.kind = XL_PART_IMAGE, .media_type = "image/png", .data = "AA"}};
    xl_message bad[] = {{XL_ROLE_ASSISTANT, img, 1}};
    req.messages = bad;
    req.nmessages = 1;
    rl_buf_init(&path, 0);
    rl_buf_reset(why);
    is_int(D->encode_request(&req, out, &path, why), RL_BAD_REQUEST,
           "encode: an image in an assistant turn is refused");
    ok(has(why, "an image"), "encode: saying so");
    rl_buf_release(&path);
}

static const char answer[] =
    "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"gpt-x-2\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Let me look.\","
    "\"reasoning_content\":\"Think\",\"refusal\":null,\"tool_calls\":[{\"id\":\"call_1\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
    "\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
    "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":10,\"total_tokens\":30,"
    "\"prompt_tokens_details\":{\"cached_tokens\":16},\"completion_tokens_details\":{"
    "\"reasoning_tokens\":4}}}";

static void test_answers(rl_pool *pool, rl_buf *out)
{
    xl_response r;
    is_int(D->decode_response(answer, strlen(answer), pool, &r), RL_OK, "answer: decodes");
    is_str(r.id, "chatcmpl-9", "answer: id");
    is_str(r.model, "gpt-x-2", "answer: model");
    is_int(r.nparts, 3, "answer: thinking, text, call");
    is_int(r.parts[0].kind, XL_PART_THINKING, "answer: reasoning_content is thinking");
    is_str(r.parts[0].text, "Think", "answer: its text");
    is_str(r.parts[1].text, "Let me look.", "answer: text");
    is_str(r.parts[2].id, "call_1", "answer: call id");
    is_str(r.parts[2].arguments, "{\"city\":\"Oslo\"}", "answer: call arguments");
    is_int(r.stop, XL_STOP_TOOL, "answer: tool_calls");
    is_int(r.usage.input, 20, "answer: input");
    is_int(r.usage.output, 10, "answer: output");
    is_int(r.usage.cached_input, 16, "answer: cached tokens");
    is_int(r.usage.cache_write, -1, "answer: no cache write figure");
    is_int(r.reasoning_tokens, 4, "answer: reasoning tokens");

    xl_reply reply = {.model = "claude-x", .id = "msg_fallback", .created = 1700000000};
    rl_buf_reset(out);
    is_int(D->encode_response(&r, &reply, out), RL_OK, "answer: encodes");
    is_json(out->data,
            "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"created\":1700000000,"
            "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
            "\"content\":\"Let me look.\",\"refusal\":null,\"tool_calls\":[{\"id\":\"call_1\","
            "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
            "\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":"
            "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":10,"
            "\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":16},"
            "\"completion_tokens_details\":{\"reasoning_tokens\":4}}}",
            "answer: the client body (thinking dropped, the client's model)");

    /* No id upstream, no usage, only text: reply's id, content "", no usage */
    xl_part text[] = {{.kind = XL_PART_TEXT, .text = ""}};
    xl_response bare = {.parts = text,
                        .nparts = 1,
                        .stop = XL_STOP_LENGTH,
                        .usage = PROV_USAGE_UNKNOWN,
                        .reasoning_tokens = -1};
    rl_buf_reset(out);
    is_int(D->encode_response(&bare, &reply, out), RL_OK, "answer: a bare one encodes");
    is_json(out->data,
            "{\"id\":\"msg_fallback\",\"object\":\"chat.completion\",\"created\":1700000000,"
            "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
            "\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"length\"}]}",
            "answer: reply id, no usage when unknown");

    is_int(D->decode_response("{\"error\":{\"message\":\"x\"}}", 25, pool, &r),
           RL_UPSTREAM_PROTOCOL, "answer: an error body is not an answer");
    is_int(D->decode_response("[1]", 3, pool, &r), RL_UPSTREAM_PROTOCOL, "answer: not an object");
}

/* Each row of the finish_reason table, both ways. */
static void test_stops(rl_pool *pool, rl_buf *out)
{
    static const struct {
        const char *reason;
        xl_stop stop;
    } in[] = {
        {"stop", XL_STOP_END},           {"length", XL_STOP_LENGTH},
        {"tool_calls", XL_STOP_TOOL},    {"content_filter", XL_STOP_FILTER},
        {"function_call", XL_STOP_TOOL}, {"something_new", XL_STOP_OTHER},
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char body[256], what[96];
        snprintf(body, sizeof body,
                 "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                 "\"content\":\"x\"},\"finish_reason\":\"%s\"}]}",
                 in[i].reason);
        xl_response r;
        snprintf(what, sizeof what, "finish_reason %s reads", in[i].reason);
        ok(D->decode_response(body, strlen(body), pool, &r) == RL_OK && r.stop == in[i].stop, what);
    }
    static const struct {
        xl_stop stop;
        int call;
        const char *reason;
    } outs[] = {
        {XL_STOP_END, 0, "stop"},
        {XL_STOP_SEQUENCE, 0, "stop"},
        {XL_STOP_LENGTH, 0, "length"},
        {XL_STOP_TOOL, 1, "tool_calls"},
        {XL_STOP_FILTER, 0, "content_filter"},
        {XL_STOP_OTHER, 0, "stop"},
        {XL_STOP_UNSET, 0, "stop"},
        {XL_STOP_END, 1, "tool_calls"},
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        xl_part parts[] = {{.kind = XL_PART_TOOL_CALL, .id = "c1", .name = "f", .arguments = "{}"}};
        xl_response r = {.parts = parts,
                         .nparts = (size_t)outs[i].call,
                         .stop = outs[i].stop,
                         .usage = PROV_USAGE_UNKNOWN,
                         .reasoning_tokens = -1};
        xl_reply reply = {.model = "m", .id = "i"};
        rl_buf_reset(out);
        char what[96], want[48];
        snprintf(what, sizeof what, "stop %d%s writes %s", (int)outs[i].stop,
                 outs[i].call ? " with a call" : "", outs[i].reason);
        snprintf(want, sizeof want, "\"finish_reason\":\"%s\"", outs[i].reason);
        ok(D->encode_response(&r, &reply, out) == RL_OK && has(out, want), what);
    }
}

static void test_errors(rl_pool *pool)
{
    static const struct {
        const char *body;
        const char *message, *type;
    } cases[] = {
        {"{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_error\",\"param\":null,"
         "\"code\":\"rate_limit_exceeded\"}}",
         "Rate limit", "rate_limit_error"},
        {"{\"error\":\"model 'x' not found\"}", "model 'x' not found", NULL},
        {"{\"message\":\"bad\",\"object\":\"error\"}", "bad", NULL},
        {"<html>502</html>", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xl_error e;
        rl_err err = D->decode_error(cases[i].body, strlen(cases[i].body), pool, &e);
        is_int(err, RL_OK, "error: read");
        is_str(e.message, cases[i].message, "error: message");
        is_str(e.type, cases[i].type, "error: type");
    }
}

/* ---- streams --------------------------------------------------------------- */

/* Model events as one line each, for comparing sequences. */
static int record(void *ctx, const xl_event *ev)
{
    rl_buf *b = ctx;
    static const char *const names[] = {"START", "TEXT",  "THINKING", "TOOL_CALL", "TOOL_ARGS",
                                        "STOP",  "USAGE", "END",      "ERROR"};
    rl_buf_printf(b, "%s", names[ev->kind]);
    if (ev->kind == XL_EV_START)
        rl_buf_printf(b, " %s %s", ev->id ? ev->id : "-", ev->model ? ev->model : "-");
    if (ev->kind == XL_EV_TOOL_CALL)
        rl_buf_printf(b, " %d %s %s", ev->index, ev->id, ev->name);
    if (ev->kind == XL_EV_TOOL_ARGS)
        rl_buf_printf(b, " %d", ev->index);
    if (ev->kind == XL_EV_STOP)
        rl_buf_printf(b, " %d", (int)ev->stop);
    if (ev->kind == XL_EV_USAGE)
        rl_buf_printf(b, " %lld %lld %lld %lld", (long long)ev->usage.input,
                      (long long)ev->usage.output, (long long)ev->usage.cached_input,
                      (long long)ev->reasoning_tokens);
    if (ev->kind == XL_EV_ERROR)
        rl_buf_printf(b, " %s", ev->type ? ev->type : "-");
    if (ev->text)
        rl_buf_printf(b, " [%s]", ev->text);
    return rl_buf_puts(b, "\n") != RL_OK;
}

static const char *const chunks[] = {
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"ds\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}],\"usage\":null}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Plan\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
    "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
    "\"\"}}]},\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"{\\\"ci\"}}]},\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"ty\\\":\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":"
    "\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
    "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,"
    "\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":3},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":1}}}",
    "[DONE]",
};

static void test_stream_decode(rl_pool *pool)
{
    rl_buf got;
    rl_buf_init(&got, 0);
    void *state = rl_palloc(pool, D->dec_size);
    rl_err err = RL_OK;
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0] && err == RL_OK; i++)
        err = D->dec_event(state, pool, NULL, chunks[i], strlen(chunks[i]), record, &got);
    if (err == RL_OK)
        err = D->dec_finish(state, pool, record, &got);
    is_int(err, RL_OK, "stream decode: every chunk read");
    is_str(got.data,
           "START c1 ds\n"
           "THINKING [Plan]\n"
           "TEXT [Hel]\n"
           "TEXT [lo]\n"
           "TOOL_CALL 0 call_1 get_weather\n"
           "TOOL_ARGS 0 [{\"ci]\n"
           "TOOL_ARGS 0 [ty\":\"Oslo\"}]\n"
           "TOOL_CALL 1 call_2 now\n"
           "TOOL_ARGS 1 [{}]\n"
           "STOP 3\n"
           "USAGE 9 4 3 1\n"
           "END\n",
           "stream decode: the model events in order");

    /* An error inside a stream, and a stream cut before [DONE] (no END). */
    rl_buf_reset(&got);
    state = rl_palloc(pool, D->dec_size);
    const char *e = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}";
    err = D->dec_event(state, pool, NULL, chunks[2], strlen(chunks[2]), record, &got);
    if (err == RL_OK)
        err = D->dec_event(state, pool, NULL, e, strlen(e), record, &got);
    if (err == RL_OK)
        err = D->dec_finish(state, pool, record, &got);
    is_int(err, RL_OK, "stream decode: an error event read");
    is_str(got.data, "START c1 -\nTEXT [Hel]\nERROR server_error [overloaded]\n",
           "stream decode: ERROR, no END");

    /* Servers that leave out index: a new id is a new call. */
    rl_buf_reset(&got);
    state = rl_palloc(pool, D->dec_size);
    const char *noidx[] = {
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"b\",\"function\":{\"name\":\"g\","
        "\"arguments\":\"{\\\"x\\\":1}\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"function_call\":{\"arguments\":\"\"}},"
        "\"finish_reason\":\"stop\"}]}",
        "[DONE]"};
    for (size_t i = 0; i < 4; i++)
        D->dec_event(state, pool, NULL, noidx[i], strlen(noidx[i]), record, &got);
    is_str(got.data,
           "START - -\nTOOL_CALL 0 a f\nTOOL_ARGS 0 [{}]\nTOOL_CALL 1 b g\nTOOL_ARGS 1 "
           "[{\"x\":1}]\nSTOP 1\nEND\n",
           "stream decode: calls without index follow their ids");
    is_int(D->dec_event(state, pool, NULL, "{", 1, record, &got), RL_OK,
           "stream decode: events after [DONE] are ignored");
    state = rl_palloc(pool, D->dec_size);
    is_int(D->dec_event(state, pool, NULL, "{nope", 5, record, &got), RL_UPSTREAM_PROTOCOL,
           "stream decode: a chunk that is not JSON");
    rl_buf_release(&got);
}

/* Splits SSE bytes at blank lines and compares each event: "data: " +
 * JSON by value, anything else as text. */
static void is_events(const char *got, const char *const *want, size_t n, const char *what)
{
    size_t i = 0;
    const char *p = got ? got : "";
    char label[160];
    while (*p && i < n) {
        const char *end = strstr(p, "\n\n");
        if (!end)
            break;
        char *ev = strndup(p, (size_t)(end - p));
        snprintf(label, sizeof label, "%s: event %zu", what, i);
        if (strncmp(ev, "data: {", 7) == 0 && strncmp(want[i], "data: {", 7) == 0)
            is_json(ev + 6, want[i] + 6, label);
        else
            is_str(ev, want[i], label);
        free(ev);
        p = end + 2;
        i++;
    }
    snprintf(label, sizeof label, "%s: %zu events, nothing after", what, n);
    ok(i == n && *p == '\0', label);
    if (i != n || *p)
        printf("#   got %zu events; rest: %s\n", i, p);
}

#define HEAD                                                                                       \
    "\"id\":\"msg_up\",\"object\":\"chat.completion.chunk\",\"created\":1700,\"model\":\"gpt-c\""
#define CHOICE(delta, finish)                                                                      \
    "\"choices\":[{\"index\":0,\"delta\":" delta ",\"logprobs\":null,\"finish_reason\":" finish "}]"

static void test_stream_encode(rl_pool *pool)
{
    xl_reply reply = {.model = "gpt-c",
                      .id = "fallback",
                      .created = 1700,
                      .include_usage = 1,
                      .framing = FRAME_SSE};
    void *state = rl_palloc(pool, D->enc_size);
    const xl_event evs[] = {
        {.kind = XL_EV_START, .id = "msg_up", .model = "claude-real"},
        {.kind = XL_EV_USAGE, .usage = {12, -1, 5, -1, 0}, .reasoning_tokens = -1},
        {.kind = XL_EV_THINKING, .text = "hidden"},
        {.kind = XL_EV_TEXT, .text = "Hi"},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "toolu_1", .name = "f"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"a\""},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = ":1}"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {-1, 7, -1, -1, 0}, .reasoning_tokens = 2},
        {.kind = XL_EV_END},
    };
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err err = RL_OK;
    for (size_t i = 0; i < sizeof evs / sizeof evs[0] && err == RL_OK; i++) {
        size_t before = out.len;
        err = D->enc_event(state, &reply, &evs[i], &out);
        if (evs[i].kind == XL_EV_TEXT)
            ok(out.len > before, "stream encode: text is written as it comes");
    }
    is_int(err, RL_OK, "stream encode: every event placed");
    const char *want[] = {
        "data: {" HEAD
        "," CHOICE("{\"role\":\"assistant\",\"content\":\"\"}", "null") ",\"usage\":null}",
        "data: {" HEAD "," CHOICE("{\"content\":\"Hi\"}", "null") ",\"usage\":null}",
        "data: {" HEAD
        "," CHOICE("{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_1\",\"type\":"
                   "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}",
                   "null") ",\"usage\":null}",
        "data: {" HEAD "," CHOICE("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                                  "\"{\\\"a\\\"\"}}]}",
                                  "null") ",\"usage\":null}",
        "data: {" HEAD "," CHOICE("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                                  "\":1}\"}}]}",
                                  "null") ",\"usage\":null}",
        "data: {" HEAD "," CHOICE("{}", "\"tool_calls\"") ",\"usage\":null}",
        "data: {" HEAD ",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
        "\"total_tokens\":19,\"prompt_tokens_details\":{\"cached_tokens\":5},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
        "data: [DONE]",
    };
    is_events(out.data, want, sizeof want / sizeof want[0], "stream encode");
    is_int(D->enc_event(state, &reply, &evs[3], &out), RL_UPSTREAM_PROTOCOL,
           "stream encode: nothing after the end");

    /* Without include_usage: no usage member, no usage chunk; END without
     * STOP still says why it ended; START without id uses the reply's. */
    reply.include_usage = 0;
    state = rl_palloc(pool, D->enc_size);
    rl_buf_reset(&out);
    const xl_event short_evs[] = {{.kind = XL_EV_START},
                                  {.kind = XL_EV_TEXT, .text = "ok"},
                                  {.kind = XL_EV_USAGE, .usage = {1, 1, -1, -1, 0}},
                                  {.kind = XL_EV_END}};
    for (size_t i = 0; i < 4; i++)
        D->enc_event(state, &reply, &short_evs[i], &out);
#define HEAD2                                                                                      \
    "\"id\":\"fallback\",\"object\":\"chat.completion.chunk\",\"created\":1700,\"model\":\"gpt-"   \
    "c\""
    const char *want2[] = {
        "data: {" HEAD2 "," CHOICE("{\"role\":\"assistant\",\"content\":\"\"}", "null") "}",
        "data: {" HEAD2 "," CHOICE("{\"content\":\"ok\"}", "null") "}",
        "data: {" HEAD2 "," CHOICE("{}", "\"stop\"") "}",
        "data: [DONE]",
    };
    is_events(out.data, want2, 4, "stream encode without usage");

    /* The error event ends the stream in OpenAI's shape. */
    state = rl_palloc(pool, D->enc_size);
    rl_buf_reset(&out);
    D->enc_event(state, &reply, &short_evs[0], &out);
    xl_event err_ev = {
        .kind = XL_EV_ERROR, .text = "upstream overloaded", .type = "overloaded_error"};
    is_int(D->enc_event(state, &reply, &err_ev, &out), RL_OK, "stream encode: error event");
    const char *want3[] = {
        "data: {" HEAD2 "," CHOICE("{\"role\":\"assistant\",\"content\":\"\"}", "null") "}",
        "data: {\"error\":{\"message\":\"upstream overloaded\",\"type\":\"overloaded_error\","
        "\"param\":null,\"code\":null}}",
    };
    is_events(out.data, want3, 2, "stream encode error");

    /* Arguments for a call never started cannot be placed. */
    state = rl_palloc(pool, D->enc_size);
    xl_event stray = {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{}"};
    is_int(D->enc_event(state, &reply, &stray, &out), RL_UPSTREAM_PROTOCOL,
           "stream encode: arguments of an unknown call");
    rl_buf_release(&out);
}

/* Decoding our own encoded stream gives back the events (minus thinking). */
static void test_stream_round_trip(rl_pool *pool)
{
    xl_reply reply = {.model = "m", .id = "r1", .created = 1, .include_usage = 1};
    void *enc = rl_palloc(pool, D->enc_size);
    const xl_event evs[] = {
        {.kind = XL_EV_START, .id = "up1"},
        {.kind = XL_EV_TEXT, .text = "a"},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{}"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {3, 2, -1, -1, 0}, .reasoning_tokens = -1},
        {.kind = XL_EV_END},
    };
    rl_buf bytes, got;
    rl_buf_init(&bytes, 0);
    rl_buf_init(&got, 0);
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        D->enc_event(enc, &reply, &evs[i], &bytes);
    void *dec = rl_palloc(pool, D->dec_size);
    const char *p = bytes.data;
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        D->dec_event(dec, pool, NULL, p + 6, (size_t)(end - p - 6), record, &got);
        p = end + 2;
    }
    is_str(got.data,
           "START up1 m\nTEXT [a]\nTOOL_CALL 0 c f\nTOOL_ARGS 0 [{}]\nSTOP 3\nUSAGE 3 2 -1 "
           "-1\nEND\n",
           "stream: our bytes decode back to the same events");
    rl_buf_release(&bytes);
    rl_buf_release(&got);
}

int main(void)
{
    rl_pool *pool = rl_pool_new();
    rl_buf out, why;
    rl_buf_init(&out, 0);
    rl_buf_init(&why, 0);
    ok(D->id == XL_OPENAI_CHAT && D->carries_thinking == 0 && D->stream_framing == FRAME_SSE,
       "dialect: id, no thinking carried, SSE");
    test_plain(pool, &out, &why);
    test_system(pool, &out, &why);
    test_images(pool, &out, &why);
    test_tools(pool, &out, &why);
    test_refusals(pool, &why);
    test_features(pool, &out, &why);
    test_encode_model(&out, &why);
    test_answers(pool, &out);
    test_stops(pool, &out);
    test_errors(pool);
    test_stream_decode(pool);
    test_stream_encode(pool);
    test_stream_round_trip(pool);
    rl_buf_release(&out);
    rl_buf_release(&why);
    rl_pool_free(pool);
    return tap_done();
}
