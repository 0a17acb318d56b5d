/*
 * t_engine_failures.c — what the provider fixtures (t_engine.c) cannot
 * express, in-process through engine_harness.h: a fake upstream that fails
 * at a chosen point, a client that leaves. A stream cut mid-way or ended
 * without its terminator (the format's error event, nothing stored), a body
 * cut mid-way (a clean 502, never a truncated 200), a timeout or no
 * connection before the head (504 / 502 in the client's format, nothing
 * stored), a client that leaves mid-answer (the answer is still stored;
 * when it would not be, the upstream call is abandoned), a stream fed one
 * byte at a time. Each case for each wire format of engine_wires.h.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/admission.h"
#include "tests/unit/engine_harness.h"
#include "tests/unit/engine_wires.h"

/* ---- part 2: what the fixtures cannot express --------------------------- */

/* What the engine tells a client whose stream was cut (engine.c). */
#define CUT_MESSAGE "The upstream stream ended before it was complete."

/* Sends the request again with the whole reply ready: it must reach the
 * upstream (nothing was stored) and be stored then (the next one is a HIT).
 * What a failed first attempt left behind must not matter. */
static void expect_not_stored(const relay *r, const wire *wi, int stream, const char *marker,
                              const char *label)
{
    char l[512];
    rl_buf whole;
    rl_buf_init(&whole, 0);
    if (stream)
        stream_text(wi, wi->npieces, &whole);
    else
        rl_buf_puts(&whole, wi->plain_reply);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    for (int i = 0; i < 2; i++) {
        snprintf(l, sizeof l, "%s, %s", label, i ? "and once more" : "then the repeat");
        fake_reset(i ? NULL : reply, FAKE_REPLY);
        client c;
        client_init(&c, 0);
        wire_send(r, wi, stream, marker, NULL, NULL, &c);
        is_int(fake.calls, i ? 0 : 1,
               point(l, i ? "answered from the cache" : "calls upstream (nothing was stored)"));
        expect_answer(l, &c, 200, i ? "HIT" : "MISS", whole.data, whole.len);
        client_release(&c);
    }
    json_decref(reply);
    rl_buf_release(&whole);
}

/* A stream cut before its terminator (the connection dropped, or the
 * upstream ended without it): the client has what came, then the format's
 * error event; nothing is stored. */
static void test_stream_cut(const relay *r, const wire *wi, int dropped)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s stream %s", wi->name,
             dropped ? "cut before its terminator (RL_UPSTREAM_CUT)"
                     : "ended without its terminator");
    snprintf(marker, sizeof marker, "t-engine-%s-%s", dropped ? "cut" : "unterminated", wi->name);
    json_t *reply = wire_reply(wi, 1, dropped ? wi->npieces : wi->npieces - 1);
    fake_reset(reply, dropped ? FAKE_CUT : FAKE_REPLY);
    fake.cut_after = wi->npieces - 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);

    rl_buf want, event;
    rl_buf_init(&want, 0);
    rl_buf_init(&event, 0);
    stream_text(wi, wi->npieces - 1, &want);
    ok(wi->prov->error_event(&event, wi->framing, 1, RL_UPSTREAM_CUT, CUT_MESSAGE) == RL_OK &&
           event.len > 0,
       point(label, "the format has an error event to end a stream with"));
    rl_buf_append(&want, event.data, event.len);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    expect_not_stored(r, wi, 1, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    rl_buf_release(&event);
    json_decref(reply);
}

/* A body cut in the middle: nothing was sent yet, so the client gets a
 * clean 502 in its format, never a truncated 200; nothing is stored. */
static void test_body_cut(const relay *r, const wire *wi)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s body cut in the middle (RL_UPSTREAM_CUT)", wi->name);
    snprintf(marker, sizeof marker, "t-engine-body-cut-%s", wi->name);
    json_t *reply = wire_reply(wi, 0, 0);
    fake_reset(reply, FAKE_CUT);
    fake.cut_after = 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 0, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    wi->prov->error_body(&want, RL_UPSTREAM_CUT, NULL);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 502, NULL, want.data ? want.data : "", want.len);
    is_str(json_string_value(json_object_get(c.headers, "content-type")), "application/json",
           point(label, "client header content-type"));
    expect_not_stored(r, wi, 0, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* No head at all: a timeout (504) or no connection (502), as a whole error
 * document in the client's format even for a stream request (nothing was
 * sent); nothing is stored, the repeat calls upstream. */
static void test_no_head(const relay *r, const wire *wi, int stream, fake_mode mode)
{
    rl_err err = mode == FAKE_TIMEOUT ? RL_UPSTREAM_TIMEOUT : RL_UPSTREAM_UNREACHABLE;
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s request, upstream %s before its head", wi->name,
             stream ? "stream" : "non-stream", mode == FAKE_TIMEOUT ? "times out" : "unreachable");
    snprintf(marker, sizeof marker, "t-engine-%s-%s-%s", rl_err_text(err),
             stream ? "stream" : "plain", wi->name);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, mode);
    client c;
    client_init(&c, 0);
    wire_send(r, wi, stream, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    wi->prov->error_body(&want, err, NULL);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, mode == FAKE_TIMEOUT ? 504 : 502, NULL, want.data ? want.data : "",
                  want.len);
    is_str(json_string_value(json_object_get(c.headers, "content-type")), "application/json",
           point(label, "client header content-type"));
    expect_not_stored(r, wi, stream, marker, label);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* The client leaves mid-answer (its sink write fails). A cacheable answer
 * is still fetched whole and stored (its tokens are paid for either way).
 * A stream that would not be stored (Cache-Control: no-store) is given up
 * at once, so the upstream stops generating; a body is only written once
 * it is whole, so its client's leaving is seen too late to save anything. */
