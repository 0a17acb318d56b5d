/*
 * ledger_maint.c — the ledger's whole-table walks (contracts in ledger.h
 * and store_int.h): store_ledger_scan, store_ledger_holds, maintenance
 * (ledger_maintain) and verify (ledger_verify), and the test of whether a
 * reservation's owner process is still alive.
 *
 * A walk reads ledger.db or reservations.db in batches, each a short
 * read-committed transaction whose records are copied out and looked at
 * after it ended, so no caller's callback runs inside a transaction.
 *
 * Maintenance (ledger_maintain, one process per second for the store):
 * reservations are read in batches with read-committed reads; those of dead
 * owners, or older than store.hold_max_age, are settled as spent, each in
 * its own transaction. Once a minute the rows of long-ended windows go, a
 * bounded slice of the table per run.
 *
 * Maintenance runs on one thread per process, so the positions where the
 * last run stopped are plain statics.
 */
#include "store/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/ledger_int.h"
#include "store/store_int.h"

#define BATCH 256                  /* records per read-only transaction of a walk */
#define BATCH_BYTES (1u << 20)     /* ... or this many bytes */
#define SWEEP_TIME_MS 50           /* one maintenance run sweeps rows about this long */
#define DEFAULT_HOLD_MAX_AGE 90000 /* 25 h: see store_options.hold_max_age */

/* ---- processes ------------------------------------------------------------- */

/* A process's state letter (field 3 of /proc/PID/stat) and start time
 * (field 22: clock ticks after boot): 0 when it cannot be read, else 1.
 * For the owners of reservations here and the listener's mark
 * (cluster.c). */
int store_proc_stat(long pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || p[1] != ' ')
        return 0;
    *state = p[2];
    p++;
    for (int field = 3; field < 22; field++) { /* field 3 (state) follows the name */
        p += strspn(p, " ");
        p += strcspn(p, " ");
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || end == p)
        return 0;
    *start = (uint64_t)v;
    return 1;
}

static uint64_t proc_start(long pid)
{
    char state;
    uint64_t start = 0;
    return store_proc_stat(pid, &state, &start) ? start : 0;
}

/* This process's start time, read once per process (a forked child reads
 * its own). */
uint64_t ledger_own_start(void)
{
    static _Atomic long cached_pid;
    static _Atomic uint64_t cached;
    long me = (long)getpid();
    if (atomic_load(&cached_pid) != me) {
        atomic_store(&cached, proc_start(me));
        atomic_store(&cached_pid, me);
    }
    return atomic_load(&cached);
}

/* Whether the owner of a reservation is gone: no process has its pid, or
 * the one that has it started at another time (the pid was reused). A
 * dead child its parent has not reaped yet still counts as alive. */
static int owner_dead(const ledger_hold *hold)
{
    if (hold->pid <= 0)
        return 1;
    uint64_t start;
    if (hold->pid == (int32_t)getpid()) {
        start = ledger_own_start();
    } else {
        if (kill((pid_t)hold->pid, 0) != 0 && errno == ESRCH)
            return 1;
        start = proc_start(hold->pid);
    }
    return hold->pid_start && start && start != hold->pid_start;
}

/*
 * A walk over ledger.db or reservations.db in batches: each batch is one
 * read-committed transaction that copies up to BATCH records out (key
 * length, value length, key, value), and the caller looks at them after
 * it ended. Only keys starting with prefix; the walk ends at the first key
 * past them.
 */
typedef struct walk {
    int holds; /* reservations.db, else ledger.db */
    const uint8_t *prefix;
    size_t prefix_len;
    uint8_t from[LEDGER_KEY_MAX]; /* where the next batch starts ... */
    size_t from_len;
    int after; /* ... just after from (else at the first key >= from) */
    int done;
    rl_buf recs;
    unsigned n;
    /* this attempt's */
    uint8_t last[LEDGER_KEY_MAX];
    size_t last_len;
    op *o;
} walk;

