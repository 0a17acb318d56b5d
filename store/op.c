/*
 * op.c — running operations on the store: the transaction helper
 * (store_op_run: retries on lock conflicts, reopens after another
 * process's crash, translates Berkeley DB's codes into rl_err) and the
 * periodic housekeeping of store_maintain. Contracts in store_int.h
 * (op, store_op_run) and store.h (store_maintain).
 *
 * Threads: any thread, any number at once. An operation holds a reference
 * on the handle set it runs on (handles.users, under store.mu) only while
 * an attempt runs, so that a reopen can wait for it between attempts.
 * Nothing here waits for a lock inside Berkeley DB (DB_TXN_NOWAIT): a
 * conflict returns at once and is retried here, with a randomised pause.
 *
 * Failure: logged once, in store_op_run, with the operation's what and
 * Berkeley DB's text; callers get RL_STORE (RL_NOMEM, RL_NOTFOUND).
 */
#include "store/store.h"

#include <db.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/store_int.h"
#include "store/wake.h"

/* Keep retrying a lock conflict this long: a dead process's locks last
 * until the next failchk (store_maintain, about a second). */
#define LOCK_RETRY_NS 5000000000LL
#define MAX_REOPENS 3      /* per operation */
#define PURGE_INTERVAL 60  /* seconds between purges (cache, ledger rows) by store_maintain */
#define PURGE_GRACE 3600   /* store_maintain keeps entries this long past expiry (max-stale) */
#define CHECKPOINT_KB 1024 /* checkpoint once this much log was written ... */
#define CHECKPOINT_MIN 1   /* ... or this many minutes passed */

/* Randomised, growing pause (up to ~2.5 ms) between retries of a lock
 * conflict, so that contenders don't collide again in lockstep. */
void store_backoff(unsigned attempt)
{
    static _Thread_local unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)(uintptr_t)&seed ^ (unsigned)store_mono_ns();
    if (attempt < 3) {
        sched_yield();
        return;
    }
    unsigned shift = attempt < 8 ? attempt : 8;
    long max_us = 10L << shift;
    seed = seed * 1103515245u + 12345u;
    struct timespec ts = {0, ((long)(seed >> 8) % max_us + 1) * 1000L};
    nanosleep(&ts, NULL);
}

/* ---- operations and the transaction helper ------------------------------ */

/* Takes a reference on the current handle set (NULL if there is none),
 * waiting while a reopen is under way (*waited tells). */
static handles *op_acquire(store *s, unsigned *gen, int *waited)
{
    pthread_mutex_lock(&s->mu);
    *waited = 0;
    while (s->reopening) {
        *waited = 1;
        pthread_cond_wait(&s->changed, &s->mu);
    }
    handles *h = s->cur;
    if (h)
        h->users++;
    *gen = s->generation;
    pthread_mutex_unlock(&s->mu);
    return h;
}

static void op_release(store *s, handles *h)
{
    pthread_mutex_lock(&s->mu);
    if (--h->users == 0 && h != s->cur)
        pthread_cond_broadcast(&s->changed); /* a reopen waits for this */
    pthread_mutex_unlock(&s->mu);
}

/* store_capture_commits: where this thread's write commits leave their
 * commit token (NULL: nowhere), and whether one did. */
static _Thread_local DB_TXN_TOKEN *commit_token;
static _Thread_local int commit_token_set;

void store_capture_commits(DB_TXN_TOKEN *token)
{
    commit_token = token;
    commit_token_set = 0;
}

int store_commits_captured(void)
{
    return commit_token_set;
}

static int op_attempt(handles *h, op *o)
{
    DB_TXN *txn = NULL;
    o->err = RL_OK;
    o->commit_failed = 0;
    if (o->no_txn)
        return o->body(h, NULL, o);
    /* NOWAIT: a conflict returns at once and store_op_run retries outside the
     * library. Blocking waits are unsafe here: a process killed while
     * waiting leaves a condition variable that failchk then destroys,
     * which glibc blocks on forever (it waits for the dead waiter); and a
     * thread waiting on a dead process's lock is woken by nothing once
     * the region is panicked. No waiting also means no deadlock cycles. */
    u_int32_t flags = DB_TXN_NOWAIT | (o->read_committed ? DB_READ_COMMITTED : 0);
    int ret = h->env->txn_begin(h->env, NULL, &txn, flags);
    if (ret)
        return ret;
    ret = o->body(h, txn, o);
    if (ret == 0 && o->err == RL_OK) {
        DB_TXN_TOKEN *token = o->read_committed ? NULL : commit_token;
        if (token && (ret = txn->set_commit_token(txn, token)) != 0) {
            (void)txn->abort(txn);
            return ret;
        }
        ret = txn->commit(txn, 0);
        o->commit_failed = ret != 0;
        if (ret == 0 && token)
            commit_token_set = 1;
        return ret;
    }
    int aborted = txn->abort(txn);
    return ret ? ret : aborted;
}

