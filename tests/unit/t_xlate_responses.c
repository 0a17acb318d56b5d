/* Unit tests for engine/xlate_responses.c: the OpenAI Responses dialect's
 * answers both ways with every stop-table row, error bodies, and streams
 * event by event both ways. Requests are in t_xlate_responses_request.c;
 * the helpers both share in xlate_test_responses.h. JSON is compared by
 * parsing both sides; expected JSON is written with ' for " (q()). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/xlate_test_responses.h"

/* ---- answers ------------------------------------------------------------- */

static const char answer[] =
    "{'id':'resp_1','object':'response','created_at':7,'status':'completed','model':'o3-x',"
    "'output':[{'id':'rs_9','type':'reasoning','summary':[{'type':'summary_text','text':'Think'},"
    "{'type':'summary_text','text':'more'}],'encrypted_content':'x'},"
    "{'id':'msg_9','type':'message','role':'assistant','status':'completed','content':["
    "{'type':'output_text','text':'Let me check.','annotations':[]}]},"
    "{'id':'fc_9','type':'function_call','status':'completed','call_id':'call_7','name':"
    "'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'}],"
    "'usage':{'input_tokens':100,'input_tokens_details':{'cached_tokens':80},"
    "'output_tokens':30,'output_tokens_details':{'reasoning_tokens':12},'total_tokens':130}}";

static void test_decode_response(void)
{
    xl_response resp;
    const char *body = q(answer);
    is_int(D->decode_response(body, strlen(body), P, &resp), RL_OK, "answer: decoded");
    is_str(resp.id, "resp_1", "answer: id kept");
    is_str(resp.model, "o3-x", "answer: model");
    is_int(resp.nparts, 3, "answer: three parts");
    if (resp.nparts == 3) {
        is_int(resp.parts[0].kind, XL_PART_THINKING, "answer: reasoning first");
        is_str(resp.parts[0].text, "Think\n\nmore", "answer: summaries joined");
        is_int(resp.parts[1].kind, XL_PART_TEXT, "answer: text");
        is_str(resp.parts[1].text, "Let me check.", "answer: text's words");
        is_int(resp.parts[2].kind, XL_PART_TOOL_CALL, "answer: the call");
        is_str(resp.parts[2].id, "call_7", "answer: call_id kept");
        is_str(resp.parts[2].name, "get_weather", "answer: call name");
        is_str(resp.parts[2].arguments, "{\"city\":\"Oslo\"}", "answer: call arguments");
    }
    is_int(resp.stop, XL_STOP_TOOL, "answer: completed with a call -> tool");
    is_int(resp.usage.input, 100, "answer: input tokens");
    is_int(resp.usage.cached_input, 80, "answer: cached tokens");
    is_int(resp.usage.output, 30, "answer: output tokens");
    is_int(resp.reasoning_tokens, 12, "answer: reasoning tokens");

    /* Every row of the status table. */
    static const struct {
        const char *body;
        xl_stop want;
    } rows[] = {
        {"{'status':'completed','output':[{'type':'message','content':[{'type':'output_text',"
         "'text':'hi'}]}]}",
         XL_STOP_END},
        {"{'status':'incomplete','incomplete_details':{'reason':'max_output_tokens'},'output':[]}",
         XL_STOP_LENGTH},
        {"{'status':'incomplete','incomplete_details':{'reason':'content_filter'},'output':[]}",
         XL_STOP_FILTER},
        {"{'status':'incomplete','incomplete_details':{'reason':'other'},'output':[]}",
         XL_STOP_OTHER},
        {"{'status':'failed','output':[]}", XL_STOP_OTHER},
        {"{'status':'completed','output':[{'type':'message','content':[{'type':'refusal',"
         "'refusal':'No.'}]}]}",
         XL_STOP_FILTER},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        body = q(rows[i].body);
        is_int(D->decode_response(body, strlen(body), P, &resp), RL_OK, "status row decoded");
        is_int(resp.stop, rows[i].want, rows[i].body);
    }
    is_str(resp.nparts ? resp.parts[0].text : NULL, "No.", "a refusal is the answer's text");
    is_int(resp.usage.input, -1, "no usage: unknown");
    body = q("{'object':'chat.completion'}");
    is_int(D->decode_response(body, strlen(body), P, &resp), RL_UPSTREAM_PROTOCOL,
           "no output array: RL_UPSTREAM_PROTOCOL");
    is_int(D->decode_response("x", 1, P, &resp), RL_UPSTREAM_PROTOCOL,
           "not JSON: RL_UPSTREAM_PROTOCOL");
}