static int walk_take(void *ctx, const DBT *k, const DBT *d, int *stop)
{
    walk *w = ctx;
    if (w->prefix_len &&
        (k->size < w->prefix_len || memcmp(k->data, w->prefix, w->prefix_len) != 0)) {
        w->done = *stop = 1; /* past the prefix */
        return 0;
    }
    uint8_t lens[8];
    store_put32(lens, k->size);
    store_put32(lens + 4, d->size);
    rl_buf_append(&w->recs, lens, sizeof lens);
    rl_buf_append(&w->recs, k->data, k->size);
    rl_buf_append(&w->recs, d->data, d->size);
    if (rl_buf_error(&w->recs) != RL_OK) {
        w->o->err = RL_NOMEM;
        *stop = 1;
        return 0;
    }
    memcpy(w->last, k->data, k->size);
    w->last_len = k->size;
    *stop = ++w->n == BATCH || w->recs.len >= BATCH_BYTES;
    return 0;
}

static int walk_body(handles *h, DB_TXN *txn, op *o)
{
    walk *w = o->arg;
    uint8_t kb[LEDGER_KEY_MAX];
    DBT k, d;
    int at_end = 0;
    rl_buf_reset(&w->recs);
    w->n = 0;
    w->done = 0;
    w->o = o;
    dbt_out(&k, kb, sizeof kb);
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_REALLOC;
    int ret =
        store_walk_batch(w->holds ? h->holds : h->ledger, txn, 0, w->from_len ? w->from : NULL,
                         w->from_len, w->after, &k, &d, walk_take, w, &at_end);
    free(d.data);
    if (ret == DB_BUFFER_SMALL) /* a key longer than any this code writes */
        ret = 0, w->done = 1;
    w->done |= at_end;
    return ret;
}

/* Reads the next batch into w->recs (w->n records). RL_OK; w->done once
 * nothing is left. */
static rl_err walk_next(store *s, walk *w, const char *what)
{
    op o = {.what = what, .body = walk_body, .arg = w, .idempotent = 1, .read_committed = 1};
    rl_err e = store_op_run(s, &o);
    if (e == RL_OK && w->n) {
        memcpy(w->from, w->last, w->last_len);
        w->from_len = w->last_len;
        w->after = 1;
    }
    if (e == RL_OK && w->n == 0)
        w->done = 1;
    return e;
}

/* The record at *at in w->recs; moves *at past it. 0, or -1 at the end. */
static int walk_rec(const walk *w, size_t *at, const uint8_t **k, size_t *kn, const uint8_t **v,
                    size_t *vn)
{
    const uint8_t *p = (const uint8_t *)w->recs.data;
    if (!p || *at + 8 > w->recs.len)
        return -1;
    *kn = store_get32(p + *at);
    *vn = store_get32(p + *at + 4);
    *k = p + *at + 8;
    *v = *k + *kn;
    *at += 8 + *kn + *vn;
    return 0;
}

static void walk_init(walk *w, int holds, const uint8_t *prefix, size_t prefix_len)
{
    memset(w, 0, sizeof *w);
    w->holds = holds;
    w->prefix = prefix;
    w->prefix_len = prefix_len;
    if (prefix_len) {
        memcpy(w->from, prefix, prefix_len);
        w->from_len = prefix_len;
    }
    rl_buf_init(&w->recs, 0);
}

rl_err store_ledger_scan(store *s, const char *prefix,
                         int (*fn)(void *ctx, const char *scope, ledger_window w,
                                   const ledger_row *row),
                         void *ctx)
{
    size_t plen = prefix ? strnlen(prefix, LEDGER_SCOPE_MAX + 1) : 0;
    if (plen > LEDGER_SCOPE_MAX)
        return RL_BAD_REQUEST;
    walk w;
    walk_init(&w, 0, (const uint8_t *)prefix, plen);
    rl_err e = RL_OK;
    int stop = 0;
    while (!stop && !w.done && (e = walk_next(s, &w, "reading the ledger")) == RL_OK) {
        const uint8_t *k, *v;
        size_t kn, vn, at = 0;
        while (!stop && walk_rec(&w, &at, &k, &kn, &v, &vn) == 0) {
            char scope[LEDGER_SCOPE_MAX + 1];
            ledger_window kind;
            ledger_row row;
            uint64_t start;
            if (ledger_key_decode(k, kn, scope, &kind, &start) != 0)
                continue; /* not a key this code writes; verify reports it */
            int bad = ledger_row_decode(v, vn, &row) != 0;
            row.start = start;
            row.end = ledger_window_end(kind, start);
            stop = fn(ctx, scope, kind, bad ? NULL : &row) != 0;
        }
    }
    rl_buf_release(&w.recs);
    return e;
}