/*
 * Runs o in a transaction: retries it on a lock conflict (with backoff, for
 * up to LOCK_RETRY_NS, holding no reference in between so that a reopen can
 * proceed), reopens the environment and retries on DB_RUNRECOVERY (a few
 * times: recoveries can follow each other when several processes die), and
 * translates the outcome: DB_NOTFOUND -> RL_NOTFOUND (not logged), other
 * Berkeley DB failures -> RL_STORE or RL_NOMEM, logged once here.
 *
 * A commit that fails with DB_RUNRECOVERY (another process panicked the
 * region meanwhile) may still have reached the log, and then recovery keeps
 * it. Only idempotent operations are retried after that; the others (a
 * counter increment, a hit) report RL_STORE rather than risk counting twice.
 */
rl_err store_op_run(store *s, op *o)
{
    int ret;
    unsigned attempt = 0, reopens = 0;
    int64_t started = 0;
    o->s = s;
    for (;;) {
        unsigned gen;
        int waited;
        handles *h = op_acquire(s, &gen, &waited);
        if (waited)
            started = 0; /* the conflict budget is for conflicts, not reopens */
        if (h) {
            ret = op_attempt(h, o);
            op_release(s, h);
        } else {
            ret = DB_RUNRECOVERY; /* a reopen failed: try again (rate-limited) */
            o->commit_failed = 0;
        }
        if (store_retryable(ret)) {
            if (!started)
                started = store_mono_ns();
            if (store_mono_ns() - started < LOCK_RETRY_NS) {
                store_backoff(++attempt);
                continue;
            }
        }
        if (ret == DB_RUNRECOVERY && o->commit_failed && !o->idempotent) {
            rl_error("store %s: %s: the environment failed during commit; the change may or "
                     "may not have been applied: %s",
                     s->home, o->what, db_strerror(ret));
            (void)store_reopen(s, gen); /* for the next operation */
            return RL_STORE;
        }
        if (ret == DB_REP_HANDLE_DEAD && reopens < MAX_REOPENS) {
            reopens++;
            attempt = 0;
            started = 0;
            if (store_reopen_as(s, gen, 0) == 0)
                continue;
            return RL_STORE;
        }
        if (ret == DB_RUNRECOVERY && reopens < MAX_REOPENS) {
            reopens++;
            attempt = 0;
            started = 0;
            if (store_reopen(s, gen) == 0)
                continue;
            return RL_STORE; /* logged by handles_open, or a recent attempt failed */
        }
        break;
    }
    switch (ret) {
    case 0:
        return o->err;
    case DB_NOTFOUND:
        return RL_NOTFOUND;
    case DB_LOCK_DEADLOCK:
    case DB_LOCK_NOTGRANTED:
        rl_error("store %s: %s: gave up after %lld s of lock conflicts (%u attempts): %s", s->home,
                 o->what, LOCK_RETRY_NS / 1000000000LL, attempt, db_strerror(ret));
        return RL_STORE;
    case ENOMEM:
        store_bdb_fail(s->home, o->what, ret);
        return RL_NOMEM;
    default:
        store_bdb_fail(s->home, o->what, ret);
        return RL_STORE;
    }
}

/* ---- the environment's counts ---------------------------------------------- */

static int activity_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    store_activity *a = o->arg;
    DB_TXN_STAT *ts = NULL;
    DB_LOG_STAT *ls = NULL;
    int ret = h->env->txn_stat(h->env, &ts, 0);
    if (ret == 0)
        ret = h->env->log_stat(h->env, &ls, 0);
    if (ret == 0) {
        a->transactions = ts->st_nbegins;
        a->log_records = ls->st_record;
    }
    free(ts); /* Berkeley DB allocates them with malloc */
    free(ls);
    return ret;
}

