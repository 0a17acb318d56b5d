/*
 * fanout.c — one reader per process and the fan-out of a shared answer
 * (see fanout.h).
 */
#include "engine/fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/ckey.h"
#include "store/base/rl_log.h"

/* ---- the follower's states ---------------------------------------------- */

/* allowed[from][to]: the transitions park(), fan_out() and call() make. */
static const unsigned char allowed[FANOUT_STATES][FANOUT_STATES] = {
    [FANOUT_OWN] = {[FANOUT_PARKED] = 1},
    [FANOUT_PARKED] = {[FANOUT_BORROWED] = 1, [FANOUT_CALLED] = 1, [FANOUT_OWN] = 1},
    [FANOUT_BORROWED] = {[FANOUT_PARKED] = 1, [FANOUT_CALLED] = 1, [FANOUT_RECLAIMING] = 1},
    [FANOUT_RECLAIMING] = {[FANOUT_CALLED] = 1},
    [FANOUT_CALLED] = {[FANOUT_OWN] = 1},
};

static const char *const state_names[FANOUT_STATES] = {"OWN", "PARKED", "BORROWED", "RECLAIMING",
                                                       "CALLED"};

/* As redis's serverAssert: a broken invariant is logged and ends the
 * process (the pool starts a fresh one); it is never compiled out. */
static _Noreturn void assert_failed(const char *what, fanout_state from, fanout_state to)
{
    rl_error("coalescing: %s (follower state %s -> %s): ending this process", what,
             (unsigned)from < FANOUT_STATES ? state_names[from] : "?",
             (unsigned)to < FANOUT_STATES ? state_names[to] : "?");
    abort();
}

/* Moves sub to state `to` (its copy's mutex held). */
static void set_state(fanout_sub *sub, fanout_state to)
{
    fanout_state from = sub->state;
    if ((unsigned)from >= FANOUT_STATES || (unsigned)to >= FANOUT_STATES || !allowed[from][to])
        assert_failed("a transition the fan-out never makes", from, to);
    sub->state = to;
}

/* ---- chunks ------------------------------------------------------------- */

/* Chunks in order: their bytes concatenated and where each ends. */
typedef struct chunk_list {
    rl_buf bytes;
    size_t *ends; /* ends[i]: end offset of chunk i in bytes */
    uint32_t n, cap;
} chunk_list;

static void chunks_init(chunk_list *c, size_t max_bytes)
{
    rl_buf_init(&c->bytes, max_bytes);
    c->ends = NULL;
    c->n = c->cap = 0;
}

static void chunks_release(chunk_list *c)
{
    rl_buf_release(&c->bytes);
    free(c->ends);
    c->ends = NULL;
    c->n = c->cap = 0;
}

/* 0, or -1 when out of memory or over the byte cap (c unchanged). */
static int chunks_append(chunk_list *c, const void *data, size_t len)
{
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 64;
        size_t *ends = realloc(c->ends, cap * sizeof *ends);
        if (!ends)
            return -1;
        c->ends = ends;
        c->cap = cap;
    }
    if (rl_buf_append(&c->bytes, data, len) != RL_OK)
        return -1;
    c->ends[c->n++] = c->bytes.len;
    return 0;
}

static const char *chunk_at(const chunk_list *c, uint32_t i, size_t *len)
{
    size_t start = i ? c->ends[i - 1] : 0;
    *len = c->ends[i] - start;
    return c->bytes.data + start;
}

/* Bytes of chunks from..n-1. */
static size_t chunks_bytes_from(const chunk_list *c, uint32_t from)
{
    return from >= c->n ? 0 : c->bytes.len - (from ? c->ends[from - 1] : 0);
}

/* ---- the trace ------------------------------------------------------------ */

typedef struct trace_mark {
    const char *what;
    char key_hex[17];
    uint32_t gen, seq;
    struct timespec at;
} trace_mark;

#define TRACE_MARKS 256
static _Thread_local trace_mark *trace_marks; /* non-NULL: deferring */
static _Thread_local unsigned trace_n;

static void trace_log(const trace_mark *m)
{
    rl_debug("flight %s gen %u chunk %u %s at %lld.%06ld", m->key_hex, m->gen, m->seq, m->what,
             (long long)m->at.tv_sec, m->at.tv_nsec / 1000);
}

void fanout_trace(const char *key_hex, uint32_t gen, const char *what, uint32_t seq)
{
    if (!rl_log_enabled(RL_LOG_DEBUG))
        return;
    trace_mark m = {.what = what, .gen = gen, .seq = seq};
    clock_gettime(CLOCK_REALTIME, &m.at);
    snprintf(m.key_hex, sizeof m.key_hex, "%s", key_hex);
    if (trace_marks && trace_n < TRACE_MARKS)
        trace_marks[trace_n++] = m;
    else
        trace_log(&m);
}

