#include "engine/coalesce.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/base/rl_log.h"
#include "store/flight.h"

/* How long a follower sleeps between looks at the leader's liveness when
 * nothing arrives. Wake-ups for new chunks are immediate (futex); this only
 * bounds how late a dead leader is noticed: DESIGN asks for within 2 s. */
#define FOLLOW_TICK_MS 250
#define LIVENESS_CHECK_MS 500

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Debug-level trace of each chunk's way from leader to followers, with
 * wall-clock microseconds: tests/bench/coalesce_lag.mjs reads these lines to
 * measure the follower lag inside Relay (leader receives -> follower sent).
 * While a reader writes for many followers (fan_out) their lines wait in a
 * per-thread list and are logged after the burst: a log write between two
 * sends would slow the very thing measured.
 */
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

static void trace_chunk(const exchange *x, uint32_t gen, const char *what, uint32_t seq)
{
    if (!rl_log_enabled(RL_LOG_DEBUG))
        return;
    trace_mark m = {.what = what, .gen = gen, .seq = seq};
    clock_gettime(CLOCK_REALTIME, &m.at);
    memcpy(m.key_hex, x->key_hex, sizeof m.key_hex);
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
    store_flight_finish(exchange_store(x), x->key, x->flight.gen, FLIGHT_FAILED, 0, now_ms());
    x->flight.publishing = 0;
}

static void publish(exchange *x, const void *data, size_t len)
{
    trace_chunk(x, x->flight.gen, "received", x->flight.published);
    if (x->flight.published_bytes + len > x->cfg->coalesce.max_buffer) {
        fail_flight(x, "larger than [coalesce] max_buffer");
        return;
    }
    rl_err err = store_flight_append(exchange_store(x), x->key, x->flight.gen, x->flight.published,
                                     data, len, now_ms());
    x->flight.published++;
    x->flight.published_bytes += len;
    if (err == RL_NOTFOUND) {
        /* A follower believed this leader dead and took over: it leads now. */
        x->flight.publishing = 0;
    } else if (err != RL_OK) {
        fail_flight(x, rl_err_text(err));
    }
}

void coalesce_publish_head(exchange *x, int status, entry_kind kind, const char *content_type)
{
    if (!publishing(x) || x->flight.published > 0) /* the head is chunk 0 */
        return;
    rl_buf h;
    rl_buf_init(&h, 512);
    if (head_encode(&h, status, kind, content_type) == RL_OK)
        publish(x, h.data, h.len);
    else
        fail_flight(x, "cannot encode the head");
    rl_buf_release(&h);
}

void coalesce_publish_data(exchange *x, const char *data, size_t len)
{
    if (publishing(x) && len)
        publish(x, data, len);
}

void coalesce_publish_error(exchange *x, rl_err err, const char *message)
{
    if (!publishing(x) || x->flight.published > 0) /* the head is chunk 0 */
        return;
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
    if (!publishing(x))
        return;
    store_flight_finish(exchange_store(x), x->key, x->flight.gen,
                        complete ? FLIGHT_DONE : FLIGHT_FAILED, complete && reusable, now_ms());
    x->flight.publishing = 0;
}

int coalesce_has_followers(exchange *x)
{
    return publishing(x) && store_flight_attended(exchange_store(x), x->key, now_ms());
}

/* ---- one reader per process ------------------------------------------- */