static const xl_reply reply = {
    .model = "claude-x", .id = "resp_relay", .created = 1700000000, .framing = FRAME_SSE};

static void test_encode_response(void)
{
    xl_part parts[] = {
        {.kind = XL_PART_THINKING, .text = "Hmm", .signature = "sig"},
        {.kind = XL_PART_THINKING, .redacted = 1, .data = "opaque"},
        {.kind = XL_PART_TEXT, .text = "Checking"},
        {.kind = XL_PART_TEXT, .text = " now."},
        {.kind = XL_PART_TOOL_CALL,
         .id = "toolu_1",
         .name = "get_weather",
         .arguments = "{\"city\":\"Oslo\"}"},
    };
    xl_response resp = {.id = "msg_up",
                        .model = "claude-upstream",
                        .parts = parts,
                        .nparts = 5,
                        .stop = XL_STOP_TOOL,
                        .usage = {.input = 50, .output = 20, .cached_input = 40, .cache_write = 3},
                        .reasoning_tokens = -1};
    rl_buf out;
    rl_buf_init(&out, 0);
    is_int(D->encode_response(&resp, &reply, &out), RL_OK, "answer encoded");
    is_json(out.data,
            "{'id':'msg_up','object':'response','created_at':1700000000,'status':'completed',"
            "'error':null,'incomplete_details':null,'model':'claude-x','output':["
            "{'id':'rs_0','type':'reasoning','summary':[{'type':'summary_text','text':'Hmm'}]},"
            "{'id':'msg_1','type':'message','status':'completed','role':'assistant','content':["
            "{'type':'output_text','text':'Checking','annotations':[]},"
            "{'type':'output_text','text':' now.','annotations':[]}]},"
            "{'id':'fc_2','type':'function_call','status':'completed','call_id':'toolu_1',"
            "'name':'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'}],"
            "'usage':{'input_tokens':50,'input_tokens_details':{'cached_tokens':40},"
            "'output_tokens':20,'output_tokens_details':{'reasoning_tokens':0},"
            "'total_tokens':70}}",
            "answer: reasoning, one message of two texts, the call; the client's model; the "
            "upstream's id; redacted thinking left out");

    /* Every row of the stop table. */
    static const struct {
        xl_stop stop;
        const char *status, *details, *item_status;
    } rows[] = {
        {XL_STOP_UNSET, "completed", "null", "completed"},
        {XL_STOP_END, "completed", "null", "completed"},
        {XL_STOP_LENGTH, "incomplete", "{'reason':'max_output_tokens'}", "incomplete"},
        {XL_STOP_TOOL, "completed", "null", "completed"},
        {XL_STOP_SEQUENCE, "completed", "null", "completed"},
        {XL_STOP_FILTER, "incomplete", "{'reason':'content_filter'}", "incomplete"},
        {XL_STOP_OTHER, "completed", "null", "completed"},
    };
    xl_part text = {.kind = XL_PART_TEXT, .text = "Hi"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        xl_response r = {.parts = &text,
                         .nparts = 1,
                         .stop = rows[i].stop,
                         .usage = PROV_USAGE_UNKNOWN,
                         .reasoning_tokens = -1};
        rl_buf_reset(&out);
        is_int(D->encode_response(&r, &reply, &out), RL_OK, "stop row encoded");
        char want[600];
        snprintf(want, sizeof want,
                 "{'id':'resp_relay','object':'response','created_at':1700000000,'status':'%s',"
                 "'error':null,'incomplete_details':%s,'model':'claude-x','output':[{'id':"
                 "'msg_0','type':'message','status':'%s','role':'assistant','content':[{'type':"
                 "'output_text','text':'Hi','annotations':[]}]}],'usage':null}",
                 rows[i].status, rows[i].details, rows[i].item_status);
        is_json(out.data, want, rows[i].status);
    }
    rl_buf_release(&out);
}