/* Defers this thread's trace lines until trace_flush() (when debugging). */
static void trace_defer(void)
{
    if (rl_log_enabled(RL_LOG_DEBUG) && !trace_marks)
        trace_marks = malloc(TRACE_MARKS * sizeof *trace_marks);
    trace_n = 0;
}

static void trace_flush(void)
{
    if (!trace_marks)
        return;
    for (unsigned i = 0; i < trace_n; i++)
        trace_log(&trace_marks[i]);
    free(trace_marks);
    trace_marks = NULL;
    trace_n = 0;
}

/* ---- the process-local copies ------------------------------------------- */

struct fanout_local {
    fanout_local *next;
    uint8_t key[STORE_KEY_LEN];
    uint32_t gen;
    int refs;           /* followers using it (under locals_mu) */
    pthread_mutex_t mu; /* guards everything below */
    int reading;        /* a follower is reading the store for everyone */
    uint64_t version;   /* bumped by every read */
    chunk_list chunks;  /* every chunk read so far; only the reader appends */
    fanout_sub *parked; /* followers asleep until called (see park()) */
    int broken;         /* out of memory or over max_buffer */
    rl_err err;         /* the last read's store error, RL_OK */
    store_flight rec;   /* the last record read */
    flight_state state; /* generation gen's state, as last read */
    int usage_known;    /* usage below was read from the complete answer */
    prov_usage usage;   /* its tokens, for every follower's account */
};

static pthread_mutex_t locals_mu = PTHREAD_MUTEX_INITIALIZER;
static fanout_local *locals;

static fanout_local *local_acquire(const uint8_t *key, uint32_t gen, size_t max_bytes)
{
    pthread_mutex_lock(&locals_mu);
    fanout_local *lf;
    for (lf = locals; lf; lf = lf->next)
        if (lf->gen == gen && memcmp(lf->key, key, STORE_KEY_LEN) == 0)
            break;
    if (!lf && (lf = calloc(1, sizeof *lf)) != NULL) {
        memcpy(lf->key, key, STORE_KEY_LEN);
        lf->gen = gen;
        chunks_init(&lf->chunks, max_bytes);
        pthread_mutex_init(&lf->mu, NULL);
        lf->next = locals;
        locals = lf;
    }
    if (lf)
        lf->refs++;
    pthread_mutex_unlock(&locals_mu);
    return lf;
}

/* Takes sub out of lf->parked (lf->mu held). */
static void unpark(fanout_local *lf, fanout_sub *sub)
{
    for (fanout_sub **p = &lf->parked; *p; p = &(*p)->next_parked)
        if (*p == sub) {
            *p = sub->next_parked;
            return;
        }
    assert_failed("a parked follower missing from its list", sub->state, sub->state);
}

/* Wakes a parked follower to look for itself (lf->mu held). */
static void call(fanout_local *lf, fanout_sub *sub)
{
    unpark(lf, sub);
    set_state(sub, FANOUT_CALLED);
    pthread_cond_signal(&sub->cond);
}

/* A reader is done writing for a borrowed follower: its own thread looks
 * for itself now (lf->mu held). */
static void give_back(fanout_sub *sub)
{
    set_state(sub, FANOUT_CALLED);
    pthread_cond_signal(&sub->cond);
}

/* A follower is done with lf. If it was the reader, a parked follower
 * must take the role now, not at its next tick: call one. */
static void local_release(fanout_local *lf)
{
    pthread_mutex_lock(&locals_mu);
    if (--lf->refs == 0) {
        for (fanout_local **p = &locals; *p; p = &(*p)->next)
            if (*p == lf) {
                *p = lf->next;
                break;
            }
        chunks_release(&lf->chunks);
        pthread_mutex_destroy(&lf->mu);
        free(lf);
    } else {
        pthread_mutex_lock(&lf->mu);
        if (!lf->reading && lf->parked)
            call(lf, lf->parked);
        pthread_mutex_unlock(&lf->mu);
    }
    pthread_mutex_unlock(&locals_mu);
}

void fanout_sub_init(fanout_sub *sub, const fanout_ops *ops, void *owner)
{
    memset(sub, 0, sizeof *sub);
    sub->ops = ops;
    sub->owner = owner;
    sub->state = FANOUT_OWN;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* park() waits on it */
    pthread_cond_init(&sub->cond, &attr);
    pthread_condattr_destroy(&attr);
}

void fanout_sub_release(fanout_sub *sub)
{
    if (sub->local)
        local_release(sub->local);
    sub->local = NULL;
    pthread_cond_destroy(&sub->cond);
}

