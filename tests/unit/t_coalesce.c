/*
 * t_coalesce.c — the flight protocol (engine/coalesce.c) and the fan-out of
 * one process (engine/fanout.c) on a real store in a temporary directory,
 * with no server and no sleep: the requests are exchanges answering fake
 * clients (a sink that records what it is sent), and time is a clock of
 * the test's own (x->flight.clock). Where a follower would wait for news,
 * the clock's wait runs the test's next step instead: the leader publishes
 * a chunk, ends its flight, dies, or nothing happens and time moves on.
 *
 * Paths: a live stream follower gets the leader's bytes exactly; a body
 * follower the leader's body and its usage; an error before the first
 * byte reaches the follower with the leader's status and body; a stream
 * cut mid-way ends the follower's stream with an error event; a flight
 * over max_buffer fails its followers; a silent leader makes the follower
 * go alone after max_wait (or end with a timeout once it sent bytes); a
 * dead leader (a child process) is taken over; two followers in one
 * process share one reader and get the same bytes. A leader of a buffered
 * answer kept for the cache publishes it only if a follower is there at its
 * end, or if it was not stored; a follower of a quiet flight that ended
 * stored reads the cache; a stream is published as it comes regardless.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/ckey.h"
#include "engine/coalesce.h"
#include "store/flight.h"
#include "tests/unit/tap.h"

/* Under LeakSanitizer: a dead leader makes the store reopen its
 * environment, and Berkeley DB 5.3 abandons a panicked handle's memory
 * (see store_fixture.h). Our own allocations stay checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libdb-5.3.so\n";
}

static char tmp[64], self[4096], home[128], keyfile[160];

#define T0 1800000000000ULL /* the clock's start, unix ms */

static void set_paths(const char *dir)
{
    if (dir != tmp)
        snprintf(tmp, sizeof tmp, "%s", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(keyfile, sizeof keyfile, "%s/relay.key", dir);
}

static store_options opts(void)
{
    store_options o = {.home = home, .key_file = keyfile, .cache_mb = 8, .max_threads = 32};
    return o;
}

/* Key n: n in the first two bytes, which pick its wake slot. */
static void mkkey(uint8_t k[STORE_KEY_LEN], uint32_t n)
{
    for (int i = 0; i < STORE_KEY_LEN; i++)
        k[i] = (uint8_t)(0x3c ^ (i * 11));
    k[0] = (uint8_t)(n >> 8);
    k[1] = (uint8_t)n;
}

/* ---- a fake client ------------------------------------------------------- */

typedef struct client {
    _Atomic int status; /* 0 until start; read by the fan-out test's step */
    char xcache[16];
    char body[8192];
    size_t len;
    int flushes;
} client;

static int sink_start(void *ctx, int status, const rl_header *h, size_t n)
{
    client *c = ctx;
    atomic_store(&c->status, status);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].name, "x-cache"))
            snprintf(c->xcache, sizeof c->xcache, "%s", h[i].value);
    return 0;
}

static int sink_write(void *ctx, const void *p, size_t n)
{
    client *c = ctx;
    if (c->len + n >= sizeof c->body)
        return -1;
    memcpy(c->body + c->len, p, n);
    c->len += n;
    c->body[c->len] = '\0';
    return 0;
}

static int sink_flush(void *ctx)
{
    ((client *)ctx)->flushes++;
    return 0;
}

static int sink_ready(void *ctx, size_t len)
{
    (void)ctx;
    (void)len;
    return 1;
}

/* ---- the test's clock and its script -------------------------------------- */

typedef struct script script;
/* One step, run where a follower would wait; returns 1 when it published
 * or ended something (the wait would have returned at once), 0 when
 * nothing happened (the whole timeout passes), -1 when it waits for
 * another thread (no time passes; the thread yields). */
typedef int (*step_fn)(script *sc, int n);

