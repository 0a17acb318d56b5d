/*
 * usemap.c — the table of recent uses (contracts in usemap.h).
 *
 * A slot's word is the only field whose changes matter for correctness:
 *   0                 free
 *   USE_CLAIM         being claimed: its key is being written
 *   fp << 16 | count  published: key's fingerprint and its pending hits
 * Every change of a count is a compare-and-swap of the word, so a count
 * and the ownership it belongs to change together: a hit lands in a slot
 * that still holds its key, and uses_take frees a slot in the same swap
 * that takes its count. The time and key beside it are plain stores,
 * ordered by the word (the key is written before the word publishes it).
 * A time written into a slot just freed (a hit that lost the race) lands
 * on whatever key claims it next: a use time is a hint for eviction, off
 * by at most that moment.
 */
#include "store/usemap.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store/mapfile.h"

#define COUNT_MAX 0xffffu
#define FP_MASK 0xffffffffffffull
#define USE_CLAIM (FP_MASK << 16)

typedef struct use_file {
    _Atomic uint64_t direct; /* uses_count_direct */
    uint64_t pad[7];
    _Atomic uint64_t words[USE_SLOTS];
    _Atomic uint64_t lasts[USE_SLOTS];
    uint8_t keys[USE_SLOTS][USE_KEY_LEN];
} use_file;

struct store_uses {
    use_file *map;
};

rl_err uses_open(const char *home, store_uses **out)
{
    void *map = NULL;
    *out = NULL;
    rl_err err = store_map_file(home, USE_FILE, sizeof(use_file), &map);
    if (err != RL_OK)
        return err;
    store_uses *u = malloc(sizeof *u);
    if (!u) {
        munmap(map, sizeof(use_file));
        return RL_NOMEM;
    }
    u->map = map;
    *out = u;
    return RL_OK;
}

void uses_close(store_uses *u)
{
    if (!u)
        return;
    munmap(u->map, sizeof(use_file));
    free(u);
}

/* The key's first slot: its first bytes are a SHA-256's, uniformly random. */
static uint32_t home_slot(const uint8_t *key)
{
    uint32_t v = (uint32_t)key[0] << 24 | (uint32_t)key[1] << 16 | (uint32_t)key[2] << 8 | key[3];
    return v & (USE_SLOTS - 1);
}

/* 48 bits of the key other than those that chose its slot; never 0 (a
 * free word) nor USE_CLAIM's. */
static uint64_t fingerprint(const uint8_t *key)
{
    uint64_t fp = 0;
    for (int i = 8; i < 14; i++)
        fp = fp << 8 | key[i];
    if (fp == 0)
        fp = 1;
    if (fp == FP_MASK)
        fp--;
    return fp;
}

static int holds(use_file *f, uint32_t i, uint64_t w, uint64_t fp, const uint8_t *key)
{
    return w >> 16 == fp && memcmp(f->keys[i], key, USE_KEY_LEN) == 0;
}

static void stamp(use_file *f, uint32_t i, uint64_t now)
{
    if (atomic_load_explicit(&f->lasts[i], memory_order_relaxed) < now)
        atomic_store_explicit(&f->lasts[i], now, memory_order_relaxed);
}

/* Adds up to *n hits to a slot that holds key; takes them off *n. */
static void add_to(use_file *f, uint32_t i, uint64_t fp, const uint8_t *key, uint64_t *n,
                   uint64_t now)
{
    uint64_t w = atomic_load_explicit(&f->words[i], memory_order_acquire);
    while (*n && holds(f, i, w, fp, key) && (w & COUNT_MAX) < COUNT_MAX) {
        uint64_t room = COUNT_MAX - (w & COUNT_MAX);
        uint64_t add = *n < room ? *n : room;
        /* The time first: a flush that takes the count reads the time
         * after, so it never takes a count without its time. */
        stamp(f, i, now);
        if (atomic_compare_exchange_weak_explicit(&f->words[i], &w, w + add, memory_order_acq_rel,
                                                  memory_order_acquire))
            *n -= add;
    }
}

/* Claims a free slot i for key with n hits (at most COUNT_MAX); 0 or -1
 * when another process took it first. */
