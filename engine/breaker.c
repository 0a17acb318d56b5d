/*
 * breaker.c — the shared circuit breaker (contract in breaker.h).
 *
 * breaker.map holds a small header and BREAKER_SLOTS slots, one per
 * upstream name, claimed on first use like stats.map's rows (FREE →
 * CLAIMING → READY, the name and hash written before READY is published).
 * A slot's state is four words, each changed by compare-and-swap only:
 *
 *   window      (start << 32) | failures   the failure count of the window
 *   open_until  0 closed; else the unix second its cool-down ends
 *   probe       (pid << 32) | deadline      the half-open claim; 0 none
 *   opened_at, opens                        for the views
 *
 * Seconds are kept in 32 bits in the packed words (good until 2106).
 */
#include "engine/breaker.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store/base/rl_log.h"
#include "store/mapfile.h"

#define BREAKER_MAGIC                                                                              \
    0x314b5242594c4552ULL /* "RELYBRK1": bump the digit when the layout changes                    \
                           */
#define SLOT_FREE 0
#define SLOT_CLAIMING 1
#define SLOT_READY 2
/* Yields a finder waits for another process to finish claiming a slot
 * (a few stores); past it the claimer is taken for dead and the slot
 * skipped. */
#define CLAIM_PATIENCE 10000

typedef struct bslot {
    _Atomic uint32_t state;
    uint32_t pad;
    uint64_t hash;
    char name[BREAKER_NAME_MAX];
    _Atomic uint64_t window;
    _Atomic uint64_t open_until;
    _Atomic uint64_t probe;
    _Atomic uint64_t opened_at;
    _Atomic uint64_t opens;
} bslot;

typedef struct bfile {
    _Atomic uint64_t magic; /* 0 in a new file: the first process sets it */
    uint64_t size;          /* sizeof(bfile), checked with the magic */
    bslot slots[BREAKER_SLOTS];
} bfile;

struct breaker {
    bfile *f;
};

breaker_policy breaker_policy_of(const upstream_config *up)
{
    return (breaker_policy){(uint32_t)up->breaker_failures, (uint32_t)up->breaker_window,
                            (uint32_t)up->breaker_cooldown, (uint32_t)up->timeout + 1};
}

breaker *breaker_new(const char *home)
{
    void *map = NULL;
    if (store_map_file(home, BREAKER_FILE, sizeof(bfile), &map) != RL_OK)
        return NULL; /* logged by store_map_file */
    bfile *f = map;
    uint64_t want = 0;
    if (!atomic_compare_exchange_strong(&f->magic, &want, BREAKER_MAGIC))
        if (want != BREAKER_MAGIC) {
            rl_error("%s/%s is not a breaker file of this version: running without a circuit "
                     "breaker (remove the file while Relay is stopped)",
                     home, BREAKER_FILE);
            munmap(map, sizeof(bfile));
            return NULL;
        }
    f->size = sizeof(bfile); /* the same value from every process */
    breaker *b = malloc(sizeof *b);
    if (!b) {
        munmap(map, sizeof(bfile));
        return NULL;
    }
    b->f = f;
    return b;
}

void breaker_free(breaker *b)
{
    if (!b)
        return;
    munmap(b->f, sizeof(bfile));
    free(b);
}

/* ---- slots ---------------------------------------------------------------------- */

static uint64_t name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; name[i] && i < BREAKER_NAME_MAX - 1; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return h ? h : 1;
}

static int slot_is(const bslot *s, uint64_t h, const char *name)
{
    return s->hash == h && strncmp(s->name, name, BREAKER_NAME_MAX - 1) == 0;
}

/* Waits for a slot being claimed to be READY; 0 when its claimer seems
 * dead (the slot is then skipped for good). */
static int await_ready(bslot *s)
{
    for (int i = 0; i < CLAIM_PATIENCE; i++) {
        if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY)
            return 1;
        sched_yield();
    }
    return 0;
}