struct script {
    _Atomic uint64_t now; /* unix ms */
    _Atomic int waits;    /* waits so far */
    step_fn step;
    struct exchange *leader;
    const char *const *chunks; /* what step_stream publishes, NULL-terminated */
    struct client *gate[2];    /* step_fan ends the flight once both started */
    int ended;
    pid_t child;        /* a leader process to end */
    int tell;           /* its pipe */
    pthread_mutex_t mu; /* steps run one at a time */
};

static uint64_t fake_now(void *ctx)
{
    return atomic_load(&((script *)ctx)->now);
}

static void fake_wait(void *ctx, store *s, const uint8_t *key, uint32_t ticket, int timeout_ms)
{
    (void)s;
    (void)key;
    (void)ticket;
    script *sc = ctx;
    pthread_mutex_lock(&sc->mu);
    int n = atomic_fetch_add(&sc->waits, 1);
    int news = sc->step ? sc->step(sc, n) : 0;
    if (news >= 0)
        atomic_fetch_add(&sc->now, news ? 1 : (uint64_t)timeout_ms);
    pthread_mutex_unlock(&sc->mu);
    if (news < 0)
        sched_yield();
}

static void script_init(script *sc, step_fn step)
{
    memset(sc, 0, sizeof *sc);
    atomic_store(&sc->now, T0);
    sc->step = step;
    pthread_mutex_init(&sc->mu, NULL);
}

/* ---- requests -------------------------------------------------------------- */

static relay_config cfg;
static struct engine eng;
static engine_worker worker;
static const engine_sink sink_ops_template = {NULL,       sink_start, sink_write,
                                              sink_flush, sink_ready, NULL};

typedef struct request {
    exchange x;
    engine_sink sink;
    client c;
    coalesce_clock clock;
} request;

/* A request for key n in its own form (stream or not), on sc's clock. */
static void request_init(request *r, uint32_t n, int stream, script *sc)
{
    memset(r, 0, sizeof *r);
    r->sink = sink_ops_template;
    r->sink.ctx = &r->c;
    r->clock = (coalesce_clock){sc, fake_now, fake_wait};
    exchange *x = &r->x;
    x->w = &worker;
    x->cfg = &cfg;
    x->sink = &r->sink;
    x->prov = &prov_openai;
    x->outcome = "";
    x->usage = PROV_USAGE_UNKNOWN;
    x->decision.store = 1;
    x->info.stream = stream;
    x->info.framing = FRAME_SSE;
    x->cache_status = "MISS";
    x->flight.clock = &r->clock;
    mkkey(x->key, n);
    ckey_hex16(x->key, x->key_hex);
}

/* The leader's side of a step: chunk i of sc->chunks (the head first),
 * then the end of the flight. */
static const char SSE[] = "text/event-stream";
static const char *const stream_chunks[] = {
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n",
    "data: [DONE]\n\n", NULL};

static size_t nchunks(const char *const *c)
{
    size_t n = 0;
    while (c[n])
        n++;
    return n;
}

static int step_stream(script *sc, int n)
{
    size_t total = nchunks(sc->chunks);
    if (n == 0)
        coalesce_publish_head(sc->leader, 200, ENTRY_STREAM, SSE);
    else if ((size_t)n <= total)
        coalesce_publish_data(sc->leader, sc->chunks[n - 1], strlen(sc->chunks[n - 1]));
    else if ((size_t)n == total + 1)
        coalesce_finish(sc->leader, 1, 1);
    else
        return 0;
    return 1;
}

static void join_all(const char *const *chunks, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; chunks[i] && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s", chunks[i]);
}

