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
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/cluster.h"
#include "store/ledger.h"
#include "store/ledger_int.h"
#include "store/store_int.h"
#include "store/token.h"

#define OPS_MAGIC "RLC1"
#define NO_MASTER_PAUSE_NS (50 * 1000 * 1000L)
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

/* ---- the wire's integers and strings ------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t n;
    int bad;
} reader;

static void put8(rl_buf *b, uint8_t v)
{
    (void)rl_buf_append(b, &v, 1);
}

static void put64(rl_buf *b, uint64_t v)
{
    uint8_t x[8];
    store_put64(x, v);
    (void)rl_buf_append(b, x, 8);
}

static const uint8_t *take(reader *r, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->n -= n;
    return p;
}

static uint8_t get8(reader *r)
{
    const uint8_t *p = take(r, 1);
    return p ? *p : 0;
}

static uint64_t get64(reader *r)
{
    const uint8_t *p = take(r, 8);
    return p ? store_get64(p) : 0;
}

static void get_bytes(reader *r, void *out, size_t n)
{
    const uint8_t *p = take(r, n);
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

/* A token record: the hash, then store_token_encode's bytes with a length. */
static void put_token(rl_buf *b, const store_token *t)
{
    rl_buf rec;
    rl_buf_init(&rec, 0);
    if (store_token_encode(t, &rec) != RL_OK) {
        b->err = b->err ? b->err : RL_BAD_REQUEST;
        rl_buf_release(&rec);
        return;
    }
    (void)rl_buf_append(b, t->hash, STORE_KEY_LEN);
    put64(b, rec.len);
    (void)rl_buf_append(b, rec.data, rec.len);
    rl_buf_release(&rec);
}