/* The slot of name, claimed when create and absent; NULL when none (the
 * table is full, or the name is not there and create is 0). */
static bslot *slot_find(breaker *b, const char *name, int create)
{
    if (!b || !name)
        return NULL;
    uint64_t h = name_hash(name);
    for (size_t n = 0; n < BREAKER_SLOTS; n++) {
        bslot *s = &b->f->slots[(h + n) % BREAKER_SLOTS];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == SLOT_FREE) {
            if (!create)
                return NULL;
            if (atomic_compare_exchange_strong(&s->state, &st, SLOT_CLAIMING)) {
                s->hash = h;
                snprintf(s->name, sizeof s->name, "%s", name);
                atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
                return s;
            }
            /* Lost the race: st now says what the winner is doing. */
        }
        if (st == SLOT_CLAIMING && !await_ready(s))
            continue;
        if (slot_is(s, h, name))
            return s;
    }
    return NULL;
}

/* ---- the state machine ----------------------------------------------------------- */

#define PACK(hi, lo) (((uint64_t)(uint32_t)(hi) << 32) | (uint32_t)(lo))
#define HI(w) ((uint32_t)((w) >> 32))
#define LO(w) ((uint32_t)(w))

/* Whether a probe claim still holds at now: within its deadline and its
 * process alive. */
static int probe_live(uint64_t claim, uint64_t now)
{
    if (claim == 0 || (uint64_t)LO(claim) <= now)
        return 0;
    pid_t pid = (pid_t)HI(claim);
    return !(kill(pid, 0) != 0 && errno == ESRCH);
}

breaker_outcome breaker_classify(rl_err err, int status)
{
    switch (err) {
    case RL_OK:
        break;
    case RL_UPSTREAM_UNREACHABLE:
    case RL_UPSTREAM_TIMEOUT:
    case RL_UPSTREAM_PROTOCOL:
    case RL_UPSTREAM_CUT:
        return BREAKER_FAILURE;
    default:
        /* The client left, memory ran out: nothing about the upstream. */
        return BREAKER_NEUTRAL;
    }
    if (status >= 500)
        return BREAKER_FAILURE;
    if (status >= 200 && status < 400)
        return BREAKER_SUCCESS;
    return BREAKER_NEUTRAL; /* a client's 4xx, or a 429 */
}

breaker_verdict breaker_admit(breaker *b, const char *upstream, const breaker_policy *p,
                              uint64_t now, uint32_t pid, uint64_t *retry_in)
{
    *retry_in = 1;
    if (!p->failures)
        return BREAKER_CALL;
    bslot *s = slot_find(b, upstream, 0);
    if (!s)
        return BREAKER_CALL; /* never failed here (or no breaker) */
    uint64_t until = atomic_load(&s->open_until);
    if (until == 0)
        return BREAKER_CALL;
    if (now < until) {
        *retry_in = until - now;
        return BREAKER_REFUSE;
    }
    uint64_t claim = atomic_load(&s->probe);
    if (probe_live(claim, now))
        return BREAKER_REFUSE;
    uint64_t mine = PACK(pid, now + (p->probe_bound ? p->probe_bound : 1));
    if (!atomic_compare_exchange_strong(&s->probe, &claim, mine))
        return BREAKER_REFUSE; /* another request took it first */
    /* Closed by a probe that ended between the two loads: call as usual. */
    if (atomic_load(&s->open_until) == 0) {
        atomic_compare_exchange_strong(&s->probe, &mine, 0);
        return BREAKER_CALL;
    }
    return BREAKER_PROBE;
}

/* Opens s (closed or half-open) for a cool-down from now. */
static void trip(bslot *s, const breaker_policy *p, uint64_t now)
{
    atomic_store(&s->opened_at, now);
    atomic_store(&s->open_until, now + (p->cooldown ? p->cooldown : 1));
    atomic_fetch_add(&s->opens, 1);
}