/*
 * Followers of the same flight in one process share one reader: whichever
 * follower finds nobody reading fetches the new chunks from the store
 * (waiting on the futex for them) into a process-local copy, then writes
 * them itself for every follower that is parked (caught up and asleep)
 * and whose client can take them at once. Every other case goes back to
 * the follower's own thread: a client not ready for the bytes (so a slow
 * client never holds up the others), the end of the flight, a failure,
 * a new generation, and the liveness checks of follow().
 *
 * Chosen by measurement (tests/bench/coalesce_lag.mjs: 100 followers over
 * 4 processes on 2 cores, the web server and the clients on the same
 * cores; lag = the leader receives a chunk -> a follower's client is sent
 * it):
 * - each follower reading the store itself: a hundred threads queued on
 *   the latch of the same B-tree page for every chunk, p99 tens of ms;
 * - one reader per process, every follower woken to copy its chunk and
 *   write it: about 200 context switches per chunk (the broadcast, then
 *   the convoy on the copy's mutex) and the last writes of each burst
 *   queued behind the web server and the clients: p99 about 8 ms;
 * - the reader writing for parked followers: one wake-up per process and
 *   chunk, p99 2-3 ms (README.md, Benchmarks).
 */

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

typedef struct follower follower;

typedef struct local_flight {
    struct local_flight *next;
    uint8_t key[STORE_KEY_LEN];
    uint32_t gen;
    int refs;           /* followers using it (under locals_mu) */
    pthread_mutex_t mu; /* guards everything below */
    int reading;        /* a follower is refreshing for everyone */
    uint64_t version;   /* bumped by every refresh */
    chunk_list chunks;  /* every chunk read so far; only the reader appends */
    follower *parked;   /* followers asleep until called (see park()) */
    int broken;         /* out of memory or over max_buffer */
    rl_err err;         /* the last refresh's store error, RL_OK */
    store_flight rec;   /* the last record read */
    flight_state state; /* generation gen's state, as last read */
    int usage_known;    /* usage below was read from the complete answer */
    prov_usage usage;   /* its tokens, for every follower's account */
} local_flight;

struct follower {
    exchange *x;
    uint32_t gen;
    local_flight *lf;
    uint64_t seen_version;
    uint32_t next_seq;
    int have_head;
    head h;
    int live;    /* relaying a stream to a stream request as it comes */
    rl_buf held; /* everything else: collected, rendered at the end */
    int broken;  /* the head was unreadable or the answer too large */
    /* Parking, all under lf->mu. */
    follower *next_parked;
    int parked;          /* in lf->parked: the reader may write for it */
    int borrowed;        /* taken out of lf->parked by a reader writing for it */
    int called;          /* to look for itself: woken by call() */
    int awaiting_return; /* awake and waiting for the reader to give it back */
    pthread_cond_t cond; /* signalled by call() */
};

static pthread_mutex_t locals_mu = PTHREAD_MUTEX_INITIALIZER;
static local_flight *locals;

