/*
 * memo.h — a per-process memo of request inspections, so a byte-identical
 * repeat (the cache hit's common case) is not parsed again.
 *
 * prov_ops.inspect (prov.h) parses the body with jansson and dumps it in
 * canonical form: ~46k of the ~98k instructions of a hit on a 188-byte chat
 * request (callgrind, tests/bench/hit_instructions.mjs). Its result depends
 * only on what it is handed — the adapter, the endpoint, the method, the
 * forwarded path, the query, the body and the headers the adapter declares
 * in prov_ops.inspect_headers — never on time, config or credentials. So
 * memo_inspect hands inspect exactly those (the other headers are left
 * out: inspect cannot read a header the memo does not compare) and keeps
 * its successful results under a hash of them; a later request whose
 * fields are all byte-equal (compared in full, not by hash) gets a copy of
 * the same info, canonical body and key parts.
 *
 * Bounded: MEMO_SETS sets of MEMO_WAYS entries (a new result replaces
 * the set's least recently used one; ways, so that a few hot requests
 * whose hashes share a set do not keep evicting each other), entries of
 * at most MEMO_ENTRY_MAX bytes, MEMO_MAX_BYTES
 * in all. Failures of inspect are never kept (they are rare, and their
 * message is built per request).
 *
 * Threads: a memo is shared by every request thread of a process; each
 * set has its own lock, held while its entries are compared and one is
 * copied out.
 * Create it after fork (its locks are not shared between processes).
 */
#ifndef RELAY_ENGINE_MEMO_H
#define RELAY_ENGINE_MEMO_H

#include "engine/prov.h"

#define MEMO_SETS 64
#define MEMO_WAYS 4
#define MEMO_ENTRY_MAX (32 * 1024)
#define MEMO_MAX_BYTES (1024 * 1024)
/* The most headers an adapter may declare in inspect_headers. */
#define MEMO_MAX_HEADERS 4

typedef struct memo memo;

/* NULL when out of memory: memo_inspect then parses every request. */
memo *memo_new(void);
void memo_free(memo *m);

/*
 * prov->inspect(r restricted to prov->inspect_headers, info, canonical,
 * key_parts, why), answered from m when a byte-identical request was
 * inspected before (m NULL: never). Same contract as inspect: canonical
 * and key_parts are appended to and must be checked for a sticky error
 * by the caller. r is borrowed for the call.
 */
rl_err memo_inspect(memo *m, const prov_ops *prov, const prov_request *r, prov_info *info,
                    rl_buf *canonical, rl_buf *key_parts, rl_buf *why);

/* For tests: requests answered from the memo and results kept in it
 * since memo_new, and the bytes it holds now (all 0 for a NULL memo). */
typedef struct memo_stats {
    unsigned long hits, stored;
    size_t bytes;
} memo_stats;
void memo_counts(memo *m, memo_stats *out);

#endif
