/*
 * coalesce.c — the flight protocol: joining, leading (publishing), following
 * and taking over (see coalesce.h). The followers of one process share a
 * reader: engine/fanout.c.
 */
#include "engine/coalesce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/fanout.h"
#include "store/base/rl_log.h"
#include "store/flight.h"

static uint64_t system_now_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void system_wait(void *ctx, store *s, const uint8_t key[STORE_KEY_LEN], uint32_t ticket,
                        int timeout_ms)
{
    (void)ctx;
    store_flight_wait(s, key, ticket, timeout_ms);
}

const coalesce_clock coalesce_system_clock = {NULL, system_now_ms, system_wait};

static const coalesce_clock *clock_of(const exchange *x)
{
    return x->flight.clock ? x->flight.clock : &coalesce_system_clock;
}

static uint64_t now_ms(const exchange *x)
{
    const coalesce_clock *c = clock_of(x);
    return c->now_ms(c->ctx);
}

/* ---- the head: chunk 0 of every flight --------------------------------- */

/* "STATUS KIND CONTENT-TYPE", KIND 's' (stream) or 'b' (body). */
static rl_err head_encode(rl_buf *out, int status, entry_kind kind, const char *ctype)
{
    return rl_buf_printf(out, "%d %c %s", status, kind == ENTRY_STREAM ? 's' : 'b',
                         ctype ? ctype : "application/json");
}

typedef struct head {
    int status;
    entry_kind kind;
    char ctype[256];
} head;

static int head_decode(const char *p, size_t len, head *h)
{
    char text[300];
    if (len >= sizeof text)
        return -1;
    memcpy(text, p, len);
    text[len] = '\0';
    /* "STATUS K CTYPE", as head_encode wrote it */
    char *end;
    long status = strtol(text, &end, 10);
    if (end == text || status < 0 || status > 999 || end[0] != ' ' || !end[1] || end[2] != ' ')
        return -1;
    h->status = (int)status;
    h->kind = end[1] == 's' ? ENTRY_STREAM : ENTRY_BODY;
    snprintf(h->ctype, sizeof h->ctype, "%s", end + 3);
    return 0;
}

/* ---- leading ----------------------------------------------------------- */

static int publishing(const exchange *x)
{
    return x->flight.active && x->flight.leading && x->flight.publishing;
}

/* Stops publishing and tells the followers the flight failed. */
static void fail_flight(exchange *x, const char *why)
{
    rl_warn("shared answer %s: %s; its followers end with an error", x->key_hex, why);
    store_flight_finish(exchange_store(x), x->key, x->flight.gen, FLIGHT_FAILED, 0, now_ms(x));
    x->flight.publishing = 0;
}

static void publish(exchange *x, const void *data, size_t len)
{
    fanout_trace(x->key_hex, x->flight.gen, "received", x->flight.published);
    if (x->flight.published_bytes + len > x->cfg->coalesce.max_buffer) {
        fail_flight(x, "larger than [coalesce] max_buffer");
        return;
    }
    rl_err err = store_flight_append(exchange_store(x), x->key, x->flight.gen, x->flight.published,
                                     data, len, now_ms(x));
    x->flight.published++;
    x->flight.published_bytes += len;
    if (err == RL_NOTFOUND) {
        /* A follower believed this leader dead and took over: it leads now. */
        x->flight.publishing = 0;
    } else if (err != RL_OK) {
        fail_flight(x, rl_err_text(err));
    }
}

/* Publishes a head now (chunk 0). */
static void publish_head_now(exchange *x, int status, entry_kind kind, const char *content_type)
{
    rl_buf h;
    rl_buf_init(&h, 512);
    if (head_encode(&h, status, kind, content_type) == RL_OK)
        publish(x, h.data, h.len);
    else
        fail_flight(x, "cannot encode the head");
    rl_buf_release(&h);
}

