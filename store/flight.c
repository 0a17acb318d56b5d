/*
 * flight.c — the in-flight table (see flight.h).
 *
 * Two databases in the store's environment, encrypted like the rest:
 *   flights  key (32 bytes) -> record (fixed 48 bytes, below)
 *   chunks   key (32) + generation (4, big-endian) + seq (4, big-endian)
 *            -> written_ms (8) + the chunk's bytes
 * A generation's end is written as one more chunk, number END_SEQ, holding
 * its final state, so readers of a generation that a newer one replaced can
 * still tell how it ended.
 *
 * Why a futex wake-up rather than polling the database: followers must see
 * a chunk within a few milliseconds (p99 <= 5 ms with 100 followers, see
 * tests/bench/). Polling at that rate means 100 followers x 200+ reads/s of
 * the store per key for every stream, most of them finding nothing, and
 * still a 2.5 ms average delay; a futex wakes every follower within tens of
 * microseconds of the commit and costs nothing while the stream is silent.
 * tests/bench/coalesce_lag.mjs measures the result.
 */
#include "store/flight.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/store_int.h"
#include "store/wake.h"

#define REC_LEN 48
#define CHUNK_KEY_LEN (STORE_KEY_LEN + 8)
#define END_SEQ UINT32_MAX
/* A leader silent this long with a dead process is removed by maintenance
 * even if no follower is left to take over. */
#define DEAD_LEADER_KEEP_MS 5000

/* Record layout: gen 4, state 1, reusable 1, pad 2, leader_pid 4,
 * unused 12 (once chunk and byte counts), started 8, updated 8, unused 8
 * (once a follower count). */
static void rec_encode(uint8_t *b, const store_flight *f)
{
    memset(b, 0, REC_LEN);
    store_put32(b, f->gen);
    b[4] = (uint8_t)f->state;
    b[5] = (uint8_t)f->reusable;
    store_put32(b + 8, (uint32_t)f->leader_pid);
    store_put64(b + 24, f->started_ms);
    store_put64(b + 32, f->updated_ms);
}

static void rec_decode(const uint8_t *b, store_flight *f)
{
    f->gen = store_get32(b);
    f->state = b[4] <= FLIGHT_FAILED ? (flight_state)b[4] : FLIGHT_FAILED;
    f->reusable = b[5];
    f->leader_pid = (int32_t)store_get32(b + 8);
    f->started_ms = store_get64(b + 24);
    f->updated_ms = store_get64(b + 32);
}

static void chunk_key(uint8_t *out, const uint8_t *key, uint32_t gen, uint32_t seq)
{
    memcpy(out, key, STORE_KEY_LEN);
    store_put32(out + STORE_KEY_LEN, gen);
    store_put32(out + STORE_KEY_LEN + 4, seq);
}

int store_flight_leader_alive(const store_flight *f)
{
    if (f->leader_pid <= 0)
        return 0;
    return kill((pid_t)f->leader_pid, 0) == 0 || errno == EPERM;
}

/* Reads the record; flags: 0, DB_RMW (a write lock) or DB_READ_COMMITTED
 * (a read lock released at once). 0, DB_NOTFOUND or a Berkeley DB error. */
static int rec_get(handles *h, DB_TXN *txn, const uint8_t *key, store_flight *f, u_int32_t flags)
{
    uint8_t buf[REC_LEN];
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_out(&d, buf, sizeof buf);
    int ret = h->flights->get(h->flights, txn, &k, &d, flags);
    if (ret == 0) {
        if (d.size != REC_LEN)
            return DB_NOTFOUND; /* a record of another layout: treat as absent */
        rec_decode(buf, f);
    }
    return ret;
}

static int rec_put(handles *h, DB_TXN *txn, const uint8_t *key, const store_flight *f)
{
    uint8_t buf[REC_LEN];
    rec_encode(buf, f);
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_in(&d, buf, REC_LEN);
    return h->flights->put(h->flights, txn, &k, &d, 0);
}