static local_flight *local_acquire(const uint8_t *key, uint32_t gen, size_t max_bytes)
{
    pthread_mutex_lock(&locals_mu);
    local_flight *lf;
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

/* Takes f out of lf->parked (lf->mu held). */
static void unpark(local_flight *lf, follower *f)
{
    for (follower **p = &lf->parked; *p; p = &(*p)->next_parked)
        if (*p == f) {
            *p = f->next_parked;
            break;
        }
    f->parked = 0;
}

/* Wakes a parked follower to look for itself (lf->mu held). */
static void call(local_flight *lf, follower *f)
{
    if (f->parked)
        unpark(lf, f);
    f->called = 1;
    pthread_cond_signal(&f->cond);
}

/* A follower is done with lf. If it was the reader, a parked follower
 * must take the role now, not at its next tick: call one. */
static void local_release(local_flight *lf)
{
    pthread_mutex_lock(&locals_mu);
    if (--lf->refs == 0) {
        for (local_flight **p = &locals; *p; p = &(*p)->next)
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
static rl_err fetch(store *s, local_flight *lf, uint32_t from, fetched *t, store_flight *rec,
                    flight_state *state)
{
    t->chunks.n = 0;
    rl_buf_reset(&t->chunks.bytes);
    t->first = from;
    return store_flight_read(s, lf->key, lf->gen, from, on_fetched, t, rec, state);
}

/*
 * Fetches new chunks (called with lf->mu held and lf->reading set by the
 * caller); when there are none yet, waits on the futex for up to
 * FOLLOW_TICK_MS and fetches again. Merges the result into lf. Returns
 * with lf->mu held.
 */
static void local_refresh(store *s, local_flight *lf, size_t max_bytes)
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
        store_flight_wait(s, lf->key, ticket, FOLLOW_TICK_MS);
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

/* ---- following --------------------------------------------------------- */

static void follower_reset(follower *f, uint32_t gen)
{
    if (f->lf)
        local_release(f->lf);
    f->lf = local_acquire(f->x->key, gen, f->x->cfg->coalesce.max_buffer);
    f->gen = gen;
    f->seen_version = 0;
    f->next_seq = 0;
    f->have_head = 0;
    f->live = 0;
    f->broken = f->lf == NULL;
    rl_buf_reset(&f->held);
}

static int on_chunk(follower *f, uint32_t seq, const void *data, size_t len)
{
    exchange *x = f->x;
    if (seq != f->next_seq)
        return 1; /* a gap cannot happen within a generation; stop reading */
    f->next_seq = seq + 1;
    if (seq == 0) {
        if (head_decode(data, len, &f->h) != 0) {
            f->broken = 1;
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
        trace_chunk(x, f->gen, "sent", seq);
        return 0;
    }
    if (rl_buf_append(&f->held, data, len) != RL_OK) {
        f->broken = 1;
        return 1;
    }
    return 0;
}

/* Hands chunks f->next_seq.. of c, whose first chunk is number first, to
 * f's client (or to the answer it collects). */
static void deliver(follower *f, const chunk_list *c, uint32_t first)
{
    for (uint32_t seq = f->next_seq; seq - first < c->n && !f->broken; seq++) {
        size_t len;
        const char *p = chunk_at(c, seq - first, &len);
        if (on_chunk(f, seq, p, len) != 0)
            break;
    }
}

/* Room for the status line and headers a live follower's head writes. */
#define HEAD_ALLOWANCE 4096

/* Whether what f has not received of c can be handed over at once, by any
 * thread: collecting never waits; writing only when the client is ready. */
static int deliverable(follower *f, const chunk_list *c)
{
    if (f->broken || f->x->client_gone)
        return 0;
    int writes = f->live || (!f->have_head && f->x->info.stream);
    return !writes || exchange_ready(f->x, chunks_bytes_from(c, f->next_seq) +
                                               (f->have_head ? 0 : HEAD_ALLOWANCE));
}

/*
 * The reader's second half (lf->mu held, lf->reading set): writes the new
 * chunks for every parked follower that can take them now, with lf->mu
 * released; parks them again if the flight goes on, else calls them, as
 * it calls every follower it could not serve.
 */
static void fan_out(local_flight *lf)
{
    follower *batch = lf->parked;
    lf->parked = NULL;
    for (follower *p = batch; p; p = p->next_parked) {
        p->parked = 0;
        p->borrowed = 1;
    }
    int going_on =
        lf->err == RL_OK && !lf->broken && lf->state == FLIGHT_RUNNING && lf->rec.gen == lf->gen;
    pthread_mutex_unlock(&lf->mu);
    /* Nobody appends to lf->chunks while lf->reading is set. */
    trace_defer();
    for (follower *p = batch; p; p = p->next_parked)
        if (p->next_seq < lf->chunks.n && deliverable(p, &lf->chunks))
            deliver(p, &lf->chunks, 0);
    trace_flush();
    pthread_mutex_lock(&lf->mu);

    while (batch) {
        follower *p = batch;
        batch = p->next_parked;
        p->borrowed = 0;
        if (going_on && !p->awaiting_return && !p->broken && !p->x->client_gone &&
            p->next_seq == lf->chunks.n) {
            p->next_parked = lf->parked;
            lf->parked = p;
            p->parked = 1;
        } else {
            if (p->next_seq < lf->chunks.n && !p->broken && !p->x->client_gone)
                rl_debug("flight %s gen %u: a follower's client is not ready for chunk %u; "
                         "it is written in the follower's own thread",
                         p->x->key_hex, lf->gen, p->next_seq);
            call(lf, p);
        }
    }
}

/*
 * Sleeps in lf->parked (lf->mu held) until called, or FOLLOW_TICK_MS passed
 * for follow()'s checks; meanwhile the reader may write for it. Returns
 * out of the list and owning its state again.
 */
static void park(follower *f)
{
    local_flight *lf = f->lf;
    f->called = 0;
    f->next_parked = lf->parked;
    lf->parked = f;
    f->parked = 1;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)FOLLOW_TICK_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    while (!f->called)
        if (pthread_cond_timedwait(&f->cond, &lf->mu, &until) != 0)
            break;
    while (f->borrowed) {
        f->awaiting_return = 1; /* fan_out() calls instead of parking it again */
        pthread_cond_wait(&f->cond, &lf->mu);
    }
    f->awaiting_return = 0;
    if (f->parked)
        unpark(lf, f);
}

/* The reader's turn (lf->mu held, nobody reading): fetch, write for the
 * parked, hand the role back. Returns with lf->mu held. */
static void read_for_all(follower *f)
{
    local_flight *lf = f->lf;
    lf->reading = 1;
    local_refresh(exchange_store(f->x), lf, f->x->cfg->coalesce.max_buffer);
    fan_out(lf);
    lf->reading = 0;
    /* The reader now writes its own chunks; if that may block on its
     * client, a parked follower reads for the others meanwhile. */
    if (lf->parked && f->next_seq < lf->chunks.n && !deliverable(f, &lf->chunks))
        call(lf, lf->parked);
}

/* The tokens of the complete shared answer (chunks 1.. of the local copy),
 * read once per process: what each follower saved. */
static void follower_usage(follower *f)
{
    local_flight *lf = f->lf;
    pthread_mutex_lock(&lf->mu);
    if (!lf->usage_known && f->have_head && !lf->broken) {
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
            f->x->prov->usage(f->h.kind, frame_kind_of(f->h.ctype), answer.data, answer.len,
                              &lf->usage);
        lf->usage_known = 1;
        rl_buf_release(&answer);
    }
    if (lf->usage_known)
        f->x->usage = lf->usage;
    pthread_mutex_unlock(&lf->mu);
}

/* The leader's answer is complete: hand it to the client in its form. */
static void follower_complete(follower *f)
{
    exchange *x = f->x;
    follower_usage(f);
    if (f->live) {
        exchange_flush(x);
        return;
    }
    if (!f->have_head || f->broken ||
        exchange_send_answer(x, f->h.status, f->h.kind, f->h.ctype, f->held.data, f->held.len,
                             "COALESCED", -1) != RL_OK)
        exchange_fail(x, RL_UPSTREAM_PROTOCOL, "The shared upstream answer could not be rendered.");
}

/* What a follower learned from the process-local copy in one look. */
typedef struct look {
    rl_err err;
    store_flight rec;
    flight_state state;
    int broken;
    int known;        /* a refresh happened since the follower started */
    uint32_t nchunks; /* chunks in the local copy at that moment */
} look;

/*
 * Brings the follower up to date: when it has everything the local copy
 * holds, it reads the store for everyone if nobody is, else parks until
 * the reader has news for it. Then it takes the chunks it still lacks
 * from the copy and delivers them with lf->mu released (so a slow client
 * holds up nobody else), and reports what it saw.
 */
static void take_news(follower *f, look *out)
{
    local_flight *lf = f->lf;
    pthread_mutex_lock(&lf->mu);
    if (f->next_seq >= lf->chunks.n && lf->version == f->seen_version) {
        if (!lf->reading)
            read_for_all(f);
        else
            park(f);
    }
    f->seen_version = lf->version;
    out->err = lf->err;
    out->rec = lf->rec;
    out->state = lf->state;
    out->broken = lf->broken;
    out->known = lf->version > 0;
    out->nchunks = lf->chunks.n;
    uint32_t first = f->next_seq;
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
        deliver(f, &copy, first);
    chunks_release(&copy);
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
    uint64_t last_progress = now_ms(), last_check = last_progress;
    uint64_t max_wait_ms = (uint64_t)x->cfg->coalesce.max_wait * 1000;

    for (;;) {
        /* A leader whose own client left goes on for us (coalesce_has_followers). */
        store_flight_attend(s, x->key, now_ms());
        if (f->broken) {
            if (!x->started)
                goto alone;
            exchange_fail(x, RL_UPSTREAM_PROTOCOL, "The shared upstream answer was unreadable.");
            break;
        }
        uint32_t before = f->next_seq;
        look l;
        take_news(f, &l);
        if (x->client_gone)
            break;
        if (l.broken || f->broken) {
            f->broken = 1;
            continue;
        }
        if (l.err != RL_OK) {
            /* The flight vanished or the store failed: go alone if we can. */
            if (!x->started)
                goto alone;
            exchange_fail(x, RL_UPSTREAM_CUT, "The shared upstream call was lost.");
            break;
        }
        if (f->next_seq != before)
            last_progress = now_ms();
        if (!l.known || f->next_seq < l.nchunks)
            continue; /* more to deliver before the state counts */
        if (l.state == FLIGHT_DONE) {
            follower_complete(f);
            break;
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
            break;
        }
        if (l.rec.gen != f->gen) {
            /* Our generation runs on but is no longer current (cannot
             * happen while its leader lives): treat it as lost. */
            if (x->started) {
                exchange_fail(x, RL_UPSTREAM_CUT, "The shared upstream call was lost.");
                break;
            }
            follower_reset(f, l.rec.gen);
            continue;
        }

        uint64_t now = now_ms();
        if (now - last_check < LIVENESS_CHECK_MS && now - last_progress < max_wait_ms)
            continue;
        last_check = now;
        int leader_dead = !store_flight_leader_alive(&l.rec);
        if (!leader_dead && now - last_progress < max_wait_ms)
            continue;
        if (x->started) {
            exchange_fail(x, leader_dead ? RL_UPSTREAM_CUT : RL_UPSTREAM_TIMEOUT,
                          "The shared upstream call was lost.");
            break;
        }
        if (!leader_dead) {
            rl_warn("follower of %s: no progress for %ld s; calling upstream alone", x->key_hex,
                    x->cfg->coalesce.max_wait);
            goto alone;
        }
        int won = 0;
        store_flight next;
        if (store_flight_takeover(s, x->key, f->gen, now, &next, &won) != RL_OK)
            goto alone;
        if (won) {
            rl_warn("leader of %s (pid %d) died: taking over", x->key_hex, (int)l.rec.leader_pid);
            x->flight.gen = next.gen;
            x->flight.leading = 1;
            x->flight.publishing = 1;
            x->flight.published = 0;
            x->flight.published_bytes = 0;
            return COALESCE_LEAD;
        }
        follower_reset(f, next.gen);
    }
    return COALESCE_ANSWERED;
alone:
    return COALESCE_ALONE;
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
    rl_err err = store_flight_join(s, x->key, now_ms(), 0, &f, &leader);
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
    rl_buf_init(&fw.held, x->cfg->cache.max_response);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* park() waits on it */
    pthread_cond_init(&fw.cond, &attr);
    pthread_condattr_destroy(&attr);
    follower_reset(&fw, f.gen);
    coalesce_outcome out = follow(&fw);
    if (fw.lf)
        local_release(fw.lf);
    pthread_cond_destroy(&fw.cond);
    rl_buf_release(&fw.held);
    if (out == COALESCE_ALONE)
        x->flight.active = 0;
    return out;
}
