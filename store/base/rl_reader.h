/*
 * rl_reader.h — a bounds-checked cursor over bytes being decoded: the
 * store's records (token_rec.c) and the replication group's messages
 * (cluster_wire.c), whose bytes may come from disk or from the network.
 *
 * A read past the end sets the sticky `bad` flag and returns nothing (NULL,
 * or zeros); every read after that fails too, so a decoder reads its whole
 * layout and checks `bad` once at the end. A caller that finds a value out
 * of range sets `bad` itself. Integers are big-endian, as the store writes
 * them.
 *
 * Header-only: each function is a few lines, called from decoders that the
 * fuzzers link without the rest of the store. Threads: a reader belongs to
 * its caller; no allocation, no state beyond the struct.
 */
#ifndef RELAY_STORE_BASE_RL_READER_H
#define RELAY_STORE_BASE_RL_READER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct rl_reader {
    const uint8_t *p; /* the next byte */
    size_t left;      /* bytes after p */
    int bad;          /* a read went past the end, or its caller refused a value */
} rl_reader;

static inline rl_reader rl_reader_of(const void *p, size_t n)
{
    return (rl_reader){(const uint8_t *)p, n, 0};
}

/* The next n bytes (the cursor moves past them), or NULL: bad. */
static inline const uint8_t *rl_read(rl_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static inline uint8_t rl_read8(rl_reader *r)
{
    const uint8_t *p = rl_read(r, 1);
    return p ? *p : 0;
}

static inline uint64_t rl_read64(rl_reader *r)
{
    const uint8_t *p = rl_read(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* n bytes into out; zeros when they are not there. */
static inline void rl_read_bytes(rl_reader *r, void *out, size_t n)
{
    const uint8_t *p = rl_read(r, n);
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

#endif