rl_err store_ledger_holds(store *s, uint64_t *count)
{
    walk w;
    walk_init(&w, 1, NULL, 0);
    rl_err e = RL_OK;
    *count = 0;
    while (!w.done && (e = walk_next(s, &w, "counting budget reservations")) == RL_OK)
        *count += w.n;
    rl_buf_release(&w.recs);
    return e;
}

/* ---- maintenance ------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    return (uint64_t)(store_mono_ns() / 1000000);
}

/* Whether the reservation's owner ran on this host: always, unless the
 * store is replicated (store/cluster.h) and it names another site. */
static int owner_here(const store *s, const ledger_hold *hold)
{
    return !hold->site[0] || !store_is_replicated(s) ||
           strcmp(hold->site, cluster_options(s)->site) == 0;
}

/* Why maintenance releases a reservation, or NULL to leave it. A
 * process's death is judged only on its own host; the rest only by the
 * store's writer (all: the master in a group, where a replica's
 * maintenance releases only its own host's dead owners' reservations, by
 * forwarding the release). */
static const char *stale_hold(const store *s, const ledger_hold *hold, int damaged, uint64_t now,
                              int all)
{
    uint64_t max_age = s->hold_max_age ? s->hold_max_age : DEFAULT_HOLD_MAX_AGE;
    if (damaged)
        return all ? "it does not decode" : NULL;
    if (owner_here(s, hold) && owner_dead(hold))
        return "its process is gone";
    if (all && now > hold->created && now - hold->created > max_age)
        return "it is older than any request may last";
    return NULL;
}

/* Settles, as spent, the reservations of dead processes and those older
 * than hold_max_age, looking at up to BATCH of them per run from where the
 * last run stopped. */
static void holds_sweep(store *s, uint64_t now, int all)
{
    static uint8_t resume[LEDGER_ID_LEN]; /* one maintenance thread per process */
    static int have_resume;
    uint8_t stale[BATCH][LEDGER_ID_LEN];
    const char *why[BATCH];
    unsigned nstale = 0;
    ledger_hold *hold = malloc(sizeof *hold);
    if (!hold)
        return;
    walk w;
    walk_init(&w, 1, NULL, 0);
    if (have_resume) {
        memcpy(w.from, resume, LEDGER_ID_LEN);
        w.from_len = LEDGER_ID_LEN;
        w.after = 1;
    }
    if (walk_next(s, &w, "looking for abandoned budget reservations") == RL_OK) {
        const uint8_t *k, *v;
        size_t kn, vn, at = 0;
        while (walk_rec(&w, &at, &k, &kn, &v, &vn) == 0) {
            if (kn != LEDGER_ID_LEN)
                continue;
            const char *reason =
                stale_hold(s, hold, ledger_hold_decode(v, vn, hold) != 0, now, all);
            if (reason) {
                memcpy(stale[nstale], k, LEDGER_ID_LEN);
                why[nstale++] = reason;
            }
        }
        have_resume = !w.done;
        if (have_resume)
            memcpy(resume, w.from, LEDGER_ID_LEN);
    }
    rl_buf_release(&w.recs);
    for (unsigned i = 0; i < nstale; i++) {
        char hex[2 * LEDGER_ID_LEN + 1];
        rl_hex_encode(stale[i], LEDGER_ID_LEN, hex);
        rl_err e = cluster_forwards(s) ? cluster_ledger_release_held(s, stale[i], now)
                                       : ledger_settle(s, stale[i], NULL, SETTLE_AS_RESERVED, now);
        if (e == RL_OK)
            rl_warn("store %s: released budget reservation %s (%s), counting what it reserved "
                    "as spent",
                    s->home, hex, why[i]);
        if (e == RL_NO_MASTER)
            break; /* no master to release them: the next run tries again */
    }
    free(hold);
}

typedef struct drop_arg {
    const uint8_t *keys; /* n keys, each LEDGER_KEY_MAX bytes apart */
    const size_t *lens;
    unsigned n;
} drop_arg;

static int drop_body(handles *h, DB_TXN *txn, op *o)
{
    drop_arg *a = o->arg;
    for (unsigned i = 0; i < a->n; i++) {
        DBT k;
        dbt_in(&k, a->keys + (size_t)i * LEDGER_KEY_MAX, a->lens[i]);
        int ret = h->ledger->del(h->ledger, txn, &k, 0);
        if (ret && ret != DB_NOTFOUND)
            return ret;
    }
    return 0;
}

