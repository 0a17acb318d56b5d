/*
 * ledger.c — budgets and rate limits: reservations, their settlement, and
 * reading one row (contracts in ledger.h). Window arithmetic and the
 * record formats are in ledger_rec.c; scans, maintenance and verify, which
 * walk whole tables, in ledger_maint.c.
 *
 * Layout, in two databases encrypted like every other:
 *   ledger.db        key: scope, NUL, window kind, window start (ledger_key_encode)
 *                    data: the row (ledger_row_encode, LEDGER_ROW_LEN bytes)
 *   reservations.db  key: the reservation's random id (LEDGER_ID_LEN bytes)
 *                    data: its owner and charges (ledger_hold_encode)
 *
 * Transactions. A reservation reads its rows with write locks in key order
 * (the same order in every transaction, so two reservations that share
 * rows meet at the first of them), checks every charge, then writes the
 * rows and the reservation record; nothing is written when a charge does
 * not fit. A settlement reads the reservation record first (it names the
 * rows), then the rows in key order, and deletes the record. Transactions
 * never wait for a lock (DB_TXN_NOWAIT, see op.c): a conflict returns at
 * once and store_op_run retries after a short, random pause, so there is
 * no deadlock to break, only retries; each transaction touches a handful
 * of records and is short.
 *
 * Both are safe to apply again after a commit whose outcome is unknown (a
 * recovery under it, see store_op_run): a retry first looks for what the
 * earlier attempt did (the reservation record exists / is gone).
 *
 * Failure: Berkeley DB failures are logged by store_op_run; rows or
 * reservations that do not decode are logged here (and reported by
 * verify), never read as zero.
 */
#include "store/ledger.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/base/rl_hex.h"
#include "store/base/rl_log.h"
#include "store/base/rl_secure.h"
#include "store/cluster.h"
#include "store/ledger_int.h"
#include "store/store_int.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- rows ------------------------------------------------------------------ */

/* Reads a row with flags (0 or DB_RMW): 0 with the row (zeroed when
 * absent), or a Berkeley DB error; *bad for a row that does not decode. */
static int row_get(handles *h, DB_TXN *txn, const uint8_t *key, size_t key_len, ledger_row *row,
                   u_int32_t flags, int *bad)
{
    uint8_t buf[LEDGER_ROW_LEN + 8];
    DBT k, d;
    dbt_in(&k, key, key_len);
    dbt_out(&d, buf, sizeof buf);
    memset(row, 0, sizeof *row);
    *bad = 0;
    int ret = h->ledger->get(h->ledger, txn, &k, &d, flags);
    if (ret == DB_NOTFOUND)
        return 0;
    if (ret == DB_BUFFER_SMALL) {
        *bad = 1;
        return 0;
    }
    if (ret == 0 && ledger_row_decode(buf, d.size, row) != 0) {
        memset(row, 0, sizeof *row);
        *bad = 1;
    }
    return ret;
}

static int row_put(handles *h, DB_TXN *txn, const uint8_t *key, size_t key_len,
                   const ledger_row *row)
{
    uint8_t buf[LEDGER_ROW_LEN];
    ledger_row_encode(buf, row);
    DBT k, d;
    dbt_in(&k, key, key_len);
    dbt_in(&d, buf, sizeof buf);
    return h->ledger->put(h->ledger, txn, &k, &d, 0);
}

/* Byte-wise key order, as Berkeley DB's default btree comparison. */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* ---- reserve --------------------------------------------------------------- */

typedef struct reserve_arg {
    const ledger_charge *charges;
    unsigned n;
    unsigned order[LEDGER_MAX_CHARGES]; /* charges in key order */
    ledger_hold *hold;                  /* charge[i] is charges[order[i]] */
    const uint8_t *id;
    const rl_buf *rec; /* the reservation record */
    uint64_t now;
    const ledger_owner *owner; /* NULL: this process */
    store *s;
    ledger_refusal *why;
    unsigned bad_charge; /* a row that does not decode (RL_BAD_ENTRY) */
    int ran;             /* an attempt reached its commit */
    ledger_row rows[LEDGER_MAX_CHARGES];
} reserve_arg;