static int chunk_put(handles *h, DB_TXN *txn, const uint8_t *key, uint32_t gen, uint32_t seq,
                     uint64_t now_ms, const void *data, size_t len)
{
    uint8_t ck[CHUNK_KEY_LEN];
    chunk_key(ck, key, gen, seq);
    uint8_t *value = malloc(8 + len);
    if (!value)
        return ENOMEM;
    store_put64(value, now_ms);
    if (len)
        memcpy(value + 8, data, len);
    DBT k, d;
    dbt_in(&k, ck, sizeof ck);
    dbt_in(&d, value, 8 + len);
    int ret = h->chunks->put(h->chunks, txn, &k, &d, 0);
    free(value);
    return ret;
}

/* Deletes every chunk of (key, gen). */
static int chunks_drop(handles *h, DB_TXN *txn, const uint8_t *key, uint32_t gen)
{
    DBC *c = NULL;
    int ret = h->chunks->cursor(h->chunks, txn, &c, 0);
    if (ret)
        return ret;
    uint8_t ck[CHUNK_KEY_LEN];
    chunk_key(ck, key, gen, 0);
    DBT k, d;
    dbt_out(&k, ck, sizeof ck);
    k.size = sizeof ck;
    dbt_part(&d, NULL, 0, 0); /* keys only */
    ret = c->get(c, &k, &d, DB_SET_RANGE | DB_RMW);
    while (ret == 0) {
        if (k.size != CHUNK_KEY_LEN || memcmp(ck, key, STORE_KEY_LEN) != 0 ||
            store_get32(ck + STORE_KEY_LEN) != gen)
            break;
        if ((ret = c->del(c, 0)) != 0)
            break;
        ret = c->get(c, &k, &d, DB_NEXT | DB_RMW);
    }
    int closed = c->close(c);
    if (ret == DB_NOTFOUND)
        ret = 0;
    return ret ? ret : closed;
}

/* ---- join ---------------------------------------------------------------- */

typedef struct join_arg {
    const uint8_t *key;
    uint64_t now_ms, linger_ms;
    store_flight *out;
    int *leader;
} join_arg;

static int replaceable(const store_flight *f, uint64_t now_ms, uint64_t linger_ms)
{
    switch (f->state) {
    case FLIGHT_FAILED:
        return 1;
    case FLIGHT_DONE:
        return !f->reusable || now_ms - f->updated_ms > linger_ms;
    case FLIGHT_RUNNING:
        return !store_flight_leader_alive(f);
    }
    return 1;
}

/* Follows without writing when a read shows a flight to follow: a
 * flight that ends or is replaced meanwhile is seen by the follower's
 * reads, as if it had joined a moment earlier. */
static int peek_body(handles *h, DB_TXN *txn, op *o)
{
    join_arg *a = o->arg;
    store_flight f;
    int ret = rec_get(h, txn, a->key, &f, 0);
    if (ret != 0 && ret != DB_NOTFOUND)
        return ret;
    *a->leader = ret == DB_NOTFOUND || replaceable(&f, a->now_ms, a->linger_ms);
    if (!*a->leader)
        *a->out = f;
    return 0;
}

static int join_body(handles *h, DB_TXN *txn, op *o)
{
    join_arg *a = o->arg;
    store_flight f;
    memset(&f, 0, sizeof f);
    int ret = rec_get(h, txn, a->key, &f, DB_RMW);
    if (ret != 0 && ret != DB_NOTFOUND)
        return ret;
    if (ret == 0 && !replaceable(&f, a->now_ms, a->linger_ms)) {
        *a->leader = 0; /* someone started it since the peek */
        *a->out = f;
        return 0;
    }
    /* A key's first generation is numbered from the clock, not 1: chunks
     * of an earlier flight of the key may outlive its record for a while
     * (until the chunk sweep reaches them), and must not be read as this
     * one's. */
    uint32_t gen = ret == 0 ? f.gen + 1 : (uint32_t)a->now_ms;
    if (gen == 0)
        gen = 1;
    memset(&f, 0, sizeof f);
    f.gen = gen;
    f.state = FLIGHT_RUNNING;
    f.leader_pid = (int32_t)getpid();
    f.started_ms = f.updated_ms = a->now_ms;
    *a->leader = 1;
    *a->out = f;
    return rec_put(h, txn, a->key, &f);
}