void fanout_follow(fanout_sub *sub, const uint8_t key[STORE_KEY_LEN], uint32_t gen,
                   size_t max_bytes)
{
    if (sub->state != FANOUT_OWN)
        assert_failed("a follower changing generation while not its own", sub->state, FANOUT_OWN);
    if (sub->local)
        local_release(sub->local);
    sub->local = local_acquire(key, gen, max_bytes);
    sub->seen_version = 0;
    sub->next_seq = 0;
    sub->broken = sub->local == NULL;
}

/* ---- reading for everyone -------------------------------------------------- */

typedef struct fetched {
    chunk_list chunks;
    uint32_t first; /* number of the first chunk in the list */
    int broken;
} fetched;

static int on_fetched(void *ctx, uint32_t seq, const void *data, size_t len)
{
    fetched *t = ctx;
    if (seq != t->first + t->chunks.n || chunks_append(&t->chunks, data, len) != 0) {
        t->broken = 1;
        return 1;
    }
    return 0;
}

/* Reads what is new for lf from the store, once, without holding lf->mu. */
static rl_err fetch(store *s, fanout_local *lf, uint32_t from, fetched *t, store_flight *rec,
                    flight_state *state)
{
    t->chunks.n = 0;
    rl_buf_reset(&t->chunks.bytes);
    t->first = from;
    return store_flight_read(s, lf->key, lf->gen, from, on_fetched, t, rec, state);
}

/*
 * Fetches new chunks (called with lf->mu held and lf->reading set by the
 * caller); when there are none yet, waits for news (clock->wait) for up
 * to COALESCE_TICK_MS and fetches again. Merges the result into lf.
 * Returns with lf->mu held.
 */
static void local_refresh(store *s, fanout_local *lf, const coalesce_clock *clock, size_t max_bytes)
{
    uint32_t from = lf->chunks.n;
    pthread_mutex_unlock(&lf->mu);

    fetched t = {.broken = 0};
    chunks_init(&t.chunks, max_bytes);
    store_flight rec;
    flight_state state = FLIGHT_RUNNING;
    uint32_t ticket = store_flight_ticket(s, lf->key);
    rl_err err = fetch(s, lf, from, &t, &rec, &state);
    if (err == RL_OK && t.chunks.n == 0 && !t.broken && state == FLIGHT_RUNNING &&
        rec.gen == lf->gen) {
        clock->wait(clock->ctx, s, lf->key, ticket, COALESCE_TICK_MS);
        err = fetch(s, lf, from, &t, &rec, &state);
    }

    pthread_mutex_lock(&lf->mu);
    lf->err = err;
    if (err == RL_OK) {
        lf->rec = rec;
        lf->state = state;
        lf->broken |= t.broken;
        for (uint32_t i = 0; i < t.chunks.n && !lf->broken; i++) {
            size_t len;
            const char *p = chunk_at(&t.chunks, i, &len);
            if (chunks_append(&lf->chunks, p, len) != 0)
                lf->broken = 1;
        }
    }
    lf->version++;
    chunks_release(&t.chunks);
}

/* Hands chunks sub->next_seq.. of c, whose first chunk is number first,
 * to sub. */
static void deliver(fanout_sub *sub, const chunk_list *c, uint32_t first)
{
    for (uint32_t seq = sub->next_seq; seq - first < c->n && !sub->broken; seq++) {
        size_t len;
        const char *p = chunk_at(c, seq - first, &len);
        sub->next_seq = seq + 1;
        if (sub->ops->chunk(sub, seq, p, len) != 0)
            break;
    }
}

/* Whether what sub has not received of c can be handed over at once, by
 * any thread. */
static int deliverable(fanout_sub *sub, const chunk_list *c)
{
    return !sub->broken && !sub->ops->stopped(sub) &&
           sub->ops->ready(sub, chunks_bytes_from(c, sub->next_seq));
}

/*
 * The reader's second half (lf->mu held, lf->reading set): hands the new
 * chunks to every parked follower that can take them now, with lf->mu
 * released; parks them again if the flight goes on, else calls them, as
 * it calls every follower it could not serve.
 */
static void fan_out(fanout_local *lf)
{
    fanout_sub *batch = lf->parked;
    lf->parked = NULL;
    for (fanout_sub *p = batch; p; p = p->next_parked)
        set_state(p, FANOUT_BORROWED);
    int going_on =
        lf->err == RL_OK && !lf->broken && lf->state == FLIGHT_RUNNING && lf->rec.gen == lf->gen;
    pthread_mutex_unlock(&lf->mu);
    /* Nobody appends to lf->chunks while lf->reading is set, and a
     * borrowed follower's own thread waits until it is given back. */
    trace_defer();
    for (fanout_sub *p = batch; p; p = p->next_parked)
        if (p->next_seq < lf->chunks.n && deliverable(p, &lf->chunks))
            deliver(p, &lf->chunks, 0);
    trace_flush();
    pthread_mutex_lock(&lf->mu);

    while (batch) {
        fanout_sub *p = batch;
        batch = p->next_parked;
        if (going_on && p->state == FANOUT_BORROWED && !p->broken && !p->ops->stopped(p) &&
            p->next_seq == lf->chunks.n) {
            set_state(p, FANOUT_PARKED);
            p->next_parked = lf->parked;
            lf->parked = p;
        } else {
            if (p->next_seq < lf->chunks.n && !p->broken && !p->ops->stopped(p)) {
                char hex[17];
                ckey_hex16(lf->key, hex);
                rl_debug("flight %s gen %u: a follower's client is not ready for chunk %u; "
                         "it is written in the follower's own thread",
                         hex, lf->gen, p->next_seq);
            }
            give_back(p);
        }
    }
}