static int over(uint64_t used, uint64_t amount, uint64_t limit, int partial)
{
    if (!limit)
        return 0;
    return partial ? used >= limit : sat_add(used, amount) > limit;
}

/* The first charge, in the caller's order, that does not fit: 1 and *why
 * filled, or 0. a->rows are in the caller's order. */
static int refuse(reserve_arg *a, ledger_refusal *why)
{
    for (unsigned j = 0; j < a->n; j++) {
        const ledger_charge *c = &a->charges[j];
        for (int u = 0; u < LEDGER_UNITS; u++) {
            uint64_t used = sat_add(a->rows[j].spent[u], a->rows[j].reserved[u]);
            if (!over(used, c->amount[u], c->limit[u], c->partial))
                continue;
            why->charge = j;
            why->unit = (ledger_unit)u;
            why->limit = c->limit[u];
            why->used = used;
            why->amount = c->amount[u];
            why->start = ledger_window_start(c->window, a->now);
            why->reset = ledger_window_end(c->window, why->start);
            return 1;
        }
    }
    return 0;
}

static int reserve_body(handles *h, DB_TXN *txn, op *o)
{
    reserve_arg *a = o->arg;
    DBT k, d;
    int ret, bad;
    dbt_in(&k, a->id, LEDGER_ID_LEN);
    if (a->ran) { /* an earlier attempt's commit failed: did it land? */
        dbt_part(&d, NULL, 0, 0);
        ret = h->holds->get(h->holds, txn, &k, &d, 0);
        if (ret != DB_NOTFOUND)
            return ret; /* 0: it did, and this is done */
    }
    for (unsigned i = 0; i < a->n; i++) {
        unsigned j = a->order[i];
        ret = row_get(h, txn, a->hold->charge[i].key, a->hold->charge[i].key_len, &a->rows[j],
                      DB_RMW, &bad);
        if (ret)
            return ret;
        if (bad) {
            a->bad_charge = j;
            o->err = RL_BAD_ENTRY;
            return 0;
        }
    }
    ledger_refusal why;
    if (refuse(a, &why)) {
        if (a->why)
            *a->why = why;
        o->err = RL_OVER_LIMIT;
        return 0;
    }
    for (unsigned i = 0; i < a->n; i++) {
        unsigned j = a->order[i];
        ledger_row *row = &a->rows[j];
        for (int u = 0; u < LEDGER_UNITS; u++)
            row->reserved[u] = sat_add(row->reserved[u], a->charges[j].amount[u]);
        row->updated = a->now;
        if ((ret = row_put(h, txn, a->hold->charge[i].key, a->hold->charge[i].key_len, row)) != 0)
            return ret;
    }
    dbt_in(&d, a->rec->data, a->rec->len);
    if ((ret = h->holds->put(h->holds, txn, &k, &d, 0)) != 0)
        return ret;
    a->ran = 1;
    return 0;
}

/* Checks the charges and fills a->hold (keys in key order) and a->order.
 * RL_OK, or the error store_ledger_reserve returns for them (logged when
 * it is the caller's mistake). */
