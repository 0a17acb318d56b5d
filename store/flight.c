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
 * nchunks 4, bytes 8, started 8, updated 8, followers 4, pad 4. */
static void rec_encode(uint8_t *b, const store_flight *f)
{
    memset(b, 0, REC_LEN);
    store_put32(b, f->gen);
    b[4] = (uint8_t)f->state;
    b[5] = (uint8_t)f->reusable;
    store_put32(b + 8, (uint32_t)f->leader_pid);
    store_put32(b + 12, f->nchunks);
    store_put64(b + 16, f->bytes);
    store_put64(b + 24, f->started_ms);
    store_put64(b + 32, f->updated_ms);
    store_put32(b + 40, f->followers);
}

static void rec_decode(const uint8_t *b, store_flight *f)
{
    f->gen = store_get32(b);
    f->state = b[4] <= FLIGHT_FAILED ? (flight_state)b[4] : FLIGHT_FAILED;
    f->reusable = b[5];
    f->leader_pid = (int32_t)store_get32(b + 8);
    f->nchunks = store_get32(b + 12);
    f->bytes = store_get64(b + 16);
    f->started_ms = store_get64(b + 24);
    f->updated_ms = store_get64(b + 32);
    f->followers = store_get32(b + 40);
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

/* Reads the record (with a write lock when rmw). 0, DB_NOTFOUND or a
 * Berkeley DB error. */
static int rec_get(handles *h, DB_TXN *txn, const uint8_t *key, store_flight *f, int rmw)
{
    uint8_t buf[REC_LEN];
    DBT k, d;
    dbt_in(&k, key, STORE_KEY_LEN);
    dbt_out(&d, buf, sizeof buf);
    int ret = h->flights->get(h->flights, txn, &k, &d, rmw ? DB_RMW : 0);
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

static int join_body(handles *h, DB_TXN *txn, op *o)
{
    join_arg *a = o->arg;
    store_flight f;
    memset(&f, 0, sizeof f);
    int ret = rec_get(h, txn, a->key, &f, 1);
    if (ret != 0 && ret != DB_NOTFOUND)
        return ret;
    if (ret == 0 && !replaceable(&f, a->now_ms, a->linger_ms)) {
        f.followers++;
        *a->leader = 0;
    } else {
        uint32_t gen = ret == 0 ? f.gen + 1 : 1;
        memset(&f, 0, sizeof f);
        f.gen = gen;
        f.state = FLIGHT_RUNNING;
        f.leader_pid = (int32_t)getpid();
        f.started_ms = f.updated_ms = a->now_ms;
        *a->leader = 1;
    }
    *a->out = f;
    return rec_put(h, txn, a->key, &f);
}

rl_err store_flight_join(store *s, const uint8_t key[STORE_KEY_LEN], uint64_t now_ms,
                         uint64_t linger_ms, store_flight *out, int *leader)
{
    join_arg a = {key, now_ms, linger_ms, out, leader};
    op o = {.what = "joining an in-flight request", .body = join_body, .arg = &a};
    return store_op_run(s, &o);
}

/* ---- leader: append and finish ------------------------------------------ */

typedef struct append_arg {
    const uint8_t *key;
    uint32_t gen;
    const void *data;
    size_t len;
    uint64_t max_bytes, now_ms;
} append_arg;

static int append_body(handles *h, DB_TXN *txn, op *o)
{
    append_arg *a = o->arg;
    store_flight f;
    int ret = rec_get(h, txn, a->key, &f, 1);
    if (ret == DB_NOTFOUND || (ret == 0 && (f.gen != a->gen || f.state != FLIGHT_RUNNING))) {
        o->err = RL_NOTFOUND;
        return 0;
    }
    if (ret)
        return ret;
    if (f.bytes + a->len > a->max_bytes) {
        o->err = RL_TOO_LARGE;
        return 0;
    }
    if ((ret = chunk_put(h, txn, a->key, f.gen, f.nchunks, a->now_ms, a->data, a->len)) != 0)
        return ret;
    f.nchunks++;
    f.bytes += a->len;
    f.updated_ms = a->now_ms;
    return rec_put(h, txn, a->key, &f);
}

rl_err store_flight_append(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen,
                           const void *data, size_t len, uint64_t max_bytes, uint64_t now_ms)
{
    append_arg a = {key, gen, data, len, max_bytes, now_ms};
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
    int ret = rec_get(h, txn, a->key, &f, 1);
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
    op o = {.what = "reading an in-flight request", .body = read_body, .arg = &a, .snapshot = 1};
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

typedef struct leave_arg {
    const uint8_t *key;
    uint32_t gen;
} leave_arg;

static int leave_body(handles *h, DB_TXN *txn, op *o)
{
    leave_arg *a = o->arg;
    store_flight f;
    int ret = rec_get(h, txn, a->key, &f, 1);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret)
        return ret;
    if (f.gen != a->gen || f.followers == 0)
        return 0;
    f.followers--;
    return rec_put(h, txn, a->key, &f);
}

rl_err store_flight_leave(store *s, const uint8_t key[STORE_KEY_LEN], uint32_t gen)
{
    leave_arg a = {key, gen};
    op o = {.what = "leaving an in-flight request", .body = leave_body, .arg = &a};
    return store_op_run(s, &o);
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
    int ret = rec_get(h, txn, a->key, a->out, 1);
    if (ret)
        return ret;
    store_flight *f = a->out;
    if (f->gen != a->old_gen || f->state != FLIGHT_RUNNING || store_flight_leader_alive(f))
        return 0;
    /* The dead leader's chunks are of no use to anyone: followers that
     * streamed them end with an error, the others start over. */
    if ((ret = chunks_drop(h, txn, a->key, a->old_gen)) != 0)
        return ret;
    uint32_t followers = f->followers ? f->followers - 1 : 0;
    memset(f, 0, sizeof *f);
    f->gen = a->old_gen + 1;
    f->state = FLIGHT_RUNNING;
    f->leader_pid = (int32_t)getpid();
    f->started_ms = f->updated_ms = a->now_ms;
    f->followers = followers;
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
 * FLIGHT_KEEP_MS ago, flights whose leader died DEAD_LEADER_KEEP_MS ago
 * with nobody taking over, and chunks of generations that are no longer
 * current and were written longer than FLIGHT_KEEP_MS ago. Works in one
 * transaction per call over at most `budget` records, so it never holds
 * locks for long; called from store_maintain.
 */
typedef struct sweep_arg {
    uint64_t now_ms;
    unsigned budget;
    unsigned removed;
    uint8_t *resume; /* where the previous sweep stopped (a key), or NULL */
    size_t resume_len;
    int *have_resume;
} sweep_arg;

/* Positions c at the sweep's resume point (or the start). */
static int sweep_start(DBC *c, sweep_arg *a, DBT *k, DBT *d)
{
    if (*a->have_resume) {
        memcpy(k->data, a->resume, a->resume_len);
        k->size = (u_int32_t)a->resume_len;
        return c->get(c, k, d, DB_SET_RANGE | DB_RMW);
    }
    return c->get(c, k, d, DB_FIRST | DB_RMW);
}

/* Remembers where to go on next time; at the end, starts over. */
static void sweep_stop(sweep_arg *a, const DBT *k, int ret)
{
    *a->have_resume = ret == 0 && k->size == a->resume_len;
    if (*a->have_resume)
        memcpy(a->resume, k->data, a->resume_len);
}

/* Decides about one record of a sweep: *drop = 1 deletes it (after any
 * cleanup the visitor did itself). Returns 0 or a Berkeley DB code. */
typedef int (*sweep_visit)(handles *h, DB_TXN *txn, const sweep_arg *a, const DBT *k, const DBT *d,
                           int *drop);

/* Walks db from the sweep's resume point over at most a->budget records
 * (k and d describe where each record goes), deleting what visit says. */
static int sweep_walk(handles *h, DB_TXN *txn, DB *db, sweep_arg *a, DBT *k, DBT *d,
                      sweep_visit visit)
{
    a->removed = 0;
    DBC *c = NULL;
    int ret = db->cursor(db, txn, &c, 0);
    if (ret)
        return ret;
    unsigned looked = 0;
    for (ret = sweep_start(c, a, k, d); ret == 0 && looked++ < a->budget;
         ret = c->get(c, k, d, DB_NEXT | DB_RMW)) {
        int drop = 0;
        if ((ret = visit(h, txn, a, k, d, &drop)) != 0)
            break;
        if (!drop)
            continue;
        if ((ret = c->del(c, 0)) != 0)
            break;
        a->removed++;
    }
    sweep_stop(a, k, ret);
    int closed = c->close(c);
    if (ret == DB_NOTFOUND)
        ret = 0;
    return ret ? ret : closed;
}

/* A flight goes when finished FLIGHT_KEEP_MS ago, or when its leader died
 * DEAD_LEADER_KEEP_MS ago with nobody taking over; its chunks go with it. */
static int visit_flight(handles *h, DB_TXN *txn, const sweep_arg *a, const DBT *k, const DBT *d,
                        int *drop)
{
    if (k->size != STORE_KEY_LEN || d->size != REC_LEN) {
        *drop = 1; /* not a record of this layout */
        return 0;
    }
    store_flight f;
    rec_decode(d->data, &f);
    uint64_t idle = a->now_ms > f.updated_ms ? a->now_ms - f.updated_ms : 0;
    *drop =
        (f.state != FLIGHT_RUNNING && idle > FLIGHT_KEEP_MS) ||
        (f.state == FLIGHT_RUNNING && idle > DEAD_LEADER_KEEP_MS && !store_flight_leader_alive(&f));
    return *drop ? chunks_drop(h, txn, k->data, f.gen) : 0;
}

/* A chunk goes when written FLIGHT_KEEP_MS ago and its generation is not
 * the running one of its flight. */
static int visit_chunk(handles *h, DB_TXN *txn, const sweep_arg *a, const DBT *k, const DBT *d,
                       int *drop)
{
    if (k->size != CHUNK_KEY_LEN || d->size < 8) {
        *drop = 1;
        return 0;
    }
    uint64_t written = store_get64(d->data);
    if (a->now_ms < written || a->now_ms - written <= FLIGHT_KEEP_MS)
        return 0;
    store_flight f;
    int ret = rec_get(h, txn, k->data, &f, 0);
    if (ret != 0 && ret != DB_NOTFOUND)
        return ret;
    const uint8_t *ck = k->data;
    *drop = !(ret == 0 && f.gen == store_get32(ck + STORE_KEY_LEN) && f.state == FLIGHT_RUNNING);
    return 0;
}

static int sweep_flights_body(handles *h, DB_TXN *txn, op *o)
{
    uint8_t key[STORE_KEY_LEN], buf[REC_LEN];
    DBT k, d;
    dbt_out(&k, key, sizeof key);
    dbt_out(&d, buf, sizeof buf);
    return sweep_walk(h, txn, h->flights, o->arg, &k, &d, visit_flight);
}

static int sweep_chunks_body(handles *h, DB_TXN *txn, op *o)
{
    uint8_t ck[CHUNK_KEY_LEN], stamp[8];
    DBT k, d;
    dbt_out(&k, ck, sizeof ck);
    dbt_part(&d, stamp, 0, sizeof stamp); /* just the stamp */
    return sweep_walk(h, txn, h->chunks, o->arg, &k, &d, visit_chunk);
}

void flight_maintain(store *s, uint64_t now_ms)
{
    /* One maintenance thread per process (store_maintain): the resume
     * points need no lock. */
    static uint8_t flights_at[STORE_KEY_LEN], chunks_at[CHUNK_KEY_LEN];
    static int have_flights_at, have_chunks_at;
    sweep_arg a = {now_ms, 512, 0, flights_at, sizeof flights_at, &have_flights_at};
    op o = {.what = "removing finished in-flight requests", .body = sweep_flights_body, .arg = &a};
    store_op_run(s, &o);
    sweep_arg b = {now_ms, 512, 0, chunks_at, sizeof chunks_at, &have_chunks_at};
    op c = {.what = "removing old in-flight chunks", .body = sweep_chunks_body, .arg = &b};
    store_op_run(s, &c);
}