static void test_live_stream(void)
{
    script sc;
    script_init(&sc, step_stream);
    request lead, fol;
    request_init(&lead, 1, 1, &sc);
    request_init(&fol, 1, 1, &sc);
    sc.leader = &lead.x;
    sc.chunks = stream_chunks;

    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "the first request leads");
    ok(lead.x.flight.leading && lead.x.flight.publishing, "and publishes");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "an identical one follows to the end");
    char want[4096];
    join_all(stream_chunks, want, sizeof want);
    is_int(fol.c.status, 200, "the follower got the leader's status");
    is_str(fol.c.xcache, "COALESCED", "X-Cache: COALESCED");
    is_str(fol.c.body, want, "the leader's stream byte for byte");
    ok(fol.c.flushes >= (int)nchunks(stream_chunks), "each chunk flushed as it came");
    is_int(fol.x.usage.input, 7, "its usage read from the shared stream: input");
    is_int(fol.x.usage.output, 3, "output");
    ok(!fol.x.failed, "nothing failed");
    is_int(atomic_load(&sc.waits), (int)nchunks(stream_chunks) + 2,
           "one wait per published piece, no idle wait");
}

/* A body answer: head, the body, the end. */
static const char BODY[] =
    "{\"id\":\"c2\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{"
    "\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{"
    "\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}";

static int step_body(script *sc, int n)
{
    if (n == 0) {
        coalesce_publish_head(sc->leader, 200, ENTRY_BODY, "application/json");
        coalesce_publish_data(sc->leader, BODY, sizeof BODY - 1);
        coalesce_finish(sc->leader, 1, 1);
        return 1;
    }
    return 0;
}