/* Removes the rows of windows that ended longer ago than they are kept:
 * about SWEEP_TIME_MS of the table per run, from where the last run
 * stopped. Rows still reserved in go too: their windows are over, so
 * their reservations block nothing, and a late settlement writes the row
 * again (to be removed by a later sweep). */
static void rows_sweep(store *s, uint64_t now)
{
    static uint8_t resume[LEDGER_KEY_MAX]; /* one maintenance thread per process */
    static size_t resume_len;
    uint8_t *keys = malloc((size_t)BATCH * LEDGER_KEY_MAX);
    size_t *lens = malloc(BATCH * sizeof *lens);
    walk w;
    walk_init(&w, 0, NULL, 0);
    if (!keys || !lens)
        goto out;
    if (resume_len) {
        memcpy(w.from, resume, resume_len);
        w.from_len = resume_len;
        w.after = 1;
    }
    uint64_t deadline = mono_ms() + SWEEP_TIME_MS;
    while (!w.done && walk_next(s, &w, "removing old ledger rows") == RL_OK) {
        const uint8_t *k, *v;
        size_t kn, vn, at = 0;
        unsigned n = 0;
        while (walk_rec(&w, &at, &k, &kn, &v, &vn) == 0) {
            char scope[LEDGER_SCOPE_MAX + 1];
            ledger_window kind;
            uint64_t start;
            if (ledger_key_decode(k, kn, scope, &kind, &start) != 0 ||
                !ledger_row_expired(kind, start, now))
                continue;
            memcpy(keys + (size_t)n * LEDGER_KEY_MAX, k, kn);
            lens[n++] = kn;
        }
        drop_arg a = {keys, lens, n};
        op o = {.what = "removing old ledger rows", .body = drop_body, .arg = &a, .idempotent = 1};
        if (n && store_op_run(s, &o) != RL_OK)
            break;
        resume_len = w.done ? 0 : w.from_len;
        memcpy(resume, w.from, resume_len);
        if (mono_ms() >= deadline)
            break;
    }
out:
    rl_buf_release(&w.recs);
    free(keys);
    free(lens);
}

void ledger_maintain(store *s, uint64_t now, int sweep_rows)
{
    holds_sweep(s, now, 1);
    if (sweep_rows)
        rows_sweep(s, now);
}

void ledger_maintain_owners(store *s, uint64_t now)
{
    holds_sweep(s, now, 0);
}

/* ---- verify ------------------------------------------------------------------ */

rl_err ledger_verify(store *s, store_problem_fn problem, void *ctx, unsigned *problems)
{
    ledger_hold *hold = malloc(sizeof *hold);
    if (!hold)
        return RL_NOMEM;
    rl_err e = RL_OK;
    for (int holds = 0; holds <= 1 && e == RL_OK; holds++) {
        walk w;
        walk_init(&w, holds, NULL, 0);
        while (!w.done && (e = walk_next(s, &w, "verifying the ledger")) == RL_OK) {
            const uint8_t *k, *v;
            size_t kn, vn, at = 0;
            while (walk_rec(&w, &at, &k, &kn, &v, &vn) == 0) {
                char scope[LEDGER_SCOPE_MAX + 1], what[LEDGER_SCOPE_MAX + 96];
                ledger_window kind;
                ledger_row row;
                uint64_t start;
                if (holds) {
                    if (kn == LEDGER_ID_LEN && ledger_hold_decode(v, vn, hold) == 0)
                        continue;
                    char hex[2 * LEDGER_ID_LEN + 1];
                    rl_hex_encode(k, kn < LEDGER_ID_LEN ? kn : LEDGER_ID_LEN, hex);
                    snprintf(what, sizeof what, "reservation %s does not decode", hex);
                } else if (ledger_key_decode(k, kn, scope, &kind, &start) != 0) {
                    snprintf(what, sizeof what, "a row's key (%zu bytes) does not decode", kn);
                } else if (ledger_row_decode(v, vn, &row) != 0) {
                    snprintf(what, sizeof what, "the row of %s (%s from %llu) does not decode",
                             scope, ledger_window_name(kind), (unsigned long long)start);
                } else {
                    continue;
                }
                ++*problems;
                if (problem)
                    problem(ctx, holds ? "reservations.db" : "ledger.db", what);
            }
        }
        rl_buf_release(&w.recs);
    }
    free(hold);
    return e;
}