static void get_token(reader *r, store_token *t)
{
    memset(t, 0, sizeof *t);
    get_bytes(r, t->hash, STORE_KEY_LEN);
    uint64_t n = get64(r);
    const uint8_t *p = n <= r->n ? take(r, (size_t)n) : (r->bad = 1, NULL);
    if (p && store_token_decode(p, (size_t)n, t) != RL_OK)
        r->bad = 1;
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
typedef rl_err (*op_run)(store *s, reader *r, rl_buf *out);

static rl_err run_reserve(store *s, reader *r, rl_buf *out)
{
    ledger_charge charges[LEDGER_MAX_CHARGES];
    char scopes[LEDGER_MAX_CHARGES][LEDGER_SCOPE_MAX + 1];
    uint64_t now = get64(r);
    uint8_t id[LEDGER_ID_LEN];
    get_bytes(r, id, sizeof id);
    char site[LEDGER_SITE_MAX + 1];
    ledger_owner owner = {.site = site};
    owner.pid = (int32_t)get64(r);
    owner.pid_start = get64(r);
    size_t site_len = get8(r);
    get_bytes(r, site, site_len);
    site[site_len] = 0;
    unsigned n = get8(r);
    if (n == 0 || n > LEDGER_MAX_CHARGES)
        return RL_BAD_REQUEST;
    for (unsigned i = 0; i < n; i++) {
        ledger_charge *c = &charges[i];
        size_t len = get8(r);
        get_bytes(r, scopes[i], len);
        scopes[i][len] = 0;
        c->scope = scopes[i];
        c->window = (ledger_window)get8(r);
        c->partial = get8(r);
        for (int u = 0; u < LEDGER_UNITS; u++)
            c->amount[u] = get64(r);
        for (int u = 0; u < LEDGER_UNITS; u++)
            c->limit[u] = get64(r);
    }
    if (r->bad)
        return RL_BAD_REQUEST;
    if (isolated(s))
        return RL_NO_MASTER; /* nothing this master commits would be acknowledged */
    ledger_refusal why;
    memset(&why, 0, sizeof why);
    rl_err e = ledger_reserve_as(s, charges, n, now, id, &owner, &why);
    if (e == RL_OK && perm_failed_counts(s)) {
        /* Not acknowledged: it may vanish at the next election. */
        static const uint64_t nothing[LEDGER_UNITS] = {0};
        (void)ledger_settle(s, id, nothing, SETTLE_ACTUAL, now);
        (void)cluster_take_perm_failed();
        return RL_NO_MASTER;
    }
    put8(out, (uint8_t)why.charge);
    put8(out, (uint8_t)why.unit);
    put64(out, why.limit);
    put64(out, why.used);
    put64(out, why.amount);
    put64(out, why.start);
    put64(out, why.reset);
    return e;
}

static rl_err run_settle(store *s, reader *r, rl_buf *out)
{
    (void)out;
    uint8_t id[LEDGER_ID_LEN];
    uint64_t actual[LEDGER_UNITS];
    get_bytes(r, id, sizeof id);
    for (int u = 0; u < LEDGER_UNITS; u++)
        actual[u] = get64(r);
    uint64_t now = get64(r);
    if (r->bad)
        return RL_BAD_REQUEST;
    return store_ledger_settle(s, id, actual, now);
}

static rl_err run_release_held(store *s, reader *r, rl_buf *out)
{
    (void)out;
    uint8_t id[LEDGER_ID_LEN];
    get_bytes(r, id, sizeof id);
    uint64_t now = get64(r);
    if (r->bad)
        return RL_BAD_REQUEST;
    return ledger_settle(s, id, NULL, SETTLE_AS_RESERVED, now);
}

static rl_err run_token_put(store *s, reader *r, rl_buf *out)
{
    (void)out;
    int mode = get8(r);
    store_token t;
    get_token(r, &t);
    if (r->bad)
        return RL_BAD_REQUEST;
    return store_token_put(s, &t, (token_put_mode)mode);
}

static rl_err run_token_del(store *s, reader *r, rl_buf *out)
{
    (void)out;
    uint8_t hash[STORE_KEY_LEN];
    get_bytes(r, hash, sizeof hash);
    if (r->bad)
        return RL_BAD_REQUEST;
    return store_token_del(s, hash);
}

static rl_err run_token_revoke(store *s, reader *r, rl_buf *out)
{
    uint8_t hash[STORE_KEY_LEN];
    get_bytes(r, hash, sizeof hash);
    uint64_t now = get64(r);
    if (r->bad)
        return RL_BAD_REQUEST;
    store_token t;
    rl_err e = store_token_revoke(s, hash, now, &t);
    if (e == RL_OK)
        put_token(out, &t);
    return e;
}

static rl_err run_token_rotate(store *s, reader *r, rl_buf *out)
{
    uint8_t old_hash[STORE_KEY_LEN], new_hash[STORE_KEY_LEN];
    get_bytes(r, old_hash, sizeof old_hash);
    get_bytes(r, new_hash, sizeof new_hash);
    uint64_t now = get64(r), until = get64(r);
    if (r->bad)
        return RL_BAD_REQUEST;
    store_token t;
    rl_err e = store_token_rotate(s, old_hash, new_hash, now, until, &t);
    if (e == RL_OK)
        put_token(out, &t);
    return e;
}

enum {
    OP_RESERVE = 1,
    OP_SETTLE,
    OP_TOKEN_PUT,
    OP_TOKEN_DEL,
    OP_TOKEN_REVOKE,
    OP_TOKEN_ROTATE,
    OP_RELEASE_HELD,
};

static const struct {
    uint8_t code;
    const char *what; /* for log lines: "forwarding NAME" */
    op_run run;
} ops[] = {
    {OP_RESERVE, "a budget reservation", run_reserve},
    {OP_SETTLE, "a budget settlement", run_settle},
    {OP_TOKEN_PUT, "a token's record", run_token_put},
    {OP_TOKEN_DEL, "a token's deletion", run_token_del},
    {OP_TOKEN_REVOKE, "a token's revocation", run_token_revoke},
    {OP_TOKEN_ROTATE, "a token's rotation", run_token_rotate},
    {OP_RELEASE_HELD, "the release of a dead process's reservation", run_release_held},
};

static size_t op_index(uint8_t code)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i].code == code)
            return i;
    return (size_t)-1;
}

/* One buffer: the rl_err, then the results (a requester that did not ask
 * for DB_MULTIPLE takes a single-part answer only). */
static void answer(DB_CHANNEL *ch, rl_err e, const rl_buf *results, u_int32_t flags)
{
    if (!(flags & DB_REPMGR_NEED_RESPONSE))
        return;
    rl_buf msg;
    rl_buf_init(&msg, 0);
    uint8_t head[4];
    store_put32(head, (uint32_t)e);
    (void)rl_buf_append(&msg, head, sizeof head);
    if (results && results->len)
        (void)rl_buf_append(&msg, results->data, results->len);
    if (msg.err != RL_OK) { /* out of memory: the bare error still goes */
        rl_buf_release(&msg);
        store_put32(head, (uint32_t)RL_NOMEM);
    }
    DBT part;
    memset(&part, 0, sizeof part);
    part.data = msg.len ? (void *)msg.data : (void *)head;
    part.size = msg.len ? (u_int32_t)msg.len : (u_int32_t)sizeof head;
    int ret = ch->send_msg(ch, &part, 1, 0);
    if (ret)
        rl_warn("cluster: answering a forwarded write: %s", db_strerror(ret));
    rl_buf_release(&msg);
}

