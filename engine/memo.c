/* memo.c — a per-process memo of request inspections (see memo.h). */
#include "engine/memo.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The fields that identify a request to inspect, in a fixed order. */
enum {
    F_ENDPOINT,
    F_METHOD,
    F_PATH,
    F_QUERY,
    F_HEADER0,
    F_BODY = F_HEADER0 + MEMO_MAX_HEADERS,
    F_COUNT,
};

/* A field's length when it is NULL, so an absent header and an empty one
 * (or a GET's NULL body and an empty POST body) never match. */
#define ABSENT SIZE_MAX

typedef struct fields {
    const char *p[F_COUNT];
    size_t n[F_COUNT];
    uint64_t hash;
} fields;

typedef struct memo_entry {
    uint64_t hash;
    uint64_t used; /* its set's clock when last stored or found */
    size_t size;   /* bytes allocated, counted in memo.bytes */
    const prov_ops *prov;
    size_t n[F_COUNT];
    prov_info info;
    size_t canonical_len, key_parts_len;
    /* The fields' bytes (absent ones take none), then canonical, then
     * key_parts. */
    char data[];
} memo_entry;

typedef struct set {
    pthread_mutex_t lock;
    uint64_t clock;           /* counts the set's lookups that found and its stores */
    memo_entry *e[MEMO_WAYS]; /* NULL when empty */
} set;

struct memo {
    set sets[MEMO_SETS];
    atomic_size_t bytes; /* of every entry held */
    atomic_ulong hits, stored;
};

memo *memo_new(void)
{
    memo *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (size_t i = 0; i < MEMO_SETS; i++)
        pthread_mutex_init(&m->sets[i].lock, NULL);
    return m;
}

void memo_free(memo *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < MEMO_SETS; i++) {
        pthread_mutex_destroy(&m->sets[i].lock);
        for (size_t w = 0; w < MEMO_WAYS; w++)
            free(m->sets[i].e[w]);
    }
    free(m);
}

void memo_counts(memo *m, memo_stats *out)
{
    *out = (memo_stats){0, 0, 0};
    if (m)
        *out = (memo_stats){atomic_load(&m->hits), atomic_load(&m->stored), atomic_load(&m->bytes)};
}

/* ---- hashing ----------------------------------------------------------- */

/*
 * A cheap 64-bit hash, eight bytes a step (about one instruction a byte:
 * an FNV-style byte loop costs four, which on an 80 KB body would be
 * noticeable). It only picks the set and skips most unequal comparisons;
 * equality is always decided by comparing the bytes, so its quality
 * matters for the hit rate, never for correctness.
 */
static uint64_t mix(uint64_t h, uint64_t w)
{
    h ^= w;
    h *= 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
    h = mix(h, n);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h, w);
    }
    uint64_t tail = 0;
    memcpy(&tail, p, n);
    return mix(h, tail);
}

/* murmur3's finaliser: every input bit reaches the low bits (the set). */
static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb93fe53e87ddULL;
    return h ^ (h >> 33);
}

static void field_set(fields *f, int i, const char *p, size_t n)
{
    f->p[i] = p;
    f->n[i] = p ? n : ABSENT;
}

/* Collects r's fields and the headers inspect may read (hdrs, *nh). */
static void fields_of(const prov_ops *prov, const prov_request *r, fields *f,
                      rl_header hdrs[MEMO_MAX_HEADERS], size_t *nh)
{
    field_set(f, F_ENDPOINT, r->endpoint, r->endpoint ? strlen(r->endpoint) : 0);
    field_set(f, F_METHOD, r->method, r->method ? strlen(r->method) : 0);
    field_set(f, F_PATH, r->path, r->path ? strlen(r->path) : 0);
    field_set(f, F_QUERY, r->query, r->query ? strlen(r->query) : 0);
    field_set(f, F_BODY, r->body, r->body_len);
    const char *const *names = prov->inspect_headers;
    int declared = 0;
    while (names && names[declared])
        declared++;
    /* More names than the memo compares would let inspect read a header
     * the memo does not key on. */
    assert(declared <= MEMO_MAX_HEADERS);
    *nh = 0;
    for (int i = 0; i < MEMO_MAX_HEADERS; i++) {
        const char *v = i < declared ? prov_header(r, names[i]) : NULL;
        field_set(f, F_HEADER0 + i, v, v ? strlen(v) : 0);
        if (v)
            hdrs[(*nh)++] = (rl_header){names[i], v};
    }
    /* The format's name, not the adapter's address: the same request lands
     * in the same set in every run (tests under valgrind too). */
    uint64_t h = hash_bytes(0, prov->format, strlen(prov->format));
    for (int i = 0; i < F_COUNT; i++)
        h = f->p[i] ? hash_bytes(h, f->p[i], f->n[i]) : mix(h, ABSENT);
    f->hash = fmix(h);
}

/* ---- lookup and store -------------------------------------------------- */

static int entry_matches(const memo_entry *e, const prov_ops *prov, const fields *f)
{
    if (e->hash != f->hash || e->prov != prov)
        return 0;
    const char *p = e->data;
    for (int i = 0; i < F_COUNT; i++) {
        if (e->n[i] != f->n[i])
            return 0;
        if (f->n[i] == ABSENT)
            continue;
        if (memcmp(p, f->p[i], f->n[i]) != 0)
            return 0;
        p += f->n[i];
    }
    return 1;
}

