/*
 * fuzzyidx.h — the fuzzy index: which cache entries a near-variant of a
 * request may be answered from, found by band hashes (MinHash bands, see
 * engine/fuzzy.h) without a scan.
 *
 * For each cache entry stored with fuzzy matching on, the engine gives the
 * store the request's band hashes and its fuzzy doc (opaque bytes: the
 * request's shape and prose, engine/fuzzy.h's fuzzy_encode). A lookup reads
 * the entries that share at least one band with the request, a bounded
 * number of index records in all, so its cost does not grow with the number
 * of entries; the engine then decodes each candidate's doc and decides.
 *
 * The rows of an entry live and die with it: whatever removes an entry
 * (replacement, eviction, expiry purge, purge, delete) removes its rows in
 * the same transaction, and store_fuzzy_put refuses an entry that is not in
 * the cache. A store without the index (from before it, or a backup without
 * fuzzy.db) works; its entries are just not found by fuzzy lookups.
 *
 * Threads, processes, errors: as store.h (any thread, any process;
 * RL_NOTFOUND, RL_STORE logged once, RL_NOMEM, RL_TOO_LARGE).
 */
#ifndef RELAY_STORE_FUZZYIDX_H
#define RELAY_STORE_FUZZYIDX_H

#include <stddef.h>
#include <stdint.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_err.h"
#include "store/store.h"

#define STORE_FUZZY_BANDS_MAX 32 /* band hashes per entry */

/*
 * Records key's band hashes (nbands of them, 1..STORE_FUZZY_BANDS_MAX; the
 * i-th only ever meets the i-th of a lookup) and its doc (copied), replacing
 * rows key had. RL_NOTFOUND, writing nothing, when the cache holds no entry
 * at key (evicted since it was stored): no row outlives its entry.
 * RL_TOO_LARGE when doc_len is over the store's max_entry_bytes.
 */
rl_err store_fuzzy_put(store *s, const uint8_t key[STORE_KEY_LEN], const uint64_t *bands,
                       size_t nbands, const void *doc, size_t doc_len);

/*
 * Calls fn for each entry sharing at least one band with bands (nbands as
 * given to store_fuzzy_put), most shared bands first, until fn returns
 * non-zero. It reads at most max_reads index records in all, taking the
 * bands in turns (one record of each band per round), so that one popular
 * band cannot use up the reads a near-variant's many bands would find it
 * by; *reads (may be NULL) gets how many it read. fn runs outside any
 * transaction (it may call the store). An entry found may have gone by
 * the time fn looks it up: fn must treat RL_NOTFOUND as "no candidate".
 */
typedef int (*store_fuzzy_fn)(void *ctx, const uint8_t key[STORE_KEY_LEN], unsigned shared);
rl_err store_fuzzy_candidates(store *s, const uint64_t *bands, size_t nbands, unsigned max_reads,
                              store_fuzzy_fn fn, void *ctx, unsigned *reads);

/* Appends key's doc to out. RL_NOTFOUND when key has none. */
rl_err store_fuzzy_doc(store *s, const uint8_t key[STORE_KEY_LEN], rl_buf *out);

/* The index's size, for tests and diagnostics: docs and band rows. */
rl_err store_fuzzy_count(store *s, uint64_t *docs, uint64_t *band_rows);

#endif
