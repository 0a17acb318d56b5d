/*
 * t_engine_usage.c — what a hit accounts (engine/entry.h's stored usage),
 * in-process through engine_harness.h, for each wire format of
 * engine_wires.h: the tokens and USD a hit saves, read from /relay/metrics.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/pricing.h"
#include "store/base/rl_hex.h"
#include "tests/unit/engine_harness.h"
#include "tests/unit/engine_wires.h"

/* ---- part 4: what a hit accounts (engine/entry.h's stored usage) -------- */

/* The sum of a /relay/metrics family's samples whose line holds match
 * (e.g. kind="input"; NULL: every sample). */
static double metric_sum(const relay *r, const char *family, const char *match)
{
    client c;
    client_init(&c, 0);
    json_t *headers = json_object();
    handle(r, "GET", "/relay/metrics", headers, "", 0, &c);
    json_decref(headers);
    double sum = 0;
    size_t flen = strlen(family);
    const char *line = c.body.data ? c.body.data : "";
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > flen && strncmp(line, family, flen) == 0 && line[flen] == '{' &&
            (!match || memmem(line, n, match, strlen(match)))) {
            const char *sp = memrchr(line, ' ', n);
            if (sp)
                sum += strtod(sp + 1, NULL);
        }
        line += n + (end != NULL);
    }
    client_release(&c);
    return sum;
}

typedef struct saved {
    double in, out, usd;
} saved;

static saved saved_now(const relay *r)
{
    saved s = {metric_sum(r, "relay_tokens_saved_total", "kind=\"input\""),
               metric_sum(r, "relay_tokens_saved_total", "kind=\"output\""),
               metric_sum(r, "relay_saved_usd_total", NULL)};
    return s;
}

/* Sends the request once more (the fake must not be called) and checks
 * that the HIT answers want and saves what usage u says, at the model's
 * price. */
