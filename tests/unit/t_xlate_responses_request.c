/* Unit tests for engine/xlate_responses_request.c: the OpenAI Responses
 * dialect's requests — client requests to the model (and the refusals),
 * the model to upstream requests. Answers, errors and streams are in
 * t_xlate_responses.c; the helpers both share in xlate_test_responses.h.
 * JSON is compared by parsing both sides; expected JSON is written with '
 * for " (q()). */
#include <stdio.h>
#include <string.h>

#include "tests/unit/xlate_test_responses.h"

/* ---- requests ------------------------------------------------------------ */

static rl_buf why;

static rl_err decode(const char *body, xl_request *r)
{
    rl_buf_reset(&why);
    body = q(body);
    return D->decode_request(body, strlen(body), NULL, P, r, &why);
}

/* The model request as one line per turn, for exact comparison. */
static const char *describe(const xl_request *r)
{
    rl_buf b;
    rl_buf_init(&b, 0);
    static const char *const role[] = {"user", "assistant", "tool"};
    rl_buf_puts(&b, "system:");
    for (size_t i = 0; i < r->nsystem; i++)
        rl_buf_printf(&b, " [%s]", r->system[i].text);
    for (size_t m = 0; m < r->nmessages; m++) {
        rl_buf_printf(&b, "\n%s:", role[r->messages[m].role]);
        for (size_t i = 0; i < r->messages[m].nparts; i++) {
            const xl_part *p = &r->messages[m].parts[i];
            if (p->kind == XL_PART_TEXT)
                rl_buf_printf(&b, " text(%s)", p->text);
            else if (p->kind == XL_PART_IMAGE && p->url)
                rl_buf_printf(&b, " image_url(%s)", p->url);
            else if (p->kind == XL_PART_IMAGE)
                rl_buf_printf(&b, " image(%s,%s)", p->media_type, p->data);
            else if (p->kind == XL_PART_TOOL_CALL)
                rl_buf_printf(&b, " call(%s,%s,%s)", p->id, p->name, p->arguments);
            else if (p->kind == XL_PART_TOOL_RESULT)
                rl_buf_printf(&b, " result(%s,%s)", p->id, p->text);
            else
                rl_buf_printf(&b, " thinking(%s)", p->text);
        }
    }
    const char *s = rl_pstrdup(P, b.data);
    rl_buf_release(&b);
    return s;
}

/* Encodes r; checks the body against want and the path. */
static void encode_is(const xl_request *r, const char *want, const char *what)
{
    rl_buf body, path;
    rl_buf_init(&body, 0);
    rl_buf_init(&path, 0);
    rl_buf_reset(&why);
    rl_err err = D->encode_request(r, &body, &path, &why);
    is_int(err, RL_OK, what);
    is_json(body.data, want, what);
    is_str(path.data, "/v1/responses", "the upstream path");
    rl_buf_release(&body);
    rl_buf_release(&path);
}

static void test_plain(void)
{
    xl_request r;
    is_int(decode("{'model':'gpt-4.1','input':'Hi','store':true,'metadata':{'a':'b'},"
                  "'service_tier':'auto','stream_options':null}",
                  &r),
           RL_OK, "plain: decoded (store, metadata, service_tier skipped)");
    is_str(r.model, "gpt-4.1", "plain: model");
    is_str(describe(&r), "system:\nuser: text(Hi)", "plain: one user turn");
    is_int(r.stream, 0, "plain: not streamed");
    is_int(r.max_tokens, -1, "plain: no max tokens");
    ok(r.temperature < 0 && r.top_p < 0, "plain: temperature, top_p unset");
    int none = 1;
    for (int f = 0; f < XL_FEATURES; f++)
        none &= r.features[f] == NULL;
    ok(none, "plain: no features");
    encode_is(&r,
              "{'model':'gpt-4.1','input':[{'type':'message','role':'user','content':"
              "[{'type':'input_text','text':'Hi'}]}],'store':false}",
              "plain: encoded");
}

