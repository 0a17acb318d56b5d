/*
 * admission.c — the pool-wide places for upstream calls (contract in
 * admission.h): the shared file, taking and giving back a place, the
 * bounded wait, and freeing the places of dead processes.
 */
#include "engine/admission.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/mapfile.h"

/* "RLADMIT" and the layout's version in the last byte: a file of another
 * layout is refused (logged) rather than misread. */
#define ADMISSION_MAGIC 0x01544d44414c5200ULL

typedef struct admit_row {
    _Atomic uint64_t name;      /* hash of the upstream's name (never 0); 0: a free row */
    _Atomic uint32_t released;  /* futex word: bumped by every release */
    _Atomic uint32_t waiters;   /* threads waiting on it (a hint: a killed waiter stays counted) */
    _Atomic uint64_t reaped_at; /* now_ms of the last search for dead owners */
    _Atomic uint64_t waited, wait_ms, refused; /* admission_counts */
    _Atomic int32_t slots[ADMISSION_SLOTS];    /* 0 free, else the owner's pid */
} admit_row;

typedef struct admit_file {
    _Atomic uint64_t magic; /* 0 in a new file (zeros are an empty table) */
    uint64_t size;
    admit_row rows[ADMISSION_ROWS];
} admit_file;

struct admission {
    admit_file *map; /* shared by every process */
};

/* ---- the system's clock ------------------------------------------------ */

static uint64_t system_now_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void system_wait(void *ctx, uint32_t *word, uint32_t seen, uint64_t timeout_ms)
{
    (void)ctx;
    struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L};
    /* Shared (not FUTEX_PRIVATE): the releaser may be another process.
     * EAGAIN (the word moved already), EINTR and ETIMEDOUT all end the
     * wait; the caller re-checks. */
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

const admission_clock admission_system_clock = {system_now_ms, system_wait, NULL};