rl_err store_activity_get(store *s, store_activity *out)
{
    memset(out, 0, sizeof *out);
    op o = {.what = "reading the environment's statistics",
            .body = activity_body,
            .no_txn = 1,
            .idempotent = 1,
            .arg = out};
    return store_op_run(s, &o);
}

/* ---- maintenance ---------------------------------------------------------- */

/* The first failchk call after a death may do the cleanup and still return
 * EBUSY (seen on this platform); the second call reports the real state. */
static int failchk_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    int ret = h->env->failchk(h->env, 0);
    if (ret == EBUSY)
        ret = h->env->failchk(h->env, 0);
    if (ret == EBUSY) {
        rl_warn("store %s: failchk still busy; will retry on the next maintenance run", h->home);
        ret = 0;
    }
    return ret;
}

/* Any call into the environment fails with DB_RUNRECOVERY once it was
 * panicked or recovered by another process; taking and freeing a locker
 * id is about the cheapest. */
static int probe_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    u_int32_t id;
    int ret = h->env->lock_id(h->env, &id);
    return ret ? ret : h->env->lock_id_free(h->env, id);
}

static int checkpoint_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    (void)o;
    return h->env->txn_checkpoint(h->env, CHECKPOINT_KB, CHECKPOINT_MIN, 0);
}

/* The turns of the wake file (wake_take_turn) that store_maintain's jobs
 * take: each job is done by one process per interval for the whole store.
 * Why: every job here works on the whole environment, and with a hundred
 * processes (mod_fcgid starts one per concurrent request) a hundred
 * failchks, checkpoints and sweeps a second contended with the requests
 * for nothing. */
enum { TURN_MAINTAIN = 0, TURN_PURGE = 1, TURN_LEDGER = 2 };

/* A replicated store's maintenance (cluster.h): only what a replica may do
 * (failchk, noticing a recovery) in every process; the writes (the
 * master's heartbeat, abandoned reservations, checkpoints) by the host's
 * listener while it is master. Nothing of the cache lives there. */
static rl_err maintain_replicated(store *s, uint64_t now)
{
    op fc = {
        .what = "freeing what dead processes held (failchk)", .body = failchk_body, .no_txn = 1};
    rl_err e = store_op_run(s, &fc);
    if (e != RL_OK)
        return e;
    e = cluster_maintain(s, now); /* every process: TCP_NODELAY; the listener the rest */
    if (e == RL_OK && cluster_options(s)->listener) {
        op cp = {.what = "checkpointing", .body = checkpoint_body, .no_txn = 1};
        e = store_op_run(s, &cp);
    }
    return e;
}

rl_err store_maintain(store *s, uint64_t now)
{
    if (store_is_replicated(s))
        return maintain_replicated(s, now);
    cache_check_space(s); /* every process: each decides for its own puts */
    if (!wake_take_turn(s->wake, TURN_MAINTAIN, now, 1)) {
        /* Another process does this second's work for the store. This one
         * must still notice, within the second, an environment that was
         * recovered under it: its own request threads may all be stranded
         * (see store_reopen), leaving nothing else to trip over it. */
        op probe = {.what = "checking the environment", .body = probe_body, .no_txn = 1};
        return store_op_run(s, &probe);
    }
    op fc = {
        .what = "freeing what dead processes held (failchk)", .body = failchk_body, .no_txn = 1};
    rl_err e = store_op_run(s, &fc);
    op cp = {.what = "checkpointing", .body = checkpoint_body, .no_txn = 1};
    rl_err e2 = store_op_run(s, &cp);
    if (e == RL_OK)
        e = e2;

    flight_maintain(s, now * 1000); /* logs its own failures */
    /* The store's recent hits, from every process's table of uses: one
     * process a second, so a second's hits make one batch. */
    e2 = store_recency_flush(s, now, NULL);
    if (e == RL_OK)
        e = e2;
    recency_build(s); /* logs its own failures */
    ledger_maintain(s, now, wake_take_turn(s->wake, TURN_LEDGER, now, PURGE_INTERVAL));

    if (wake_take_turn(s->wake, TURN_PURGE, now, PURGE_INTERVAL)) {
        uint64_t removed = 0;
        e2 = store_cache_purge_expired(s, now, PURGE_GRACE, &removed);
        if (e == RL_OK)
            e = e2;
        if (removed)
            rl_info("store %s: purged %llu expired entries", s->home, (unsigned long long)removed);
    }
    return e;
}
