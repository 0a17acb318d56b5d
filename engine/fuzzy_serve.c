/*
 * fuzzy_serve.c — near-variants answered from the cache (fuzzy_serve.h).
 */
#include "engine/fuzzy_serve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/fuzzy.h"
#include "engine/hit.h"
#include "store/base/rl_log.h"
#include "store/fuzzyidx.h"

/* Index records read per lookup: 2 per band. A near-variant shares most of
 * the 16 bands, so it is met in the first round even when some of its
 * bands are shared by many entries (t_store_fuzzy: found first at 10^5
 * entries with one band shared by 5,000). */
#define MAX_READS (2 * FUZZY_BANDS)
#define MAX_TRIES 3 /* matching candidates whose entries are tried, best first */

typedef struct fuzzy_state {
    int ready; /* doc and bands hold the request */
    fuzzy_doc doc;
    uint64_t bands[FUZZY_BANDS];
    const char *scope; /* the cache key's (pool) */
} fuzzy_state;

/* Endpoints whose requests have prose fuzzy_split compares. */
static const char *const prose_endpoints[] = {"chat.completions", "messages", "generateContent",
                                              "chat", NULL};

static int enabled_for(const exchange *x)
{
    fuzzy_mode m = x->rt.upstream->fuzzy;
    return m == FUZZY_ON || (m == FUZZY_INHERIT && x->cfg->fuzzy.enabled);
}

static int has_prose(const char *endpoint)
{
    for (size_t i = 0; endpoint && prose_endpoints[i]; i++)
        if (strcmp(endpoint, prose_endpoints[i]) == 0)
            return 1;
    return 0;
}

/* The key's fields but the body, each length-prefixed as ckey.c writes
 * them, so two requests share a shape only when their keys would share
 * everything but prose. */
static rl_err key_salt(const ckey_input *in, rl_buf *out)
{
    const char *parts[] = {CKEY_VERSION,   in->format, in->endpoint, in->upstream,
                           in->path_parts, in->scope,  in->ns};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n = strlen(parts[i]);
        uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
        rl_buf_append(out, len, sizeof len);
        rl_buf_append(out, parts[i], n);
    }
    return rl_buf_error(out);
}

void fuzzy_prepare(exchange *x, const ckey_input *key)
{
    if (!x->key_hex[0] || !enabled_for(x) || !has_prose(x->rt.endpoint) ||
        !(x->decision.lookup || x->decision.store))
        return;
    fuzzy_state *f = rl_palloc(x->req->pool, sizeof *f);
    size_t scope_len = strlen(key->scope);
    char *scope = rl_palloc(x->req->pool, scope_len + 1);
    if (!f || !scope)
        return;
    memset(f, 0, sizeof *f);
    memcpy(scope, key->scope, scope_len + 1);
    f->scope = scope;
    rl_buf salt;
    rl_buf_init(&salt, 0);
    rl_err err = key_salt(key, &salt);
    if (err == RL_OK)
        err = fuzzy_split(key->format, key->endpoint, key->body, key->body_len, salt.data, salt.len,
                          &f->doc);
    rl_buf_release(&salt);
    if (err != RL_OK) {
        if (err != RL_NOTFOUND)
            rl_debug("fuzzy: %s not split (%s)", x->key_hex, rl_err_text(err));
        return;
    }
    fuzzy_bands(&f->doc, f->bands);
    f->ready = 1;
    x->fuzzy = f;
}

void fuzzy_finish(exchange *x)
{
    if (x->fuzzy)
        fuzzy_doc_release(&x->fuzzy->doc);
    x->fuzzy = NULL;
}

/* ---- lookup ------------------------------------------------------------- */

typedef struct found {
    unsigned n;
    uint8_t keys[MAX_READS][STORE_KEY_LEN];
} found;

static int collect(void *ctx, const uint8_t key[STORE_KEY_LEN], unsigned shared)
{
    (void)shared;
    found *f = ctx;
    if (f->n < MAX_READS)
        memcpy(f->keys[f->n++], key, STORE_KEY_LEN);
    return f->n == MAX_READS;
}

