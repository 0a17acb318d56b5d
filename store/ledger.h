/*
 * ledger.h — budgets and rate limits: counters with limits, shared by every
 * process on the store, that concurrent requests cannot overshoot.
 *
 * A ledger row counts what one scope used in one window. The scope is a
 * string the caller chooses ("token:1a2b3c4d", "upstream:openai",
 * "model:gpt-4o"); the window is a UTC minute, day or month, named by its
 * start (unix seconds). Each row holds, per unit (nano-USD, tokens,
 * requests), what was spent and what is reserved by requests under way.
 *
 * A request reserves its worst case before it calls upstream
 * (store_ledger_reserve: every charge of the request, checked against its
 * limits and added to the rows' reserved amounts, in one transaction) and
 * settles to what it really used afterwards (store_ledger_settle). Because
 * the check and the add are one transaction, reservations made at the same
 * time, by any threads of any processes, never add up past a limit: at most
 * L requests' worth is ever reserved against a limit of L. What a limit can
 * still be overshot by is what requests really use beyond their
 * reservation (a prompt estimated too low), and, for a charge marked
 * partial, the one request admitted while something was left (see
 * ledger_charge.partial).
 *
 * Windows are fixed, not sliding: a minute is 12:34:00 to 12:34:59 UTC, a
 * day midnight to midnight UTC, a month the 1st 00:00 UTC to the next 1st.
 * A new window is a new row, so a budget starts again at the boundary (a
 * rate limit of N per minute can see 2N in the two seconds around one).
 * A refusal says when its window resets (Retry-After). A reservation is
 * settled into the rows it reserved in, even when its request ends after
 * the window did: what a request spends counts in the window it started in.
 *
 * A reservation belongs to the process that made it. If that process dies
 * (a worker killed mid-stream) or the reservation is older than
 * store_options.hold_max_age, store_maintain releases it, counting what
 * was reserved as spent: the request may have reached the upstream and
 * been billed for all of it, and a budget is a promise not to spend more;
 * counting a crashed request in full errs on the side of that promise.
 * So no budget stays blocked by a dead worker's reservation for longer
 * than about a second. A process is told from a later one with the same
 * pid by its start time (/proc/PID/stat). Reservations and rows survive
 * restarts, SIGKILL, backup/restore and rekey like the rest of the store.
 *
 * Rows of ended windows are removed by maintenance once they are older
 * than LEDGER_KEEP_* (kept a while for what admin and stats show).
 *
 * Thread safety, processes and errors as for store.h. Times are unix
 * seconds, passed in: nothing here reads the clock.
 */
#ifndef RELAY_STORE_LEDGER_H
#define RELAY_STORE_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/store.h"

typedef enum { LEDGER_USD = 0, LEDGER_TOKENS = 1, LEDGER_REQUESTS = 2 } ledger_unit;
#define LEDGER_UNITS 3

typedef enum { LEDGER_MINUTE = 1, LEDGER_DAY = 2, LEDGER_MONTH = 3 } ledger_window;

#define LEDGER_SCOPE_MAX                                                                           \
    200                       /* bytes of a scope: a C string, not empty, no control               \
                               * characters (0x00-0x1f, 0x7f) */
#define LEDGER_MAX_CHARGES 16 /* charges per reservation */
#define LEDGER_ID_LEN 16      /* bytes of a reservation's id (random) */

/* How long rows are kept after their window ended. */
#define LEDGER_KEEP_MINUTE (10 * 60)
#define LEDGER_KEEP_DAY (62 * 86400ull)
#define LEDGER_KEEP_MONTH (400 * 86400ull)

/* The start of the window of kind w that holds now, and the start of the
 * next one (when a window that starts at start resets). UTC; months by the
 * calendar (28 to 31 days). 0 for an unknown kind. */
uint64_t ledger_window_start(ledger_window w, uint64_t now);
uint64_t ledger_window_end(ledger_window w, uint64_t start);
const char *ledger_window_name(ledger_window w); /* "minute", "day", "month" */
const char *ledger_unit_name(ledger_unit u);     /* "usd", "tokens", "requests" */

/* One row a request reserves in: amount is what it reserves per unit,
 * limit the most the row may hold per unit (0: no limit; the row still
 * counts). */
typedef struct ledger_charge {
    const char *scope;
    ledger_window window;
    uint64_t amount[LEDGER_UNITS];
    uint64_t limit[LEDGER_UNITS];
    /* 0: refused when spent + reserved + amount would pass the limit (the
     * limit holds against reservations exactly). 1: refused only once
     * spent + reserved has reached the limit, so the last request admitted
     * may pass it by its own amount. Partial suits budgets whose worst
     * cases are far above what requests cost (a default max_tokens of
     * 64k), which would otherwise refuse requests long before a budget is
     * spent; the overshoot stays within one request's reservation, since
     * every other request then sees the limit reached. */
    int partial;
} ledger_charge;

/* Why a reservation was refused: the first charge, in the caller's order,
 * that did not fit. */
typedef struct ledger_refusal {
    unsigned charge;  /* index into the caller's charges */
    ledger_unit unit; /* the unit over its limit */
    uint64_t limit;
    uint64_t used;   /* spent + reserved in the window */
    uint64_t amount; /* what the charge asked for */
    uint64_t start;  /* the window's start */
    uint64_t reset;  /* the next window's start: Retry-After is reset - now */
} ledger_refusal;