rl_err store_flight_join(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms,
                         uint64_t linger_ms, store_flight *out, int *leader)
{
    join_arg a = {key, now_ms, linger_ms, out, leader};
    op peek = {.what = "looking for an in-flight request",
               .body = peek_body,
               .arg = &a,
               .read_committed = 1};
    rl_err err = store_op_run(s, &peek);
    if (err == RL_OK && *leader) {
        op o = {.what = "joining an in-flight request", .body = join_body, .arg = &a};
        err = store_op_run(s, &o);
    }
    if (err == RL_OK && !*leader)
        store_flight_attend(s, key, now_ms);
    return err;
}

/* ---- leader: append and finish ------------------------------------------ */

typedef struct append_arg {
    const uint8_t *key;
    uint32_t gen, seq;
    const void *data;
    size_t len;
    uint64_t now_ms;
} append_arg;

/* The record is only read (and its lock let go at once): the flights table
 * is one or two pages that every stream's leader would otherwise write on
 * every chunk. A takeover committed just after the check leaves this chunk
 * in a generation nobody reads any more; maintenance removes it. */
static int append_body(handles *h, DB_TXN *txn, op *o)
{
    append_arg *a = o->arg;
    store_flight f;
    int ret = rec_get(h, txn, a->key, &f, DB_READ_COMMITTED);
    if (ret == DB_NOTFOUND || (ret == 0 && (f.gen != a->gen || f.state != FLIGHT_RUNNING))) {
        o->err = RL_NOTFOUND;
        return 0;
    }
    if (ret)
        return ret;
    return chunk_put(h, txn, a->key, a->gen, a->seq, a->now_ms, a->data, a->len);
}

rl_err store_flight_append(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen, uint32_t seq,
                           const void *data, size_t len, uint64_t now_ms)
{
    append_arg a = {key, gen, seq, data, len, now_ms};
    op o = {.what = "publishing a chunk for followers", .body = append_body, .arg = &a};
    rl_err err = store_op_run(s, &o);
    if (err == RL_OK)
        wake_bump(store_wake_of(s), wake_slot(key));
    return err;
}

typedef struct finish_arg {
    const uint8_t *key;
    uint32_t gen;
    flight_state state;
    int reusable;
    uint64_t now_ms;
} finish_arg;

static int finish_body(handles *h, DB_TXN *txn, op *o)
{
    finish_arg *a = o->arg;
    store_flight f;
    int ret = rec_get(h, txn, a->key, &f, DB_RMW);
    if (ret == DB_NOTFOUND || (ret == 0 && f.gen != a->gen)) {
        o->err = RL_NOTFOUND;
        return 0;
    }
    if (ret)
        return ret;
    uint8_t end = (uint8_t)a->state;
    if ((ret = chunk_put(h, txn, a->key, f.gen, END_SEQ, a->now_ms, &end, 1)) != 0)
        return ret;
    f.state = a->state;
    f.reusable = a->state == FLIGHT_DONE && a->reusable;
    f.updated_ms = a->now_ms;
    return rec_put(h, txn, a->key, &f);
}

rl_err store_flight_finish(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen,
                           flight_state state, int reusable, uint64_t now_ms)
{
    finish_arg a = {key, gen, state, reusable, now_ms};
    op o = {.what = "ending an in-flight request", .body = finish_body, .arg = &a};
    rl_err err = store_op_run(s, &o);
    if (err == RL_OK)
        wake_bump(store_wake_of(s), wake_slot(key));
    return err;
}

/* ---- followers: read, leave, take over ---------------------------------- */

typedef struct read_arg {
    const uint8_t *key;
    uint32_t gen, from;
    int want_chunks;
    store_flight *out;
    flight_state *gen_state;
    rl_buf *copied; /* (seq 4, len 4, bytes) records */
} read_arg;