static void test_system(void)
{
    xl_request r;
    is_int(decode("{'model':'m','input':[{'role':'developer','content':'Be brief.'},"
                  "{'type':'message','role':'user','content':[{'type':'input_text','text':'Q'}]},"
                  "{'role':'system','content':[{'type':'input_text','text':'S1'},"
                  "{'type':'input_text','text':'S2'}]}],'instructions':'Inst'}",
                  &r),
           RL_OK, "system: decoded");
    is_str(describe(&r), "system: [Inst] [Be brief.] [S1] [S2]\nuser: text(Q)",
           "system: instructions first, then system/developer messages in order");
    encode_is(&r,
              "{'model':'m','instructions':'Inst\\n\\nBe brief.\\n\\nS1\\n\\nS2','input':"
              "[{'type':'message','role':'user','content':[{'type':'input_text','text':'Q'}]}],"
              "'store':false}",
              "system: encoded as instructions");
}

/* The rest of the part and field tables: a refusal replayed as the
 * assistant's words; skipped fields. */
static void test_more_rows(void)
{
    xl_request r;
    is_int(decode("{'model':'m','prompt_cache_retention':'24h','input':[{'role':'user',"
                  "'content':'Do it'},{'role':'assistant','content':[{'type':'refusal',"
                  "'refusal':'I cannot.'}]},{'role':'user','content':[{'type':'output_text',"
                  "'text':'Please'}]}]}",
                  &r),
           RL_OK, "refusal part decoded");
    is_str(describe(&r),
           "system:\nuser: text(Do it)\nassistant: text(I cannot.)\nuser: text(Please)",
           "a refusal part is the assistant's text");
}

static void test_images(void)
{
    xl_request r;
    is_int(decode("{'model':'m','input':[{'role':'user','content':["
                  "{'type':'input_text','text':'What is this?'},"
                  "{'type':'input_image','image_url':'data:image/png;base64,iVBO','detail':'low'},"
                  "{'type':'input_image','image_url':'https://x.test/a.jpg'}]}]}",
                  &r),
           RL_OK, "images: decoded");
    is_str(
        describe(&r),
        "system:\nuser: text(What is this?) image(image/png,iVBO) image_url(https://x.test/a.jpg)",
        "images: data URL split, URL kept");
    is_str(r.features[XL_F_IMAGE], "input[0].content[2]", "images: image feature names the part");
    is_str(r.features[XL_F_IMAGE_URL], "input[0].content[2].image_url",
           "images: URL feature names the field");
    encode_is(&r,
              "{'model':'m','input':[{'type':'message','role':'user','content':["
              "{'type':'input_text','text':'What is this?'},"
              "{'type':'input_image','image_url':'data:image/png;base64,iVBO'},"
              "{'type':'input_image','image_url':'https://x.test/a.jpg'}]}],'store':false}",
              "images: encoded");
    rl_buf_reset(&why);
    is_int(xlate_check_features(&r, &xl_openai_responses, &why), RL_OK,
           "images: the Responses API carries images and URLs");
}

static const char tools_body[] =
    "{'model':'m','tools':[{'type':'function','name':'get_weather','description':'Weather',"
    "'parameters':{'type':'object','properties':{'city':{'type':'string'}},'required':['city']},"
    "'strict':true},{'type':'function','name':'noop'}],"
    "'tool_choice':{'type':'function','name':'get_weather'},'parallel_tool_calls':false,"
    "'input':[{'role':'user','content':'Weather in Oslo?'},"
    "{'type':'reasoning','id':'rs_1','summary':[{'type':'summary_text','text':'Need a tool.'}],"
    "'encrypted_content':'gAAA'},"
    "{'type':'function_call','id':'fc_1','call_id':'call_1','name':'get_weather',"
    "'arguments':'{\\'city\\':\\'Oslo\\'}','status':'completed'},"
    "{'type':'function_call','call_id':'call_2','name':'noop','arguments':''},"
    "{'type':'function_call_output','call_id':'call_1','output':'sunny'},"
    "{'type':'function_call_output','call_id':'call_2','output':[{'type':'input_text','text':'a'},"
    "{'type':'input_text','text':'b'}]},"
    "{'type':'message','role':'assistant','content':[{'type':'output_text','text':'Sunny.',"
    "'annotations':[]}]},"
    "{'type':'reasoning','summary':[],'encrypted_content':'only-opaque'}]}";