typedef struct match {
    double similarity;
    unsigned index; /* into found.keys */
} match;

static int by_similarity(const void *a, const void *b)
{
    const match *x = a, *y = b;
    return (x->similarity < y->similarity) - (x->similarity > y->similarity);
}

/* The similarity of candidate key to the request, or -1 when it may not
 * answer it. */
static double judge(exchange *x, store *s, const uint8_t *key, const fuzzy_params *p)
{
    rl_buf bytes;
    rl_buf_init(&bytes, 0);
    fuzzy_doc cand = {0};
    double similarity = -1;
    const char *why = NULL;
    if (store_fuzzy_doc(s, key, &bytes) == RL_OK &&
        fuzzy_decode(bytes.data, bytes.len, &cand) == RL_OK &&
        !fuzzy_match(&x->fuzzy->doc, &cand, p, &similarity, &why)) {
        rl_debug("fuzzy: %s not answered by a candidate: %s", x->key_hex, why ? why : "-");
        similarity = -1;
    }
    fuzzy_doc_release(&cand);
    rl_buf_release(&bytes);
    return similarity;
}

static int fuzzy_refused(const exchange *x)
{
    const char *h = engine_header(x->req, "x-relay-fuzzy");
    return x->cc.no_cache || !x->decision.lookup || (h && strcasecmp(h, "off") == 0);
}

rl_err fuzzy_serve(exchange *x)
{
    store *s = exchange_store(x);
    if (!s || !x->fuzzy || !x->fuzzy->ready || fuzzy_refused(x) ||
        fuzzy_guard_blocked(fuzzy_guard_process(), x->fuzzy->scope, x->now))
        return RL_NOTFOUND;
    found f = {0};
    unsigned reads = 0;
    if (store_fuzzy_candidates(s, x->fuzzy->bands, FUZZY_BANDS, MAX_READS, collect, &f, &reads) !=
        RL_OK)
        return RL_NOTFOUND;
    fuzzy_params p = {.max_words = (int)x->cfg->fuzzy.max_words,
                      .min_similarity = (double)x->cfg->fuzzy.min_similarity / 100.0};
    match m[MAX_READS];
    unsigned nm = 0;
    for (unsigned i = 0; i < f.n; i++) {
        if (memcmp(f.keys[i], x->key, STORE_KEY_LEN) == 0)
            continue; /* its own entry, which the exact lookup could not use */
        double sim = judge(x, s, f.keys[i], &p);
        if (sim >= 0)
            m[nm++] = (match){sim, i};
    }
    rl_debug("fuzzy: %s: %u index records read, %u candidates, %u match", x->key_hex, reads, f.n,
             nm);
    qsort(m, nm, sizeof *m, by_similarity);
    for (unsigned i = 0; i < nm && i < MAX_TRIES; i++) {
        /* Three decimals, rounded down, so 0.9995 never reads as 1.000. */
        double shown = (double)(long)(m[i].similarity * 1000) / 1000;
        snprintf(x->similarity, sizeof x->similarity, "%.3f", shown);
        size_t at = x->nextra;
        if (at < sizeof x->extra / sizeof x->extra[0])
            x->extra[x->nextra++] = (rl_header){"x-relay-similarity", x->similarity};
        if (hit_serve_other(x, f.keys[m[i].index], "FUZZY") == RL_OK) {
            if (fuzzy_guard_note(fuzzy_guard_process(), x->fuzzy->scope, x->key, x->now))
                rl_warn("fuzzy matching turned off for %d s for a scope: more than %d distinct "
                        "near-variants answered within %d s (probing?)",
                        FUZZY_PROBE_OFF, FUZZY_PROBE_LIMIT, FUZZY_PROBE_WINDOW);
            return RL_OK;
        }
        x->nextra = at;
    }
    return RL_NOTFOUND;
}