static int read_body(handles *h, DB_TXN *txn, op *o)
{
    read_arg *a = o->arg;
    rl_buf_reset(a->copied);
    int ret = rec_get(h, txn, a->key, a->out, 0);
    if (ret)
        return ret; /* DB_NOTFOUND becomes RL_NOTFOUND */
    *a->gen_state = a->out->gen == a->gen ? a->out->state : FLIGHT_RUNNING;

    DBC *c = NULL;
    if ((ret = h->chunks->cursor(h->chunks, txn, &c, 0)) != 0)
        return ret;
    uint8_t ck[CHUNK_KEY_LEN];
    chunk_key(ck, a->key, a->gen, a->want_chunks ? a->from : END_SEQ);
    DBT k, d;
    dbt_out(&k, ck, sizeof ck);
    k.size = sizeof ck;
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_MALLOC;
    int seen_end = 0;
    ret = c->get(c, &k, &d, DB_SET_RANGE);
    while (ret == 0) {
        if (k.size != CHUNK_KEY_LEN || memcmp(ck, a->key, STORE_KEY_LEN) != 0 ||
            store_get32(ck + STORE_KEY_LEN) != a->gen) {
            free(d.data);
            break;
        }
        uint32_t seq = store_get32(ck + STORE_KEY_LEN + 4);
        const uint8_t *p = d.data;
        if (d.size < 8) {
            free(d.data);
            ret = DB_NOTFOUND; /* unreadable: let the caller see it as gone */
            break;
        }
        if (seq == END_SEQ) {
            seen_end = 1;
            *a->gen_state = d.size > 8 && p[8] == FLIGHT_DONE ? FLIGHT_DONE : FLIGHT_FAILED;
        } else {
            uint8_t hdr[8];
            store_put32(hdr, seq);
            store_put32(hdr + 4, d.size - 8);
            rl_err e = rl_buf_append(a->copied, hdr, sizeof hdr);
            if (e == RL_OK)
                e = rl_buf_append(a->copied, p + 8, d.size - 8);
            if (e != RL_OK) {
                free(d.data);
                c->close(c);
                o->err = e;
                return 0;
            }
        }
        free(d.data);
        d.data = NULL;
        ret = c->get(c, &k, &d, DB_NEXT);
    }
    int closed = c->close(c);
    if (ret == DB_NOTFOUND)
        ret = 0;
    /* A generation that was replaced without an end was abandoned. */
    if (!seen_end && a->out->gen != a->gen)
        *a->gen_state = FLIGHT_FAILED;
    return ret ? ret : closed;
}

rl_err store_flight_read(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen, uint32_t from,
                         store_flight_chunk_fn fn, void *ctx, store_flight *out,
                         flight_state *gen_state)
{
    rl_buf copied;
    rl_buf_init(&copied, 0);
    read_arg a = {key, gen, from, fn != NULL, out, gen_state, &copied};
    op o = {
        .what = "reading an in-flight request", .body = read_body, .arg = &a, .read_committed = 1};
    rl_err err = store_op_run(s, &o);
    if (err == RL_OK && fn) {
        const uint8_t *p = (const uint8_t *)copied.data;
        const uint8_t *end = p + copied.len;
        while (p && p + 8 <= end) {
            uint32_t seq = store_get32(p), len = store_get32(p + 4);
            if (fn(ctx, seq, p + 8, len) != 0)
                break;
            p += 8 + len;
        }
    }
    rl_buf_release(&copied);
    return err;
}

void store_flight_attend(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms)
{
    wake_mark(store_wake_of(s), wake_slot(key), now_ms);
}

int store_flight_attended(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms)
{
    uint64_t mark = wake_marked(store_wake_of(s), wake_slot(key));
    return mark != 0 && (mark >= now_ms || now_ms - mark <= FLIGHT_ATTEND_MS);
}

typedef struct takeover_arg {
    const uint8_t *key;
    uint32_t old_gen;
    uint64_t now_ms;
    store_flight *out;
    int *won;
} takeover_arg;

static int takeover_body(handles *h, DB_TXN *txn, op *o)
{
    takeover_arg *a = o->arg;
    *a->won = 0;
    int ret = rec_get(h, txn, a->key, a->out, DB_RMW);
    if (ret)
        return ret;
    store_flight *f = a->out;
    if (f->gen != a->old_gen || f->state != FLIGHT_RUNNING || store_flight_leader_alive(f))
        return 0;
    /* The dead leader's chunks are of no use to anyone: followers that
     * streamed them end with an error, the others start over. */
    if ((ret = chunks_drop(h, txn, a->key, a->old_gen)) != 0)
        return ret;
    memset(f, 0, sizeof *f);
    f->gen = a->old_gen + 1;
    f->state = FLIGHT_RUNNING;
    f->leader_pid = (int32_t)getpid();
    f->started_ms = f->updated_ms = a->now_ms;
    *a->won = 1;
    return rec_put(h, txn, a->key, f);
}

