/*
 * cluster_ops.c — the writes of a replicated store (cluster.h), forwarded
 * to the master on a repmgr message channel and run there.
 *
 * A request is two buffers: a header (magic "RLC1", the operation) and the
 * operation's arguments; the answer one buffer: the rl_err (4 bytes) and
 * the operation's results. Integers are big-endian; every site runs the
 * same Relay (the magic changes with the layout). The master's side
 * (cluster_dispatch) decodes, runs the store's own function (ledger.c,
 * token.c) with a flag that stops it forwarding again, and answers.
 *
 * Retries. A request the master answered with nothing in time
 * (forward_timeout_ms: the master hung, or a partition) may still have
 * run, so it is sent again only when that is harmless: a reservation
 * carries its id, chosen here, and the master treats an id it already
 * holds as done; a settlement of a reservation that is gone is
 * RL_NOTFOUND, as after any settle. While no master is known (DB_REP_UNAVAIL
 * at once), the request is sent again every 50 ms until partition_grace.
 *
 * Acknowledgements. The master's commit returns 0 even when the replicas
 * did not acknowledge it under the ack policy; it may then be rolled back
 * by the next election. A write whose commit raised PERM_FAILED is
 * answered RL_NO_MASTER (a reservation is released first), so the caller
 * neither spends against a reservation nor trusts a token change the group
 * may lose.
 *
 * Threads: forwarding runs in any thread; the channel of a handle set is
 * shared by its threads (made on first use under conn.mu). The dispatch
 * runs on the listener's message threads, or in the caller's own thread
 * when the master is this host (repmgr calls it directly).
 */
#include <db.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/cluster.h"
#include "store/cluster_wire.h"
#include "store/ledger.h"
#include "store/ledger_int.h"
#include "store/store_int.h"
#include "store/token.h"

#define NO_MASTER_PAUSE_NS (50 * 1000 * 1000L)
_Static_assert(CLUSTER_WIRE_TOKEN == DB_TXN_TOKEN_SIZE, "the wire carries Berkeley DB's token");
#define JOIN_RETRY_NS (200 * 1000 * 1000LL) /* a subordinate's repmgr_start, when refused */

struct cluster_conn {
    pthread_mutex_t mu;
    DB_CHANNEL *channel;
    int joined;        /* repmgr_start answered for this process (see cluster_env_start) */
    _Atomic int swept; /* TCP_NODELAY set after the first request opened its connection */
    int64_t last_join;
};

/* Set while this thread runs a dispatched write: the store's functions then
 * run it here instead of forwarding it again. */
static _Thread_local int running_here;

int cluster_forwards(const store *s)
{
    return store_is_replicated(s) && !running_here;
}

void cluster_conn_close(handles *h)
{
    struct cluster_conn *c = h->conn;
    if (!c)
        return;
    if (c->channel)
        (void)c->channel->close(c->channel, 0);
    pthread_mutex_destroy(&c->mu);
    free(c);
    h->conn = NULL;
}

/* ---- the master's side ---------------------------------------------------------- */

/* A subordinate on the master (see below) asks the listener's view: a
 * master with no other site connected can get nothing acknowledged, so
 * it grants nothing (a master cut off from the group keeps its role: 5.3
 * has no leases here). */
static int isolated(store *s)
{
    return !cluster_options(s)->listener && cluster_view_isolated(s, (uint64_t)time(NULL));
}

/* Whether this thread's last commit was not acknowledged, as far as it
 * can tell. Only the listener can: in Berkeley DB 5.3 a subordinate
 * process on the master (a worker of the master's host, whose requests to
 * DB_EID_MASTER repmgr hands to its own dispatch) sends its log records
 * over connections it opens itself, on demand, and its first commits find
 * none open yet: they report PERM_FAILED at once although the listener
 * ships the same log to the replicas a moment later (seen in
 * cluster.test.mjs: every worker's first reservation refused). Such
 * commits are kept, so the budget bound can be passed by what those few
 * commits reserved if the master dies within that moment (README). */
static int perm_failed_counts(store *s)
{
    int failed = cluster_take_perm_failed();
    return failed && (cluster_options(s)->listener || isolated(s));
}

/* One operation: decodes its arguments from r, runs it, writes its results
 * to out, and returns its rl_err. */
/* One operation run on the master: m decoded, its results to out. */
typedef rl_err (*op_run)(store *s, const cluster_msg *m, rl_buf *out);

