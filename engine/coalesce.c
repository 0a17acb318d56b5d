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

/* Debug-level trace of each chunk's way from leader to followers, with
 * wall-clock microseconds: tests/bench/coalesce_lag.mjs reads these lines to
 * measure the follower lag inside Relay (leader receives -> follower sent). */
static void trace_chunk(const exchange *x, const char *what, uint32_t seq)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rl_debug("flight %s gen %u chunk %u %s at %lld.%06ld", x->key_hex, x->flight.gen, seq, what,
             (long long)ts.tv_sec, ts.tv_nsec / 1000);
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
    char kind;
    int used = 0;
    if (sscanf(text, "%d %c %n", &h->status, &kind, &used) != 2 || used == 0)
        return -1;
    h->kind = kind == 's' ? ENTRY_STREAM : ENTRY_BODY;
    snprintf(h->ctype, sizeof h->ctype, "%s", text + used);
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
    trace_chunk(x, "received", x->flight.published);
    x->flight.published++;
    rl_err err = store_flight_append(exchange_store(x), x->key, x->flight.gen, data, len,
                                     x->cfg->coalesce.max_buffer, now_ms());
    if (err == RL_TOO_LARGE)
        fail_flight(x, "larger than [coalesce] max_buffer");
    else if (err == RL_NOTFOUND) {
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
    if (!publishing(x))
        return 0;
    store_flight f;
    flight_state state;
    if (store_flight_read(exchange_store(x), x->key, x->flight.gen, UINT32_MAX, NULL, NULL, &f,
                          &state) != RL_OK)
        return 0;
    return f.gen == x->flight.gen && f.followers > 0;
}

/* ---- one reader per process ------------------------------------------- */

/*
 * Followers of the same flight in one process share one reader: whichever
 * follower finds nobody reading fetches the new chunks from the store
 * (waiting on the futex for them when there are none) into a process-local
 * copy, and the others take them from there. Measured with 100 followers:
 * when every follower read the store itself, a hundred threads queued on
 * the latch of the same B-tree page for every chunk and the lag's p99 was
 * tens of milliseconds; with one reader per process it is a few.
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

typedef struct local_flight {
    struct local_flight *next;
    uint8_t key[STORE_KEY_LEN];
    uint32_t gen;
    int refs;            /* followers using it (under locals_mu) */
    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cond; /* a refresh finished */
    int reading;         /* a follower is refreshing for everyone */
    uint64_t version;    /* bumped by every refresh */
    chunk_list chunks;   /* every chunk read so far */
    int broken;          /* out of memory or over max_response */
    rl_err err;          /* the last refresh's store error, RL_OK */
    store_flight rec;    /* the last record read */
    flight_state state;  /* generation gen's state, as last read */
} local_flight;

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
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&lf->cond, &attr);
        pthread_condattr_destroy(&attr);
        lf->next = locals;
        locals = lf;
    }
    if (lf)
        lf->refs++;
    pthread_mutex_unlock(&locals_mu);
    return lf;
}

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
        pthread_cond_destroy(&lf->cond);
        free(lf);
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
 * The reader's turn (called with lf->mu held and nobody reading): fetches
 * new chunks; when there are none yet, waits on the futex for up to
 * FOLLOW_TICK_MS and fetches again. Merges the result into lf and wakes
 * the other followers. Returns with lf->mu held.
 */
static void local_refresh(store *s, local_flight *lf, size_t max_bytes)
{
    lf->reading = 1;
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
    lf->reading = 0;
    pthread_cond_broadcast(&lf->cond);
    chunks_release(&t.chunks);
}

/* ---- following --------------------------------------------------------- */

typedef struct follower {
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
} follower;

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

static int on_chunk(void *ctx, uint32_t seq, const void *data, size_t len)
{
    follower *f = ctx;
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
        f->live = success && f->h.kind == ENTRY_STREAM && x->info.stream;
        if (f->live) {
            exchange_start(x, f->h.status, f->h.ctype, "COALESCED", -1, 0);
            exchange_flush(x);
        }
        return 0;
    }
    if (f->live) {
        exchange_write(x, data, len);
        exchange_flush(x);
        trace_chunk(x, "sent", seq);
        return 0;
    }
    if (rl_buf_append(&f->held, data, len) != RL_OK) {
        f->broken = 1;
        return 1;
    }
    return 0;
}

/* The leader's answer is complete: hand it to the client in its form. */
static void follower_complete(follower *f)
{
    exchange *x = f->x;
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
 * Takes the chunks this follower has not delivered yet from the local
 * copy (refreshing it from the store when nobody else is, or waiting for
 * the one who is), then delivers them with lf->mu released, so a slow
 * client never holds up the other followers.
 */
static void take_news(follower *f, look *out)
{
    exchange *x = f->x;
    local_flight *lf = f->lf;
    pthread_mutex_lock(&lf->mu);
    if (f->next_seq >= lf->chunks.n && lf->version == f->seen_version) {
        if (!lf->reading) {
            local_refresh(exchange_store(x), lf, x->cfg->coalesce.max_buffer);
        } else {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += (long)FOLLOW_TICK_MS * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (lf->reading && lf->version == f->seen_version)
                if (pthread_cond_timedwait(&lf->cond, &lf->mu, &until) != 0)
                    break;
        }
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

    for (uint32_t i = 0; i < copy.n && !out->broken && !f->broken; i++) {
        size_t len;
        const char *p = chunk_at(&copy, i, &len);
        if (on_chunk(f, first + i, p, len) != 0)
            break;
    }
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
                /* (a takeover carries the follower count over) */
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
            return COALESCE_LEAD;
        }
        follower_reset(f, next.gen);
    }
    store_flight_leave(s, x->key, f->gen);
    return COALESCE_ANSWERED;
alone:
    store_flight_leave(s, x->key, f->gen);
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
    follower_reset(&fw, f.gen);
    coalesce_outcome out = follow(&fw);
    if (fw.lf)
        local_release(fw.lf);
    rl_buf_release(&fw.held);
    if (out == COALESCE_ANSWERED)
        exchange_count(x, "requests.coalesced");
    if (out == COALESCE_ALONE)
        x->flight.active = 0;
    return out;
}