static void expect_hit_saves(const relay *r, const wire *wi, int stream, const char *marker,
                             const rl_buf *want, const prov_usage *u, const char *label)
{
    saved before = saved_now(r);
    fake_reset(NULL, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    is_int(fake.calls, 0, point(label, "answered from the cache"));
    expect_answer(label, &c, 200, "HIT", want->data, want->len);
    client_release(&c);
    saved after = saved_now(r);
    double in = u->input > 0 ? (double)u->input : 0, out = u->output > 0 ? (double)u->output : 0;
    is_int((long long)(after.in - before.in), (long long)in, point(label, "input tokens saved"));
    is_int((long long)(after.out - before.out), (long long)out,
           point(label, "output tokens saved"));
    char model[128];
    const char *m = strstr(wi->plain_body, "\"model\":\"");
    snprintf(model, sizeof model, "%.*s", m ? (int)strcspn(m + 9, "\"") : 0, m ? m + 9 : "");
    if (!m) /* Gemini: the model is in the path */
        snprintf(model, sizeof model, "gemini-2.5-flash");
    const model_price *price = pricing_find(r->cfg, model);
    double usd = price ? (double)pricing_cost(price, u) / 1e9 : 0;
    double d = after.usd - before.usd - usd;
    if (!ok(d < 1e-9 && d > -1e-9, point(label, "USD saved (%s)", model)))
        printf("#   got:  %.12g\n#   want: %.12g\n", after.usd - before.usd, usd);
}

/* The entry in the version 2 layout (entry.h): as a Relay before stored
 * usage wrote it. */
static void encode_v2(const entry_view *v, rl_buf *out)
{
    const char *strings[] = {v->content_type, v->upstream, v->model, v->ns};
    unsigned char kind = (unsigned char)v->kind;
    rl_buf_append(out, "RLE2", 4);
    rl_buf_append(out, &kind, 1);
    for (size_t i = 0; i < NELEM(strings); i++) {
        unsigned char n = (unsigned char)strlen(strings[i]);
        rl_buf_append(out, &n, 1);
        rl_buf_append(out, strings[i], n);
    }
    rl_buf_append(out, v->body, v->body_len);
}

/*
 * A stored answer carries the usage read when it was stored, and a hit
 * accounts exactly what parsing the stored answer gives (what every hit did
 * before): tokens and USD saved. An entry in the layout before that
 * (version 2, no usage) is still served, byte for byte, and its usage is
 * read from the answer as before.
 */
static void test_hit_usage(const relay *r, const wire *wi, int stream)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s hit usage", wi->name, stream ? "stream" : "body");
    snprintf(marker, sizeof marker, "t-engine-hit-usage-%s-%d", wi->name, stream);
    rl_buf want;
    rl_buf_init(&want, 0);
    if (stream)
        stream_text(wi, wi->npieces, &want);
    else
        rl_buf_puts(&want, wi->plain_reply);
    /* What the hit accounted before usage was stored (try_cache). */
    prov_usage u;
    wi->prov->usage(stream ? ENTRY_STREAM : ENTRY_BODY, stream ? wi->framing : FRAME_SSE, want.data,
                    want.len, &u);

    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    const char *key_hex = json_string_value(json_object_get(c.headers, "x-relay-key"));
    uint8_t prefix[8], key[STORE_KEY_LEN];
    unsigned matches = 0;
    store *s = atomic_load(&r->e->store);
    ok(key_hex && rl_hex_decode(key_hex, 16, prefix) == 0 &&
           store_cache_find(s, prefix, 16, key, &matches) == RL_OK && matches == 1,
       point(label, "the entry is found by its X-Relay-Key"));
    client_release(&c);
    json_decref(reply);

    rl_buf value, old;
    rl_buf_init(&value, 0);
    rl_buf_init(&old, 0);
    store_meta meta;
    entry_view v;
    int found = store_cache_get(s, key, &meta, &value) == RL_OK &&
                entry_decode(value.data, value.len, &v) == RL_OK;
    ok(found, point(label, "the stored entry decodes"));
    if (found) {
        is_int(v.version, 3, point(label, "stored as version 3"));
        ok(v.has_usage, point(label, "with its usage"));
        if (!ok(v.usage.input == u.input && v.usage.output == u.output &&
                    v.usage.cached_input == u.cached_input && v.usage.cache_write == u.cache_write,
                point(label, "the stored usage is what the answer says")))
            printf("#   stored %lld/%lld/%lld/%lld, from the answer %lld/%lld/%lld/%lld\n",
                   (long long)v.usage.input, (long long)v.usage.output,
                   (long long)v.usage.cached_input, (long long)v.usage.cache_write,
                   (long long)u.input, (long long)u.output, (long long)u.cached_input,
                   (long long)u.cache_write);
        encode_v2(&v, &old);
    }
    expect_hit_saves(r, wi, stream, marker, &want, &u, label);

    /* The same answer as a Relay before this one stored it. */
    snprintf(label, sizeof label, "%s %s hit on a version 2 entry", wi->name,
             stream ? "stream" : "body");
    if (found)
        ok(rl_buf_error(&old) == RL_OK &&
               store_cache_put(s, key, &meta, old.data, old.len) == RL_OK,
           point(label, "rewritten"));
    expect_hit_saves(r, wi, stream, marker, &want, &u, label);
    rl_buf_release(&value);
    rl_buf_release(&old);
    rl_buf_release(&want);
}

static void run_hit_usage(const char *tmp)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/hit-usage", tmp);
    json_t *upstreams = json_pack("[s,s,s]", "anthropic", "gemini", "ollama");
    json_t *ini = json_pack("{s:{s:s}}", "metrics", "access", "open");
    relay r;
    if (relay_start(&r, dir, upstreams, ini, "hit usage") == 0)
        for (size_t i = 0; i < NELEM(wires); i++)
            for (int stream = 0; stream <= 1; stream++)
                test_hit_usage(&r, &wires[i], stream);
    relay_stop(&r);
    json_decref(upstreams);
    json_decref(ini);
}

int main(void)
{
    char tmp[] = "/tmp/t_engine_usage.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    run_hit_usage(tmp);
    return harness_end(tmp);
}
