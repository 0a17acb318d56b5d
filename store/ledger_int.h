/*
 * ledger_int.h — what the ledger's three files share and nothing else
 * uses: ledger.c (reservations, settlement, reading a row), ledger_rec.c
 * (windows and record formats) and ledger_maint.c (scans, maintenance,
 * verify). The public contract is ledger.h; store_int.h declares the
 * store's calls into the ledger (ledger_maintain, ledger_verify).
 */
#ifndef RELAY_STORE_LEDGER_INT_H
#define RELAY_STORE_LEDGER_INT_H

#include <stdint.h>

#include "store/ledger.h"

/* ledger_rec.c: whether w is a window kind this code knows. */
int ledger_window_known(ledger_window w);

/* ledger_rec.c: whether a row's window ended longer ago than its kind is
 * kept (LEDGER_KEEP_*). w must be known (decoded from a key). */
int ledger_row_expired(ledger_window w, uint64_t start, uint64_t now);

/* ledger_maint.c: this process's start time (clock ticks after boot; 0
 * when it cannot be read), read once per process (a forked child reads
 * its own). Stamped on a reservation so that maintenance can tell its
 * owner from a later process with the same pid. */
uint64_t ledger_own_start(void);

typedef enum {
    SETTLE_ACTUAL,      /* spent += actual */
    SETTLE_AS_RESERVED, /* spent += what each row reserved (maintenance) */
} settle_mode;

/* ledger.c: settles one reservation, in one transaction: each of its rows
 * gives back what it reserved and adds, by mode, actual (per unit) or what
 * it reserved (actual may then be NULL). RL_NOTFOUND when there is no such
 * reservation. A record or rows that do not decode are logged (once, after
 * the transaction): a record that does not decode is removed, rows that do
 * not decode are left as they are. id is borrowed. */
rl_err ledger_settle(store *s, const uint8_t id[LEDGER_ID_LEN], const uint64_t *actual,
                     settle_mode mode, uint64_t now);

/* Who owns a reservation forwarded from another process of the group
 * (cluster_ops.c): its pid, start time and host ([cluster] site). */
typedef struct ledger_owner {
    int32_t pid;
    uint64_t pid_start;
    const char *site;
} ledger_owner;

/* ledger.c: store_ledger_reserve under the id the caller drew. With an
 * owner (a write forwarded by another process, which may arrive twice),
 * the reservation is that owner's, and an id already held counts as
 * reserved: RL_OK. NULL: this process's. */
rl_err ledger_reserve_as(store *s, const ledger_charge *charges, unsigned n, uint64_t now,
                         const uint8_t id[LEDGER_ID_LEN], const ledger_owner *owner,
                         ledger_refusal *why);

#endif
