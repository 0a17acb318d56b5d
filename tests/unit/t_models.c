/* Unit tests for engine/models: [models] and accepts as relay.ini says
 * them (patterns, file order, "PREFIX/" removal, a type for a target,
 * config errors), then the request flow's hook on an in-process engine
 * (tests/unit/engine_harness.h): which upstream gets the call, with which
 * body, and the 400 when the upstream does not accept the client's
 * format. */
#include "engine/models.h"
#include "tests/unit/engine_harness.h"

#include <unistd.h>

static char tmp[] = "/tmp/relay-t-models-XXXXXX";

/* Loads text as a relay.ini in tmp; *why gets the reason on failure. */
static rl_err load(const char *text, relay_config **cfg, rl_buf *why)
{
    char path[256];
    snprintf(path, sizeof path, "%s/m.ini", tmp);
    FILE *f = fopen(path, "w");
    if (!f)
        return RL_IO;
    fputs(text, f);
    fclose(f);
    rl_buf_reset(why);
    return config_load(path, cfg, why);
}

static void check_glob(void)
{
    static const struct {
        const char *pattern, *s;
        int match;
    } cases[] = {
        {"gpt-*", "gpt-4o", 1},
        {"gpt-*", "gpt-", 1},
        {"gpt-*", "gpt", 0},
        {"gpt-*", "xgpt-4o", 0},
        {"*", "", 1},
        {"*", "anything/at:all", 1},
        {"claude-*-latest", "claude-3-5-sonnet-latest", 1},
        {"claude-*-latest", "claude-3-5-sonnet", 0},
        {"*mini*", "gpt-4o-mini-2024", 1},
        {"local/*", "local/llama3", 1},
        {"local/*", "locally", 0},
        {"gpt-4o", "gpt-4o", 1},
        {"gpt-4o", "gpt-4o-mini", 0},
        {"GPT-*", "gpt-4o", 0}, /* case counts */
        {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        char what[256];
        snprintf(what, sizeof what, "glob %s %s %s", cases[i].pattern,
                 cases[i].match ? "matches" : "does not match", cases[i].s);
        is_int(models_glob(cases[i].pattern, cases[i].s), cases[i].match, what);
    }
}

static void check_route(void)
{
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    rl_err err = load("[upstream.oa]\ntype = openai\n"
                      "[upstream.claude]\ntype = anthropic\naccepts = openai, Gemini\n"
                      "[upstream.ol]\ntype = ollama\naccepts = anthropic openai\n"
                      "[models]\n"
                      "claude-* = claude\n"
                      "local/* = ollama\n"
                      "gpt-4o-mini = ol\n"
                      "gpt-* = oa\n"
                      "*-exp = anthropic\n",
                      &cfg, &why);
    is_int(err, RL_OK, "a file with [models] and accepts loads");
    if (err != RL_OK) {
        printf("#   %s\n", why.data);
        rl_buf_release(&why);
        return;
    }
    is_int(cfg->models.n, 5, "five [models] lines, kept");
    is_str(cfg->models.routes[0].pattern, "claude-*", "in file order");
    is_int(cfg->upstreams[0].accepts, 0, "accepts: none by default");
    is_int(cfg->upstreams[1].accepts, 1u << WIRE_OPENAI | 1u << WIRE_GEMINI,
           "accepts: a comma list, any case");
    is_int(cfg->upstreams[2].accepts, 1u << WIRE_OPENAI | 1u << WIRE_ANTHROPIC,
           "accepts: a space list");
    rl_buf text;
    rl_buf_init(&text, 0);
    is_int(config_get_text(cfg, "upstream.claude.accepts", &text), RL_OK, "accepts has a text");
    is_str(text.data, "openai, gemini", "... in one spelling");
    rl_buf_release(&text);

    const upstream_config *by_path = &cfg->upstreams[0];
    static const struct {
        const char *model, *upstream, *sent;
        int rule; /* -1: none */
    } cases[] = {
        {"claude-sonnet-4", "claude", "claude-sonnet-4", 0},
        {"local/llama3.2", "ol", "llama3.2", 1}, /* a type: its first upstream; prefix removed */
        {"local/", "ol", "", 1},
        {"gpt-4o-mini", "ol", "gpt-4o-mini", 2}, /* the first match wins */
        {"gpt-4o", "oa", "gpt-4o", 3},
        {"gemini-2.0-exp", "claude", "gemini-2.0-exp", 4},
        {"mistral", "oa", "mistral", -1}, /* no match: the path's route */
        {"", "oa", "", -1},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        models_choice c;
        models_route(cfg, cases[i].model, by_path, &c);
        char what[256];
        snprintf(what, sizeof what, "%s routes to %s", cases[i].model, cases[i].upstream);
        is_str(c.upstream->name, cases[i].upstream, what);
        snprintf(what, sizeof what, "%s is sent as \"%s\"", cases[i].model, cases[i].sent);
        is_str(c.model, cases[i].sent, what);
        snprintf(what, sizeof what, "%s: by line %d", cases[i].model, cases[i].rule);
        is_int(c.rule ? (int)(c.rule - cfg->models.routes) : -1, cases[i].rule, what);
    }

    /* Its own format always, and what accepts lists. */
    ok(models_serves(&cfg->upstreams[0], "openai"), "an OpenAI upstream serves OpenAI's format");
    ok(!models_serves(&cfg->upstreams[0], "anthropic"), "... not Anthropic's unasked");
    ok(models_serves(&cfg->upstreams[1], "anthropic"), "claude serves its own format");
    ok(models_serves(&cfg->upstreams[1], "gemini"), "claude serves Gemini's: accepted");
    ok(!models_serves(&cfg->upstreams[1], "ollama"), "claude does not serve Ollama's");
    ok(models_serves(&cfg->upstreams[2], "anthropic"), "ol serves Anthropic's: accepted");
    is_int(models_format_bit("nope"), 0, "an unknown format has no bit");
    config_free(cfg);

    /* A name wins over a type: [upstream.openai] of type openai-compatible
     * is the "openai" a line names, though oa comes first. */
    err = load("[upstream.oa]\ntype = openai\n"
               "[upstream.openai]\ntype = openai-compatible\nbase_url = http://127.0.0.1:1\n"
               "[models]\nx-* = openai\n",
               &cfg, &why);
    is_int(err, RL_OK, "a target that is a name and a type loads");
    if (err == RL_OK) {
        models_choice c;
        models_route(cfg, "x-1", &cfg->upstreams[0], &c);
        is_str(c.upstream->name, "openai", "the name wins over the type");
        config_free(cfg);
    }
    rl_buf_release(&why);
}

static void check_config_errors(void)
{
    static const struct {
        const char *ini, *reason;
    } cases[] = {
        {"[upstream.oa]\ntype = openai\n[models]\ngpt-* = nowhere\n",
         "[models] gpt-* = nowhere: there is no [upstream.nowhere] and no upstream of type "
         "nowhere"},
        {"[upstream.oa]\ntype = openai\n[models]\nc-* = anthropic\n",
         "[models] c-* = anthropic: there is no [upstream.anthropic] and no upstream of type "
         "anthropic"},
        {"[upstream.oa]\ntype = openai\n[models]\ngpt-* = oa\ngpt-* = oa\n",
         "[models] gpt-*: set twice"},
        {"[upstream.oa]\ntype = openai\n[models]\ngpt-* =\n",
         "[models] gpt-*: expected an [upstream.NAME]'s name or an upstream type"},
        {"[upstream.oa]\ntype = openai\naccepts = openai, klingon\n",
         "[upstream.oa] accepts: expected a list of client formats, got \"openai, klingon\" (each "
         "one of: openai anthropic gemini ollama)"},
        {"[upstream.oa]\ntype = openai\naccepts = azure\n",
         "[upstream.oa] accepts: expected a list of client formats"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        relay_config *cfg = NULL;
        rl_buf why;
        rl_buf_init(&why, 0);
        char what[256];
        snprintf(what, sizeof what, "config error %zu is RL_CONFIG", i);
        is_int(load(cases[i].ini, &cfg, &why), RL_CONFIG, what);
        snprintf(what, sizeof what, "config error %zu says: %s", i, cases[i].reason);
        if (!ok(why.data && strstr(why.data, cases[i].reason), what))
            printf("#   got: %s\n", why.data ? why.data : "(null)");
        config_free(cfg);
        rl_buf_release(&why);
    }
}

/* ---- the hook, on an engine -------------------------------------------- */

static json_t *chat_reply(void)
{
    return json_pack("{s:i,s:{s:s},s:s}", "status", 200, "headers", "content-type",
                     "application/json", "body",
                     "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"m\","
                     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                     "\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
                     "\"completion_tokens\":1,\"total_tokens\":2}}");
}

/* POSTs a chat request for model to /v1/chat/completions; c gets the answer. */
static void chat(const relay *r, const char *model, client *c)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"temperature\":0,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hello\"}]}",
             model);
    json_t *h = json_pack("{s:s,s:s}", "authorization", "Bearer sk-test", "content-type",
                          "application/json");
    client_init(c, 0);
    handle(r, "POST", "/v1/chat/completions", h, body, strlen(body), c);
    json_decref(h);
}