static void test_errors(void)
{
    static const struct {
        const char *body, *message, *type;
    } rows[] = {
        {"{'error':{'message':'Bad key','type':'invalid_request_error','param':null,'code':"
         "'invalid_api_key'}}",
         "Bad key", "invalid_request_error"},
        {"{'error':{'message':'Slow down','type':null,'code':'rate_limit_exceeded'}}", "Slow down",
         "rate_limit_exceeded"},
        {"{'type':'error','code':'server_error','message':'Oops','param':null,"
         "'sequence_number':3}",
         "Oops", "server_error"},
        {"{'type':'response.failed','response':{'status':'failed','error':{'code':"
         "'server_error','message':'Broke'}}}",
         "Broke", "server_error"},
        {"<html>502</html>", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        xl_error e;
        const char *body = q(rows[i].body);
        is_int(D->decode_error(body, strlen(body), P, &e), RL_OK, "error body read");
        is_str(e.message, rows[i].message, "error message");
        is_str(e.type, rows[i].type, "error type");
    }
}

/* ---- streams ------------------------------------------------------------- */

/* The model events as lines. */
static int record(void *ctx, const xl_event *ev)
{
    rl_buf *b = ctx;
    static const char *const kind[] = {"START", "TEXT",  "THINKING", "TOOL_CALL", "TOOL_ARGS",
                                       "STOP",  "USAGE", "END",      "ERROR"};
    rl_buf_puts(b, kind[ev->kind]);
    if (ev->kind == XL_EV_START)
        rl_buf_printf(b, " %s %s", ev->id ? ev->id : "-", ev->model ? ev->model : "-");
    else if (ev->kind == XL_EV_TEXT || ev->kind == XL_EV_THINKING)
        rl_buf_printf(b, " %s", ev->text);
    else if (ev->kind == XL_EV_TOOL_CALL)
        rl_buf_printf(b, " %d %s %s", ev->index, ev->id, ev->name);
    else if (ev->kind == XL_EV_TOOL_ARGS)
        rl_buf_printf(b, " %d %s", ev->index, ev->text);
    else if (ev->kind == XL_EV_STOP)
        rl_buf_printf(b, " %d", (int)ev->stop);
    else if (ev->kind == XL_EV_USAGE)
        rl_buf_printf(b, " in=%lld out=%lld cached=%lld reasoning=%lld", (long long)ev->usage.input,
                      (long long)ev->usage.output, (long long)ev->usage.cached_input,
                      (long long)ev->reasoning_tokens);
    else if (ev->kind == XL_EV_ERROR)
        rl_buf_printf(b, " %s %s", ev->type ? ev->type : "-", ev->text ? ev->text : "-");
    rl_buf_puts(b, "\n");
    return 0;
}

typedef struct feed {
    void *state;
    rl_buf *events;
    rl_err err;
} feed;

static int feed_event(void *ctx, const char *event, const char *data, size_t len)
{
    feed *f = ctx;
    f->err = D->dec_event(f->state, P, event, data, len, record, f->events);
    return f->err != RL_OK;
}

/* Decodes a whole upstream stream (SSE text with ' quotes) into event lines. */
static rl_err decode_stream(const char *sse, rl_buf *events)
{
    void *state = rl_palloc(P, D->dec_size);
    feed f = {state, events, RL_OK};
    sse = q(sse);
    rl_err err = frame_each(FRAME_SSE, sse, strlen(sse), feed_event, &f);
    if (f.err != RL_OK)
        return f.err;
    if (err == RL_OK)
        err = D->dec_finish(state, P, record, events);
    return err;
}

#define EV(type, data) "event: " type "\ndata: " data "\n\n"

static const char upstream_stream[] = EV(
    "response.created",
    "{'type':'response.created','sequence_number':0,'response':{'id':"
    "'resp_up','object':'response','status':'in_progress','model':"
    "'gpt-5','output':[],'usage':null}}") EV("response.in_progress",
                                             "{'type':'response.in_progress','sequence_number':1,'"
                                             "response':"
                                             "{'id':'resp_up','status':'in_progress'}}")
    EV("response.output_item.added",
       "{'type':'response.output_item.added','sequence_number':2,"
       "'output_index':0,'item':{'id':'rs_1','type':'reasoning',"
       "'summary':[]}}") EV("response.reasoning_summary_part.added",
                            "{'type':'response.reasoning_summary_part.added','sequence_number':3,'"
                            "item_id':'rs_1',"
                            "'output_index':0,'summary_index':0,'part':{'type':'summary_text','"
                            "text':''}}") EV("response.reasoning_summary_text.delta",
                                             "{'type':'response.reasoning_summary_text.delta','"
                                             "sequence_number':4,'item_id':'rs_1',"
                                             "'output_index':0,'summary_index':0,'delta':'Plan'}")
        EV("response.output_item.done", "{'type':'response.output_item.done','sequence_number':5,"
                                        "'output_index':0,'item':{'id':'rs_1','type':'reasoning'}}")
            EV("response.output_item.added",
               "{'type':'response.output_item.added','sequence_number':6,'output_index':1,'item':{'"
               "id':"
               "'msg_1','type':'message','status':'in_progress','role':'assistant','content':[]}}")
                EV("response.content_part.added",
                   "{'type':'response.content_part.added','sequence_number':7,'item_id':'msg_1',"
                   "'output_index':1,'content_index':0,'part':{'type':'output_text','text':'',"
                   "'annotations':[]}}") EV("response.output_text.delta",
                                            "{'type':'response.output_text.delta','sequence_number'"
                                            ":8,'item_id':'msg_1',"
                                            "'output_index':1,'content_index':0,'delta':'Hel','"
                                            "logprobs':[]}")
                    EV("response.output_text.delta",
                       "{'type':'response.output_text.delta','sequence_number':9,'item_id':'msg_1',"
                       "'output_index':1,'content_index':0,'delta':'lo','logprobs':[]}")
                        EV("response.output_text.done",
                           "{'type':'response.output_text.done','sequence_number':10,'item_id':'"
                           "msg_1',"
                           "'output_index':1,'content_index':0,'text':'Hello','logprobs':[]}")
                            EV("response.output_item.added",
                               "{'type':'response.output_item.added','sequence_number':11,'output_"
                               "index':2,'item':{'id':"
                               "'fc_1','type':'function_call','status':'in_progress','call_id':'"
                               "call_A','name':'get_"
                               "weather','arguments':''}}")
                                EV("response.function_call_arguments.delta",
                                   "{'type':'response.function_call_arguments.delta','sequence_"
                                   "number':12,'item_id':'fc_1',"
                                   "'output_index':2,'delta':'{\\'ci'}")
                                    EV("response.function_call_arguments.delta",
                                       "{'type':'response.function_call_arguments.delta','sequence_"
                                       "number':13,'item_id':'fc_1',"
                                       "'output_index':2,'delta':'ty\\':\\'Oslo\\'}'}")
                                        EV("response.function_call_arguments.done",
                                           "{'type':'response.function_call_arguments.done','"
                                           "sequence_number':14,'item_id':'fc_1',"
                                           "'output_index':2,'arguments':'{\\'city\\':\\'Oslo\\'}'"
                                           "}") EV("response.output_item.added",
                                                   "{'type':'response.output_item.added','sequence_"
                                                   "number':15,'output_index':3,'item':{'id':"
                                                   "'fc_2','type':'function_call','status':'in_"
                                                   "progress','call_id':'call_B','name':'noop',"
                                                   "'arguments':''}}")
                                            EV("response.function_call_arguments.done",
                                               "{'type':'response.function_call_arguments.done','"
                                               "sequence_number':16,'item_id':'fc_2',"
                                               "'output_index':3,'arguments':'{}'}")
                                                EV("response.completed",
                                                   "{'type':'response.completed','sequence_number':"
                                                   "17,'response':{'id':'resp_up','status':"
                                                   "'completed','model':'gpt-5','output':[],'usage'"
                                                   ":{'input_tokens':20,"
                                                   "'input_tokens_details':{'cached_tokens':5},'"
                                                   "output_tokens':9,'output_tokens_details':"
                                                   "{'reasoning_tokens':4},'total_tokens':29}}}");

static void test_dec_stream(void)
{
    rl_buf ev;
    rl_buf_init(&ev, 0);
    is_int(decode_stream(upstream_stream, &ev), RL_OK, "stream decoded");
    char want[600];
    snprintf(want, sizeof want,
             "START resp_up gpt-5\nTHINKING Plan\nTEXT Hel\nTEXT lo\n"
             "TOOL_CALL 0 call_A get_weather\nTOOL_ARGS 0 {\"ci\nTOOL_ARGS 0 ty\":\"Oslo\"}\n"
             "TOOL_CALL 1 call_B noop\nTOOL_ARGS 1 {}\nSTOP %d\n"
             "USAGE in=20 out=9 cached=5 reasoning=4\nEND\n",
             (int)XL_STOP_TOOL);
    is_str(ev.data, want,
           "stream: reasoning, text pieces, calls with argument pieces (whole at done when no "
           "delta came), stop, usage, end");

    /* response.incomplete: LENGTH, and still the end. */
    rl_buf_reset(&ev);
    is_int(decode_stream(EV("response.output_text.delta", "{'type':'response.output_text.delta',"
                                                          "'delta':'Hi'}")
                             EV("response.incomplete",
                                "{'type':'response.incomplete','response':{'id':'r',"
                                "'status':'incomplete','incomplete_details':{'reason':"
                                "'max_output_tokens'},'usage':{'input_tokens':1,"
                                "'output_tokens':2}}}"),
                         &ev),
           RL_OK, "incomplete stream decoded");
    snprintf(want, sizeof want,
             "START - -\nTEXT Hi\nSTOP %d\nUSAGE in=1 out=2 cached=-1 "
             "reasoning=-1\nEND\n",
             (int)XL_STOP_LENGTH);
    is_str(ev.data, want, "incomplete: START before the first text, stop LENGTH, END");

    /* The other rows of the event table: a refusal's pieces are text,
     * reasoning_text (open-weight models) is thinking. */
    rl_buf_reset(&ev);
    is_int(decode_stream(
               EV("response.reasoning_text.delta",
                  "{'type':'response.reasoning_text.delta','delta':'why'}")
                   EV("response.refusal.delta", "{'type':'response.refusal.delta','delta':'No.'}"),
               &ev),
           RL_OK, "reasoning_text and refusal decoded");
    is_str(ev.data, "START - -\nTHINKING why\nTEXT No.\n",
           "reasoning_text.delta -> THINKING, refusal.delta -> TEXT");

    /* A cut stream: no END. */
    rl_buf_reset(&ev);
    is_int(decode_stream(EV("response.output_text.delta", "{'type':'response.output_text.delta',"
                                                          "'delta':'Hi'}"),
                         &ev),
           RL_OK, "cut stream decoded");
    is_str(ev.data, "START - -\nTEXT Hi\n", "cut stream: no END");

    /* Errors in the stream: the error event, and response.failed. */
    rl_buf_reset(&ev);
    is_int(decode_stream(EV("error", "{'type':'error','code':'server_error','message':'Boom',"
                                     "'param':null}"),
                         &ev),
           RL_OK, "error event decoded");
    is_str(ev.data, "ERROR server_error Boom\n", "error event -> ERROR");
    rl_buf_reset(&ev);
    is_int(decode_stream(EV("response.failed",
                            "{'type':'response.failed','response':{'id':'r','status':'failed',"
                            "'error':{'code':'rate_limit_exceeded','message':'Later'}}}"),
                         &ev),
           RL_OK, "response.failed decoded");
    is_str(ev.data, "ERROR rate_limit_exceeded Later\n", "response.failed -> ERROR");

    rl_buf_reset(&ev);
    is_int(decode_stream(EV("response.function_call_arguments.delta",
                            "{'type':'response.function_call_arguments.delta','output_index':4,"
                            "'delta':'x'}"),
                         &ev),
           RL_UPSTREAM_PROTOCOL, "arguments of an unknown call: RL_UPSTREAM_PROTOCOL");
    rl_buf_reset(&ev);
    is_int(decode_stream("data: {nope\n\n", &ev), RL_UPSTREAM_PROTOCOL,
           "an event that is not JSON: RL_UPSTREAM_PROTOCOL");
    rl_buf_release(&ev);
}

/* Checks the encoder's bytes event by event: want holds "name|json" per
 * event (json with ' quotes). */
static void stream_is(const char *got, const char *const *want, size_t n, const char *what)
{
    size_t i = 0;
    const char *p = got ? got : "";
    char label[200];
    while (*p) {
        const char *end = strstr(p, "\n\n");
        if (!ok(end != NULL, "event ends with a blank line"))
            return;
        const char *nl = strchr(p, '\n');
        snprintf(label, sizeof label, "%s: event %zu", what, i);
        if (!ok(i < n, label)) {
            printf("#   extra: %.*s\n", (int)(end - p), p);
            return;
        }
        const char *bar = strchr(want[i], '|');
        char name[100];
        snprintf(name, sizeof name, "event: %.*s", (int)(bar - want[i]), want[i]);
        if (!ok(nl && (size_t)(nl - p) == strlen(name) && strncmp(p, name, strlen(name)) == 0,
                label))
            printf("#   got:  %.*s\n#   want: %s\n", (int)(nl ? nl - p : 0), p, name);
        if (nl && strncmp(nl + 1, "data: ", 6) == 0) {
            char *data = rl_pstrndup(P, nl + 7, (size_t)(end - nl - 7));
            is_json(data, bar + 1, label);
        }
        p = end + 2;
        i++;
    }
    snprintf(label, sizeof label, "%s: %zu events", what, n);
    is_int(i, n, label);
}

static rl_err enc(void *state, const xl_event *ev, rl_buf *out)
{
    return D->enc_event(state, &reply, ev, out);
}

static void test_enc_stream(void)
{
    void *state = rl_palloc(P, D->enc_size);
    rl_buf out;
    rl_buf_init(&out, 0);
    const xl_event events[] = {
        {.kind = XL_EV_START, .id = "msg_up", .model = "claude-upstream"},
        {.kind = XL_EV_THINKING, .text = "Plan"},
        {.kind = XL_EV_THINKING, .signature = "sig"},
        {.kind = XL_EV_TEXT, .text = "Hel"},
        {.kind = XL_EV_TEXT, .text = "lo"},
        {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "toolu_1", .name = "get_weather"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{\"ci"},
        {.kind = XL_EV_TOOL_CALL, .index = 1, .id = "toolu_2", .name = "noop"},
        {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "ty\":\"Oslo\"}"},
        {.kind = XL_EV_STOP, .stop = XL_STOP_TOOL},
        {.kind = XL_EV_USAGE, .usage = {20, -1, 5, -1}, .reasoning_tokens = -1},
        {.kind = XL_EV_USAGE, .usage = {-1, 9, -1, -1}, .reasoning_tokens = 4},
    };
    /* Each event's bytes as it comes: nothing held back. */
    static const char *const each[] = {
        "response.created|{'type':'response.created','sequence_number':0,'response':{'id':"
        "'msg_up','object':'response','created_at':1700000000,'status':'in_progress','error':"
        "null,'incomplete_details':null,'model':'claude-x','output':[],'usage':null}}\x1f"
        "response.in_progress|{'type':'response.in_progress','sequence_number':1,'response':{"
        "'id':'msg_up','object':'response','created_at':1700000000,'status':'in_progress',"
        "'error':null,'incomplete_details':null,'model':'claude-x','output':[],'usage':null}}",
        "response.output_item.added|{'type':'response.output_item.added','sequence_number':2,"
        "'output_index':0,'item':{'id':'rs_0','type':'reasoning','summary':[]}}\x1f"
        "response.reasoning_summary_part.added|{'type':'response.reasoning_summary_part.added',"
        "'sequence_number':3,'item_id':'rs_0','output_index':0,'summary_index':0,'part':{'type':"
        "'summary_text','text':''}}\x1f"
        "response.reasoning_summary_text.delta|{'type':'response.reasoning_summary_text.delta',"
        "'sequence_number':4,'item_id':'rs_0','output_index':0,'summary_index':0,'delta':'Plan'}",
        "",
        "response.reasoning_summary_text.done|{'type':'response.reasoning_summary_text.done',"
        "'sequence_number':5,'item_id':'rs_0','output_index':0,'summary_index':0,'text':'Plan'}"
        "\x1f"
        "response.reasoning_summary_part.done|{'type':'response.reasoning_summary_part.done',"
        "'sequence_number':6,'item_id':'rs_0','output_index':0,'summary_index':0,'part':{'type':"
        "'summary_text','text':'Plan'}}\x1f"
        "response.output_item.done|{'type':'response.output_item.done','sequence_number':7,"
        "'output_index':0,'item':{'id':'rs_0','type':'reasoning','summary':[{'type':"
        "'summary_text','text':'Plan'}]}}\x1f"
        "response.output_item.added|{'type':'response.output_item.added','sequence_number':8,"
        "'output_index':1,'item':{'id':'msg_1','type':'message','status':'in_progress','role':"
        "'assistant','content':[]}}\x1f"
        "response.content_part.added|{'type':'response.content_part.added','sequence_number':9,"
        "'item_id':'msg_1','output_index':1,'content_index':0,'part':{'type':'output_text',"
        "'text':'','annotations':[]}}\x1f"
        "response.output_text.delta|{'type':'response.output_text.delta','sequence_number':10,"
        "'item_id':'msg_1','output_index':1,'content_index':0,'delta':'Hel','logprobs':[]}",
        "response.output_text.delta|{'type':'response.output_text.delta','sequence_number':11,"
        "'item_id':'msg_1','output_index':1,'content_index':0,'delta':'lo','logprobs':[]}",
        "response.output_text.done|{'type':'response.output_text.done','sequence_number':12,"
        "'item_id':'msg_1','output_index':1,'content_index':0,'text':'Hello','logprobs':[]}\x1f"
        "response.content_part.done|{'type':'response.content_part.done','sequence_number':13,"
        "'item_id':'msg_1','output_index':1,'content_index':0,'part':{'type':'output_text',"
        "'text':'Hello','annotations':[]}}\x1f"
        "response.output_item.done|{'type':'response.output_item.done','sequence_number':14,"
        "'output_index':1,'item':{'id':'msg_1','type':'message','status':'completed','role':"
        "'assistant','content':[{'type':'output_text','text':'Hello','annotations':[]}]}}\x1f"
        "response.output_item.added|{'type':'response.output_item.added','sequence_number':15,"
        "'output_index':2,'item':{'id':'fc_2','type':'function_call','status':'in_progress',"
        "'call_id':'toolu_1','name':'get_weather','arguments':''}}",
        "response.function_call_arguments.delta|{'type':'response.function_call_arguments.delta',"
        "'sequence_number':16,'item_id':'fc_2','output_index':2,'delta':'{\\'ci'}",
        "response.output_item.added|{'type':'response.output_item.added','sequence_number':17,"
        "'output_index':3,'item':{'id':'fc_3','type':'function_call','status':'in_progress',"
        "'call_id':'toolu_2','name':'noop','arguments':''}}",
        "response.function_call_arguments.delta|{'type':'response.function_call_arguments.delta',"
        "'sequence_number':18,'item_id':'fc_2','output_index':2,'delta':'ty\\':\\'Oslo\\'}'}",
        "",
        "",
        "",
    };
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        rl_buf_reset(&out);
        is_int(enc(state, &events[i], &out), RL_OK, "stream event encoded");
        /* split the expected events of this step on \x1f */
        const char *list[8];
        size_t n = 0;
        char *copy = rl_pstrdup(P, each[i]);
        for (char *t = copy; *t && n < 8;) {
            list[n++] = t;
            char *sep = strchr(t, '\x1f');
            if (!sep)
                break;
            *sep = 0;
            t = sep + 1;
        }
        char what[60];
        snprintf(what, sizeof what, "model event %zu", i);
        stream_is(out.data, list, n, what);
    }
    rl_buf_reset(&out);
    xl_event end = {.kind = XL_EV_END};
    is_int(enc(state, &end, &out), RL_OK, "END encoded");
    static const char *const last[] = {
        "response.function_call_arguments.done|{'type':'response.function_call_arguments.done',"
        "'sequence_number':19,'item_id':'fc_2','output_index':2,'arguments':'{\\'city\\':"
        "\\'Oslo\\'}'}",
        "response.output_item.done|{'type':'response.output_item.done','sequence_number':20,"
        "'output_index':2,'item':{'id':'fc_2','type':'function_call','status':'completed',"
        "'call_id':'toolu_1','name':'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'}}",
        "response.function_call_arguments.done|{'type':'response.function_call_arguments.done',"
        "'sequence_number':21,'item_id':'fc_3','output_index':3,'arguments':'{}'}",
        "response.output_item.done|{'type':'response.output_item.done','sequence_number':22,"
        "'output_index':3,'item':{'id':'fc_3','type':'function_call','status':'completed',"
        "'call_id':'toolu_2','name':'noop','arguments':'{}'}}",
        "response.completed|{'type':'response.completed','sequence_number':23,'response':{'id':"
        "'msg_up','object':'response','created_at':1700000000,'status':'completed','error':null,"
        "'incomplete_details':null,'model':'claude-x','output':["
        "{'id':'rs_0','type':'reasoning','summary':[{'type':'summary_text','text':'Plan'}]},"
        "{'id':'msg_1','type':'message','status':'completed','role':'assistant','content':[{"
        "'type':'output_text','text':'Hello','annotations':[]}]},"
        "{'id':'fc_2','type':'function_call','status':'completed','call_id':'toolu_1','name':"
        "'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'},"
        "{'id':'fc_3','type':'function_call','status':'completed','call_id':'toolu_2','name':"
        "'noop','arguments':'{}'}],"
        "'usage':{'input_tokens':20,'input_tokens_details':{'cached_tokens':5},'output_tokens':"
        "9,'output_tokens_details':{'reasoning_tokens':4},'total_tokens':29}}}",
    };
    stream_is(out.data, last, sizeof last / sizeof last[0],
              "END: calls done, then response.completed with the whole answer and usage");
    rl_buf_reset(&out);
    xl_event text = {.kind = XL_EV_TEXT, .text = "late"};
    is_int(enc(state, &text, &out), RL_OK, "after END: nothing more");
    is_int(out.len, 0, "after END: no bytes");

    /* A token limit: response.incomplete; arguments of an unknown call. */
    memset(state, 0, D->enc_size);
    rl_buf_reset(&out);
    xl_event stop = {.kind = XL_EV_STOP, .stop = XL_STOP_LENGTH};
    enc(state, &text, &out);
    enc(state, &stop, &out);
    rl_buf_reset(&out);
    is_int(enc(state, &end, &out), RL_OK, "incomplete END encoded");
    ok(out.data && strstr(out.data, "event: response.incomplete\n") &&
           strstr(out.data, "\"incomplete_details\":{\"reason\":\"max_output_tokens\"}"),
       "a token limit ends with response.incomplete (max_output_tokens)");
    ok(out.data && strstr(out.data, "\"id\":\"resp_relay\""),
       "no upstream id: the reply's id, also at the start");

    memset(state, 0, D->enc_size);
    rl_buf_reset(&out);
    xl_event stray = {.kind = XL_EV_TOOL_ARGS, .index = 3, .text = "{}"};
    is_int(enc(state, &stray, &out), RL_UPSTREAM_PROTOCOL, "arguments of no call: protocol error");
    xl_openai_responses.enc_release(state);

    /* An error mid-stream: the error event and response.failed; then over. */
    memset(state, 0, D->enc_size);
    rl_buf_reset(&out);
    xl_event start = {.kind = XL_EV_START, .id = "r9"};
    enc(state, &start, &out);
    enc(state, &text, &out);
    rl_buf_reset(&out);
    xl_event err = {.kind = XL_EV_ERROR, .text = "upstream cut", .type = "api_error"};
    is_int(enc(state, &err, &out), RL_OK, "ERROR encoded");
    static const char *const failed[] = {
        "error|{'type':'error','sequence_number':5,'code':'api_error','message':'upstream cut',"
        "'param':null}",
        "response.failed|{'type':'response.failed','sequence_number':6,'response':{'id':'r9',"
        "'object':'response','created_at':1700000000,'status':'failed','error':{'code':"
        "'api_error','message':'upstream cut'},'incomplete_details':null,'model':'claude-x',"
        "'output':[],'usage':null}}",
    };
    stream_is(out.data, failed, 2, "ERROR: the error event, then response.failed");
    rl_buf_reset(&out);
    is_int(enc(state, &end, &out), RL_OK, "after ERROR: nothing more");
    is_int(out.len, 0, "after ERROR: no bytes");

    /* An error before anything: the error event alone. */
    memset(state, 0, D->enc_size);
    rl_buf_reset(&out);
    is_int(enc(state, &err, &out), RL_OK, "early ERROR encoded");
    static const char *const early[] = {
        "error|{'type':'error','sequence_number':0,'code':'api_error','message':'upstream cut',"
        "'param':null}",
    };
    stream_is(out.data, early, 1, "early ERROR: the error event alone");
    xl_openai_responses.enc_release(state);
    rl_buf_release(&out);
}

/* A stream abandoned midway is released without leaks (the sanitizer run
 * checks), and release twice is harmless. */
static void test_enc_release(void)
{
    void *state = rl_palloc(P, D->enc_size);
    rl_buf out;
    rl_buf_init(&out, 0);
    xl_event call = {.kind = XL_EV_TOOL_CALL, .index = 0, .id = "c", .name = "f"};
    xl_event args = {.kind = XL_EV_TOOL_ARGS, .index = 0, .text = "{}"};
    is_int(enc(state, &call, &out), RL_OK, "abandoned: a call");
    is_int(enc(state, &args, &out), RL_OK, "abandoned: its arguments");
    /* Through the contract's hook, as translate.c releases it: without
     * it the copies leaked (found by fuzz_xlate). */
    ok(D->enc_release != NULL, "enc_release is the dialect's hook");
    if (D->enc_release) {
        D->enc_release(state);
        D->enc_release(state); /* twice: safe, as the glue may */
    }
    ok(1, "abandoned stream released");
    rl_buf_release(&out);
}

int main(void)
{
    P = rl_pool_new();
    test_decode_response();
    test_encode_response();
    test_errors();
    test_dec_stream();
    test_enc_stream();
    test_enc_release();
    rl_pool_free(P);
    return tap_done();
}
