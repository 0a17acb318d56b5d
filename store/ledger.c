/*
 * ledger.c — budgets and rate limits: ledger rows and reservations
 * (contracts in ledger.h).
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
 * Maintenance (ledger_maintain, one process per second for the store):
 * reservations are read in batches with read-committed reads; those of dead
 * owners, or older than store.hold_max_age, are settled as spent, each in
 * its own transaction. Once a minute the rows of long-ended windows go, a
 * bounded slice of the table per run.
 *
 * Failure: Berkeley DB failures are logged by store_op_run; rows or
 * reservations that do not decode are logged here (and reported by
 * verify), never read as zero.
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
#include "store/base/rl_secure.h"
#include "store/store_int.h"

#define ROW_MAGIC "RLL1"
#define HOLD_MAGIC "RLR1"
#define HOLD_FIXED (4 + 4 + 8 + 8 + 1)
#define BATCH 256                  /* records per read-only transaction of a walk */
#define BATCH_BYTES (1u << 20)     /* ... or this many bytes */
#define SWEEP_TIME_MS 50           /* one maintenance run sweeps rows about this long */
#define DEFAULT_HOLD_MAX_AGE 90000 /* 25 h: see store_options.hold_max_age */

/* The window kinds, by their value: name, and how long a row is kept
 * after its window ended. */
static const struct {
    const char *name;
    uint64_t keep;
} windows[] = {
    {"?", 0},
    [LEDGER_MINUTE] = {"minute", LEDGER_KEEP_MINUTE},
    [LEDGER_DAY] = {"day", LEDGER_KEEP_DAY},
    [LEDGER_MONTH] = {"month", LEDGER_KEEP_MONTH},
};
static const char *const unit_names[] = {"usd", "tokens", "requests"};

static int window_known(ledger_window w)
{
    return w >= LEDGER_MINUTE && w <= LEDGER_MONTH;
}

const char *ledger_window_name(ledger_window w)
{
    return windows[window_known(w) ? w : 0].name;
}