static void check_hook(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "%.40s/engine", tmp);
    json_t *ups = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "name", "b", "type", "openai",
                            "base_url", FAKE_BASE "/b", "name", "claude", "type", "anthropic",
                            "base_url", FAKE_BASE "/claude");
    json_t *ini = json_pack("{s:{s:s,s:s,s:s}}", "models", "gpt-b*", "b", "local/*", "b",
                            "claude-*", "claude");
    relay r;
    if (relay_start(&r, dir, ups, ini, "hook") != 0) {
        json_decref(ups);
        json_decref(ini);
        return;
    }
    json_t *reply = chat_reply();
    client c;

    fake_reset(reply, FAKE_REPLY);
    chat(&r, "gpt-a-1", &c);
    is_int(c.status, 200, "gpt-a-1: answered");
    is_str(fake.url, FAKE_BASE "/v1/chat/completions", "gpt-a-1: by the path, to openai");
    client_release(&c);

    fake_reset(reply, FAKE_REPLY);
    chat(&r, "gpt-b-1", &c);
    is_int(c.status, 200, "gpt-b-1: answered");
    is_str(fake.url, FAKE_BASE "/b/v1/chat/completions", "gpt-b-1: by [models], to b");
    ok(fake.body.data && strstr(fake.body.data, "\"model\":\"gpt-b-1\""),
       "gpt-b-1: the body goes as it came");
    is_str(json_string_value(json_object_get(c.headers, "x-relay-upstream")), "b",
           "gpt-b-1: X-Relay-Upstream says b");
    client_release(&c);

    /* The same request again: a HIT of the entry stored under b. */
    fake_reset(reply, FAKE_REPLY);
    chat(&r, "gpt-b-1", &c);
    is_str(json_string_value(json_object_get(c.headers, "x-cache")), "HIT", "gpt-b-1 again: HIT");
    is_int(fake.calls, 0, "gpt-b-1 again: no upstream call");
    client_release(&c);

    /* local/ is Relay's own prefix: the upstream hears of llama3 only. */
    fake_reset(reply, FAKE_REPLY);
    chat(&r, "local/llama3", &c);
    is_int(c.status, 200, "local/llama3: answered");
    is_str(fake.url, FAKE_BASE "/b/v1/chat/completions", "local/llama3: to b");
    json_t *sent = json_loadb(fake.body.data ? fake.body.data : "", fake.body.len, 0, NULL);
    is_str(json_string_value(json_object_get(sent, "model")), "llama3",
           "local/llama3: sent as llama3");
    ok(json_is_array(json_object_get(sent, "messages")), "local/llama3: the rest of the body kept");
    json_decref(sent);
    client_release(&c);

    /* An Anthropic upstream that does not accept OpenAI's format: a 400 in
     * OpenAI's shape naming it and accepts, and no call. */
    fake_reset(reply, FAKE_REPLY);
    chat(&r, "claude-sonnet", &c);
    is_int(c.status, 400, "claude-sonnet on /v1/chat/completions: 400");
    is_int(fake.calls, 0, "claude-sonnet: no upstream call");
    json_t *err = json_loadb(c.body.data ? c.body.data : "", c.body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(err, "error"), "message"));
    ok(msg && strstr(msg, "[upstream.claude]") && strstr(msg, "accepts") && strstr(msg, "openai"),
       "claude-sonnet: the OpenAI-shaped error names the upstream and accepts");
    if (msg)
        printf("#   %s\n", msg);
    json_decref(err);
    client_release(&c);

    json_decref(reply);
    relay_stop(&r);
    json_decref(ups);
    json_decref(ini);
}

int main(void)
{
    if (harness_begin(tmp) != 0)
        return 1;
    check_glob();
    check_route();
    check_config_errors();
    check_hook();
    return harness_end(tmp);
}