/*
 * Sleeps in lf->parked (lf->mu held) until called, or COALESCE_TICK_MS
 * passed for the protocol's checks; meanwhile a reader may write for it.
 * Returns out of the list and in state OWN.
 */
static void park(fanout_sub *sub)
{
    fanout_local *lf = sub->local;
    set_state(sub, FANOUT_PARKED);
    sub->next_parked = lf->parked;
    lf->parked = sub;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)COALESCE_TICK_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    while (sub->state == FANOUT_PARKED || sub->state == FANOUT_BORROWED)
        if (pthread_cond_timedwait(&sub->cond, &lf->mu, &until) != 0)
            break;
    if (sub->state == FANOUT_PARKED) { /* the tick passed; nobody borrowed it */
        unpark(lf, sub);
        set_state(sub, FANOUT_OWN);
        return;
    }
    if (sub->state == FANOUT_BORROWED) { /* the tick passed while a reader writes for it */
        set_state(sub, FANOUT_RECLAIMING);
        while (sub->state == FANOUT_RECLAIMING)
            pthread_cond_wait(&sub->cond, &lf->mu);
    }
    set_state(sub, FANOUT_OWN); /* from CALLED */
}

/* The reader's turn (lf->mu held, nobody reading): fetch, write for the
 * parked, hand the role back. Returns with lf->mu held. */
static void read_for_all(fanout_sub *sub, store *s, const coalesce_clock *clock, size_t max_bytes)
{
    fanout_local *lf = sub->local;
    lf->reading = 1;
    local_refresh(s, lf, clock, max_bytes);
    fan_out(lf);
    lf->reading = 0;
    /* The reader now writes its own chunks; if that may block on its
     * client, a parked follower reads for the others meanwhile. */
    if (lf->parked && sub->next_seq < lf->chunks.n && !deliverable(sub, &lf->chunks))
        call(lf, lf->parked);
}

void fanout_take_news(fanout_sub *sub, store *s, const coalesce_clock *clock, size_t max_bytes,
                      fanout_look *out)
{
    fanout_local *lf = sub->local;
    pthread_mutex_lock(&lf->mu);
    if (sub->next_seq >= lf->chunks.n && lf->version == sub->seen_version) {
        if (!lf->reading)
            read_for_all(sub, s, clock, max_bytes);
        else
            park(sub);
    }
    sub->seen_version = lf->version;
    out->err = lf->err;
    out->rec = lf->rec;
    out->state = lf->state;
    out->broken = lf->broken;
    out->known = lf->version > 0;
    out->nchunks = lf->chunks.n;
    uint32_t first = sub->next_seq;
    chunk_list copy;
    chunks_init(&copy, 0);
    for (uint32_t i = first; i < lf->chunks.n && !out->broken; i++) {
        size_t len;
        const char *p = chunk_at(&lf->chunks, i, &len);
        if (chunks_append(&copy, p, len) != 0)
            out->broken = 1;
    }
    pthread_mutex_unlock(&lf->mu);

    if (!out->broken)
        deliver(sub, &copy, first);
    chunks_release(&copy);
}

void fanout_usage(fanout_sub *sub, const prov_ops *prov, entry_kind kind, frame_kind framing,
                  prov_usage *out)
{
    fanout_local *lf = sub->local;
    *out = PROV_USAGE_UNKNOWN;
    if (!lf)
        return;
    pthread_mutex_lock(&lf->mu);
    if (!lf->usage_known && !lf->broken) {
        rl_buf answer;
        rl_buf_init(&answer, 0);
        rl_err err = RL_OK;
        for (uint32_t i = 1; i < lf->chunks.n && err == RL_OK; i++) {
            size_t len;
            const char *p = chunk_at(&lf->chunks, i, &len);
            err = rl_buf_append(&answer, p, len);
        }
        lf->usage = PROV_USAGE_UNKNOWN;
        if (err == RL_OK)
            prov->usage(kind, framing, answer.data, answer.len, &lf->usage);
        lf->usage_known = 1;
        rl_buf_release(&answer);
    }
    if (lf->usage_known)
        *out = lf->usage;
    pthread_mutex_unlock(&lf->mu);
}