static void test_client_leaves(const relay *r, const wire *wi, int stream, int cacheable)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s %s, the client leaves at its %s write%s", wi->name,
             stream ? "stream" : "body", stream ? "second" : "first",
             cacheable ? "" : " (no-store)");
    snprintf(marker, sizeof marker, "t-engine-leaves-%s-%s-%s", stream ? "stream" : "plain",
             cacheable ? "cached" : "no-store", wi->name);
    json_t *reply = wire_reply(wi, stream, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    client c;
    client_init(&c, stream ? 2 : 1);
    wire_send(r, wi, stream, marker, cacheable ? NULL : "cache-control",
              cacheable ? NULL : "no-store", &c);
    size_t count = json_array_size(json_object_get(reply, "body"));
    is_int(fake.calls, 1, point(label, "one upstream call"));
    rl_buf want;
    rl_buf_init(&want, 0);
    if (stream)
        stream_text(wi, 1, &want);
    is_bytes(c.body.data, c.body.len, want.data ? want.data : "", want.len,
             point(label, "the client got what was written before it left"));
    int given_up = stream && !cacheable;
    if (!ok(fake.abandoned == given_up && (given_up ? fake.pieces < count : fake.pieces == count),
            point(label, given_up ? "the upstream call is given up when the client leaves"
                                  : "the upstream answer is read to its end")))
        printf("#   the engine took %zu of %zu pieces%s\n", fake.pieces, count,
               fake.abandoned ? " and gave the call up" : "");
    if (!cacheable) {
        expect_not_stored(r, wi, stream, marker, label);
    } else {
        char l[300];
        snprintf(l, sizeof l, "%s, then the repeat", label);
        rl_buf_reset(&want);
        if (stream)
            stream_text(wi, wi->npieces, &want);
        else
            rl_buf_puts(&want, wi->plain_reply);
        fake_reset(NULL, FAKE_REPLY);
        client_release(&c);
        client_init(&c, 0);
        wire_send(r, wi, stream, marker, NULL, NULL, &c);
        is_int(fake.calls, 0, point(l, "answered from the cache (it was stored)"));
        expect_answer(l, &c, 200, "HIT", want.data, want.len);
    }
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* A stream that arrives one byte per on_data (events split anywhere): the
 * client gets the same bytes, and the same is stored. */
static void test_bytewise(const relay *r, const wire *wi)
{
    char label[256], marker[96];
    snprintf(label, sizeof label, "%s stream fed one byte at a time", wi->name);
    snprintf(marker, sizeof marker, "t-engine-bytewise-%s", wi->name);
    json_t *reply = wire_reply(wi, 1, wi->npieces);
    fake_reset(reply, FAKE_REPLY);
    fake.bytewise = 1;
    client c;
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);
    rl_buf want;
    rl_buf_init(&want, 0);
    stream_text(wi, wi->npieces, &want);
    is_int(fake.calls, 1, point(label, "one upstream call"));
    expect_answer(label, &c, 200, "MISS", want.data, want.len);
    client_release(&c);

    char l[300];
    snprintf(l, sizeof l, "%s, then the repeat", label);
    fake_reset(NULL, FAKE_REPLY);
    client_init(&c, 0);
    wire_send(r, wi, 1, marker, NULL, NULL, &c);
    is_int(fake.calls, 0, point(l, "answered from the cache"));
    expect_answer(l, &c, 200, "HIT", want.data, want.len);
    client_release(&c);
    rl_buf_release(&want);
    json_decref(reply);
}

/* Under [fcgi] max_inflight = 1 with no queue, a place not given back
 * after any of the cases would refuse every later call to that upstream
 * (503), failing its checks; at the end every upstream has none held. */
static void expect_places_free(const relay *r)
{
    ok(r->e->admission != NULL, "the admission file is mapped (the limit applied)");
    for (size_t u = 0; u < r->cfg->nupstreams; u++) {
        admission_counts c;
        admission_read(r->e->admission, r->cfg->upstreams[u].name, &c);
        is_int(c.inflight, 0, point(r->cfg->upstreams[u].name, "every admission place given back"));
        is_int(c.refused, 0, point(r->cfg->upstreams[u].name, "no call refused"));
    }
}

static void run_failures(const char *tmp, const char *name, const json_t *ini)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    json_t *upstreams = json_pack("[s,s,s]", "anthropic", "gemini", "ollama");
    relay r;
    if (relay_start(&r, dir, upstreams, ini, "in-process failure cases") == 0) {
        for (size_t i = 0; i < NELEM(wires); i++) {
            const wire *wi = &wires[i];
            test_stream_cut(&r, wi, 1);
            test_stream_cut(&r, wi, 0);
            test_body_cut(&r, wi);
            for (int stream = 0; stream <= 1; stream++) {
                test_no_head(&r, wi, stream, FAKE_TIMEOUT);
                test_no_head(&r, wi, stream, FAKE_UNREACHABLE);
                test_client_leaves(&r, wi, stream, 1);
                test_client_leaves(&r, wi, stream, 0);
            }
            test_bytewise(&r, wi);
        }
        if (ini)
            expect_places_free(&r);
    }
    relay_stop(&r);
    json_decref(upstreams);
}

int main(void)
{
    char tmp[] = "/tmp/t_engine_failures.XXXXXX";
    if (harness_begin(tmp) != 0)
        return 1;
    run_failures(tmp, "failures", NULL);
    json_t *one = json_pack("{s:{s:i,s:i}}", "fcgi", "max_inflight", 1, "queue_timeout", 0);
    run_failures(tmp, "failures-one-place", one);
    json_decref(one);
    return harness_end(tmp);
}