static void test_body(void)
{
    script sc;
    script_init(&sc, step_body);
    request lead, fol;
    request_init(&lead, 2, 0, &sc);
    request_init(&fol, 2, 0, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "body: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "body: follow");
    is_int(fol.c.status, 200, "body: status");
    is_str(fol.c.body, BODY, "body: the leader's body exactly");
    is_int(fol.x.usage.input, 11, "body: usage input");
    is_int(fol.x.usage.output, 2, "body: usage output");
}

static int step_error(script *sc, int n)
{
    if (n == 0) {
        coalesce_publish_error(sc->leader, RL_UPSTREAM_UNREACHABLE, "The upstream is down.");
        return 1;
    }
    return 0;
}

static void test_error_before_first_byte(void)
{
    script sc;
    script_init(&sc, step_error);
    request lead, fol;
    request_init(&lead, 3, 1, &sc);
    request_init(&fol, 3, 1, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "error: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "error: follow");
    is_int(fol.c.status, 502, "the follower gets the leader's error status");
    rl_buf want;
    rl_buf_init(&want, 0);
    prov_openai.error_body(&want, RL_UPSTREAM_UNREACHABLE, "The upstream is down.");
    is_str(fol.c.body, want.data, "and its error body, as the leader rendered it");
    rl_buf_release(&want);
}

static int step_cut(script *sc, int n)
{
    if (n == 0)
        coalesce_publish_head(sc->leader, 200, ENTRY_STREAM, SSE);
    else if (n == 1)
        coalesce_publish_data(sc->leader, stream_chunks[0], strlen(stream_chunks[0]));
    else if (n == 2)
        coalesce_finish(sc->leader, 0, 0);
    else
        return 0;
    return 1;
}

static void test_cut_stream(void)
{
    script sc;
    script_init(&sc, step_cut);
    request lead, fol;
    request_init(&lead, 4, 1, &sc);
    request_init(&fol, 4, 1, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "cut: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "cut: follow");
    is_int(fol.c.status, 200, "cut: the stream had started");
    ok(!strncmp(fol.c.body, stream_chunks[0], strlen(stream_chunks[0])),
       "cut: the first chunk arrived");
    ok(strstr(fol.c.body + strlen(stream_chunks[0]), "\"error\"") != NULL,
       "cut: then an error event, not a clean end");
    ok(!strstr(fol.c.body, "[DONE]"), "cut: never the terminator");
    ok(fol.x.failed, "cut: counted as failed");
}

static int step_overflow(script *sc, int n)
{
    if (n == 0) {
        coalesce_publish_head(sc->leader, 200, ENTRY_BODY, "application/json");
        coalesce_publish_data(sc->leader, BODY, sizeof BODY - 1); /* over max_buffer */
        return 1;
    }
    return 0;
}

static void test_over_max_buffer(void)
{
    script sc;
    script_init(&sc, step_overflow);
    uint64_t was = cfg.coalesce.max_buffer;
    cfg.coalesce.max_buffer = 64;
    request lead, fol;
    request_init(&lead, 5, 0, &sc);
    request_init(&fol, 5, 0, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "max_buffer: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "max_buffer: follow");
    ok(!lead.x.flight.publishing, "the leader stopped publishing");
    is_int(fol.c.status, 502, "its follower ends with an error");
    ok(strstr(fol.c.body, "upstream_stream_cut") != NULL, "in the client's format");
    cfg.coalesce.max_buffer = was;
}

/* A leader that says nothing: time passes, nothing is published. */
static int step_silence(script *sc, int n)
{
    (void)sc;
    (void)n;
    return 0;
}

static void test_max_wait(void)
{
    script sc;
    script_init(&sc, step_silence);
    request lead, fol;
    request_init(&lead, 6, 0, &sc);
    request_init(&fol, 6, 0, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "max_wait: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ALONE, "a silent live leader: the follower goes alone");
    uint64_t waited = atomic_load(&sc.now) - T0;
    ok(waited >= (uint64_t)cfg.coalesce.max_wait * 1000, "only after max_wait");
    ok(waited < (uint64_t)cfg.coalesce.max_wait * 1000 + 2 * COALESCE_TICK_MS, "and soon after it");
    is_int(fol.c.status, 0, "nothing was sent to its client");
    is_int(fol.x.flight.active, 0, "it no longer coalesces");
    coalesce_finish(&lead.x, 0, 0);
}

static int step_head_then_silence(script *sc, int n)
{
    if (n == 0) {
        coalesce_publish_head(sc->leader, 200, ENTRY_STREAM, SSE);
        return 1;
    }
    return 0;
}

static void test_max_wait_after_start(void)
{
    script sc;
    script_init(&sc, step_head_then_silence);
    request lead, fol;
    request_init(&lead, 7, 1, &sc);
    request_init(&fol, 7, 1, &sc);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "started: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "started: the follower ends");
    is_int(fol.c.status, 200, "started: its stream had begun");
    ok(strstr(fol.c.body, "upstream_timeout") != NULL, "and ends with a timeout error event");
    ok(atomic_load(&sc.now) - T0 >= (uint64_t)cfg.coalesce.max_wait * 1000, "after max_wait");
    coalesce_finish(&lead.x, 0, 0);
}

/* ---- a leader in another process ------------------------------------------------- */

/* Runs this binary as the leader of key n until told (a byte on its
 * stdin), then exits without ending its flight. */
static pid_t spawn_leader(uint32_t n, int *tell)
{
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        close(up[0]);
        close(down[1]);
        char num[16];
        snprintf(num, sizeof num, "%u", n);
        execl(self, self, "--lead", num, tmp, (char *)NULL);
        _exit(127);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    if (read(up[0], &c, 1) != 1 || c != 'L')
        pid = -1;
    close(up[0]);
    *tell = down[1];
    return pid;
}

static int lead_role(uint32_t n)
{
    store *s = NULL;
    store_options o = opts();
    if (store_open(&o, &s) != RL_OK)
        return 2;
    uint8_t k[STORE_KEY_LEN];
    mkkey(k, n);
    store_flight f;
    int leader = 0;
    if (store_flight_join(s, k, T0, 0, &f, &leader) != RL_OK || !leader)
        return 3;
    if (write(1, "L", 1) != 1)
        return 4;
    char c;
    (void)!read(0, &c, 1);
    _exit(0); /* dies leading */
}

static int step_kill_leader(script *sc, int n)
{
    if (n == 0 && sc->child > 0) {
        (void)!write(sc->tell, "x", 1);
        close(sc->tell);
        waitpid(sc->child, NULL, 0);
        sc->child = 0;
    }
    return 0;
}

static void test_takeover(void)
{
    script sc;
    script_init(&sc, step_kill_leader);
    sc.child = spawn_leader(8, &sc.tell);
    ok(sc.child > 0, "takeover: another process leads");
    request fol;
    request_init(&fol, 8, 1, &sc);
    store_flight before;
    flight_state st;
    store_flight_read(atomic_load(&eng.store), fol.x.key, 0, 0, NULL, NULL, &before, &st);
    is_int(coalesce_join(&fol.x), COALESCE_LEAD, "its follower takes over when it dies");
    ok(fol.x.flight.leading && fol.x.flight.publishing, "and leads, publishing");
    is_int(fol.x.flight.gen, before.gen + 1, "a new generation");
    is_int(fol.c.status, 0, "nothing was sent yet: it calls upstream itself");
    ok(atomic_load(&sc.now) - T0 < (uint64_t)cfg.coalesce.max_wait * 1000,
       "noticed by the liveness check, not max_wait");

    /* A request arriving now follows the new leader. */
    script sc2;
    script_init(&sc2, step_stream);
    sc2.leader = &fol.x;
    sc2.chunks = stream_chunks;
    request late;
    request_init(&late, 8, 1, &sc2);
    fol.clock = (coalesce_clock){&sc2, fake_now, fake_wait};
    is_int(coalesce_join(&late.x), COALESCE_ANSWERED, "a later request follows the new leader");
    char want[4096];
    join_all(stream_chunks, want, sizeof want);
    is_str(late.c.body, want, "and gets its stream");
}

/* ---- two followers in one process: one reader ---------------------------------- */

static void *follow_thread(void *arg)
{
    request *r = arg;
    return (void *)(intptr_t)coalesce_join(&r->x);
}

/* step_stream, but the flight ends only once both followers' clients got
 * its head: a follower that joined after the end would lead a new flight. */
static int step_fan(script *sc, int n)
{
    if ((size_t)n <= nchunks(sc->chunks))
        return step_stream(sc, n);
    if (sc->ended)
        return 0;
    if (!atomic_load(&sc->gate[0]->status) || !atomic_load(&sc->gate[1]->status))
        return -1;
    coalesce_finish(sc->leader, 1, 1);
    sc->ended = 1;
    return 1;
}

static void test_fan_out(void)
{
    script sc;
    script_init(&sc, step_fan);
    request lead, a, b;
    request_init(&lead, 9, 1, &sc);
    request_init(&a, 9, 1, &sc);
    request_init(&b, 9, 1, &sc);
    sc.leader = &lead.x;
    sc.chunks = stream_chunks;
    sc.gate[0] = &a.c;
    sc.gate[1] = &b.c;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "fan-out: lead");
    pthread_t ta, tb;
    pthread_create(&ta, NULL, follow_thread, &a);
    pthread_create(&tb, NULL, follow_thread, &b);
    void *ra, *rb;
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    is_int((intptr_t)ra, COALESCE_ANSWERED, "fan-out: the first follower is answered");
    is_int((intptr_t)rb, COALESCE_ANSWERED, "fan-out: the second too");
    char want[4096];
    join_all(stream_chunks, want, sizeof want);
    is_str(a.c.body, want, "fan-out: the first got the whole stream");
    is_str(b.c.body, want, "fan-out: the second the same bytes");
    is_int(a.x.usage.output, 3, "fan-out: usage for each");
    is_int(b.x.usage.output, 3, "fan-out: usage for the other");
}

/* ---- quiet leading: a leader keeping its answer for the cache ------------- */

/* What the engine does with a chunk of an answer it keeps: x->body first. */
static void keep_and_publish(exchange *x, const char *chunk)
{
    rl_buf_append(&x->body, chunk, strlen(chunk));
    coalesce_publish_data(x, chunk, strlen(chunk));
}

/* A leader that keeps its answer whole (x->capture), as call_upstream makes one. */
static void keeping(request *r)
{
    r->x.capture = 1;
    rl_buf_init(&r->x.body, 1 << 20);
}

/* Step n publishes chunks[sc->ended + n], then ends the flight: stored in
 * the cache (reusable) when sc->tell is 1. */
static int step_quiet(script *sc, int n)
{
    size_t i = (size_t)sc->ended + (size_t)n, total = nchunks(sc->chunks);
    if (i < total)
        keep_and_publish(sc->leader, sc->chunks[i]);
    else if (i == total)
        coalesce_finish(sc->leader, 1, sc->tell);
    else
        return 0;
    return 1;
}

static int count_chunk(void *ctx, uint32_t seq, const void *data, size_t len)
{
    (void)seq;
    (void)data;
    (void)len;
    (*(unsigned *)ctx)++;
    return 0;
}

/* The chunks of key's generation gen in the store, and its state. */
static unsigned stored_chunks(store *s, const uint8_t *key, uint32_t gen, flight_state *state)
{
    unsigned n = 0;
    store_flight f;
    if (store_flight_read(s, key, gen, 0, count_chunk, &n, &f, state) != RL_OK)
        *state = FLIGHT_FAILED;
    return n;
}

/* Nobody follows: nothing is published, the flight ends stored and empty;
 * a follower that joined after the leader's last look reads the cache. */
static void test_quiet_alone(store *s)
{
    script sc;
    script_init(&sc, step_quiet);
    request lead, fol;
    request_init(&lead, 10, 0, &sc);
    request_init(&fol, 10, 0, &sc);
    keeping(&lead);
    static const char *const body_chunks[] = {BODY, NULL};
    sc.leader = &lead.x;
    sc.chunks = body_chunks;
    sc.tell = 1;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "quiet: lead");
    coalesce_publish_head(&lead.x, 200, ENTRY_BODY, "application/json");
    keep_and_publish(&lead.x, BODY);
    is_int(lead.x.flight.published, 0, "quiet: nobody follows, nothing is published");
    flight_state st;
    is_int(stored_chunks(s, lead.x.key, lead.x.flight.gen, &st), 0, "quiet: no chunk in the store");
    is_int(st, FLIGHT_RUNNING, "quiet: the flight runs");
    /* The follower comes after the leader's look; the flight ends (stored)
     * while it waits. */
    sc.ended = 1;
    is_int(coalesce_join(&fol.x), COALESCE_CACHED, "quiet: the late follower reads the cache");
    ok(!fol.x.flight.active, "quiet: and is no longer in the flight");
    is_int(fol.c.status, 0, "quiet: nothing was sent to it by the flight");
    is_int(stored_chunks(s, lead.x.key, lead.x.flight.gen, &st), 0, "quiet: still no chunk");
    is_int(st, FLIGHT_DONE, "quiet: the flight is done");
    rl_buf_release(&lead.x.body);
}

/* The whole buffered answer at once, kept and stored, as call_upstream
 * ends one. */
static int step_quiet_body(script *sc, int n)
{
    if (n != 0)
        return 0;
    coalesce_publish_head(sc->leader, 200, ENTRY_BODY, "application/json");
    keep_and_publish(sc->leader, BODY);
    coalesce_finish(sc->leader, 1, 1);
    return 1;
}

/* A follower that is there when the buffered answer ends gets it from the
 * flight, as before. */
static void test_quiet_followed(store *s)
{
    script sc;
    script_init(&sc, step_quiet_body);
    request lead, fol;
    request_init(&lead, 11, 0, &sc);
    request_init(&fol, 11, 0, &sc);
    keeping(&lead);
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "followed: lead");
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "followed: the follower is answered");
    is_int(fol.c.status, 200, "followed: status");
    is_str(fol.c.xcache, "COALESCED", "followed: X-Cache: COALESCED");
    is_str(fol.c.body, BODY, "followed: the leader's body");
    is_int(lead.x.flight.published, 2, "followed: head and body published");
    flight_state st;
    is_int(stored_chunks(s, lead.x.key, lead.x.flight.gen, &st), 2, "followed: in the store");
    rl_buf_release(&lead.x.body);
}

/* A stream is published as it comes, follower or not: one that joins
 * mid-stream gets what was sent before at once. */
static void test_stream_never_quiet(store *s)
{
    script sc;
    script_init(&sc, step_quiet);
    request lead;
    request_init(&lead, 13, 1, &sc);
    keeping(&lead);
    lead.x.up_is_stream = 1;
    sc.leader = &lead.x;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "stream: lead");
    coalesce_publish_head(&lead.x, 200, ENTRY_STREAM, SSE);
    for (size_t i = 0; stream_chunks[i]; i++)
        keep_and_publish(&lead.x, stream_chunks[i]);
    size_t n = nchunks(stream_chunks);
    is_int(lead.x.flight.published, (int)(n + 1), "stream: published with nobody following");
    flight_state st;
    is_int(stored_chunks(s, lead.x.key, lead.x.flight.gen, &st), (int)(n + 1), "stream: stored");
    coalesce_finish(&lead.x, 1, 1);
    rl_buf_release(&lead.x.body);
}