/*
 * Quiet leading. Publishing costs a write transaction per chunk, an
 * encrypted log record of its bytes, and their removal by maintenance
 * later: about 130k instructions a chunk (callgrind), two of the seven
 * transactions and 23 to 17 log records of a plain miss; and most misses
 * have no follower. A buffered (not streamed) answer reaches followers only
 * at its end anyway, in one piece: so when nobody follows then
 * (store_flight_attended: shared memory, no database), a leader that keeps
 * the answer for the cache publishes nothing, holding the head. If the
 * answer is then stored, the flight ends DONE, reusable and empty, and a
 * follower that joined after the leader's look reads the cache instead
 * (COALESCE_CACHED); if not, coalesce_finish publishes it first.
 *
 * Streams are published as they come: a follower that joins mid-stream
 * must not wait for the leader's next upstream chunk (which may never
 * come) to get what was sent before.
 */
static int quiet(exchange *x)
{
    return !x->flight.loud && x->capture && !x->up_is_stream &&
           !store_flight_attended(exchange_store(x), x->key, now_ms(x));
}

/* Publishes the held head and the answer so far (x->body), then goes on
 * publishing as it comes. */
static void catch_up(exchange *x)
{
    if (!publishing(x) || x->flight.loud)
        return;
    x->flight.loud = 1;
    if (!x->flight.head_held)
        return;
    x->flight.head_held = 0;
    publish_head_now(x, x->flight.head_status, x->flight.head_kind, x->flight.head_type);
    if (publishing(x) && x->body.len)
        publish(x, x->body.data, x->body.len);
}

void coalesce_publish_head(exchange *x, int status, entry_kind kind, const char *content_type)
{
    /* the head is chunk 0 */
    if (!publishing(x) || x->flight.published > 0 || x->flight.head_held)
        return;
    if (quiet(x)) {
        x->flight.head_held = 1;
        x->flight.head_status = status;
        x->flight.head_kind = kind;
        x->flight.head_type = content_type;
        return;
    }
    x->flight.loud = 1;
    publish_head_now(x, status, kind, content_type);
}

void coalesce_publish_data(exchange *x, const char *data, size_t len)
{
    if (!publishing(x) || !len)
        return;
    if (x->flight.head_held) {
        /* Quiet so far: data is x->body's. */
        if (!quiet(x))
            catch_up(x);
        return;
    }
    publish(x, data, len);
}

void coalesce_publish_error(exchange *x, rl_err err, const char *message)
{
    if (!publishing(x) || x->flight.published > 0) /* the head is chunk 0 */
        return;
    /* Rare, and not x->body's bytes: published as it is made. */
    x->flight.loud = 1;
    x->flight.head_held = 0;
    rl_buf body;
    rl_buf_init(&body, 0);
    if (x->prov->error_body(&body, err, message) == RL_OK) {
        coalesce_publish_head(x, rl_err_status(err), ENTRY_BODY, "application/json");
        coalesce_publish_data(x, body.data, body.len);
        coalesce_finish(x, 1, 0);
    } else {
        fail_flight(x, "cannot render the error");
    }
    rl_buf_release(&body);
}

void coalesce_finish(exchange *x, int complete, int reusable)
{
    /* Complete but not in the cache: followers can only read it here. */
    if (complete && !reusable)
        catch_up(x);
    if (!publishing(x))
        return;
    store_flight_finish(exchange_store(x), x->key, x->flight.gen,
                        complete ? FLIGHT_DONE : FLIGHT_FAILED, complete && reusable, now_ms(x));
    x->flight.publishing = 0;
}

int coalesce_has_followers(exchange *x)
{
    return publishing(x) && store_flight_attended(exchange_store(x), x->key, now_ms(x));
}

/* ---- following ----------------------------------------------------------- */

/* One follower: what it has of the shared answer, and its place in this
 * process's fan-out. */
typedef struct follower {
    fanout_sub sub; /* sub.owner is this follower */
    exchange *x;
    uint32_t gen;
    int have_head;
    head h;
    int live;    /* relaying a stream to a stream request as it comes */
    rl_buf held; /* everything else: collected, rendered at the end */
} follower;

static void follower_reset(follower *f, uint32_t gen)
{
    fanout_follow(&f->sub, f->x->key, gen, f->x->cfg->coalesce.max_buffer);
    f->gen = gen;
    f->have_head = 0;
    f->live = 0;
    rl_buf_reset(&f->held);
}

static int sub_stopped(fanout_sub *sub)
{
    follower *f = sub->owner;
    return f->x->client_gone;
}

/* Room for the status line and headers a live follower's head writes. */
#define HEAD_ALLOWANCE 4096