static void test_tools(void)
{
    xl_request r;
    is_int(decode(tools_body, &r), RL_OK, "tools: decoded");
    is_str(describe(&r),
           "system:\nuser: text(Weather in Oslo?)\nassistant: thinking(Need a tool.) "
           "call(call_1,get_weather,{\"city\":\"Oslo\"}) call(call_2,noop,{})\n"
           "tool: result(call_1,sunny) result(call_2,ab)\nassistant: text(Sunny.)",
           "tools: a round trip, calls and results merged into turns, ids kept; an "
           "encrypted-only reasoning item adds nothing");
    is_int(r.ntools, 2, "tools: two tools");
    is_str(r.tools[0].name, "get_weather", "tools: name");
    is_str(r.tools[0].description, "Weather", "tools: description");
    is_json(r.tools[0].parameters,
            "{'type':'object','properties':{'city':{'type':'string'}},'required':['city']}",
            "tools: parameters");
    is_int(r.tools[0].strict, 1, "tools: strict kept");
    is_int(r.tools[1].strict, -1, "tools: strict unset");
    ok(r.tools[1].description == NULL && r.tools[1].parameters == NULL, "tools: none given");
    is_int(r.tool_choice, XL_CHOICE_NAMED, "tools: named choice");
    is_str(r.tool_choice_name, "get_weather", "tools: chosen name");
    is_int(r.parallel_tool_calls, 0, "tools: parallel off");
    is_str(r.features[XL_F_TOOLS], "tools", "tools: feature");
    is_str(r.features[XL_F_PARALLEL_OFF], "parallel_tool_calls", "tools: parallel feature");
    encode_is(&r,
              "{'model':'m','input':["
              "{'type':'message','role':'user','content':[{'type':'input_text','text':'Weather "
              "in Oslo?'}]},"
              "{'type':'function_call','call_id':'call_1','name':'get_weather','arguments':"
              "'{\\'city\\':\\'Oslo\\'}'},"
              "{'type':'function_call','call_id':'call_2','name':'noop','arguments':'{}'},"
              "{'type':'function_call_output','call_id':'call_1','output':'sunny'},"
              "{'type':'function_call_output','call_id':'call_2','output':'ab'},"
              "{'type':'message','role':'assistant','content':[{'type':'output_text','text':"
              "'Sunny.'}]}],"
              "'tools':[{'type':'function','name':'get_weather','description':'Weather',"
              "'parameters':{'type':'object','properties':{'city':{'type':'string'}},"
              "'required':['city']},'strict':true},"
              "{'type':'function','name':'noop','parameters':{'type':'object','properties':{}},"
              "'strict':false}],"
              "'tool_choice':{'type':'function','name':'get_weather'},"
              "'parallel_tool_calls':false,'store':false}",
              "tools: encoded (earlier thinking not sent; strict false unless told)");

    /* Each tool_choice string, both ways. */
    static const struct {
        const char *body;
        xl_tool_choice want;
        const char *json;
    } rows[] = {
        {"{'model':'m','input':'x','tool_choice':'auto'}", XL_CHOICE_AUTO, "'auto'"},
        {"{'model':'m','input':'x','tool_choice':'none'}", XL_CHOICE_NONE, "'none'"},
        {"{'model':'m','input':'x','tool_choice':'required'}", XL_CHOICE_REQUIRED, "'required'"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        is_int(decode(rows[i].body, &r), RL_OK, rows[i].json);
        is_int(r.tool_choice, rows[i].want, "tool_choice decoded");
        char want[200];
        snprintf(want, sizeof want,
                 "{'model':'m','input':[{'type':'message','role':'user','content':[{'type':"
                 "'input_text','text':'x'}]}],'tool_choice':%s,'store':false}",
                 rows[i].json);
        encode_is(&r, want, "tool_choice encoded");
    }
}

static void test_options(void)
{
    xl_request r;
    is_int(decode("{'model':'o3','input':'x','max_output_tokens':300,'temperature':0.5,"
                  "'top_p':0.25,'user':'u1','stream':true,'reasoning':{'effort':'high',"
                  "'summary':'auto'},'text':{'format':{'type':'json_schema','name':'answer',"
                  "'schema':{'type':'object'},'strict':true},'verbosity':'medium'},"
                  "'include':['reasoning.encrypted_content'],'truncation':'auto',"
                  "'background':false,'prompt_cache_key':'k','safety_identifier':'s'}",
                  &r),
           RL_OK, "options: decoded");
    is_int(r.max_tokens, 300, "options: max_output_tokens");
    ok(r.temperature == 0.5 && r.top_p == 0.25, "options: temperature, top_p");
    is_str(r.user, "u1", "options: user");
    is_int(r.stream, 1, "options: stream");
    is_str(r.reasoning_effort, "high", "options: effort");
    is_str(r.features[XL_F_THINKING], "reasoning.effort", "options: thinking feature");
    is_int(r.format, XL_FORMAT_JSON_SCHEMA, "options: json_schema");
    is_str(r.format_name, "answer", "options: schema name");
    is_json(r.format_schema, "{'type':'object'}", "options: schema");
    is_int(r.format_strict, 1, "options: schema strict");
    is_str(r.features[XL_F_JSON_SCHEMA], "text.format", "options: schema feature");
    encode_is(&r,
              "{'model':'o3','input':[{'type':'message','role':'user','content':[{'type':"
              "'input_text','text':'x'}]}],'max_output_tokens':300,'temperature':0.5,"
              "'top_p':0.25,'text':{'format':{'type':'json_schema','name':'answer','schema':"
              "{'type':'object'},'strict':true}},'reasoning':{'effort':'high'},'user':'u1',"
              "'store':false,'stream':true}",
              "options: encoded");

    is_int(decode("{'model':'m','input':'x','text':{'format':{'type':'json_object'}},"
                  "'reasoning':{'effort':'none'}}",
                  &r),
           RL_OK, "json_object: decoded");
    is_int(r.format, XL_FORMAT_JSON_OBJECT, "json_object: format");
    is_str(r.features[XL_F_JSON_OBJECT], "text.format", "json_object: feature");
    ok(!r.reasoning_effort && !r.features[XL_F_THINKING], "effort none: no reasoning asked");
    encode_is(&r,
              "{'model':'m','input':[{'type':'message','role':'user','content':[{'type':"
              "'input_text','text':'x'}]}],'text':{'format':{'type':'json_object'}},"
              "'store':false}",
              "json_object: encoded");

    /* From another format: a thinking budget becomes an effort; a schema
     * without a name gets one (this API requires it). */
    r.format = XL_FORMAT_JSON_SCHEMA;
    r.format_schema = "{\"type\":\"object\"}";
    r.format_name = NULL;
    r.format_strict = 0;
    r.thinking_budget = 3000;
    encode_is(&r,
              "{'model':'m','input':[{'type':'message','role':'user','content':[{'type':"
              "'input_text','text':'x'}]}],'text':{'format':{'type':'json_schema','name':"
              "'response','schema':{'type':'object'},'strict':false}},"
              "'reasoning':{'effort':'medium'},'store':false}",
              "budget 3000 -> effort medium; schema named 'response'");

    /* What the Responses API cannot carry is refused by the features check. */
    r.top_k = 5;
    r.features[XL_F_TOP_K] = "top_k";
    rl_buf_reset(&why);
    is_int(xlate_check_features(&r, D, &why), RL_BAD_REQUEST, "top_k refused for Responses");
    ok(why.data && strstr(why.data, "`top_k`"), "... naming top_k");
    static const xl_feature lacks[] = {XL_F_SEED, XL_F_PENALTIES, XL_F_CHOICES, XL_F_STOP};
    for (size_t i = 0; i < sizeof lacks / sizeof lacks[0]; i++)
        ok(!(D->caps & (1u << lacks[i])), "caps: no seed, penalties, n, stop in Responses");
}

static void test_refusals(void)
{
    static const struct {
        const char *body;
        const char *field;
    } rows[] = {
        {"{'model':'m','input':'x','tools':[{'type':'web_search'}]}",
         "`tools[0].type` `web_search`"},
        {"{'model':'m','input':'x','tools':[{'type':'function','name':'f'},{'type':'file_search'}]"
         "}",
         "`tools[1].type` `file_search`"},
        {"{'model':'m','input':'x','tools':[{'type':'computer_use_preview'}]}",
         "`tools[0].type` `computer_use_preview`"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_image','file_id':'f1'}]}]"
         "}",
         "`input[0].content[0].file_id`"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_file','file_id':'f1'}]}]}",
         "`input[0].content[0].type` `input_file`"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_audio'}]}]}",
         "`input[0].content[0].type` `input_audio`"},
        {"{'model':'m','input':'x','previous_response_id':'resp_1'}", "`previous_response_id`"},
        {"{'model':'m','input':'x','store':true,'previous_response_id':'resp_1'}",
         "`previous_response_id`"},
        {"{'model':'m','input':'x','conversation':'conv_1'}", "`conversation`"},
        {"{'model':'m','input':[{'type':'item_reference','id':'msg_1'}]}",
         "`input[0].type` `item_reference`"},
        {"{'model':'m','input':[{'type':'web_search_call','id':'ws_1'}]}",
         "`input[0].type` `web_search_call`"},
        {"{'model':'m','input':[{'role':'critic','content':'x'}]}", "`input[0].role` `critic`"},
        {"{'model':'m','input':'x','logit_bias':{'1':2}}", "`logit_bias`"},
        {"{'model':'m','input':[{'type':'function_call','call_id':'c','name':'f','arguments':"
         "'{nope'}]}",
         "`input[0].arguments` must be a JSON object"},
        {"{'model':'m','input':[{'type':'function_call','call_id':'c','name':'f','arguments':"
         "'[1]'}]}",
         "`input[0].arguments` must be a JSON object"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_image','image_url':"
         "'data:application/pdf;base64,JVBE'}]}]}",
         "`input[0].content[0].image_url` must be an image"},
        {"{'model':'m','input':'x','background':true}", "`background`"},
        {"{'model':'m','input':'x','top_logprobs':3}", "`top_logprobs`"},
        {"{'model':'m','input':'x','include':['message.output_text.logprobs']}", "`include[0]`"},
        {"{'model':'m','input':'x','max_tool_calls':2}", "`max_tool_calls`"},
        {"{'model':'m','input':'x','prompt':{'id':'p1'}}", "`prompt`"},
        {"{'model':'m','input':'x','text':{'verbosity':'high'}}", "`text.verbosity`"},
        {"{'model':'m','input':'x','text':{'format':{'type':'grammar'}}}",
         "`text.format.type` `grammar`"},
        {"{'model':'m','input':'x','reasoning':{'effort':'extreme'}}", "`reasoning.effort`"},
        {"{'model':'m','input':'x','tool_choice':{'type':'web_search_preview'}}",
         "`tool_choice.type` `web_search_preview`"},
        {"{'model':'m','input':[{'type':'function_call_output','call_id':'c','output':[{'type':"
         "'input_image','image_url':'https://x'}]}]}",
         "`input[0].output[0]`"},
        {"{'model':'m','input':[{'role':'system','content':[{'type':'input_image','image_url':"
         "'https://x'}]}]}",
         "`input[0].content[0]`"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_image','image_url':"
         "'data:image/png,abc'}]}]}",
         "`input[0].content[0].image_url`"},
        {"{'model':'m'}", "`input`"},
        {"{'input':'x'}", "`model`"},
        {"{'model':'m','input':'x','max_output_tokens':0}", "`max_output_tokens`"},
        {"{'model':'m','input':'x','temperature':'hot'}", "`temperature`"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        xl_request r;
        char what[160];
        snprintf(what, sizeof what, "refused: %s", rows[i].field);
        is_int(decode(rows[i].body, &r), RL_BAD_REQUEST, what);
        if (!ok(why.data && strstr(why.data, rows[i].field), "... the reason names the field"))
            printf("#   why: %s\n", why.data ? why.data : "(none)");
    }
    xl_request r;
    rl_buf_reset(&why);
    is_int(D->decode_request("{", 1, NULL, P, &r, &why), RL_BAD_JSON, "not JSON: RL_BAD_JSON");
    is_int(decode("[1]", &r), RL_BAD_REQUEST, "not an object: RL_BAD_REQUEST");
}

int main(void)
{
    P = rl_pool_new();
    rl_buf_init(&why, 0);
    test_plain();
    test_system();
    test_images();
    test_more_rows();
    test_tools();
    test_options();
    test_refusals();
    rl_buf_release(&why);
    rl_pool_free(P);
    return tap_done();
}