static rl_err run_reserve(store *s, const cluster_msg *m, rl_buf *out)
{
    if (isolated(s))
        return RL_NO_MASTER; /* nothing this master commits would be acknowledged */
    ledger_owner owner = {m->pid, m->pid_start, m->site};
    ledger_refusal why;
    memset(&why, 0, sizeof why);
    rl_err e = ledger_reserve_as(s, m->charges, m->n, m->now, m->id, &owner, &why);
    if (e == RL_OK && perm_failed_counts(s)) {
        /* Not acknowledged: it may vanish at the next election. */
        static const uint64_t nothing[LEDGER_UNITS] = {0};
        (void)ledger_settle(s, m->id, nothing, SETTLE_ACTUAL, m->now);
        (void)cluster_take_perm_failed();
        return RL_NO_MASTER;
    }
    if (e == RL_OVER_LIMIT)
        (void)cluster_refusal_encode(&why, out);
    return e;
}

static rl_err run_settle(store *s, const cluster_msg *m, rl_buf *out)
{
    (void)out;
    return store_ledger_settle(s, m->id, m->actual, m->now);
}

static rl_err run_release_held(store *s, const cluster_msg *m, rl_buf *out)
{
    (void)out;
    return ledger_settle(s, m->id, NULL, SETTLE_AS_RESERVED, m->now);
}

static rl_err run_token_put(store *s, const cluster_msg *m, rl_buf *out)
{
    (void)out;
    return store_token_put(s, &m->token, (token_put_mode)m->mode);
}

static rl_err run_token_del(store *s, const cluster_msg *m, rl_buf *out)
{
    (void)out;
    return store_token_del(s, m->hash);
}

static rl_err run_token_revoke(store *s, const cluster_msg *m, rl_buf *out)
{
    store_token t;
    rl_err e = store_token_revoke(s, m->hash, m->now, &t);
    return e == RL_OK ? cluster_token_encode(&t, out) : e;
}

static rl_err run_token_rotate(store *s, const cluster_msg *m, rl_buf *out)
{
    store_token t;
    rl_err e = store_token_rotate(s, m->hash, m->new_hash, m->now, m->until, &t);
    return e == RL_OK ? cluster_token_encode(&t, out) : e;
}

/* By cluster_op, from 1. */
static const op_run runs[CLUSTER_OPS + 1] = {
    [CLUSTER_OP_RESERVE] = run_reserve,           [CLUSTER_OP_SETTLE] = run_settle,
    [CLUSTER_OP_TOKEN_PUT] = run_token_put,       [CLUSTER_OP_TOKEN_DEL] = run_token_del,
    [CLUSTER_OP_TOKEN_REVOKE] = run_token_revoke, [CLUSTER_OP_TOKEN_ROTATE] = run_token_rotate,
    [CLUSTER_OP_RELEASE_HELD] = run_release_held,
};

/* One buffer (a requester that did not ask for DB_MULTIPLE takes a
 * single-part answer only): cluster_answer_encode's. token: the commit
 * token of the write, or NULL. */
static void answer(DB_CHANNEL *ch, rl_err e, const uint8_t *token, const rl_buf *results,
                   u_int32_t flags)
{
    if (!(flags & DB_REPMGR_NEED_RESPONSE))
        return;
    rl_buf msg;
    rl_buf_init(&msg, 0);
    if (cluster_answer_encode(e, token, results, &msg) != RL_OK) {
        rl_buf_reset(&msg); /* out of memory: the bare error still goes */
        (void)cluster_answer_encode(RL_NOMEM, NULL, NULL, &msg);
    }
    DBT part;
    memset(&part, 0, sizeof part);
    part.data = msg.data;
    part.size = (u_int32_t)msg.len;
    int ret = msg.len ? ch->send_msg(ch, &part, 1, 0) : ENOMEM;
    if (ret)
        rl_warn("cluster: answering a forwarded write: %s", db_strerror(ret));
    rl_buf_release(&msg);
}