/* Collecting never waits; writing to the client only when it is ready. */
static int sub_ready(fanout_sub *sub, size_t pending)
{
    follower *f = sub->owner;
    int writes = f->live || (!f->have_head && f->x->info.stream);
    return !writes || exchange_ready(f->x, pending + (f->have_head ? 0 : HEAD_ALLOWANCE));
}

static int sub_chunk(fanout_sub *sub, uint32_t seq, const void *data, size_t len)
{
    follower *f = sub->owner;
    exchange *x = f->x;
    if (seq == 0) {
        if (head_decode(data, len, &f->h) != 0) {
            sub->broken = 1;
            return 1;
        }
        f->have_head = 1;
        int success = f->h.status >= 200 && f->h.status < 300;
        f->live = success && f->h.kind == ENTRY_STREAM && x->info.stream &&
                  frame_kind_of(f->h.ctype) == x->info.framing;
        if (f->live) {
            exchange_start(x, f->h.status, f->h.ctype, "COALESCED", -1, 0);
            exchange_flush(x);
        }
        return 0;
    }
    if (f->live) {
        exchange_write(x, data, len);
        exchange_flush(x);
        fanout_trace(x->key_hex, f->gen, "sent", seq);
        return 0;
    }
    if (rl_buf_append(&f->held, data, len) != RL_OK) {
        sub->broken = 1;
        return 1;
    }
    return 0;
}

static const fanout_ops follower_ops = {sub_stopped, sub_ready, sub_chunk};

/* The leader's answer is complete: hand it to the client in its form. */
static void follower_complete(follower *f)
{
    exchange *x = f->x;
    if (f->have_head)
        fanout_usage(&f->sub, x->prov, f->h.kind, frame_kind_of(f->h.ctype), &x->usage);
    if (f->live) {
        exchange_flush(x);
        return;
    }
    if (!f->have_head || f->sub.broken ||
        exchange_send_answer(x, f->h.status, f->h.kind, f->h.ctype, f->held.data, f->held.len,
                             "COALESCED", -1) != RL_OK)
        exchange_fail(x, RL_UPSTREAM_PROTOCOL, "The shared upstream answer could not be rendered.");
}

/* Becomes the leader of generation gen after a takeover. */
static void lead_instead(exchange *x, uint32_t gen)
{
    x->flight.gen = gen;
    x->flight.leading = 1;
    x->flight.publishing = 1;
    x->flight.published = 0;
    x->flight.published_bytes = 0;
    x->flight.loud = 0;
    x->flight.head_held = 0;
}

/*
 * Follows generation f->gen until the answer is complete, failed, or the
 * follower must act. Returns the outcome for coalesce_join: ANSWERED, or
 * LEAD after a takeover, or ALONE when following cannot go on and nothing
 * was sent yet (the request then calls upstream by itself).
 */