static rl_err reserve_prepare(reserve_arg *a, uint64_t now)
{
    ledger_hold *hold = a->hold;
    if (a->n == 0 || a->n > LEDGER_MAX_CHARGES) {
        rl_error("store: a budget reservation needs 1 to %d charges, not %u", LEDGER_MAX_CHARGES,
                 a->n);
        return RL_INTERNAL;
    }
    hold->n = a->n;
    hold->pid = a->owner ? a->owner->pid : (int32_t)getpid();
    hold->pid_start = a->owner ? a->owner->pid_start : ledger_own_start();
    const char *site = a->owner                    ? a->owner->site
                       : store_is_replicated(a->s) ? cluster_options(a->s)->site
                                                   : "";
    snprintf(hold->site, sizeof hold->site, "%s", site ? site : "");
    hold->created = now;
    for (unsigned j = 0; j < a->n; j++) {
        const ledger_charge *c = &a->charges[j];
        if (!ledger_window_known(c->window)) {
            rl_error("store: a budget charge with an unknown window kind (%d)", (int)c->window);
            return RL_INTERNAL;
        }
        /* Insertion by key: at most LEDGER_MAX_CHARGES. */
        uint8_t key[LEDGER_KEY_MAX];
        size_t len =
            ledger_key_encode(key, c->scope, c->window, ledger_window_start(c->window, now));
        if (len == 0)
            return RL_BAD_REQUEST;
        unsigned at = j;
        while (at > 0) {
            int cmp = key_cmp(hold->charge[at - 1].key, hold->charge[at - 1].key_len, key, len);
            if (cmp == 0) {
                rl_error("store: the budget charge %s (%s) appears twice in one reservation",
                         c->scope, ledger_window_name(c->window));
                return RL_INTERNAL;
            }
            if (cmp < 0)
                break;
            hold->charge[at] = hold->charge[at - 1];
            a->order[at] = a->order[at - 1];
            at--;
        }
        memcpy(hold->charge[at].key, key, len);
        hold->charge[at].key_len = len;
        memcpy(hold->charge[at].amount, c->amount, sizeof c->amount);
        a->order[at] = j;
    }
    return RL_OK;
}

rl_err ledger_reserve_as(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                         const uint8_t id[LEDGER_ID_LEN], const ledger_owner *owner,
                         ledger_refusal *why)
{
    int given_id = owner != NULL;
    reserve_arg *a = calloc(1, sizeof *a);
    ledger_hold *hold = calloc(1, sizeof *hold);
    rl_buf rec;
    rl_buf_init(&rec, 0);
    rl_err e = RL_NOMEM;
    if (!a || !hold)
        goto out;
    a->charges = charges;
    a->n = n;
    a->hold = hold;
    a->id = id;
    a->rec = &rec;
    a->now = now;
    a->why = why;
    a->ran = given_id; /* reserve_body then takes an id already held as done */
    a->owner = owner;
    a->s = s;
    if ((e = reserve_prepare(a, now)) != RL_OK || (e = ledger_hold_encode(hold, &rec)) != RL_OK)
        goto out;
    op o = {.what = "reserving against budgets", .body = reserve_body, .arg = a, .idempotent = 1};
    e = store_op_run(s, &o);
    if (e == RL_BAD_ENTRY)
        rl_error("store %s: the ledger row of %s (%s) does not decode; refusing to spend against "
                 "a budget that cannot be read (relay-admin verify reports it)",
                 store_home_of(s), charges[a->bad_charge].scope,
                 ledger_window_name(charges[a->bad_charge].window));
out:
    rl_buf_release(&rec);
    free(hold);
    free(a);
    return e;
}

rl_err store_ledger_reserve(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                            uint8_t id[LEDGER_ID_LEN], ledger_refusal *why)
{
    if (cluster_forwards(s))
        return cluster_ledger_reserve(s, charges, n, now, id, why);
    if (rl_random(id, LEDGER_ID_LEN) != RL_OK) {
        rl_error("store: drawing a reservation id: %s", strerror(errno));
        return RL_INTERNAL;
    }
    return ledger_reserve_as(s, charges, n, now, id, NULL, why);
}

/* ---- settle ------------------------------------------------------------------ */

typedef struct settle_arg {
    const uint8_t *id;
    const uint64_t *actual;
    settle_mode mode;
    uint64_t now;
    int ran;          /* an attempt reached its commit */
    int damaged;      /* the record did not decode: deleted */
    unsigned skipped; /* rows that did not decode: left as they are */
    ledger_hold hold;
} settle_arg;