static int claim(use_file *f, uint32_t i, uint64_t fp, const uint8_t *key, uint64_t n, uint64_t now)
{
    uint64_t w = 0;
    if (!atomic_compare_exchange_strong_explicit(&f->words[i], &w, USE_CLAIM, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return -1;
    atomic_store_explicit(&f->lasts[i], now, memory_order_relaxed);
    memcpy(f->keys[i], key, USE_KEY_LEN);
    atomic_store_explicit(&f->words[i], fp << 16 | n, memory_order_release);
    return 0;
}

int uses_add(store_uses *u, const uint8_t *key, uint64_t n, uint64_t now)
{
    use_file *f = u->map;
    uint64_t fp = fingerprint(key);
    uint32_t at = home_slot(key);
    /* Its own slots first, so that a key keeps to one slot. */
    for (uint32_t p = 0; p < USE_PROBE && n; p++)
        add_to(f, (at + p) & (USE_SLOTS - 1), fp, key, &n, now);
    for (uint32_t p = 0; p < USE_PROBE && n; p++) {
        uint32_t i = (at + p) & (USE_SLOTS - 1);
        uint64_t take = n < COUNT_MAX ? n : COUNT_MAX;
        if (atomic_load_explicit(&f->words[i], memory_order_relaxed) == 0 &&
            claim(f, i, fp, key, take, now) == 0)
            n -= take;
    }
    return n ? -1 : 0;
}

uint64_t uses_pending(store_uses *u, const uint8_t *key, uint64_t *last)
{
    use_file *f = u->map;
    uint64_t fp = fingerprint(key), hits = 0, latest = 0;
    uint32_t at = home_slot(key);
    for (uint32_t p = 0; p < USE_PROBE; p++) {
        uint32_t i = (at + p) & (USE_SLOTS - 1);
        uint64_t w = atomic_load_explicit(&f->words[i], memory_order_acquire);
        if (!holds(f, i, w, fp, key))
            continue;
        uint64_t t = atomic_load_explicit(&f->lasts[i], memory_order_relaxed);
        latest = t > latest ? t : latest;
        hits += w & COUNT_MAX;
    }
    if (last)
        *last = latest;
    return hits;
}

uint64_t uses_take(store_uses *u, const uint8_t *key, uint64_t *last)
{
    use_file *f = u->map;
    uint64_t fp = fingerprint(key), hits = 0, latest = 0;
    uint32_t at = home_slot(key);
    for (uint32_t p = 0; p < USE_PROBE; p++) {
        uint32_t i = (at + p) & (USE_SLOTS - 1);
        uint64_t w = atomic_load_explicit(&f->words[i], memory_order_acquire);
        for (;;) {
            if (!holds(f, i, w, fp, key))
                break;
            uint64_t t = atomic_load_explicit(&f->lasts[i], memory_order_relaxed);
            if (atomic_compare_exchange_weak_explicit(&f->words[i], &w, 0, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                latest = t > latest ? t : latest;
                hits += w & COUNT_MAX;
                break;
            }
        }
    }
    *last = latest;
    return hits;
}

int uses_slot(store_uses *u, uint32_t i, uint8_t key[USE_KEY_LEN], uint64_t now)
{
    use_file *f = u->map;
    uint64_t w = atomic_load_explicit(&f->words[i], memory_order_acquire);
    if (w == 0)
        return 0;
    if (w == USE_CLAIM) {
        /* A claimer writes the time right after claiming; a claim whose
         * time is long past, or never came, was abandoned by a process
         * killed in between (the time is set here so that it ages). */
        uint64_t t = atomic_load_explicit(&f->lasts[i], memory_order_relaxed);
        if (t == 0)
            atomic_store_explicit(&f->lasts[i], now, memory_order_relaxed);
        else if (t + USE_STUCK < now)
            atomic_compare_exchange_strong(&f->words[i], &w, 0);
        return 0;
    }
    memcpy(key, f->keys[i], USE_KEY_LEN);
    /* The key copied is the one published if the word did not move. */
    return atomic_load_explicit(&f->words[i], memory_order_acquire) >> 16 == w >> 16;
}

void uses_count_direct(store_uses *u)
{
    atomic_fetch_add_explicit(&u->map->direct, 1, memory_order_relaxed);
}

uint64_t uses_direct(store_uses *u)
{
    return atomic_load_explicit(&u->map->direct, memory_order_relaxed);
}