void cluster_dispatch(DB_ENV *env, DB_CHANNEL *ch, DBT *req, u_int32_t nreq, u_int32_t flags)
{
    store *s = env->app_private;
    cluster_op code = nreq == 2 ? cluster_wire_head_op(req[0].data, req[0].size) : 0;
    if (!s || !code) {
        rl_warn("cluster: a message that is not a Relay write (another Relay version on a site?)");
        answer(ch, RL_BAD_REQUEST, NULL, NULL, flags);
        return;
    }
    cluster_msg *m = malloc(sizeof *m);
    rl_buf out;
    rl_buf_init(&out, 0);
    rl_err e = m ? cluster_msg_decode(code, req[1].data, req[1].size, m) : RL_NOMEM;
    if (e == RL_BAD_REQUEST)
        rl_warn("cluster: %s that does not decode (another Relay version on a site?)",
                cluster_wire_op_name(code));
    DB_TXN_TOKEN token;
    int committed = 0;
    if (e == RL_OK) {
        int was = running_here;
        running_here = 1;
        (void)cluster_take_perm_failed();
        store_capture_commits(&token);
        e = runs[code](s, m, &out);
        committed = store_commits_captured();
        store_capture_commits(NULL);
        if (e == RL_OK && perm_failed_counts(s))
            e = RL_NO_MASTER; /* committed but not acknowledged: may be rolled back */
        running_here = was;
        rl_debug("cluster %s: ran %s from a site: %s", cluster_options(s)->site,
                 cluster_wire_op_name(code), rl_err_text(e));
    }
    if (out.err != RL_OK)
        e = out.err;
    answer(ch, e, committed && e == RL_OK ? token.buf : NULL, &out, flags);
    rl_buf_release(&out);
    free(m);
}

/* ---- the sending side ---------------------------------------------------------------- */

typedef struct send_arg {
    cluster_op code;
    const rl_buf *args;
    rl_buf *reply; /* the results, after the rl_err */
    rl_err answered;
    int no_master; /* DB_REP_UNAVAIL, DB_TIMEOUT, or no listener on this host */
} send_arg;

