/* Unit tests for engine/xlate_gemini: requests both ways (system, images,
 * tools and a tool round trip, generation settings, refusals), answers
 * both ways (every finish reason, usage with cached and thought tokens),
 * error bodies, and streams (chunks -> model events, events -> chunk
 * bytes, an error event, the JSON-array framing). JSON is compared by
 * parsing both sides. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "engine/xlate.h"
#include "tests/unit/tap.h"

static const xl_dialect *G = &xl_gemini;

/* JSON written as C tokens: J({"a": [1]}) is the string "{\"a\": [1]}". */
#define J(...) #__VA_ARGS__

/* got and want parse to the same JSON value. */
static void is_json(const char *got, const char *want, const char *what)
{
    json_t *g = got ? json_loads(got, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *w = json_loads(want, JSON_ALLOW_NUL, NULL);
    if (!ok(g && w && json_equal(g, w), what))
        printf("#   got:  %s\n#   want: %s%s\n", got ? got : "(null)", want,
               w ? "" : " (does not parse)");
    json_decref(g);
    json_decref(w);
}

static void has(const char *text, const char *needle, const char *what)
{
    if (!ok(text && strstr(text, needle), what))
        printf("#   got:  %s\n#   want: ...%s...\n", text ? text : "(null)", needle);
}

static const char *str(const rl_buf *b)
{
    return b->data ? b->data : "";
}

static rl_pool *pool;

/* Decodes body (model from the path); why reset first. */
static rl_err decode(const char *body, xl_request *req, rl_buf *why)
{
    rl_buf_reset(why);
    return G->decode_request(body, strlen(body), "gemini-2.5-flash", pool, req, why);
}

/* Encodes req; out and path reset first. */
static rl_err encode(const xl_request *req, rl_buf *out, rl_buf *path, rl_buf *why)
{
    rl_buf_reset(out);
    rl_buf_reset(path);
    rl_buf_reset(why);
    return G->encode_request(req, out, path, why);
}

/* ---- requests ------------------------------------------------------------- */

static void test_plain(void)
{
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    const char *body = J({"contents" : [ {"role" : "user", "parts" : [ {"text" : "Hi"} ]} ]});
    is_int(decode(body, &req, &why), RL_OK, "plain: decoded");
    is_str(req.model, "gemini-2.5-flash", "plain: the model comes from the path");
    is_int(req.nmessages, 1, "plain: one turn");
    is_int(req.messages[0].role, XL_ROLE_USER, "plain: a user turn");
    is_str(req.messages[0].parts[0].text, "Hi", "plain: its text");
    ok(req.max_tokens == -1 && req.temperature < 0 && req.top_p < 0 && req.top_k == -1 &&
           req.n == 1 && req.thinking_budget == -1 && req.parallel_tool_calls == -1 &&
           req.tool_choice == XL_CHOICE_UNSET && req.format == XL_FORMAT_TEXT,
       "plain: everything else unset");
    int none = 1;
    for (int f = 0; f < XL_FEATURES; f++)
        none &= !req.features[f];
    ok(none, "plain: no features");

    is_int(encode(&req, &out, &path, &why), RL_OK, "plain: encoded");
    is_json(str(&out), J({"contents" : [ {"role" : "user", "parts" : [ {"text" : "Hi"} ]} ]}),
            "plain: the upstream body");
    is_str(str(&path), "/v1beta/models/gemini-2.5-flash:generateContent", "plain: the path");
    req.stream = 1;
    req.model = "models/gemini-2.0-flash";
    encode(&req, &out, &path, &why);
    is_str(str(&path), "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
           "plain: a stream's path (a models/ prefix is not doubled)");
    req.model = NULL;
    is_int(encode(&req, &out, &path, &why), RL_BAD_REQUEST, "plain: no model: refused");

    /* A content without a role is the user's; snake_case names are read. */
    body = J({
        "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
        "generation_config" : {"max_output_tokens" : 7}
    });
    is_int(decode(body, &req, &why), RL_OK, "snake_case: decoded");
    ok(req.messages[0].role == XL_ROLE_USER && req.max_tokens == 7,
       "snake_case: role defaults to user, max_output_tokens read");

    is_int(decode("{\"contents\":", &req, &why), RL_BAD_JSON, "bad JSON: RL_BAD_JSON");
    is_int(decode("[1]", &req, &why), RL_BAD_JSON, "not an object: RL_BAD_JSON");
    is_int(decode("{}", &req, &why), RL_BAD_REQUEST, "no contents: refused");
    has(str(&why), "contents", "no contents: named");
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
}

static void test_system(void)
{
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    const char *body = J({
        "systemInstruction" :
            {"role" : "system", "parts" : [ {"text" : "Be brief."}, {"text" : "Be kind."} ]},
        "contents" : [ {"role" : "user", "parts" : [ {"text" : "Hi"} ]} ]
    });
    is_int(decode(body, &req, &why), RL_OK, "system parts: decoded");
    is_int(req.nsystem, 2, "system parts: two");
    is_str(req.system[1].text, "Be kind.", "system parts: in order");
    encode(&req, &out, &path, &why);
    is_json(
        str(&out), J({
            "contents" : [ {"role" : "user", "parts" : [ {"text" : "Hi"} ]} ],
            "systemInstruction" : {"parts" : [ {"text" : "Be brief."}, {"text" : "Be kind."} ]}
        }),
        "system parts: encoded");

    body = J({"systemInstruction" : "Be brief.", "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ]});
    is_int(decode(body, &req, &why), RL_OK, "system string: decoded");
    ok(req.nsystem == 1 && strcmp(req.system[0].text, "Be brief.") == 0, "system string: one part");

    body = J({
        "systemInstruction" :
            {"parts" : [ {"inlineData" : {"mimeType" : "image/png", "data" : "AA"}} ]},
        "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ]
    });
    is_int(decode(body, &req, &why), RL_BAD_REQUEST, "system image: refused");
    has(str(&why), "systemInstruction.parts[0]", "system image: named");
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
}

static void test_images(void)
{
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    const char *body = J({
        "contents" : [ {
            "role" : "user",
            "parts" : [
                {"text" : "What is this?"},
                {"inlineData" : {"mimeType" : "image/png", "data" : "iVBORw0K"}}, {
                    "fileData" :
                        {"mimeType" : "image/jpeg", "fileUri" : "https://example.com/cat.jpg"}
                }
            ]
        } ]
    });
    is_int(decode(body, &req, &why), RL_OK, "images: decoded");
    const xl_part *p = req.messages[0].parts;
    ok(p[1].kind == XL_PART_IMAGE && strcmp(p[1].media_type, "image/png") == 0 &&
           strcmp(p[1].data, "iVBORw0K") == 0 && !p[1].url,
       "images: inlineData is media type + data");
    ok(p[2].kind == XL_PART_IMAGE && strcmp(p[2].url, "https://example.com/cat.jpg") == 0 &&
           strcmp(p[2].media_type, "image/jpeg") == 0 && !p[2].data,
       "images: fileData is a URL");
    ok(req.features[XL_F_IMAGE] && req.features[XL_F_IMAGE_URL], "images: features set");
    is_str(req.features[XL_F_IMAGE_URL], "fileData", "images: the URL feature names fileData");
    encode(&req, &out, &path, &why);
    is_json(str(&out), body, "images: encoded back as they came");

    /* From another format: a URL without a media type gets one from its name. */
    xl_part parts[] = {{.kind = XL_PART_IMAGE, .url = "https://example.com/a.webp?x=1"},
                       {.kind = XL_PART_IMAGE, .url = "https://example.com/photo"}};
    xl_message m = {XL_ROLE_USER, parts, 2};
    xl_request r2 = req;
    r2.messages = &m;
    r2.nmessages = 1;
    encode(&r2, &out, &path, &why);
    is_json(str(&out), J({
                "contents" : [ {
                    "role" : "user",
                    "parts" : [
                        {
                            "fileData" : {
                                "mimeType" : "image/webp",
                                "fileUri" : "https://example.com/a.webp?x=1"
                            }
                        },
                        {"fileData" : {"fileUri" : "https://example.com/photo"}}
                    ]
                } ]
            }),
            "images: a URL's type guessed from its extension, else left out");

    body = J({
        "contents" :
            [ {"parts" : [ {"inlineData" : {"mimeType" : "application/pdf", "data" : "JVBE"}} ]} ]
    });
    is_int(decode(body, &req, &why), RL_BAD_REQUEST, "a PDF: refused");
    has(str(&why), "contents[0].parts[0].inlineData.mimeType", "a PDF: named");
    body = J({
        "contents" : [
            {"parts" : [ {"fileData" : {"mimeType" : "video/mp4", "fileUri" : "https://x/v.mp4"}} ]}
        ]
    });
    is_int(decode(body, &req, &why), RL_BAD_REQUEST, "a video: refused");
    has(str(&why), "fileData.mimeType", "a video: named");
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
}

/* A Gemini client's tool round trip: declarations in Gemini's Schema, two
 * calls of one function without ids, their answers without ids. */
static const char round_trip[] = J({
    "contents" : [
        {"role" : "user", "parts" : [ {"text" : "Weather in Oslo and Rome?"} ]}, {
            "role" : "model",
            "parts" : [
                {
                    "functionCall" : {"name" : "get_weather", "args" : {"city" : "Oslo"}},
                    "thoughtSignature" : "c2ln"
                },
                {"functionCall" : {"name" : "get_weather", "args" : {"city" : "Rome"}}}
            ]
        },
        {
            "role" : "user",
            "parts" : [
                {"functionResponse" : {"name" : "get_weather", "response" : {"result" : "rain"}}},
                {"functionResponse" : {"name" : "get_weather", "response" : {"temp" : 25}}},
                {"text" : "And tomorrow?"}
            ]
        }
    ],
    "tools" : [ {
        "functionDeclarations" : [ {
            "name" : "get_weather",
            "description" : "Weather now",
            "parameters" : {
                "type" : "OBJECT",
                "properties" : {
                    "city" : {"type" : "STRING", "description" : "City"},
                    "days" : {"type" : "INTEGER", "nullable" : true}
                },
                "required" : ["city"],
                "propertyOrdering" : [ "city", "days" ]
            }
        } ]
    } ],
    "toolConfig" :
        {"functionCallingConfig" : {"mode" : "ANY", "allowedFunctionNames" : ["get_weather"]}}
});

static void test_tools(void)
{
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    is_int(decode(round_trip, &req, &why), RL_OK, "tools: decoded");
    is_int(req.ntools, 1, "tools: one function");
    is_str(req.tools[0].description, "Weather now", "tools: description");
    is_json(req.tools[0].parameters, J({
                "type" : "object",
                "properties" : {
                    "city" : {"type" : "string", "description" : "City"},
                    "days" : {"type" : [ "integer", "null" ]}
                },
                "required" : ["city"]
            }),
            "tools: Gemini's Schema made JSON Schema");
    is_int(req.tool_choice, XL_CHOICE_NAMED, "tools: ANY with one name is a named choice");
    is_str(req.tool_choice_name, "get_weather", "tools: the name");
    is_str(req.features[XL_F_TOOLS], "tools", "tools: feature");

    is_int(req.nmessages, 4, "tools: the user turn with answers and text split in two");
    const xl_message *m = req.messages;
    ok(m[1].role == XL_ROLE_ASSISTANT && m[2].role == XL_ROLE_TOOL && m[3].role == XL_ROLE_USER,
       "tools: roles model, tool, user");
    is_int(m[1].nparts, 3, "tools: the signature is a part before the first call");
    ok(m[1].parts[0].kind == XL_PART_THINKING && strcmp(m[1].parts[0].text, "") == 0 &&
           strcmp(m[1].parts[0].signature, "c2ln") == 0,
       "tools: an empty thinking part with the signature");
    is_str(m[1].parts[1].id, "call_0", "tools: the first call's id");
    is_str(m[1].parts[2].id, "call_1", "tools: the second call's id");
    is_json(m[1].parts[2].arguments, J({"city" : "Rome"}), "tools: arguments");
    is_str(m[2].parts[0].id, "call_0", "tools: the first answer pairs with the first call");
    is_str(m[2].parts[1].id, "call_1", "tools: the second with the second");
    is_str(m[2].parts[0].text, "rain", "tools: {\"result\": text} is the text");
    is_json(m[2].parts[1].text, J({"temp" : 25}), "tools: another object is its JSON");
    is_str(m[3].parts[0].text, "And tomorrow?", "tools: the user's text after");
    is_int(xlate_pair_tool_results(&req, &why), RL_OK, "tools: the shared pairing agrees");

    encode(&req, &out, &path, &why);
    is_json(
        str(&out), J({
            "contents" : [
                {"role" : "user", "parts" : [ {"text" : "Weather in Oslo and Rome?"} ]}, {
                    "role" : "model",
                    "parts" : [
                        {
                            "functionCall" : {
                                "id" : "call_0",
                                "name" : "get_weather",
                                "args" : {"city" : "Oslo"}
                            },
                            "thoughtSignature" : "c2ln"
                        },
                        {
                            "functionCall" : {
                                "id" : "call_1",
                                "name" : "get_weather",
                                "args" : {"city" : "Rome"}
                            }
                        }
                    ]
                },
                {
                    "role" : "user",
                    "parts" : [
                        {
                            "functionResponse" : {
                                "id" : "call_0",
                                "name" : "get_weather",
                                "response" : {"result" : "rain"}
                            }
                        },
                        {
                            "functionResponse" : {
                                "id" : "call_1",
                                "name" : "get_weather",
                                "response" : {"temp" : 25}
                            }
                        },
                        {"text" : "And tomorrow?"}
                    ]
                }
            ],
            "tools" : [ {
                "functionDeclarations" : [ {
                    "name" : "get_weather",
                    "description" : "Weather now",
                    "parametersJsonSchema" : {
                        "type" : "object",
                        "properties" : {
                            "city" : {"type" : "string", "description" : "City"},
                            "days" : {"type" : [ "integer", "null" ]}
                        },
                        "required" : ["city"]
                    }
                } ]
            } ],
            "toolConfig" : {
                "functionCallingConfig" : {"mode" : "ANY", "allowedFunctionNames" : ["get_weather"]}
            }
        }),
        "tools: encoded (ids kept, the tool and user turns one user content)");

    /* Ids a client gave are kept; a made-up id skips one in use. */
    const char *body = J({
        "contents" : [
            {
                "role" : "model",
                "parts" : [ {"functionCall" : {"id" : "call_0", "name" : "f", "args" : {}}} ]
            },
            {
                "role" : "user",
                "parts" :
                    [ {"functionResponse" : {"id" : "call_0", "name" : "f", "response" : {}}} ]
            },
            {"role" : "model", "parts" : [ {"functionCall" : {"name" : "f"}} ]}, {
                "role" : "function",
                "parts" :
                    [ {"functionResponse" : {"name" : "f", "response" : {"error" : "boom"}}} ]
            }
        ]
    });
    is_int(decode(body, &req, &why), RL_OK, "ids: decoded");
    is_str(req.messages[2].parts[0].id, "call_1", "ids: a made-up id skips one the request uses");
    is_str(req.messages[2].parts[0].arguments, "{}", "ids: no args is {}");
    is_str(req.messages[3].parts[0].id, "call_1", "ids: the answer pairs with the latest call");
    ok(req.messages[3].parts[0].is_error && strcmp(req.messages[3].parts[0].text, "boom") == 0,
       "ids: {\"error\": text} is a failed result");
    is_str(req.messages[1].parts[0].text, "{}", "ids: an empty response object is {}");

    /* @google/genai's chat history keeps a streamed answer as one model
     * content per chunk (seen with 2.32.0): one assistant turn again. */
    body = J({
        "contents" : [
            {"role" : "user", "parts" : [ {"text" : "hi"} ]},
            {"role" : "model", "parts" : [ {"text" : "ponder", "thought" : true} ]},
            {"role" : "model", "parts" : [ {"text" : "ing", "thought" : true} ]}, {
                "role" : "model",
                "parts" : [ {"text" : "", "thought" : true, "thoughtSignature" : "s1"} ]
            },
            {"role" : "model", "parts" : [ {"text" : "Hello "} ]},
            {"role" : "model", "parts" : [ {"text" : "world"} ]}, {
                "role" : "model",
                "parts" : [ {
                    "functionCall" : {"id" : "toolu_1", "name" : "f", "args" : {}},
                    "thoughtSignature" : "s2"
                } ]
            },
            {
                "role" : "user",
                "parts" : [ {
                    "functionResponse" :
                        {"id" : "toolu_1", "name" : "f", "response" : {"result" : "ok"}}
                } ]
            },
            {"role" : "user", "parts" : [ {"text" : "more"} ]}
        ]
    });
    is_int(decode(body, &req, &why), RL_OK, "chat history: decoded");
    is_int(req.nmessages, 4, "chat history: user, one assistant turn, tool, user");
    m = req.messages;
    is_int(m[1].nparts, 4, "chat history: thought, text, signature, call");
    ok(m[1].parts[0].kind == XL_PART_THINKING && strcmp(m[1].parts[0].text, "pondering") == 0 &&
           strcmp(m[1].parts[0].signature, "s1") == 0,
       "chat history: thought pieces joined, the signature chunk after them ends the thought");
    is_str(m[1].parts[1].text, "Hello world", "chat history: text pieces joined");
    ok(m[1].parts[2].kind == XL_PART_THINKING && strcmp(m[1].parts[2].signature, "s2") == 0 &&
           m[1].parts[3].kind == XL_PART_TOOL_CALL,
       "chat history: the call's signature stays before it");
    ok(m[2].role == XL_ROLE_TOOL && m[3].role == XL_ROLE_USER, "chat history: then tool, user");

    /* The other direction: a request from another format. */
    xl_part u1[] = {{.kind = XL_PART_TEXT, .text = "Weather?"}};
    xl_part a1[] = {{.kind = XL_PART_THINKING, .text = "Let me think", .signature = "sig=="},
                    {.kind = XL_PART_THINKING, .redacted = 1, .data = "opaque"},
                    {.kind = XL_PART_TEXT, .text = "Checking."},
                    {.kind = XL_PART_TOOL_CALL,
                     .id = "toolu_1",
                     .name = "get_weather",
                     .arguments = "{\"city\":\"Oslo\"}"}};
    xl_part t1[] = {
        {.kind = XL_PART_TOOL_RESULT, .id = "toolu_1", .name = "get_weather", .text = "22C"},
        {.kind = XL_PART_TOOL_RESULT,
         .id = "toolu_2",
         .name = "get_time",
         .text = "not found",
         .is_error = 1}};
    xl_part u2[] = {{.kind = XL_PART_TEXT, .text = "Thanks"}};
    xl_message msgs[] = {{XL_ROLE_USER, u1, 1},
                         {XL_ROLE_ASSISTANT, a1, 4},
                         {XL_ROLE_TOOL, t1, 2},
                         {XL_ROLE_USER, u2, 1}};
    xl_tool tools[] = {{"get_weather", NULL, "{\"type\":\"object\"}", 1},
                       {"get_time", "Now", NULL, -1}};
    const char *stops[] = {"END"};
    xl_request o = {.model = "gemini-2.5-pro",
                    .stream = 1,
                    .messages = msgs,
                    .nmessages = 4,
                    .tools = tools,
                    .ntools = 2,
                    .tool_choice = XL_CHOICE_AUTO,
                    .parallel_tool_calls = -1,
                    .stop = stops,
                    .nstop = 1,
                    .max_tokens = 100,
                    .temperature = 0.5,
                    .top_p = 0.25,
                    .top_k = 40,
                    .seed = 7,
                    .presence_penalty = 0.5,
                    .frequency_penalty = 0.25,
                    .n = 1,
                    .format = XL_FORMAT_JSON_SCHEMA,
                    .format_schema = "{\"type\":\"object\"}",
                    .reasoning_effort = "low",
                    .thinking_budget = -1,
                    .user = "u-1"};
    o.features[XL_F_TOP_K] = "top_k";
    o.features[XL_F_SEED] = "seed";
    o.features[XL_F_PENALTIES] = "presence_penalty";
    is_int(encode(&o, &out, &path, &why), RL_OK, "from another format: encoded");
    is_json(
        str(&out), J({
            "contents" : [
                {"role" : "user", "parts" : [ {"text" : "Weather?"} ]}, {
                    "role" : "model",
                    "parts" : [
                        {"text" : "Let me think", "thought" : true, "thoughtSignature" : "sig=="},
                        {"text" : "Checking."}, {
                            "functionCall" : {
                                "id" : "toolu_1",
                                "name" : "get_weather",
                                "args" : {"city" : "Oslo"}
                            }
                        }
                    ]
                },
                {
                    "role" : "user",
                    "parts" : [
                        {
                            "functionResponse" : {
                                "id" : "toolu_1",
                                "name" : "get_weather",
                                "response" : {"result" : "22C"}
                            }
                        },
                        {
                            "functionResponse" : {
                                "id" : "toolu_2",
                                "name" : "get_time",
                                "response" : {"error" : "not found"}
                            }
                        },
                        {"text" : "Thanks"}
                    ]
                }
            ],
            "tools" : [ {
                "functionDeclarations" : [
                    {"name" : "get_weather", "parametersJsonSchema" : {"type" : "object"}},
                    {"name" : "get_time", "description" : "Now"}
                ]
            } ],
            "toolConfig" : {"functionCallingConfig" : {"mode" : "AUTO"}},
            "generationConfig" : {
                "temperature" : 0.5,
                "topP" : 0.25,
                "topK" : 40,
                "maxOutputTokens" : 100,
                "stopSequences" : ["END"],
                "seed" : 7,
                "presencePenalty" : 0.5,
                "frequencyPenalty" : 0.25,
                "responseMimeType" : "application/json",
                "responseJsonSchema" : {"type" : "object"},
                "thinkingConfig" : {"thinkingBudget" : 2048, "includeThoughts" : true}
            }
        }),
        "from another format: the whole body (redacted thinking left out, user id skipped)");
    is_str(str(&path), "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
           "from another format: the stream path");

    /* Tool choices and a JSON object format. */
    static const struct {
        xl_tool_choice choice;
        const char *want;
    } choices[] = {
        {XL_CHOICE_NONE, J({"functionCallingConfig" : {"mode" : "NONE"}})},
        {XL_CHOICE_REQUIRED, J({"functionCallingConfig" : {"mode" : "ANY"}})},
        {XL_CHOICE_NAMED,
         J({"functionCallingConfig" : {"mode" : "ANY", "allowedFunctionNames" : ["get_time"]}})},
    };
    o.tool_choice_name = "get_time";
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++) {
        o.tool_choice = choices[i].choice;
        encode(&o, &out, &path, &why);
        json_t *j = json_loads(str(&out), 0, NULL);
        char *tc = json_dumps(json_object_get(j, "toolConfig"), JSON_COMPACT);
        is_json(tc, choices[i].want, "tool choice: encoded");
        free(tc);
        json_decref(j);
    }
    o.format = XL_FORMAT_JSON_OBJECT;
    o.thinking_budget = 500;
    encode(&o, &out, &path, &why);
    has(str(&out),
        "\"responseMimeType\":\"application/json\",\"thinkingConfig\":{\"thinkingBudget\":500",
        "JSON object: the type without a schema; a budget as it is");

    /* A tool result whose call is unknown (no name) cannot be sent. */
    t1[0].name = NULL;
    is_int(encode(&o, &out, &path, &why), RL_BAD_REQUEST, "unnamed result: refused");
    has(str(&why), "toolu_1", "unnamed result: its id said");
    t1[0].name = "get_weather";
    a1[3].arguments = "[1]";
    is_int(encode(&o, &out, &path, &why), RL_BAD_REQUEST, "arguments not an object: refused");
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
}

static void test_generation(void)
{
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    const char *body = J({
        "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ],
        "generationConfig" : {
            "temperature" : 0.2,
            "topP" : 0.9,
            "topK" : 40.0,
            "maxOutputTokens" : 256,
            "stopSequences" : [ "STOP", "END" ],
            "candidateCount" : 2,
            "seed" : 42,
            "presencePenalty" : 0.1,
            "frequencyPenalty" : 0.3,
            "responseMimeType" : "application/json",
            "responseSchema" : {"type" : "OBJECT", "properties" : {"a" : {"type" : "STRING"}}},
            "responseModalities" : ["TEXT"],
            "thinkingConfig" : {"thinkingBudget" : 1024, "includeThoughts" : true}
        },
        "safetySettings" :
            [ {"category" : "HARM_CATEGORY_HARASSMENT", "threshold" : "BLOCK_NONE"} ],
        "labels" : {"team" : "a"}
    });
    is_int(decode(body, &req, &why), RL_OK, "generationConfig: decoded");
    ok(req.temperature == 0.2 && req.top_p == 0.9 && req.top_k == 40 && req.max_tokens == 256,
       "generationConfig: sampling and the cap");
    ok(req.nstop == 2 && strcmp(req.stop[1], "END") == 0, "generationConfig: stop sequences");
    ok(req.n == 2 && req.seed == 42 && req.presence_penalty == 0.1 && req.frequency_penalty == 0.3,
       "generationConfig: candidates, seed, penalties");
    is_int(req.format, XL_FORMAT_JSON_SCHEMA, "generationConfig: a schema");
    is_json(req.format_schema, J({"type" : "object", "properties" : {"a" : {"type" : "string"}}}),
            "generationConfig: Gemini's Schema made JSON Schema");
    is_int(req.thinking_budget, 1024, "generationConfig: the thinking budget");
    is_str(req.features[XL_F_TOP_K], "generationConfig.topK", "feature: topK");
    is_str(req.features[XL_F_SEED], "generationConfig.seed", "feature: seed");
    is_str(req.features[XL_F_PENALTIES], "generationConfig.frequencyPenalty", "feature: penalties");
    is_str(req.features[XL_F_CHOICES], "generationConfig.candidateCount", "feature: candidates");
    is_str(req.features[XL_F_STOP], "generationConfig.stopSequences", "feature: stop");
    is_str(req.features[XL_F_JSON_SCHEMA], "generationConfig.responseSchema", "feature: schema");
    ok(!req.features[XL_F_JSON_OBJECT], "feature: not JSON mode when a schema is there");
    is_str(req.features[XL_F_THINKING], "generationConfig.thinkingConfig.thinkingBudget",
           "feature: thinking");
    is_int(xlate_check_features(&req, G, &why), RL_BAD_REQUEST,
           "candidateCount 2 cannot go to Gemini through the model (one answer comes back)");
    has(str(&why), "generationConfig.candidateCount", "... and the check names the field");

    body = J({
        "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ],
        "generationConfig" :
            {"responseMimeType" : "application/json", "thinkingConfig" : {"thinkingBudget" : -1}}
    });
    decode(body, &req, &why);
    ok(req.format == XL_FORMAT_JSON_OBJECT && req.features[XL_F_JSON_OBJECT],
       "JSON mode without a schema");
    ok(req.thinking_budget == -1 && strcmp(req.reasoning_effort, "medium") == 0,
       "a dynamic budget is medium effort");
    body = J({
        "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ],
        "generationConfig" : {"thinkingConfig" : {"thinkingBudget" : 0}}
    });
    decode(body, &req, &why);
    ok(req.thinking_budget == -1 && !req.reasoning_effort && !req.features[XL_F_THINKING],
       "a zero budget is no thinking");
    body = J({
        "contents" : [ {"parts" : [ {"text" : "Hi"} ]} ],
        "generationConfig" : {"thinkingConfig" : {"thinkingLevel" : "HIGH"}}
    });
    decode(body, &req, &why);
    is_str(req.reasoning_effort, "high", "a thinking level is an effort");
    rl_buf_release(&why);
}

/* Every row of the tables the decoder reads requests with. */
static void test_request_tables(void)
{
    xl_request req;
    rl_buf why, out, path;
    rl_buf_init(&why, 0);
    rl_buf_init(&out, 0);
    rl_buf_init(&path, 0);
    static const struct {
        const char *mode;
        xl_tool_choice choice;
    } modes[] = {{"MODE_UNSPECIFIED", XL_CHOICE_UNSET},
                 {"AUTO", XL_CHOICE_AUTO},
                 {"ANY", XL_CHOICE_REQUIRED},
                 {"NONE", XL_CHOICE_NONE}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char body[256], what[80];
        snprintf(body, sizeof body,
                 "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],"
                 "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"%s\"}}}",
                 modes[i].mode);
        snprintf(what, sizeof what, "functionCallingConfig.mode %s", modes[i].mode);
        is_int(decode(body, &req, &why), RL_OK, what);
        is_int(req.tool_choice, modes[i].choice, what);
    }
    static const char *const lax[] = {"BLOCK_NONE", "OFF", "HARM_BLOCK_THRESHOLD_UNSPECIFIED"};
    static const char *const strict[] = {"BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE",
                                         "BLOCK_ONLY_HIGH"};
    for (size_t i = 0; i < 3; i++) {
        char body[256], what[80];
        snprintf(body, sizeof body,
                 "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"safetySettings\":[{"
                 "\"category\":\"HARM_CATEGORY_HATE_SPEECH\",\"threshold\":\"%s\"}]}",
                 lax[i]);
        snprintf(what, sizeof what, "safety threshold %s: skipped", lax[i]);
        is_int(decode(body, &req, &why), RL_OK, what);
        snprintf(body, sizeof body,
                 "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"safetySettings\":[{"
                 "\"category\":\"HARM_CATEGORY_HATE_SPEECH\",\"threshold\":\"%s\"}]}",
                 strict[i]);
        snprintf(what, sizeof what, "safety threshold %s: refused", strict[i]);
        is_int(decode(body, &req, &why), RL_BAD_REQUEST, what);
    }
    const char *body = J({
        "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
        "generationConfig" :
            {"responseJsonSchema" : {"type" : "object", "additionalProperties" : false}}
    });
    is_int(decode(body, &req, &why), RL_OK, "responseJsonSchema: decoded");
    is_json(req.format_schema, J({"type" : "object", "additionalProperties" : false}),
            "responseJsonSchema: kept as it is");
    is_str(req.features[XL_F_JSON_SCHEMA], "generationConfig.responseJsonSchema",
           "responseJsonSchema: feature");

    static const struct {
        const char *url, *type;
    } exts[] = {{"https://x/a.png", "image/png"},   {"https://x/a.JPG", "image/jpeg"},
                {"https://x/a.jpeg", "image/jpeg"}, {"https://x/a.gif#f", "image/gif"},
                {"https://x/a.webp", "image/webp"}, {"https://x/a.heic", "image/heic"}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        xl_part part = {.kind = XL_PART_IMAGE, .url = exts[i].url};
        xl_message m = {XL_ROLE_USER, &part, 1};
        xl_request r = {.model = "m",
                        .messages = &m,
                        .nmessages = 1,
                        .max_tokens = -1,
                        .temperature = -1,
                        .top_p = -1,
                        .top_k = -1,
                        .thinking_budget = -1};
        encode(&r, &out, &path, &why);
        char want[96];
        snprintf(want, sizeof want, "\"mimeType\":\"%s\"", exts[i].type);
        has(str(&out), want, exts[i].url);
    }
    rl_buf_release(&why);
    rl_buf_release(&out);
    rl_buf_release(&path);
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

static void test_refusals(void)
{
    static const struct {
        const char *body, *field;
    } cases[] = {
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "cachedContent" : "cachedContents/abc"
         }),
         "`cachedContent`"},
        {J({"contents" : [ {"parts" : [ {"text" : "x"} ]} ], "tools" : [ {"googleSearch" : {}} ]}),
         "`tools[0].googleSearch`"},
        {J({"contents" : [ {"parts" : [ {"text" : "x"} ]} ], "tools" : [ {"codeExecution" : {}} ]}),
         "`tools[0].codeExecution`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "tools" :
                 [ {"functionDeclarations" : [ {"name" : "f", "behavior" : "NON_BLOCKING"} ]} ]
         }),
         "`tools[0].functionDeclarations[0].behavior`"},
        {J({
             "contents" : [ {"role" : "model", "parts" : [ {"executableCode" : {"code" : "1"}} ]} ]
         }),
         "`contents[0].parts[0].executableCode`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "safetySettings" :
                 [ {"category" : "HARM_CATEGORY_HARASSMENT", "threshold" : "BLOCK_LOW_AND_ABOVE"} ]
         }),
         "`safetySettings[0].threshold`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"responseLogprobs" : true}
         }),
         "`generationConfig.responseLogprobs`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"speechConfig" : {}}
         }),
         "`generationConfig.speechConfig`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"responseModalities" : [ "TEXT", "IMAGE" ]}
         }),
         "`generationConfig.responseModalities`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"responseMimeType" : "text/x.enum"}
         }),
         "`generationConfig.responseMimeType`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"thinkingConfig" : {"thinkingLevel" : "extreme"}}
         }),
         "`generationConfig.thinkingConfig.thinkingLevel`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "toolConfig" : {"functionCallingConfig" : {"mode" : "VALIDATED"}}
         }),
         "`toolConfig.functionCallingConfig.mode`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "toolConfig" :
                 {"functionCallingConfig" : {"mode" : "ANY", "allowedFunctionNames" : [ "a", "b" ]}}
         }),
         "`toolConfig.functionCallingConfig.allowedFunctionNames`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "toolConfig" :
                 {"functionCallingConfig" : {"mode" : "AUTO", "allowedFunctionNames" : ["a"]}}
         }),
         "`toolConfig.functionCallingConfig.allowedFunctionNames`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "toolConfig" : {"retrievalConfig" : {}}
         }),
         "`toolConfig.retrievalConfig`"},
        {J({"contents" : [ {"parts" : [ {"text" : "x"} ]} ], "frobnicate" : 1}), "`frobnicate`"},
        {J({"contents" : [ {"role" : "system", "parts" : [ {"text" : "x"} ]} ]}),
         "`contents[0].role`"},
        {J({"contents" : [ {"role" : "user", "parts" : []} ]}), "`contents[0].parts`"},
        {J({"contents" : [ {"role" : "user", "parts" : [ {"functionCall" : {"name" : "f"}} ]} ]}),
         "`contents[0].parts[0].functionCall`"},
        {J({
             "contents" : [ {
                 "role" : "model",
                 "parts" : [ {"functionResponse" : {"name" : "f", "response" : {}}} ]
             } ]
         }),
         "`contents[0].parts[0].functionResponse`"},
        {J({
             "contents" : [ {
                 "role" : "user",
                 "parts" : [ {"functionResponse" : {"name" : "f", "response" : {}}} ]
             } ]
         }),
         "`functionResponse` named `f`"},
        {J({
             "contents" : [
                 {"role" : "model", "parts" : [ {"functionCall" : {"name" : "f"}} ]}, {
                     "role" : "user",
                     "parts" : [ {"functionResponse" : {"name" : "g", "response" : {}}} ]
                 }
             ]
         }),
         "`functionResponse` named `g`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"temperature" : "hot"}
         }),
         "`generationConfig.temperature`"},
        {J({"contents" : [ {"parts" : [ {"text" : "x"} ]} ], "generationConfig" : {"topK" : 1.5}}),
         "`generationConfig.topK`"},
        {J({
             "contents" : [ {"parts" : [ {"text" : "x"} ]} ],
             "generationConfig" : {"maxOutputTokens" : 1e300}
         }),
         "`generationConfig.maxOutputTokens`"},
    };
    xl_request req;
    rl_buf why;
    rl_buf_init(&why, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[160];
        snprintf(what, sizeof what, "refused: %s", cases[i].field);
        is_int(decode(cases[i].body, &req, &why), RL_BAD_REQUEST, what);
        has(str(&why), cases[i].field, what);
    }
    rl_buf_release(&why);
}

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

int main(void)
{
    pool = rl_pool_new();
    test_plain();
    test_system();
    test_images();
    test_tools();
    test_generation();
    test_request_tables();
    test_refusals();
    test_answers();
    test_stop_reasons();
    test_errors();
    test_error_types();
    test_stream_decode();
    test_stream_encode();
    rl_pool_free(pool);
    return tap_done();
}
