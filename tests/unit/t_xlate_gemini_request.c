/* Unit tests for engine/xlate_gemini_request.c and
 * xlate_gemini_request_encode.c: requests both ways (system, images, tools
 * and a tool round trip, generation settings, every row of the request
 * tables) and the refusals. Answers, errors and streams are in
 * t_xlate_gemini.c; the helpers both share in xlate_test_gemini.h. JSON is
 * compared by parsing both sides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/xlate_test_gemini.h"

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
    rl_pool_free(pool);
    return tap_done();
}