void cluster_dispatch(DB_ENV *env, DB_CHANNEL *ch, DBT *req, u_int32_t nreq, u_int32_t flags)
{
    store *s = env->app_private;
    size_t i = nreq == 2 && req[0].size == 5 && memcmp(req[0].data, OPS_MAGIC, 4) == 0
                   ? op_index(((const uint8_t *)req[0].data)[4])
                   : (size_t)-1;
    if (!s || i == (size_t)-1) {
        rl_warn("cluster: a message that is not a Relay write (another Relay version on a site?)");
        answer(ch, RL_BAD_REQUEST, NULL, flags);
        return;
    }
    rl_buf out;
    rl_buf_init(&out, 0);
    reader r = {req[1].data, req[1].size, 0};
    int was = running_here;
    running_here = 1;
    (void)cluster_take_perm_failed();
    rl_err e = ops[i].run(s, &r, &out);
    rl_debug("cluster %s: ran %s from a site: %s", cluster_options(s)->site, ops[i].what,
             rl_err_text(e));
    if (e == RL_OK && perm_failed_counts(s))
        e = RL_NO_MASTER; /* committed but not acknowledged: may be rolled back */
    running_here = was;
    if (out.err != RL_OK)
        e = out.err;
    answer(ch, e, &out, flags);
    rl_buf_release(&out);
}

/* ---- the sending side ---------------------------------------------------------------- */