void fuzzy_remember(exchange *x)
{
    store *s = exchange_store(x);
    if (!s || !x->fuzzy || !x->fuzzy->ready)
        return;
    rl_buf doc;
    rl_buf_init(&doc, 0);
    rl_err err = fuzzy_encode(&x->fuzzy->doc, &doc);
    if (err == RL_OK)
        err = store_fuzzy_put(s, x->key, x->fuzzy->bands, FUZZY_BANDS, doc.data, doc.len);
    if (err != RL_OK)
        rl_debug("fuzzy: %s not indexed (%s)", x->key_hex, rl_err_text(err));
    rl_buf_release(&doc);
}

/* ---- the probe guard ------------------------------------------------------ */

/*
 * Per process, in memory: a fuzzy hit is a read, and a write transaction
 * per hit to share the count would cost more than the hit (a hit writes
 * nothing today, see store_cache_touch). So a prober spread over W workers
 * gets at most W x FUZZY_PROBE_LIMIT answers before every worker turned it
 * off: still a bound, and libfcgi gives most requests to one worker.
 * Scopes share GUARD_SLOTS slots by hash; a slot whose scope is turned off
 * is not taken by another until that ends, so an attacker cannot clear its
 * own block by filling the table with other scopes (at worst those go
 * uncounted).
 */
#define GUARD_SLOTS 256
#define GUARD_SEEN (FUZZY_PROBE_LIMIT + 1)

typedef struct guard_slot {
    uint64_t scope; /* hash; 0: free */
    uint64_t window_start;
    uint64_t off_until;
    unsigned nseen;
    uint64_t seen[GUARD_SEEN]; /* distinct request keys (8 bytes of each) this window */
} guard_slot;

struct fuzzy_guard {
    pthread_mutex_t mu;
    guard_slot slots[GUARD_SLOTS];
};

static fuzzy_guard process_guard = {.mu = PTHREAD_MUTEX_INITIALIZER};

fuzzy_guard *fuzzy_guard_process(void)
{
    return &process_guard;
}

fuzzy_guard *fuzzy_guard_new(void)
{
    fuzzy_guard *g = calloc(1, sizeof *g);
    if (g)
        pthread_mutex_init(&g->mu, NULL);
    return g;
}

void fuzzy_guard_free(fuzzy_guard *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static uint64_t scope_hash(const char *scope)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)scope; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ? h : 1;
}

/* The slot of scope (h), taken for it when take and free or idle; NULL. */
static guard_slot *slot_of(fuzzy_guard *g, uint64_t h, uint64_t now, int take)
{
    guard_slot *sl = &g->slots[h % GUARD_SLOTS];
    if (sl->scope == h)
        return sl;
    if (!take || (sl->scope && now < sl->off_until))
        return NULL;
    memset(sl, 0, sizeof *sl);
    sl->scope = h;
    sl->window_start = now;
    return sl;
}

int fuzzy_guard_blocked(fuzzy_guard *g, const char *scope, uint64_t now)
{
    pthread_mutex_lock(&g->mu);
    guard_slot *sl = slot_of(g, scope_hash(scope), now, 0);
    int blocked = sl && now < sl->off_until;
    pthread_mutex_unlock(&g->mu);
    return blocked;
}

int fuzzy_guard_note(fuzzy_guard *g, const char *scope, const uint8_t key[STORE_KEY_LEN],
                     uint64_t now)
{
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = k << 8 | key[i];
    int turned_off = 0;
    pthread_mutex_lock(&g->mu);
    guard_slot *sl = slot_of(g, scope_hash(scope), now, 1);
    if (sl && now >= sl->off_until) {
        if (now >= sl->window_start + FUZZY_PROBE_WINDOW) {
            sl->window_start = now;
            sl->nseen = 0;
        }
        unsigned i = 0;
        while (i < sl->nseen && sl->seen[i] != k)
            i++;
        if (i == sl->nseen && sl->nseen < GUARD_SEEN)
            sl->seen[sl->nseen++] = k;
        if (sl->nseen > FUZZY_PROBE_LIMIT) {
            sl->off_until = now + FUZZY_PROBE_OFF;
            sl->nseen = 0;
            sl->window_start = sl->off_until;
            turned_off = 1;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return turned_off;
}