rl_err store_flight_takeover(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t old_gen,
                             uint64_t now_ms, store_flight *out, int *won)
{
    takeover_arg a = {key, old_gen, now_ms, out, won};
    op o = {.what = "taking over an in-flight request", .body = takeover_body, .arg = &a};
    rl_err err = store_op_run(s, &o);
    if (err == RL_OK && *won)
        wake_bump(store_wake_of(s), wake_slot(key)); /* the others see the new generation */
    return err;
}

typedef struct each_arg {
    unsigned max;
    rl_buf *copied; /* key + record of each flight, copied out of the transaction */
} each_arg;

static int each_body(handles *h, DB_TXN *txn, op *o)
{
    each_arg *a = o->arg;
    rl_buf_reset(a->copied);
    DBC *c = NULL;
    int ret = h->flights->cursor(h->flights, txn, &c, 0);
    if (ret)
        return ret;
    uint8_t key[STORE_KEY_LEN], rec[REC_LEN];
    DBT k, d;
    dbt_out(&k, key, sizeof key);
    dbt_out(&d, rec, sizeof rec);
    unsigned n = 0;
    for (ret = c->get(c, &k, &d, DB_FIRST); ret == 0 && n < a->max;
         ret = c->get(c, &k, &d, DB_NEXT)) {
        if (k.size != STORE_KEY_LEN || d.size != REC_LEN)
            continue;
        rl_err e = rl_buf_append(a->copied, key, sizeof key);
        if (e == RL_OK)
            e = rl_buf_append(a->copied, rec, sizeof rec);
        if (e != RL_OK) {
            o->err = e;
            break;
        }
        n++;
    }
    if (ret == DB_NOTFOUND || ret == DB_BUFFER_SMALL)
        ret = 0;
    int closed = c->close(c);
    return ret ? ret : closed;
}

rl_err store_flight_each(store *s, unsigned max,
                         int (*fn)(void *ctx, const uint8_t key[STORE_KEY_LEN],
                                   const store_flight *f),
                         void *ctx)
{
    rl_buf copied;
    rl_buf_init(&copied, 0);
    each_arg a = {max, &copied};
    op o = {
        .what = "listing in-flight requests", .body = each_body, .arg = &a, .read_committed = 1};
    rl_err err = store_op_run(s, &o);
    for (size_t at = 0; err == RL_OK && at + STORE_KEY_LEN + REC_LEN <= copied.len;
         at += STORE_KEY_LEN + REC_LEN) {
        const uint8_t *p = (const uint8_t *)copied.data + at;
        store_flight f;
        rec_decode(p + STORE_KEY_LEN, &f);
        if (fn(ctx, p, &f) != 0)
            break;
    }
    rl_buf_release(&copied);
    return err;
}

uint32_t store_flight_ticket(store *s, const uint8_t key[STORE_KEY_LEN])
{
    return wake_ticket(store_wake_of(s), wake_slot(key));
}

void store_flight_wait(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t ticket, int timeout_ms)
{
    wake_wait(store_wake_of(s), wake_slot(key), ticket, timeout_ms);
}

/* ---- maintenance ---------------------------------------------------------- */

/*
 * Removes what no reader needs any more: flights finished longer than
 * FLIGHT_KEEP_MS ago and flights whose leader died DEAD_LEADER_KEEP_MS ago
 * with nobody taking over (with their chunks), and chunks written longer
 * than FLIGHT_KEEP_MS ago of generations that are not running.
 *
 * A sweep finds work with read-committed reads, which dirty no page and
 * hold one read lock at a time, and then removes what it found in small
 * transactions that decide again where the answer could have changed.
 * Why: the sweeps used to walk the tables with write locks (DB_RMW).
 * Waiting for the latch of the flights table's root page behind a
 * hundred followers' readers, such a walk held its lock on that page for
 * seconds, and every leader and joiner with it
 * (tests/bench/coalesce_lag.mjs --workers 50 --pool-threads 2).
 */