const char *ledger_unit_name(ledger_unit u)
{
    return (unsigned)u < LEDGER_UNITS ? unit_names[u] : "?";
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- windows --------------------------------------------------------------- */

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar, and
 * back (Howard Hinnant's algorithms, for years from 1970 on). Pure
 * arithmetic: no time zone, no library state, exact for every month end. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    z += 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

uint64_t ledger_window_start(ledger_window w, uint64_t now)
{
    switch (w) {
    case LEDGER_MINUTE:
        return now - now % 60;
    case LEDGER_DAY:
        return now - now % 86400;
    case LEDGER_MONTH: {
        int64_t y, m;
        civil_from_days((int64_t)(now / 86400), &y, &m);
        return (uint64_t)days_from_civil(y, m, 1) * 86400;
    }
    }
    return 0;
}

uint64_t ledger_window_end(ledger_window w, uint64_t start)
{
    switch (w) {
    case LEDGER_MINUTE:
        return start + 60;
    case LEDGER_DAY:
        return start + 86400;
    case LEDGER_MONTH: {
        int64_t y, m;
        civil_from_days((int64_t)(start / 86400), &y, &m);
        return (uint64_t)days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
    }
    }
    return 0;
}

/* ---- encodings ------------------------------------------------------------- */

/* Whether the n bytes at p may be a scope: 1 to LEDGER_SCOPE_MAX bytes, no
 * control characters (scopes hold names from requests, and go into log
 * lines). */
static int scope_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > LEDGER_SCOPE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

size_t ledger_key_encode(uint8_t *out, const char *scope, ledger_window w, uint64_t start)
{
    size_t n = scope ? strnlen(scope, LEDGER_SCOPE_MAX + 1) : 0;
    if (!scope_ok((const uint8_t *)scope, n) || !window_known(w))
        return 0;
    memcpy(out, scope, n);
    out[n] = '\0';
    out[n + 1] = (uint8_t)w;
    store_put64(out + n + 2, start);
    return n + 10;
}

int ledger_key_decode(const uint8_t *key, size_t n, char *scope, ledger_window *w, uint64_t *start)
{
    const uint8_t *nul = memchr(key, '\0', n < LEDGER_SCOPE_MAX + 1 ? n : LEDGER_SCOPE_MAX + 1);
    if (!nul || (size_t)(nul - key) + 10 != n || !scope_ok(key, (size_t)(nul - key)))
        return -1;
    size_t len = (size_t)(nul - key);
    ledger_window kind = (ledger_window)key[len + 1];
    uint64_t at = store_get64(key + len + 2);
    if (!window_known(kind) || ledger_window_start(kind, at) != at)
        return -1;
    memcpy(scope, key, len);
    scope[len] = '\0';
    *w = kind;
    *start = at;
    return 0;
}

void ledger_row_encode(uint8_t out[LEDGER_ROW_LEN], const ledger_row *row)
{
    memcpy(out, ROW_MAGIC, 4);
    store_put64(out + 4, row->updated);
    for (int u = 0; u < LEDGER_UNITS; u++) {
        store_put64(out + 12 + 8 * u, row->spent[u]);
        store_put64(out + 12 + 8 * (LEDGER_UNITS + u), row->reserved[u]);
    }
}

int ledger_row_decode(const uint8_t *p, size_t n, ledger_row *row)
{
    if (n != LEDGER_ROW_LEN || memcmp(p, ROW_MAGIC, 4) != 0)
        return -1;
    row->updated = store_get64(p + 4);
    for (int u = 0; u < LEDGER_UNITS; u++) {
        row->spent[u] = store_get64(p + 12 + 8 * u);
        row->reserved[u] = store_get64(p + 12 + 8 * (LEDGER_UNITS + u));
    }
    return 0;
}

rl_err ledger_hold_encode(const ledger_hold *hold, rl_buf *out)
{
    uint8_t fixed[HOLD_FIXED];
    if (hold->n == 0 || hold->n > LEDGER_MAX_CHARGES)
        return RL_INTERNAL;
    memcpy(fixed, HOLD_MAGIC, 4);
    store_put32(fixed + 4, (uint32_t)hold->pid);
    store_put64(fixed + 8, hold->pid_start);
    store_put64(fixed + 16, hold->created);
    fixed[24] = (uint8_t)hold->n;
    rl_buf_append(out, fixed, sizeof fixed); /* sticky errors: checked at the end */
    for (unsigned i = 0; i < hold->n; i++) {
        uint8_t len = (uint8_t)hold->charge[i].key_len, amounts[8 * LEDGER_UNITS];
        for (int u = 0; u < LEDGER_UNITS; u++)
            store_put64(amounts + 8 * u, hold->charge[i].amount[u]);
        rl_buf_append(out, &len, 1);
        rl_buf_append(out, hold->charge[i].key, len);
        rl_buf_append(out, amounts, sizeof amounts);
    }
    return rl_buf_error(out);
}

int ledger_hold_decode(const uint8_t *p, size_t n, ledger_hold *hold)
{
    if (n < HOLD_FIXED || memcmp(p, HOLD_MAGIC, 4) != 0)
        return -1;
    hold->pid = (int32_t)store_get32(p + 4);
    hold->pid_start = store_get64(p + 8);
    hold->created = store_get64(p + 16);
    hold->n = p[24];
    if (hold->n == 0 || hold->n > LEDGER_MAX_CHARGES)
        return -1;
    size_t at = HOLD_FIXED;
    for (unsigned i = 0; i < hold->n; i++) {
        char scope[LEDGER_SCOPE_MAX + 1];
        ledger_window w;
        uint64_t start;
        if (at >= n)
            return -1;
        size_t len = p[at++];
        if (len > LEDGER_KEY_MAX || n - at < len + 8 * LEDGER_UNITS ||
            ledger_key_decode(p + at, len, scope, &w, &start) != 0)
            return -1;
        memcpy(hold->charge[i].key, p + at, len);
        hold->charge[i].key_len = len;
        at += len;
        for (int u = 0; u < LEDGER_UNITS; u++, at += 8)
            hold->charge[i].amount[u] = store_get64(p + at);
    }
    return at == n ? 0 : -1;
}

/* ---- processes ------------------------------------------------------------- */

/* A process's start time, in clock ticks after boot (field 22 of
 * /proc/PID/stat); 0 when it cannot be read. Together with the pid it
 * names one process: a pid reused by a later process has a later start. */
static uint64_t proc_start(long pid)
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
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22; field++) { /* field 3 (state) follows the name */
        p += strspn(p, " ");
        p += strcspn(p, " ");
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    return errno || end == p ? 0 : (uint64_t)v;
}

/* This process's start time, read once per process (a forked child reads
 * its own). */
static uint64_t own_start(void)
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
        start = own_start();
    } else {
        if (kill((pid_t)hold->pid, 0) != 0 && errno == ESRCH)
            return 1;
        start = proc_start(hold->pid);
    }
    return hold->pid_start && start && start != hold->pid_start;
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
    hold->pid = (int32_t)getpid();
    hold->pid_start = own_start();
    hold->created = now;
    for (unsigned j = 0; j < a->n; j++) {
        const ledger_charge *c = &a->charges[j];
        if (!window_known(c->window)) {
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

rl_err store_ledger_reserve(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                            uint8_t id[LEDGER_ID_LEN], ledger_refusal *why)
{
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
    if ((e = reserve_prepare(a, now)) != RL_OK || (e = ledger_hold_encode(hold, &rec)) != RL_OK)
        goto out;
    if ((e = rl_random(id, LEDGER_ID_LEN)) != RL_OK) {
        rl_error("store: drawing a reservation id: %s", strerror(errno));
        goto out;
    }
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

/* ---- settle ------------------------------------------------------------------ */

typedef enum {
    SETTLE_ACTUAL,      /* spent += actual */
    SETTLE_AS_RESERVED, /* spent += what each row reserved (maintenance) */
} settle_mode;

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
static rl_err settle(store *s, const uint8_t id[LEDGER_ID_LEN], const uint64_t *actual,
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
    return settle(s, id, actual, SETTLE_ACTUAL, now);
}

rl_err store_ledger_release(store *s, const uint8_t id[LEDGER_ID_LEN], uint64_t now)
{
    static const uint64_t nothing[LEDGER_UNITS] = {0};
    return settle(s, id, nothing, SETTLE_ACTUAL, now);
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

/* Why maintenance releases a reservation, or NULL to leave it. */
static const char *stale_hold(const store *s, const ledger_hold *hold, int damaged, uint64_t now)
{
    uint64_t max_age = s->hold_max_age ? s->hold_max_age : DEFAULT_HOLD_MAX_AGE;
    if (damaged)
        return "it does not decode";
    if (owner_dead(hold))
        return "its process is gone";
    if (now > hold->created && now - hold->created > max_age)
        return "it is older than any request may last";
    return NULL;
}

/* Settles, as spent, the reservations of dead processes and those older
 * than hold_max_age, looking at up to BATCH of them per run from where the
 * last run stopped. */
static void holds_sweep(store *s, uint64_t now)
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
            const char *reason = stale_hold(s, hold, ledger_hold_decode(v, vn, hold) != 0, now);
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
        if (settle(s, stale[i], NULL, SETTLE_AS_RESERVED, now) == RL_OK)
            rl_warn("store %s: released budget reservation %s (%s), counting what it reserved "
                    "as spent",
                    s->home, hex, why[i]);
    }
    free(hold);
}

/* Whether a row's window ended longer ago than its kind is kept. */
static int row_expired(ledger_window w, uint64_t start, uint64_t now)
{
    uint64_t keep = windows[w].keep; /* w decoded from a key: known */
    uint64_t end = ledger_window_end(w, start);
    return now > end && now - end > keep;
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
                !row_expired(kind, start, now))
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
    holds_sweep(s, now);
    if (sweep_rows)
        rows_sweep(s, now);
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