typedef struct send_arg {
    uint8_t code;
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
            if (now - c->last_join >= JOIN_RETRY_NS && cluster_listener_alive(s)) {
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
    uint8_t head[5];
    memcpy(head, OPS_MAGIC, 4);
    head[4] = a->code;
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
    if (resp.size < 4) {
        free(resp.data);
        o->err = RL_BAD_ENTRY;
        return 0;
    }
    a->answered = (rl_err)store_get32(resp.data);
    (void)rl_buf_append(a->reply, (const uint8_t *)resp.data + 4, resp.size - 4);
    free(resp.data);
    return 0;
}

/* Sends one write and waits for its answer, for a master up to
 * partition_grace. Returns the master's rl_err (results in reply), or
 * RL_NO_MASTER, or RL_STORE (logged). */
static rl_err forward(store *s, uint8_t code, const rl_buf *args, rl_buf *reply)
{
    if (args->err != RL_OK)
        return args->err;
    const store_cluster *opt = cluster_options(s);
    int64_t deadline = store_mono_ns() + (int64_t)opt->partition_grace_ms * 1000000LL;
    send_arg a = {.code = code, .args = args, .reply = reply};
    size_t i = op_index(code);
    for (;;) {
        op o = {.what = ops[i].what, .body = send_body, .no_txn = 1, .arg = &a};
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
    rl_warn("cluster: %s could not reach a master within %u ms", ops[i].what,
            opt->partition_grace_ms);
    return RL_NO_MASTER;
}

/* ---- the forwarded writes ------------------------------------------------------------- */

/* forward for the writes below: args is released here, the results go to
 * reply (NULL: dropped). */
static rl_err forward_args(store *s, uint8_t code, rl_buf *args, rl_buf *reply)
{
    rl_buf dropped;
    rl_buf_init(&dropped, 0);
    rl_err e = forward(s, code, args, reply ? reply : &dropped);
    rl_buf_release(&dropped);
    rl_buf_release(args);
    return e;
}

rl_err cluster_ledger_reserve(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                              uint8_t *id, ledger_refusal *why)
{
    if (n == 0 || n > LEDGER_MAX_CHARGES)
        return ledger_reserve_as(s, charges, n, now, id, NULL, why); /* its own error */
    rl_err e = rl_random(id, LEDGER_ID_LEN);
    if (e != RL_OK)
        return e;
    rl_buf args, reply;
    rl_buf_init(&args, 0);
    rl_buf_init(&reply, 0);
    put64(&args, now);
    (void)rl_buf_append(&args, id, LEDGER_ID_LEN);
    /* The owner: this process, on this host (ledger_maint.c releases its
     * reservation if it dies; only this host can tell). */
    const char *site = cluster_options(s)->site;
    size_t site_len = strnlen(site, LEDGER_SITE_MAX);
    put64(&args, (uint64_t)getpid());
    put64(&args, ledger_own_start());
    put8(&args, (uint8_t)site_len);
    (void)rl_buf_append(&args, site, site_len);
    put8(&args, (uint8_t)n);
    for (unsigned i = 0; i < n; i++) {
        size_t len = charges[i].scope ? strlen(charges[i].scope) : 0;
        if (len == 0 || len > LEDGER_SCOPE_MAX) {
            e = RL_BAD_REQUEST;
            goto out;
        }
        put8(&args, (uint8_t)len);
        (void)rl_buf_append(&args, charges[i].scope, len);
        put8(&args, (uint8_t)charges[i].window);
        put8(&args, (uint8_t)(charges[i].partial != 0));
        for (int u = 0; u < LEDGER_UNITS; u++)
            put64(&args, charges[i].amount[u]);
        for (int u = 0; u < LEDGER_UNITS; u++)
            put64(&args, charges[i].limit[u]);
    }
    e = forward_args(s, OP_RESERVE, &args, &reply);
    if (e == RL_OVER_LIMIT && why) {
        reader r = {(const uint8_t *)reply.data, reply.len, 0};
        why->charge = get8(&r);
        why->unit = (ledger_unit)get8(&r);
        why->limit = get64(&r);
        why->used = get64(&r);
        why->amount = get64(&r);
        why->start = get64(&r);
        why->reset = get64(&r);
        if (r.bad || why->charge >= n)
            e = RL_BAD_ENTRY;
    }
out:
    rl_buf_release(&args); /* released already after a forward: harmless */
    rl_buf_release(&reply);
    return e;
}

rl_err cluster_ledger_settle(store *s, const uint8_t *id, const uint64_t *actual, uint64_t now)
{
    rl_buf args;
    rl_buf_init(&args, 0);
    (void)rl_buf_append(&args, id, LEDGER_ID_LEN);
    for (int u = 0; u < LEDGER_UNITS; u++)
        put64(&args, actual ? actual[u] : 0);
    put64(&args, now);
    return forward_args(s, OP_SETTLE, &args, NULL);
}

rl_err cluster_ledger_release_held(store *s, const uint8_t *id, uint64_t now)
{
    rl_buf args;
    rl_buf_init(&args, 0);
    (void)rl_buf_append(&args, id, LEDGER_ID_LEN);
    put64(&args, now);
    return forward_args(s, OP_RELEASE_HELD, &args, NULL);
}

rl_err cluster_token_put(store *s, const store_token *t, int mode)
{
    rl_buf args;
    rl_buf_init(&args, 0);
    put8(&args, (uint8_t)mode);
    put_token(&args, t);
    return forward_args(s, OP_TOKEN_PUT, &args, NULL);
}

rl_err cluster_token_del(store *s, const uint8_t *hash)
{
    rl_buf args;
    rl_buf_init(&args, 0);
    (void)rl_buf_append(&args, hash, STORE_KEY_LEN);
    return forward_args(s, OP_TOKEN_DEL, &args, NULL);
}

/* The token a revoke or rotate answers with, into out (may be NULL). */
static rl_err token_reply(rl_err e, const rl_buf *reply, store_token *out)
{
    if (e != RL_OK || !out)
        return e;
    reader r = {(const uint8_t *)reply->data, reply->len, 0};
    get_token(&r, out);
    return r.bad ? RL_BAD_ENTRY : RL_OK;
}

rl_err cluster_token_revoke(store *s, const uint8_t *hash, uint64_t now, store_token *out)
{
    rl_buf args, reply;
    rl_buf_init(&args, 0);
    rl_buf_init(&reply, 0);
    (void)rl_buf_append(&args, hash, STORE_KEY_LEN);
    put64(&args, now);
    rl_err e = token_reply(forward_args(s, OP_TOKEN_REVOKE, &args, &reply), &reply, out);
    rl_buf_release(&reply);
    return e;
}

rl_err cluster_token_rotate(store *s, const uint8_t *old_hash, const uint8_t *new_hash,
                            uint64_t now, uint64_t old_until, store_token *out)
{
    rl_buf args, reply;
    rl_buf_init(&args, 0);
    rl_buf_init(&reply, 0);
    (void)rl_buf_append(&args, old_hash, STORE_KEY_LEN);
    (void)rl_buf_append(&args, new_hash, STORE_KEY_LEN);
    put64(&args, now);
    put64(&args, old_until);
    rl_err e = token_reply(forward_args(s, OP_TOKEN_ROTATE, &args, &reply), &reply, out);
    rl_buf_release(&reply);
    return e;
}