#define SWEEP_SCAN 512   /* records looked at per read-only transaction */
#define SWEEP_TIME_MS 50 /* one maintenance run sweeps at most about this long */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct sweep sweep;
struct sweep {
    const char *what; /* for log lines */
    size_t key_len;
    size_t data_len; /* bytes of each record the decision needs (from the start) */
    unsigned batch;  /* removals per transaction */
    DB *(*table)(handles *h);
    /* Sets *is_stale for a record, within the scan's transaction. 0 or a
     * Berkeley DB error. */
    int (*stale)(handles *h, DB_TXN *txn, const uint8_t *key, const uint8_t *data, size_t data_size,
                 uint64_t now_ms, int *is_stale);
    /* Removes one stale record found by a scan, checking what may have
     * changed since. */
    int (*remove)(handles *h, DB_TXN *txn, const uint8_t *key, uint64_t now_ms);
    /* Where the next scan starts (one maintenance thread per process runs
     * sweeps, see store_maintain: no lock). */
    uint8_t resume[CHUNK_KEY_LEN];
    int have_resume;
};

typedef struct scan_arg {
    sweep *sw;
    uint64_t now_ms;
    uint8_t *found; /* SWEEP_SCAN keys of key_len bytes */
    unsigned nfound;
    uint8_t next[CHUNK_KEY_LEN]; /* the first key not looked at */
    int at_end;                  /* no such key: the scan reached the end */
    /* this attempt's */
    handles *h;
    DB_TXN *txn;
    unsigned looked;
} scan_arg;

/* Looks at one record: notes its key when it is stale; ends the batch at
 * the first record past SWEEP_SCAN, where the next one resumes. */
static int scan_visit(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    scan_arg *a = ctx;
    sweep *sw = a->sw;
    if (a->looked++ == SWEEP_SCAN) {
        memcpy(a->next, k->data, sw->key_len);
        *stop = 1;
        return 0;
    }
    if (k->size != sw->key_len)
        return 0;     /* not written by this code */
    int is_stale = 1; /* a record of another layout goes */
    int ret;
    if (d->size >= sw->data_len &&
        (ret = sw->stale(a->h, a->txn, k->data, d->data, d->size, a->now_ms, &is_stale)) != 0)
        return ret;
    if (is_stale)
        memcpy(a->found + (size_t)a->nfound++ * sw->key_len, k->data, sw->key_len);
    return 0;
}

static int scan_body(handles *h, DB_TXN *txn, op *o)
{
    scan_arg *a = o->arg;
    sweep *sw = a->sw;
    a->nfound = 0;
    a->looked = 0;
    a->h = h;
    a->txn = txn;
    uint8_t key[CHUNK_KEY_LEN], data[REC_LEN];
    DBT k, d;
    dbt_out(&k, key, sizeof key);
    dbt_part(&d, data, 0, sw->data_len);
    return store_walk_batch(sw->table(h), txn, 0, sw->have_resume ? sw->resume : NULL, sw->key_len,
                            0, &k, &d, scan_visit, a, &a->at_end);
}

typedef struct remove_arg {
    sweep *sw;
    uint64_t now_ms;
    const uint8_t *keys;
    unsigned n;
} remove_arg;

static int remove_body(handles *h, DB_TXN *txn, op *o)
{
    remove_arg *a = o->arg;
    for (unsigned i = 0; i < a->n; i++) {
        int ret = a->sw->remove(h, txn, a->keys + (size_t)i * a->sw->key_len, a->now_ms);
        if (ret != 0 && ret != DB_NOTFOUND)
            return ret;
    }
    return 0;
}

/* Scans and removes until the end of the table or the deadline (monotonic
 * ms), whichever comes first. Failures are logged by store_op_run. */
static void sweep_run(store *s, sweep *sw, uint64_t now_ms, uint64_t deadline)
{
    uint8_t *found = malloc((size_t)SWEEP_SCAN * sw->key_len);
    if (!found)
        return;
    for (;;) {
        scan_arg a = {.sw = sw, .now_ms = now_ms, .found = found};
        op scan = {.what = sw->what, .body = scan_body, .arg = &a, .read_committed = 1};
        if (store_op_run(s, &scan) != RL_OK)
            break;
        for (unsigned i = 0; i < a.nfound; i += sw->batch) {
            remove_arg r = {sw, now_ms, found + (size_t)i * sw->key_len,
                            a.nfound - i < sw->batch ? a.nfound - i : sw->batch};
            op rm = {.what = sw->what, .body = remove_body, .arg = &r, .idempotent = 1};
            if (store_op_run(s, &rm) != RL_OK)
                goto out;
        }
        sw->have_resume = !a.at_end;
        if (!a.at_end)
            memcpy(sw->resume, a.next, sw->key_len);
        if (a.at_end || mono_ms() >= deadline)
            break;
    }
out:
    free(found);
}