/* Counts a failure of a closed breaker; opens it at the threshold. */
static void count_failure(bslot *s, const breaker_policy *p, uint64_t now)
{
    uint64_t w = atomic_load(&s->window), next;
    do {
        uint32_t start = HI(w), n = LO(w);
        if (n == 0 || now >= (uint64_t)start + p->window)
            next = PACK(now, 1);
        else
            next = PACK(start, n + 1);
    } while (!atomic_compare_exchange_weak(&s->window, &w, next));
    if (LO(next) < p->failures)
        return;
    uint64_t closed = 0;
    uint64_t until = now + (p->cooldown ? p->cooldown : 1);
    if (atomic_compare_exchange_strong(&s->open_until, &closed, until)) {
        atomic_store(&s->opened_at, now);
        atomic_fetch_add(&s->opens, 1);
        rl_warn("upstream %s: circuit open after %u failures within %u s; calls refused for %u s",
                s->name, LO(next), p->window, p->cooldown);
    }
}

/* Settles the probe held by pid. */
static void settle_probe(bslot *s, const breaker_policy *p, breaker_outcome o, uint64_t now,
                         uint32_t pid)
{
    uint64_t claim = atomic_load(&s->probe);
    if (claim == 0 || HI(claim) != pid)
        return; /* expired and taken by another: that probe decides */
    if (o == BREAKER_SUCCESS) {
        atomic_store(&s->window, 0);
        atomic_store(&s->open_until, 0);
        rl_info("upstream %s: the probe succeeded: circuit closed", s->name);
    } else if (o == BREAKER_FAILURE) {
        trip(s, p, now);
        rl_warn("upstream %s: the probe failed: circuit open for another %u s", s->name,
                p->cooldown);
    }
    atomic_compare_exchange_strong(&s->probe, &claim, 0);
}

void breaker_record(breaker *b, const char *upstream, const breaker_policy *p, breaker_verdict v,
                    breaker_outcome o, uint64_t now, uint32_t pid)
{
    if (!p->failures || v == BREAKER_REFUSE)
        return;
    if (v == BREAKER_CALL && o != BREAKER_FAILURE)
        return; /* the common case touches nothing shared */
    bslot *s = slot_find(b, upstream, 1);
    if (!s)
        return;
    if (v == BREAKER_PROBE) {
        settle_probe(s, p, o, now, pid);
        return;
    }
    /* Calls admitted before it opened and failing after: counted, but they
     * do not extend a cool-down already running. */
    count_failure(s, p, now);
}

int breaker_is_open(breaker *b, const char *upstream, uint64_t now)
{
    bslot *s = slot_find(b, upstream, 0);
    if (!s)
        return 0;
    uint64_t until = atomic_load(&s->open_until);
    if (until == 0)
        return 0;
    return now < until || probe_live(atomic_load(&s->probe), now);
}

void breaker_view_of(breaker *b, const char *upstream, const breaker_policy *p, uint64_t now,
                     breaker_view *out)
{
    memset(out, 0, sizeof *out);
    bslot *s = slot_find(b, upstream, 0);
    if (!s)
        return;
    uint64_t w = atomic_load(&s->window);
    if (LO(w) && now < (uint64_t)HI(w) + p->window)
        out->failures = LO(w);
    out->opened_at = atomic_load(&s->opened_at);
    out->opens = atomic_load(&s->opens);
    uint64_t until = atomic_load(&s->open_until);
    if (until == 0)
        return;
    if (now < until) {
        out->state = BREAKER_OPEN;
        out->retry_in = until - now;
        return;
    }
    out->state = BREAKER_HALF_OPEN;
    uint64_t claim = atomic_load(&s->probe);
    if (probe_live(claim, now))
        out->prober = HI(claim);
}

const char *breaker_state_name(breaker_state s)
{
    static const char *const names[] = {"closed", "open", "half_open"};
    return names[s];
}