/* Copies a matching entry's results out; the caller holds its set. */
static void entry_copy_out(const memo_entry *e, prov_info *info, rl_buf *canonical,
                           rl_buf *key_parts)
{
    const char *p = e->data;
    for (int i = 0; i < F_COUNT; i++)
        p += e->n[i] == ABSENT ? 0 : e->n[i];
    *info = e->info;
    /* A failed append is sticky: the engine checks the buffers. */
    if (e->canonical_len)
        rl_buf_append(canonical, p, e->canonical_len);
    if (e->key_parts_len)
        rl_buf_append(key_parts, p + e->canonical_len, e->key_parts_len);
}

/* A result: what inspect appended to its two buffers. */
typedef struct result {
    const char *canonical, *key_parts;
    size_t canonical_len, key_parts_len;
} result;

static memo_entry *entry_new(const prov_ops *prov, const fields *f, const prov_info *info,
                             const result *res)
{
    size_t size = sizeof(memo_entry) + res->canonical_len + res->key_parts_len;
    for (int i = 0; i < F_COUNT; i++)
        size += f->n[i] == ABSENT ? 0 : f->n[i];
    if (size > MEMO_ENTRY_MAX)
        return NULL;
    memo_entry *e = malloc(size);
    if (!e)
        return NULL;
    e->hash = f->hash;
    e->size = size;
    e->prov = prov;
    e->info = *info;
    e->canonical_len = res->canonical_len;
    e->key_parts_len = res->key_parts_len;
    char *p = e->data;
    for (int i = 0; i < F_COUNT; i++) {
        e->n[i] = f->n[i];
        if (f->n[i] != ABSENT && f->n[i]) {
            memcpy(p, f->p[i], f->n[i]);
            p += f->n[i];
        }
    }
    if (res->canonical_len)
        memcpy(p, res->canonical, res->canonical_len);
    if (res->key_parts_len)
        memcpy(p + res->canonical_len, res->key_parts, res->key_parts_len);
    return e;
}

/* Reserves size bytes of the memo's budget after giving back freed ones;
 * 0 when it would go over MEMO_MAX_BYTES (then nothing changes). */
static int budget_take(memo *m, size_t size, size_t freed)
{
    size_t cur = atomic_load(&m->bytes);
    for (;;) {
        size_t next = cur - freed + size;
        if (next > MEMO_MAX_BYTES)
            return 0;
        if (atomic_compare_exchange_weak(&m->bytes, &cur, next))
            return 1;
    }
}

static void memo_put(memo *m, const prov_ops *prov, const fields *f, const prov_info *info,
                     const result *res)
{
    memo_entry *e = entry_new(prov, f, info, res);
    if (!e)
        return; /* too large, or out of memory: simply not kept */
    set *s = &m->sets[f->hash % MEMO_SETS];
    pthread_mutex_lock(&s->lock);
    /* An empty way, else the least recently used. */
    size_t victim = 0;
    for (size_t w = 0; w < MEMO_WAYS; w++) {
        if (!s->e[w]) {
            victim = w;
            break;
        }
        if (s->e[w]->used < s->e[victim]->used)
            victim = w;
    }
    memo_entry *old = s->e[victim];
    if (budget_take(m, e->size, old ? old->size : 0)) {
        e->used = ++s->clock;
        s->e[victim] = e;
        e = old;
        atomic_fetch_add(&m->stored, 1);
    }
    pthread_mutex_unlock(&s->lock);
    free(e); /* the replaced entry, or the new one when over the budget */
}

rl_err memo_inspect(memo *m, const prov_ops *prov, const prov_request *r, prov_info *info,
                    rl_buf *canonical, rl_buf *key_parts, rl_buf *why)
{
    fields f;
    rl_header hdrs[MEMO_MAX_HEADERS];
    size_t nh;
    fields_of(prov, r, &f, hdrs, &nh);
    if (m) {
        set *s = &m->sets[f.hash % MEMO_SETS];
        int found = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t w = 0; w < MEMO_WAYS && !found; w++) {
            memo_entry *e = s->e[w];
            if (e && entry_matches(e, prov, &f)) {
                e->used = ++s->clock;
                entry_copy_out(e, info, canonical, key_parts);
                found = 1;
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (found) {
            atomic_fetch_add(&m->hits, 1);
            return RL_OK;
        }
    }
    /* inspect sees only the headers the memo compares. */
    prov_request shown = *r;
    shown.headers = hdrs;
    shown.nheaders = nh;
    size_t c0 = canonical->len, k0 = key_parts->len;
    rl_err err = prov->inspect(&shown, info, canonical, key_parts, why);
    /* Only whole results are kept: appends that failed would be copied out
     * as if they had succeeded. What the buffers held before is not the
     * inspection's. */
    if (m && err == RL_OK && rl_buf_error(canonical) == RL_OK && rl_buf_error(key_parts) == RL_OK) {
        result res = {canonical->data ? canonical->data + c0 : NULL,
                      key_parts->data ? key_parts->data + k0 : NULL, canonical->len - c0,
                      key_parts->len - k0};
        memo_put(m, prov, &f, info, &res);
    }
    return err;
}