static struct cluster_conn *conn_of(handles *h)
{
    /* Made under the store's handles: a race on the pointer is settled by
     * a compare-and-swap, the loser frees its copy. */
    struct cluster_conn *c = __atomic_load_n(&h->conn, __ATOMIC_ACQUIRE);
    if (c)
        return c;
    struct cluster_conn *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    pthread_mutex_init(&n->mu, NULL);
    n->joined = -1;
    struct cluster_conn *expected = NULL;
    if (__atomic_compare_exchange_n(&h->conn, &expected, n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return n;
    pthread_mutex_destroy(&n->mu);
    free(n);
    return expected;
}

/* The handle set's channel to the master, made on first use; a subordinate
 * that found no listener at its open joins it here (at most every 200 ms). */
static int channel_of(store *s, handles *h, DB_CHANNEL **out)
{
    struct cluster_conn *c = conn_of(h);
    if (!c)
        return ENOMEM;
    pthread_mutex_lock(&c->mu);
    int ret = 0;
    if (!c->channel) {
        ret = h->env->repmgr_channel(h->env, DB_EID_MASTER, &c->channel, 0);
        if (ret == EINVAL && !cluster_options(s)->listener) {
            int64_t now = store_mono_ns();
            if (now - c->last_join >= JOIN_RETRY_NS && cluster_may_join(s, h->env)) {
                c->last_join = now;
                int started = h->env->repmgr_start(h->env, 0, DB_REP_ELECTION);
                if (started == 0 || started == DB_REP_IGNORE)
                    ret = h->env->repmgr_channel(h->env, DB_EID_MASTER, &c->channel, 0);
            }
            if (ret == EINVAL)
                ret = DB_REP_UNAVAIL; /* no listener on this host (yet) */
        }
        if (ret)
            c->channel = NULL;
        else
            cluster_nodelay_sweep(); /* the channel may have opened a connection */
    }
    *out = c->channel;
    pthread_mutex_unlock(&c->mu);
    return ret;
}

static int send_body(handles *h, DB_TXN *txn, op *o)
{
    (void)txn;
    send_arg *a = o->arg;
    DB_CHANNEL *ch = NULL;
    a->no_master = 0;
    rl_buf_reset(a->reply);
    int ret = channel_of(o->s, h, &ch);
    if (ret == DB_REP_UNAVAIL || ret == DB_NOSERVER) {
        a->no_master = 1;
        return 0;
    }
    if (ret)
        return ret;
    uint8_t head[CLUSTER_WIRE_HEAD];
    cluster_wire_head(a->code, head);
    DBT parts[2];
    memset(parts, 0, sizeof parts);
    parts[0].data = head;
    parts[0].size = sizeof head;
    parts[1].data = a->args->data;
    parts[1].size = (u_int32_t)a->args->len;
    DBT resp;
    memset(&resp, 0, sizeof resp);
    resp.flags = DB_DBT_MALLOC;
    const store_cluster *opt = cluster_options(o->s);
    db_timeout_t us =
        (db_timeout_t)(opt->forward_timeout_ms ? opt->forward_timeout_ms : 500) * 1000;
    ret = ch->send_request(ch, parts, 2, &resp, us, 0);
    struct cluster_conn *c = h->conn;
    if (c && !atomic_exchange(&c->swept, 1))
        cluster_nodelay_sweep(); /* the first request opened the connection to the master */
    if (ret == DB_REP_UNAVAIL || ret == DB_TIMEOUT || ret == DB_NOSERVER) {
        a->no_master = 1;
        return 0;
    }
    if (ret)
        return ret;
    int has_token = 0;
    DB_TXN_TOKEN token;
    const uint8_t *results = NULL;
    size_t results_len = 0;
    if (cluster_answer_decode(resp.data, resp.size, &a->answered, &has_token, token.buf, &results,
                              &results_len) != RL_OK) {
        free(resp.data);
        o->err = RL_BAD_ENTRY;
        return 0;
    }
    (void)rl_buf_append(a->reply, results, results_len);
    free(resp.data);
    /* Read your writes: wait (up to forward_timeout) until this host's
     * copy has applied the master's commit, so the token just made works
     * here at once. Rolled back meanwhile (DB_NOTFOUND): not kept, as if no
     * master had taken it. A timeout only means the copy is behind. */
    if (has_token) {
        ret = h->env->txn_applied(h->env, &token, us, 0);
        if (ret == DB_NOTFOUND)
            a->answered = RL_NO_MASTER;
        else if (ret && ret != DB_TIMEOUT)
            rl_debug("cluster: waiting for a forwarded write to be applied here: %s",
                     db_strerror(ret));
    }
    return 0;
}

/* Sends one write and waits for its answer, for a master up to
 * partition_grace. Returns the master's rl_err (results in reply), or
 * RL_NO_MASTER, or RL_STORE (logged). */
static rl_err forward(store *s, cluster_op code, const rl_buf *args, rl_buf *reply)
{
    if (args->err != RL_OK)
        return args->err;
    const store_cluster *opt = cluster_options(s);
    int64_t deadline = store_mono_ns() + (int64_t)opt->partition_grace_ms * 1000000LL;
    send_arg a = {.code = code, .args = args, .reply = reply};
    for (;;) {
        op o = {.what = cluster_wire_op_name(code), .body = send_body, .no_txn = 1, .arg = &a};
        rl_err e = store_op_run(s, &o);
        if (e != RL_OK) {
            cluster_count_forward(s, 1);
            return e;
        }
        /* The master's own RL_NO_MASTER (nothing acknowledged) is waited
         * out like no master at all: what it answered so was not kept. */
        if (!a.no_master && a.answered != RL_NO_MASTER) {
            cluster_count_forward(s, 0);
            return a.answered;
        }
        if (store_mono_ns() >= deadline)
            break;
        struct timespec pause = {0, NO_MASTER_PAUSE_NS};
        nanosleep(&pause, NULL);
    }
    cluster_count_forward(s, 1);
    rl_warn("cluster: %s could not reach a master within %u ms", cluster_wire_op_name(code),
            opt->partition_grace_ms);
    return RL_NO_MASTER;
}

/* ---- the forwarded writes ------------------------------------------------------------- */

/* Sends m (m->op) and waits for the answer: the master's rl_err, results
 * into reply (NULL: dropped). */
static rl_err forward_msg(store *s, const cluster_msg *m, rl_buf *reply)
{
    rl_buf args, dropped;
    rl_buf_init(&args, 0);
    rl_buf_init(&dropped, 0);
    rl_err e = cluster_msg_encode(m, &args);
    if (e == RL_OK)
        e = forward(s, m->op, &args, reply ? reply : &dropped);
    rl_buf_release(&args);
    rl_buf_release(&dropped);
    return e;
}

/* A message of op, zeroed, or NULL (out of memory): cluster_msg is large
 * (its charges' scopes), so it lives on the heap, not a thread's stack. */
static cluster_msg *msg_new(cluster_op code, uint64_t now)
{
    cluster_msg *m = calloc(1, sizeof *m);
    if (m) {
        m->op = code;
        m->now = now;
    }
    return m;
}

rl_err cluster_ledger_reserve(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                              uint8_t *id, ledger_refusal *why)
{
    if (n == 0 || n > LEDGER_MAX_CHARGES)
        return ledger_reserve_as(s, charges, n, now, id, NULL, why); /* its own error */
    rl_err e = rl_random(id, LEDGER_ID_LEN);
    cluster_msg *m = e == RL_OK ? msg_new(CLUSTER_OP_RESERVE, now) : NULL;
    if (!m)
        return e == RL_OK ? RL_NOMEM : e;
    memcpy(m->id, id, LEDGER_ID_LEN);
    /* The owner: this process, on this host (ledger_maint.c releases its
     * reservation if it dies; only this host can tell). */
    m->pid = (int32_t)getpid();
    m->pid_start = ledger_own_start();
    snprintf(m->site, sizeof m->site, "%s", cluster_options(s)->site);
    m->n = n;
    memcpy(m->charges, charges, n * sizeof *charges);
    rl_buf reply;
    rl_buf_init(&reply, 0);
    e = forward_msg(s, m, &reply);
    if (e == RL_OVER_LIMIT && why && cluster_refusal_decode(reply.data, reply.len, n, why) != RL_OK)
        e = RL_BAD_ENTRY;
    rl_buf_release(&reply);
    free(m);
    return e;
}

rl_err cluster_ledger_settle(store *s, const uint8_t *id, const uint64_t *actual, uint64_t now)
{
    cluster_msg *m = msg_new(CLUSTER_OP_SETTLE, now);
    if (!m)
        return RL_NOMEM;
    memcpy(m->id, id, LEDGER_ID_LEN);
    if (actual)
        memcpy(m->actual, actual, sizeof m->actual);
    rl_err e = forward_msg(s, m, NULL);
    free(m);
    return e;
}

rl_err cluster_ledger_release_held(store *s, const uint8_t *id, uint64_t now)
{
    cluster_msg *m = msg_new(CLUSTER_OP_RELEASE_HELD, now);
    if (!m)
        return RL_NOMEM;
    memcpy(m->id, id, LEDGER_ID_LEN);
    rl_err e = forward_msg(s, m, NULL);
    free(m);
    return e;
}

rl_err cluster_token_put(store *s, const store_token *t, int mode)
{
    cluster_msg *m = msg_new(CLUSTER_OP_TOKEN_PUT, 0);
    if (!m)
        return RL_NOMEM;
    m->mode = mode;
    m->token = *t;
    rl_err e = forward_msg(s, m, NULL);
    free(m);
    return e;
}

/* A token operation by hash (del, revoke, rotate) whose answer may carry
 * the token as stored, into out (NULL: not wanted). */
static rl_err token_op(store *s, cluster_msg *m, store_token *out)
{
    rl_buf reply;
    rl_buf_init(&reply, 0);
    rl_err e = forward_msg(s, m, &reply);
    if (e == RL_OK && out && cluster_token_decode(reply.data, reply.len, out) != RL_OK)
        e = RL_BAD_ENTRY;
    rl_buf_release(&reply);
    free(m);
    return e;
}

rl_err cluster_token_del(store *s, const uint8_t *hash)
{
    cluster_msg *m = msg_new(CLUSTER_OP_TOKEN_DEL, 0);
    if (!m)
        return RL_NOMEM;
    memcpy(m->hash, hash, STORE_KEY_LEN);
    return token_op(s, m, NULL);
}

rl_err cluster_token_revoke(store *s, const uint8_t *hash, uint64_t now, store_token *out)
{
    cluster_msg *m = msg_new(CLUSTER_OP_TOKEN_REVOKE, now);
    if (!m)
        return RL_NOMEM;
    memcpy(m->hash, hash, STORE_KEY_LEN);
    return token_op(s, m, out);
}

rl_err cluster_token_rotate(store *s, const uint8_t *old_hash, const uint8_t *new_hash,
                            uint64_t now, uint64_t old_until, store_token *out)
{
    cluster_msg *m = msg_new(CLUSTER_OP_TOKEN_ROTATE, now);
    if (!m)
        return RL_NOMEM;
    memcpy(m->hash, old_hash, STORE_KEY_LEN);
    memcpy(m->new_hash, new_hash, STORE_KEY_LEN);
    m->until = old_until;
    return token_op(s, m, out);
}