static coalesce_outcome follow(follower *f)
{
    exchange *x = f->x;
    store *s = exchange_store(x);
    const coalesce_clock *clock = clock_of(x);
    size_t max_buffer = x->cfg->coalesce.max_buffer;
    uint64_t last_progress = now_ms(x), last_check = last_progress;
    uint64_t max_wait_ms = (uint64_t)x->cfg->coalesce.max_wait * 1000;

    for (;;) {
        /* A leader whose own client left goes on for us (coalesce_has_followers). */
        store_flight_attend(s, x->key, now_ms(x));
        if (f->sub.broken) {
            if (!x->started)
                return COALESCE_ALONE;
            exchange_fail(x, RL_BAD_ENTRY, "The shared upstream answer was unreadable.");
            return COALESCE_ANSWERED;
        }
        uint32_t before = f->sub.next_seq;
        fanout_look l;
        fanout_take_news(&f->sub, s, clock, max_buffer, &l);
        if (x->client_gone)
            return COALESCE_ANSWERED;
        if (l.broken) {
            f->sub.broken = 1;
            continue;
        }
        if (f->sub.broken)
            continue;
        if (l.err != RL_OK) {
            /* The flight vanished or the store failed: go alone if we can. */
            if (!x->started)
                return COALESCE_ALONE;
            exchange_fail(x, RL_UPSTREAM_CUT, "The shared upstream call was lost.");
            return COALESCE_ANSWERED;
        }
        if (f->sub.next_seq != before)
            last_progress = now_ms(x);
        if (!l.known || f->sub.next_seq < l.nchunks)
            continue; /* more to deliver before the state counts */
        if (l.state == FLIGHT_DONE) {
            /* A quiet leader stored its answer and published none of it. */
            if (!f->have_head && l.nchunks == 0 && l.rec.gen == f->gen && l.rec.reusable)
                return COALESCE_CACHED;
            follower_complete(f);
            return COALESCE_ANSWERED;
        }
        if (l.state == FLIGHT_FAILED) {
            /* Abandoned and already replaced by a follower that took over
             * (which may even have finished meanwhile): follow the new
             * generation if nothing was sent yet. Never splice two answers. */
            if (!x->started && l.rec.gen != f->gen) {
                follower_reset(f, l.rec.gen);
                continue;
            }
            exchange_fail(x, RL_UPSTREAM_CUT, "The upstream stream ended before it was complete.");
            return COALESCE_ANSWERED;
        }
        if (l.rec.gen != f->gen) {
            /* Our generation runs on but is no longer current (cannot
             * happen while its leader lives): treat it as lost. */
            if (x->started) {
                exchange_fail(x, RL_UPSTREAM_CUT, "The shared upstream call was lost.");
                return COALESCE_ANSWERED;
            }
            follower_reset(f, l.rec.gen);
            continue;
        }

        uint64_t now = now_ms(x);
        if (now - last_check < COALESCE_LIVENESS_MS && now - last_progress < max_wait_ms)
            continue;
        last_check = now;
        int leader_dead = !store_flight_leader_alive(&l.rec);
        if (!leader_dead && now - last_progress < max_wait_ms)
            continue;
        if (x->started) {
            exchange_fail(x, leader_dead ? RL_UPSTREAM_CUT : RL_UPSTREAM_TIMEOUT,
                          "The shared upstream call was lost.");
            return COALESCE_ANSWERED;
        }
        if (!leader_dead) {
            rl_warn("follower of %s: no progress for %ld s; calling upstream alone", x->key_hex,
                    x->cfg->coalesce.max_wait);
            return COALESCE_ALONE;
        }
        int won = 0;
        store_flight next;
        if (store_flight_takeover(s, x->key, f->gen, now, &next, &won) != RL_OK)
            return COALESCE_ALONE;
        if (won) {
            rl_warn("leader of %s (pid %d) died: taking over", x->key_hex, (int)l.rec.leader_pid);
            lead_instead(x, next.gen);
            return COALESCE_LEAD;
        }
        follower_reset(f, next.gen);
    }
}

coalesce_outcome coalesce_join(exchange *x)
{
    store *s = exchange_store(x);
    coalesce_mode mode = x->cfg->coalesce.mode;
    if (!s || !x->key_hex[0] || mode == COALESCE_OFF ||
        (mode == COALESCE_CACHEABLE && !x->decision.store))
        return COALESCE_ALONE;

    store_flight f;
    int leader = 0;
    /* A finished flight is never joined (linger 0): the request already
     * asked the cache, and one that refreshes, rejects an old entry or
     * comes after a purge must not get the previous answer through the
     * back door. The price is a rare second upstream call when a request
     * misses the cache just before the leader stores its answer. */
    rl_err err = store_flight_join(s, x->key, now_ms(x), 0, &f, &leader);
    if (err != RL_OK)
        return COALESCE_ALONE; /* logged by the store; serve uncoalesced */
    x->flight.active = 1;
    x->flight.gen = f.gen;
    if (leader) {
        x->flight.leading = 1;
        x->flight.publishing = 1;
        return COALESCE_LEAD;
    }

    follower fw;
    memset(&fw, 0, sizeof fw);
    fw.x = x;
    fanout_sub_init(&fw.sub, &follower_ops, &fw);
    rl_buf_init(&fw.held, x->cfg->cache.max_response);
    follower_reset(&fw, f.gen);
    coalesce_outcome out = follow(&fw);
    fanout_sub_release(&fw.sub);
    rl_buf_release(&fw.held);
    if (out == COALESCE_ALONE || out == COALESCE_CACHED)
        x->flight.active = 0;
    return out;
}