/* A flight goes when finished FLIGHT_KEEP_MS ago, or when its leader died
 * DEAD_LEADER_KEEP_MS ago with nobody taking over. */
static int flight_stale(const store_flight *f, uint64_t now_ms)
{
    uint64_t idle = now_ms > f->updated_ms ? now_ms - f->updated_ms : 0;
    if (f->state != FLIGHT_RUNNING)
        return idle > FLIGHT_KEEP_MS;
    return idle > DEAD_LEADER_KEEP_MS && !store_flight_leader_alive(f);
}

static DB *flights_table(handles *h)
{
    return h->flights;
}

static int flight_scan(handles *h, DB_TXN *txn, const uint8_t *key, const uint8_t *data,
                       size_t data_size, uint64_t now_ms, int *is_stale)
{
    (void)h, (void)txn, (void)key, (void)data_size;
    store_flight f;
    rec_decode(data, &f);
    *is_stale = flight_stale(&f, now_ms);
    return 0;
}

/* Checks again under a write lock: a new request may have started a new
 * generation since the scan. */
static int flight_remove(handles *h, DB_TXN *txn, const uint8_t *key, uint64_t now_ms)
{
    store_flight f;
    int ret = rec_get(h, txn, key, &f, DB_RMW);
    if (ret)
        return ret;
    if (!flight_stale(&f, now_ms))
        return 0;
    if ((ret = chunks_drop(h, txn, key, f.gen)) != 0)
        return ret;
    DBT k;
    dbt_in(&k, key, STORE_KEY_LEN);
    return h->flights->del(h->flights, txn, &k, 0);
}

static DB *chunks_table(handles *h)
{
    return h->chunks;
}

/* A chunk goes when written FLIGHT_KEEP_MS ago and its generation is not
 * the running one of its flight. Both only ever become more true (chunks
 * are written once; generations only move on), so the removal need not
 * check again. */
static int chunk_scan(handles *h, DB_TXN *txn, const uint8_t *key, const uint8_t *data,
                      size_t data_size, uint64_t now_ms, int *is_stale)
{
    (void)data_size;
    uint64_t written = store_get64(data);
    *is_stale = 0;
    if (now_ms < written || now_ms - written <= FLIGHT_KEEP_MS)
        return 0;
    store_flight f;
    int ret = rec_get(h, txn, key, &f, 0);
    if (ret != 0 && ret != DB_NOTFOUND)
        return ret;
    *is_stale =
        !(ret == 0 && f.gen == store_get32(key + STORE_KEY_LEN) && f.state == FLIGHT_RUNNING);
    return 0;
}

static int chunk_remove(handles *h, DB_TXN *txn, const uint8_t *key, uint64_t now_ms)
{
    (void)now_ms;
    DBT k;
    dbt_in(&k, key, CHUNK_KEY_LEN);
    return h->chunks->del(h->chunks, txn, &k, 0);
}

void flight_maintain(store *s, uint64_t now_ms)
{
    static sweep flights = {.what = "removing finished in-flight requests",
                            .key_len = STORE_KEY_LEN,
                            .data_len = REC_LEN,
                            .batch = 1,
                            .table = flights_table,
                            .stale = flight_scan,
                            .remove = flight_remove};
    static sweep chunks = {.what = "removing old in-flight chunks",
                           .key_len = CHUNK_KEY_LEN,
                           .data_len = 8, /* the stamp */
                           .batch = 64,
                           .table = chunks_table,
                           .stale = chunk_scan,
                           .remove = chunk_remove};
    uint64_t deadline = mono_ms() + SWEEP_TIME_MS;
    sweep_run(s, &flights, now_ms, deadline);
    sweep_run(s, &chunks, now_ms, deadline);
}