/*
 * Reserves charges[0..n) in the windows that hold now, in one transaction
 * (rows locked in key order). On success *id gets the reservation's id and
 * the amounts are reserved until settled, released, or released by
 * maintenance. RL_OVER_LIMIT when a charge does not fit: nothing is
 * reserved and *why (may be NULL) says which. RL_BAD_REQUEST for a scope
 * that is not one (see LEDGER_SCOPE_MAX); RL_INTERNAL (logged) for
 * n == 0 or above LEDGER_MAX_CHARGES, an unknown window, or the same scope
 * and window twice. RL_BAD_ENTRY (logged) when a row does not decode: a
 * budget that cannot be read is not spent blindly.
 */
rl_err store_ledger_reserve(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                            uint8_t id[LEDGER_ID_LEN], ledger_refusal *why);

/* Ends a reservation: each of its rows gives back what it reserved and
 * adds actual (per unit, the same for every row: what the request used).
 * RL_NOTFOUND when there is no such reservation (settled already, or
 * released by maintenance, which counted it as spent). */
rl_err store_ledger_settle(store *s, const uint8_t id[LEDGER_ID_LEN],
                           const uint64_t actual[LEDGER_UNITS], uint64_t now);

/* store_ledger_settle with nothing spent: for a request that never reached
 * the upstream. */
rl_err store_ledger_release(store *s, const uint8_t id[LEDGER_ID_LEN], uint64_t now);

/* One row as read. */
typedef struct ledger_row {
    uint64_t spent[LEDGER_UNITS];
    uint64_t reserved[LEDGER_UNITS];
    uint64_t start, end; /* the window */
    uint64_t updated;    /* unix seconds of the last change; 0 for a row never written */
} ledger_row;

/* The row of scope in the window of kind w that holds now (all zero, with
 * start and end set, when nothing was counted there yet). The remaining
 * budget is limit - spent - reserved. RL_BAD_REQUEST for a bad scope,
 * RL_BAD_ENTRY for a row that does not decode. */
rl_err store_ledger_read(store *s, const char *scope, ledger_window w, uint64_t now,
                         ledger_row *out);

/* Calls fn for every row whose scope starts with prefix ("" for all), in
 * the order of scope, window kind and start, until fn returns non-zero;
 * row is NULL for a row that does not decode. Reads in batches, each a
 * short read-committed transaction (see store_cache_scan); fn runs outside
 * any transaction. */
rl_err store_ledger_scan(store *s, const char *prefix,
                         int (*fn)(void *ctx, const char *scope, ledger_window w,
                                   const ledger_row *row),
                         void *ctx);

/* The number of reservations not yet settled or released, into *count. */
rl_err store_ledger_holds(store *s, uint64_t *count);

/* ---- record encodings (for the store, verify and tests) ------------------ */

/* A row's key: scope, a NUL, the window kind (a byte), the start (8 bytes,
 * big-endian), so rows sort by scope, kind and time. Returns its length,
 * or 0 when scope is not valid (cap must hold LEDGER_KEY_MAX bytes). */
#define LEDGER_KEY_MAX (LEDGER_SCOPE_MAX + 10)
size_t ledger_key_encode(uint8_t *out, const char *scope, ledger_window w, uint64_t start);
/* Splits a key: scope (NUL-terminated, LEDGER_SCOPE_MAX + 1 bytes), kind
 * and start. -1 unless it is a key ledger_key_encode makes (a known kind,
 * and a start that begins a window of that kind). */
int ledger_key_decode(const uint8_t *key, size_t n, char *scope, ledger_window *w, uint64_t *start);

/* A row's value: magic "RLL1", updated, spent[3], reserved[3] (8 bytes
 * each, big-endian). decode: -1 unless exactly that. */
#define LEDGER_ROW_LEN (4 + 8 + 6 * 8)
void ledger_row_encode(uint8_t out[LEDGER_ROW_LEN], const ledger_row *row);
int ledger_row_decode(const uint8_t *p, size_t n, ledger_row *row);

/* A reservation: its owner, when it was made, and its charges (each the
 * row's key and the amounts reserved there), in key order. */
#define LEDGER_SITE_MAX 255
typedef struct ledger_hold {
    int32_t pid;        /* owner process */
    uint64_t pid_start; /* its start time (clock ticks after boot; 0: unknown) */
    /* The owner's host in a group of hosts ([cluster] site, store/cluster.h);
     * "" for a store that is not replicated. Only that host can tell whether
     * the owner lives. */
    char site[LEDGER_SITE_MAX + 1];
    uint64_t created; /* unix seconds */
    unsigned n;       /* charges */
    struct {
        uint8_t key[LEDGER_KEY_MAX];
        size_t key_len;
        uint64_t amount[LEDGER_UNITS];
    } charge[LEDGER_MAX_CHARGES];
} ledger_hold;

/* Appends the encoding (magic "RLR1", pid, pid_start, created, n, then per
 * charge a key length byte, the key and the amounts) to out; with a site,
 * magic "RLR2" and the site (a length byte and its bytes) before the
 * charges. */
rl_err ledger_hold_encode(const ledger_hold *hold, rl_buf *out);
/* -1 unless the bytes are exactly one reservation whose keys decode. */
int ledger_hold_decode(const uint8_t *p, size_t n, ledger_hold *hold);

#endif