/* A quiet answer that ends complete but not stored is published at the
 * end: followers can only read it from the flight. */
static void test_quiet_not_stored(void)
{
    script sc;
    script_init(&sc, step_quiet);
    request lead, fol;
    request_init(&lead, 12, 0, &sc);
    request_init(&fol, 12, 0, &sc);
    keeping(&lead);
    static const char *const body_chunks[] = {BODY, NULL};
    sc.leader = &lead.x;
    sc.chunks = body_chunks;
    sc.tell = 0;
    is_int(coalesce_join(&lead.x), COALESCE_LEAD, "not stored: lead");
    coalesce_publish_head(&lead.x, 200, ENTRY_BODY, "application/json");
    keep_and_publish(&lead.x, BODY);
    is_int(lead.x.flight.published, 0, "not stored: quiet");
    sc.ended = 1;
    is_int(coalesce_join(&fol.x), COALESCE_ANSWERED, "not stored: the follower is answered");
    is_int(fol.c.status, 200, "not stored: status");
    is_str(fol.c.body, BODY, "not stored: the body, published at the end");
    is_int(lead.x.flight.published, 2, "not stored: head and body");
    rl_buf_release(&lead.x.body);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--lead") == 0) {
        set_paths(argv[3]);
        return lead_role((uint32_t)strtoul(argv[2], NULL, 10));
    }
    if (!realpath(argv[0], self)) {
        perror("realpath");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    snprintf(tmp, sizeof tmp, "/tmp/t_coalesce.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    set_paths(tmp);

    cfg.coalesce.mode = COALESCE_CACHEABLE;
    cfg.coalesce.max_buffer = 1 << 20;
    cfg.coalesce.max_wait = 2;
    cfg.cache.max_response = 1 << 20;
    eng.cfg = &cfg;
    worker.e = &eng;

    store *s = NULL;
    store_options o = opts();
    is_int(store_keyfile_ensure(keyfile), RL_OK, "key file");
    is_int(store_open(&o, &s), RL_OK, "open the store");
    if (s) {
        atomic_store(&eng.store, s);
        test_live_stream();
        test_body();
        test_error_before_first_byte();
        test_cut_stream();
        test_over_max_buffer();
        test_max_wait();
        test_max_wait_after_start();
        test_takeover();
        test_fan_out();
        test_quiet_alone(s);
        test_quiet_followed(s);
        test_stream_never_quiet(s);
        test_quiet_not_stored();
        store_close(s);
    }
    is_int(store_remove(&o), RL_OK, "remove the store");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return tap_done();
}