static int settle_body(handles *h, DB_TXN *txn, op *o)
{
    settle_arg *a = o->arg;
    DBT k, d;
    int ret, bad;
    a->damaged = 0;
    a->skipped = 0;
    dbt_in(&k, a->id, LEDGER_ID_LEN);
    memset(&d, 0, sizeof d);
    d.flags = DB_DBT_MALLOC;
    ret = h->holds->get(h->holds, txn, &k, &d, DB_RMW);
    if (ret == DB_NOTFOUND && a->ran)
        return 0; /* an earlier attempt's commit landed */
    if (ret)
        return ret;
    a->damaged = ledger_hold_decode(d.data, d.size, &a->hold) != 0;
    free(d.data);
    for (unsigned i = 0; !a->damaged && i < a->hold.n; i++) {
        ledger_row row;
        const uint8_t *key = a->hold.charge[i].key;
        size_t len = a->hold.charge[i].key_len;
        if ((ret = row_get(h, txn, key, len, &row, DB_RMW, &bad)) != 0)
            return ret;
        if (bad) {
            a->skipped++;
            continue;
        }
        for (int u = 0; u < LEDGER_UNITS; u++) {
            uint64_t held = a->hold.charge[i].amount[u];
            row.reserved[u] -= held < row.reserved[u] ? held : row.reserved[u];
            row.spent[u] = sat_add(row.spent[u], a->mode == SETTLE_ACTUAL ? a->actual[u] : held);
        }
        row.updated = a->now;
        if ((ret = row_put(h, txn, key, len, &row)) != 0)
            return ret;
    }
    if ((ret = h->holds->del(h->holds, txn, &k, 0)) != 0)
        return ret;
    a->ran = 1;
    return 0;
}

/* Settles one reservation; a record or rows that do not decode are logged
 * here (once, after the transaction). */
rl_err ledger_settle(store *s, const uint8_t id[LEDGER_ID_LEN], const uint64_t *actual,
                     settle_mode mode, uint64_t now)
{
    settle_arg *a = calloc(1, sizeof *a);
    if (!a)
        return RL_NOMEM;
    a->id = id;
    a->actual = actual;
    a->mode = mode;
    a->now = now;
    op o = {
        .what = "settling a budget reservation", .body = settle_body, .arg = a, .idempotent = 1};
    rl_err e = store_op_run(s, &o);
    char hex[2 * LEDGER_ID_LEN + 1];
    rl_hex_encode(id, LEDGER_ID_LEN, hex);
    if (e == RL_OK && a->damaged)
        rl_error("store %s: reservation %s does not decode: removed, but what it reserved stays "
                 "reserved until its windows end",
                 store_home_of(s), hex);
    if (e == RL_OK && a->skipped)
        rl_error("store %s: reservation %s: %u of its ledger rows do not decode and were left "
                 "as they are",
                 store_home_of(s), hex, a->skipped);
    free(a);
    return e;
}

rl_err store_ledger_settle(store *s, const uint8_t id[LEDGER_ID_LEN],
                           const uint64_t actual[LEDGER_UNITS], uint64_t now)
{
    if (cluster_forwards(s))
        return cluster_ledger_settle(s, id, actual, now);
    return ledger_settle(s, id, actual, SETTLE_ACTUAL, now);
}

rl_err store_ledger_release(store *s, const uint8_t id[LEDGER_ID_LEN], uint64_t now)
{
    static const uint64_t nothing[LEDGER_UNITS] = {0};
    return store_ledger_settle(s, id, nothing, now);
}

/* ---- reading --------------------------------------------------------------- */

typedef struct read_arg {
    const uint8_t *key;
    size_t key_len;
    ledger_row *row;
} read_arg;

static int read_body(handles *h, DB_TXN *txn, op *o)
{
    read_arg *a = o->arg;
    int bad, ret = row_get(h, txn, a->key, a->key_len, a->row, 0, &bad);
    if (ret == 0 && bad)
        o->err = RL_BAD_ENTRY;
    return ret;
}

rl_err store_ledger_read(store *s, const char *scope, ledger_window w, uint64_t now,
                         ledger_row *out)
{
    uint8_t key[LEDGER_KEY_MAX];
    uint64_t start = ledger_window_start(w, now);
    size_t len = ledger_key_encode(key, scope, w, start);
    if (len == 0)
        return RL_BAD_REQUEST;
    read_arg a = {key, len, out};
    op o = {.what = "reading a ledger row",
            .body = read_body,
            .arg = &a,
            .idempotent = 1,
            .read_committed = 1};
    rl_err e = store_op_run(s, &o);
    out->start = start;
    out->end = ledger_window_end(w, start);
    return e;
}
