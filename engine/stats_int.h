/*
 * stats_int.h — the layout of stats.map, shared by stats.c (what is
 * counted: rows, series) and stats_file.c (the file: its header and
 * checks, allocation, rebuilding, mapping). Not for use outside them.
 */
#ifndef RELAY_ENGINE_STATS_INT_H
#define RELAY_ENGINE_STATS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "engine/stats.h"

#define ROW_FREE 0
#define ROW_CLAIMING 1
#define ROW_READY 2
#define SLOT_BUSY (1ULL << 63) /* a writer is clearing the slot for a new period */

typedef struct row {
    _Atomic uint32_t state;
    uint32_t kind;
    uint64_t hash; /* stats_row_hash of kind and labels */
    char labels[STATS_LABELS][STATS_LABEL_MAX];
    _Atomic uint64_t c[STATS_COUNTERS];
} row;

typedef struct slot {
    _Atomic uint64_t stamp; /* start of the period it counts (unix s), maybe | SLOT_BUSY */
    _Atomic uint64_t c[S_COUNTERS];
} slot;

/* Written once, before the file is put in place (stats_file.c), and never
 * changed after: a process that finds it wrong rebuilds the file. */
typedef struct stats_header {
    uint64_t magic;   /* STATS_MAGIC */
    uint32_t version; /* STATS_VERSION: what the counters mean */
    uint32_t header_size;
    uint64_t size;   /* sizeof(stats_file) */
    uint64_t layout; /* a checksum of the layout's sizes and offsets */
    uint64_t check;  /* a checksum of the fields above */
} stats_header;

typedef struct stats_file {
    stats_header h;
    _Atomic uint64_t rows_used;    /* claimed rows, counting the reserve (stats.c) */
    _Atomic uint64_t clients_used; /* CLIENT rows of their own, up to STATS_CLIENT_ROWS */
    row rows[STATS_ROWS];
    slot minutes[STATS_MINUTES];
    slot days[STATS_DAYS];
} stats_file;

/* Mappings replaced by a rebuild stay mapped until stats_close: a request
 * thread may still be counting into one. After this many rebuilds a
 * process keeps its mapping. */
#define STATS_RETIRED 16

struct stats {
    /* The mapping counted into; NULL while there is none (why says why).
     * Loaded once per call by request threads. */
    _Atomic(stats_file *) f;
    pthread_mutex_t mu; /* everything below */
    char path[4096];
    dev_t dev; /* of the file f maps */
    ino_t ino;
    char why[256];
    uint64_t retry_at, deep_at; /* stats_maintain's next open attempt, next full check */
    stats_file *retired[STATS_RETIRED];
    size_t nretired;
};

/* FNV-1a over n bytes, from h. */
uint64_t stats_fnv(uint64_t h, const void *p, size_t n);
#define STATS_FNV0 14695981039346656037ULL

/* The hash a row of kind and labels carries (labels cut as a row holds
 * them). */
uint64_t stats_row_hash(stats_row_kind kind, const char *const *labels);

#endif