static void wake(admit_row *r, int n)
{
    syscall(SYS_futex, (uint32_t *)&r->released, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ---- the file ------------------------------------------------------------ */

rl_err admission_open(const char *home, admission **out)
{
    void *map = NULL;
    *out = NULL;
    rl_err err = store_map_file(home, ADMISSION_FILE, sizeof(admit_file), &map);
    if (err != RL_OK)
        return err;
    admit_file *f = map;
    uint64_t magic = 0;
    /* A new file is all zeros, an empty table: the first process marks it. */
    if (!atomic_compare_exchange_strong(&f->magic, &magic, ADMISSION_MAGIC) &&
        magic != ADMISSION_MAGIC) {
        rl_error("%s/%s is not an admission file of this version: upstream calls are not "
                 "limited ([fcgi] max_inflight) until it is removed",
                 home, ADMISSION_FILE);
        munmap(map, sizeof(admit_file));
        return RL_IO;
    }
    admission *a = malloc(sizeof *a);
    if (!a) {
        munmap(map, sizeof(admit_file));
        return RL_NOMEM;
    }
    a->map = f;
    *out = a;
    return RL_OK;
}

void admission_close(admission *a)
{
    if (!a)
        return;
    munmap(a->map, sizeof(admit_file));
    free(a);
}

/* FNV-1a of the name, never 0 (0 marks a free row). */
static uint64_t name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1;
}

/* The row of name, claimed when create and there is none; NULL when the
 * table is full (create) or it has none. */
static admit_row *row_of(const admission *a, const char *name, int create)
{
    uint64_t h = name_hash(name);
    for (unsigned i = 0; i < ADMISSION_ROWS; i++) {
        admit_row *r = &a->map->rows[(h + i) % ADMISSION_ROWS];
        uint64_t seen = atomic_load_explicit(&r->name, memory_order_acquire);
        if (seen == h)
            return r;
        if (seen != 0)
            continue;
        if (!create)
            return NULL;
        if (atomic_compare_exchange_strong(&r->name, &seen, h) || seen == h)
            return r;
    }
    return NULL;
}

/* ---- places ---------------------------------------------------------------- */

/* A free slot among the first max, taken for this process; -1 if none. */
static int take(admit_row *r, unsigned max, int32_t pid)
{
    for (unsigned i = 0; i < max; i++) {
        int32_t seen = atomic_load_explicit(&r->slots[i], memory_order_relaxed);
        if (seen == 0 && atomic_compare_exchange_strong_explicit(
                             &r->slots[i], &seen, pid, memory_order_acquire, memory_order_relaxed))
            return (int)i;
    }
    return -1;
}

static int alive(int32_t pid)
{
    if (pid == (int32_t)getpid())
        return 1;
    /* A zombie still counts: its parent reaps it first (as for failchk). */
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

#define PID_CACHE 16 /* owners remembered in one search: a pool has a few */

typedef struct owner {
    int32_t pid;
    int alive;
} owner;

/* Frees the slots of dead owners in r when due (or forced). */
static unsigned reap_row(admit_row *r, uint64_t now_ms, int force)
{
    uint64_t last = atomic_load_explicit(&r->reaped_at, memory_order_relaxed);
    int due = last == 0 || last > now_ms || now_ms - last >= ADMISSION_REAP_MS;
    if (!force && (!due || !atomic_compare_exchange_strong(&r->reaped_at, &last, now_ms)))
        return 0; /* not due, or another thread searches now */
    if (force)
        atomic_store(&r->reaped_at, now_ms);
    owner known[PID_CACHE];
    unsigned nknown = 0, freed = 0;
    for (unsigned i = 0; i < ADMISSION_SLOTS; i++) {
        int32_t pid = atomic_load_explicit(&r->slots[i], memory_order_relaxed);
        if (pid == 0)
            continue;
        int live = -1;
        for (unsigned k = 0; k < nknown && live < 0; k++)
            if (known[k].pid == pid)
                live = known[k].alive;
        if (live < 0) {
            live = alive(pid);
            if (nknown < PID_CACHE)
                known[nknown++] = (owner){pid, live};
        }
        /* Only the dead owner's value is cleared: a slot freed and taken
         * again in between keeps its new owner. */
        if (!live && atomic_compare_exchange_strong(&r->slots[i], &pid, 0))
            freed++;
    }
    if (freed) {
        rl_warn("admission: freed %u upstream call places held by processes that are gone", freed);
        atomic_fetch_add_explicit(&r->released, 1, memory_order_release);
        wake(r, (int)freed);
    }
    return freed;
}

unsigned admission_reap(admission *a, const char *name, uint64_t now_ms, int force)
{
    if (!a)
        return 0;
    if (name) {
        admit_row *r = row_of(a, name, 0);
        return r ? reap_row(r, now_ms, force) : 0;
    }
    unsigned freed = 0;
    for (unsigned i = 0; i < ADMISSION_ROWS; i++)
        if (atomic_load(&a->map->rows[i].name))
            freed += reap_row(&a->map->rows[i], now_ms, force);
    return freed;
}

rl_err admission_enter(admission *a, const char *name, unsigned max, uint64_t wait_ms,
                       const admission_clock *clock, admission_hold *hold, uint64_t *waited_ms)
{
    *hold = (admission_hold){-1, -1};
    if (waited_ms)
        *waited_ms = 0;
    if (!a)
        return RL_OK;
    admit_row *r = row_of(a, name, 1);
    if (!r) {
        rl_warn("admission: no room for upstream %s in %s: its calls are not limited", name,
                ADMISSION_FILE);
        return RL_OK;
    }
    int32_t pid = (int32_t)getpid();
    if (max == 0) {
        /* No limit: a place is still taken when one is free, so the
         * in-flight gauge counts these calls too (up to ADMISSION_SLOTS). */
        int any = take(r, ADMISSION_SLOTS, pid);
        if (any >= 0)
            *hold = (admission_hold){(int)(r - a->map->rows), any};
        return RL_OK;
    }
    if (max > ADMISSION_SLOTS)
        max = ADMISSION_SLOTS;
    int slot, queued = 0;
    uint64_t start = 0, now = 0;
    for (;;) {
        /* Read before looking: a release in between moves the word, and
         * the wait below returns at once. */
        uint32_t seen = atomic_load_explicit(&r->released, memory_order_acquire);
        if ((slot = take(r, max, pid)) >= 0)
            break;
        now = clock->now_ms(clock->ctx);
        if (!queued) {
            queued = 1;
            start = now;
            atomic_fetch_add(&r->waiters, 1);
        }
        if (reap_row(r, now, 0) > 0)
            continue;
        if (now - start >= wait_ms)
            break;
        /* At most a reap interval at a time: a place held by a process
         * killed meanwhile is found by the next search. */
        uint64_t left = start + wait_ms - now;
        clock->wait(clock->ctx, (uint32_t *)&r->released, seen,
                    left < ADMISSION_REAP_MS ? left : ADMISSION_REAP_MS);
    }
    if (queued) {
        atomic_fetch_sub(&r->waiters, 1);
        if (slot >= 0)
            now = clock->now_ms(clock->ctx);
        uint64_t waited = now > start ? now - start : 0;
        atomic_fetch_add_explicit(&r->waited, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->wait_ms, waited, memory_order_relaxed);
        if (waited_ms)
            *waited_ms = waited;
    }
    if (slot < 0) {
        atomic_fetch_add_explicit(&r->refused, 1, memory_order_relaxed);
        return RL_OVERLOADED;
    }
    *hold = (admission_hold){(int)(r - a->map->rows), slot};
    return RL_OK;
}

void admission_leave(admission *a, admission_hold *hold)
{
    if (!a || hold->row < 0)
        return;
    admit_row *r = &a->map->rows[hold->row];
    int32_t pid = (int32_t)getpid();
    /* Ours unless a search wrongly took it (a reused pid cannot be this
     * live process): then it is someone else's now and stays so. */
    atomic_compare_exchange_strong_explicit(&r->slots[hold->slot], &pid, 0, memory_order_release,
                                            memory_order_relaxed);
    *hold = (admission_hold){-1, -1};
    atomic_fetch_add_explicit(&r->released, 1, memory_order_release);
    /* One waiter: the place is one. A waiter woken that cannot use it (a
     * newcomer took it first) waits again; it never leaves without
     * looking once more, so a wake-up is never lost with a free place. */
    if (atomic_load_explicit(&r->waiters, memory_order_acquire))
        wake(r, 1);
}

void admission_read(const admission *a, const char *name, admission_counts *out)
{
    memset(out, 0, sizeof *out);
    admit_row *r = a ? row_of(a, name, 0) : NULL;
    if (!r)
        return;
    for (unsigned i = 0; i < ADMISSION_SLOTS; i++)
        out->inflight += atomic_load_explicit(&r->slots[i], memory_order_relaxed) != 0;
    out->waiting = atomic_load_explicit(&r->waiters, memory_order_relaxed);
    out->waited = atomic_load_explicit(&r->waited, memory_order_relaxed);
    out->wait_ms = atomic_load_explicit(&r->wait_ms, memory_order_relaxed);
    out->refused = atomic_load_explicit(&r->refused, memory_order_relaxed);
}
