#include "fcgi/front.h"

#include <errno.h>
#include <fcgiapp.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fcgi/body.h"
#include "fcgi/crew.h"
#include "fcgi/params.h"
#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"
#include "store/base/rl_pool.h"

/* How long a just-accepted connection may stay silent before its first
 * record: libfcgi's own accept waits the same 2 s for a unix socket's first
 * bytes (its "keeper" check) before dropping the connection. */
#define FIRST_RECORD_MS 2000

/* Request threads' stacks. Measured with the stack painted at thread
 * start and scanned at its end (a throwaway build, not kept): the deepest
 * use over the e2e suites hostile (JSON nested 128 deep, the most allowed),
 * chat, coalesce and crew behind Caddy, 1,112 threads, was 44 KiB (hostile;
 * coalesce and crew 20 KiB). 256 KiB leaves room for what the tests do not
 * reach (an HTTPS upstream's TLS handshake in OpenSSL); only touched pages
 * cost memory, so a thread of a stream costs its ~20-45 KiB, not this. */
#define REQUEST_STACK_BYTES (256 * 1024)

/* An extra thread (beyond [fcgi] threads) idle this long ends: long enough
 * that a burst of streams a minute apart reuses its threads, short enough
 * to give back their upstream connections. */
#define EXTRA_IDLE_MS 30000

/* How long, in all, a request may wait for its body without one of the
 * gate's slots: long enough for a body the front is passing on at once,
 * short enough that slow clients cannot hold the reserve threads. */
#define BODY_GRACE_MS 250

static atomic_uint request_counter;
/* This worker's pid, for request ids: getpid() is a system call per
 * request in glibc (no cache since 2.25); set in front_serve, after the
 * fork. */
static unsigned long front_pid;
/* The process's slow-body slots (body.h), shared by its threads. */
static body_gate front_body_gate;
/* Requests in flight in this process, for the supervisor (status.h). */
static atomic_int *front_busy;

void front_count_requests(atomic_int *busy)
{
    front_busy = busy;
}

/* ---- the listening socket --------------------------------------------- */

int front_listen(const char *listen_spec)
{
    int fd = -1;
    if (listen_spec[0] == '/') {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(listen_spec) >= sizeof sa.sun_path) {
            rl_error("[fcgi] listen: socket path too long: %s", listen_spec);
            return -1;
        }
        memcpy(sa.sun_path, listen_spec, strlen(listen_spec) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rl_error("socket() for %s: %s", listen_spec, strerror(errno));
            return -1;
        }
        /* A socket file left by a previous run would make bind fail. Only
         * remove it if it really is a socket. */
        struct stat st;
        if (lstat(listen_spec, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(listen_spec);
        mode_t old = umask(0117); /* 0660: the web server's group may connect */
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (rc != 0) {
            rl_error("bind %s: %s", listen_spec, strerror(errno));
            goto fail;
        }
    } else {
        const char *colon = strrchr(listen_spec, ':');
        if (!colon) {
            rl_error("[fcgi] listen: expected a socket path or HOST:PORT, got %s", listen_spec);
            return -1;
        }
        char host[256];
        size_t hlen = (size_t)(colon - listen_spec);
        if (hlen >= sizeof host)
            return -1;
        memcpy(host, listen_spec, hlen);
        host[hlen] = '\0';
        /* [::1]:PORT */
        char *h = host;
        if (h[0] == '[' && hlen > 1 && h[hlen - 1] == ']') {
            h[hlen - 1] = '\0';
            h++;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        int gai = getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &ai);
        if (gai != 0) {
            rl_error("[fcgi] listen %s: %s", listen_spec, gai_strerror(gai));
            return -1;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            rl_error("bind %s: %s", listen_spec, strerror(errno));
            freeaddrinfo(ai);
            goto fail;
        }
        freeaddrinfo(ai);
    }
    /* The backlog holds connections while every thread is busy streaming. */
    if (listen(fd, 1024) != 0) {
        rl_error("listen %s: %s", listen_spec, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

/* ---- one request ------------------------------------------------------- */

typedef struct front_response {
    FCGX_Request *fr;
    int at_end; /* the body was read to its end (finish_request) */
    int ended;  /* sink_end finished the request early: every call fails */
} front_response;

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : "Error";
    }
}

/* A header value must not be able to start another header. */
static int header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* Puts len bytes into out; -1 when libfcgi fails. */
static int put_all(FCGX_Stream *out, const char *p, size_t len)
{
    /* FCGX_PutStr takes an int length. */
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        if (FCGX_PutStr(p, chunk, out) != chunk)
            return -1;
        p += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

/*
 * Large writes (a cached answer of a megabyte, a buffered upstream body)
 * bypass libfcgi's stream: FCGX_PutStr copies them into its 8 KiB buffer
 * and write(2)s one record per 8 KiB, so a 1 MiB hit took 128 writes and
 * a copy of the whole answer. Here the body goes from the caller's bytes
 * straight to the socket in records of DIRECT_RECORD bytes, DIRECT_IOV/2
 * records per writev(2). What libfcgi still holds (the head) is flushed
 * first, so the bytes on the wire are in order; FCGX_Finish_r then ends the
 * stream as usual. The records are the ones FastCGI defines (FCGI_STDOUT,
 * this request's id); contents are multiples of 8 bytes like libfcgi's,
 * the last one padded to 8.
 */
#define DIRECT_MIN (32 * 1024)
#define DIRECT_RECORD 65528 /* the largest multiple of 8 under FastCGI's 65535 */
#define DIRECT_IOV 64

/* A FastCGI record header for content of n bytes with pad bytes after. */
static void record_head(unsigned char h[8], int request_id, size_t n, size_t pad)
{
    h[0] = 1; /* FCGI_VERSION_1 */
    h[1] = 6; /* FCGI_STDOUT */
    h[2] = (unsigned char)(request_id >> 8);
    h[3] = (unsigned char)request_id;
    h[4] = (unsigned char)(n >> 8);
    h[5] = (unsigned char)n;
    h[6] = (unsigned char)pad;
    h[7] = 0;
}

/* writev(2) of the whole iov, through partial writes and EINTR; -1 with
 * errno on failure. Takes iov's entries apart as it goes. */
static int writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Writes len bytes as FCGI_STDOUT records directly to the connection (see
 * above); -1 when the connection failed, which the stream then remembers
 * (later flushes fail, FCGX_Finish_r closes the connection). */
static int put_direct(FCGX_Request *fr, const char *p, size_t len)
{
    static const char zeros[8];
    if (FCGX_FFlush(fr->out) != 0)
        return -1;
    unsigned char heads[DIRECT_IOV / 2][8];
    struct iovec iov[DIRECT_IOV + 1]; /* + 1: only the last record has padding */
    while (len > 0) {
        int n = 0;
        for (int k = 0; k < DIRECT_IOV / 2 && len > 0; k++) {
            size_t c = len < DIRECT_RECORD ? len : DIRECT_RECORD;
            size_t pad = (8 - c % 8) % 8;
            record_head(heads[k], fr->requestId, c, pad);
            iov[n++] = (struct iovec){heads[k], 8};
            iov[n++] = (struct iovec){(void *)p, c};
            if (pad)
                iov[n++] = (struct iovec){(void *)zeros, pad};
            p += c;
            len -= c;
        }
        if (writev_all(fr->ipcFd, iov, n) != 0) {
            fr->out->FCGI_errno = errno;
            fr->out->isClosed = 1;
            return -1;
        }
    }
    return 0;
}

static int sink_write(void *ctx, const void *data, size_t len)
{
    front_response *r = ctx;
    if (r->ended)
        return -1;
    if (len >= DIRECT_MIN && r->fr->ipcFd >= 0 && !r->fr->out->isClosed)
        return put_direct(r->fr, data, len);
    return put_all(r->fr->out, data, len);
}

/*
 * The status line and headers are put together here and handed to libfcgi
 * in one FCGX_PutStr (more only past the buffer): one FCGX_FPrintF per
 * header (libfcgi's own printf) cost ~4,000 instructions for a cache hit's
 * four headers, ~1,500 put together here (tests/bench/hit_instructions.mjs).
 * The bytes are the same.
 */
typedef struct head_text {
    FCGX_Stream *out;
    size_t len;
    int failed;
    char buf[2048];
} head_text;

static void head_flush(head_text *h)
{
    if (h->len && !h->failed && put_all(h->out, h->buf, h->len) != 0)
        h->failed = 1;
    h->len = 0;
}

static void head_put(head_text *h, const char *s, size_t n)
{
    if (h->len + n > sizeof h->buf) {
        head_flush(h);
        if (n > sizeof h->buf) {
            if (!h->failed && put_all(h->out, s, n) != 0)
                h->failed = 1;
            return;
        }
    }
    memcpy(h->buf + h->len, s, n);
    h->len += n;
}

static void head_puts(head_text *h, const char *s)
{
    head_put(h, s, strlen(s));
}

static int sink_start(void *ctx, int status, const rl_header *headers, size_t n)
{
    front_response *r = ctx;
    if (r->ended)
        return -1;
    head_text h; /* not zeroed: 2 KiB of stores for nothing */
    h.out = r->fr->out;
    h.len = 0;
    h.failed = 0;
    /* HTTP status codes have three digits, written without snprintf (~770
     * instructions); anything else as before. */
    char code[24];
    if (status >= 100 && status <= 999) {
        memcpy(code, "Status: ", 8);
        code[8] = (char)('0' + status / 100);
        code[9] = (char)('0' + status / 10 % 10);
        code[10] = (char)('0' + status % 10);
        code[11] = ' ';
        head_put(&h, code, 12);
    } else {
        head_put(&h, code, (size_t)snprintf(code, sizeof code, "Status: %d ", status));
    }
    head_puts(&h, reason_phrase(status));
    head_put(&h, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        if (!header_safe(headers[i].name) || !header_safe(headers[i].value))
            continue;
        head_puts(&h, headers[i].name);
        head_put(&h, ": ", 2);
        head_puts(&h, headers[i].value);
        head_put(&h, "\r\n", 2);
    }
    head_put(&h, "\r\n", 2);
    head_flush(&h);
    return h.failed ? -1 : 0;
}

/* FCGX_PutStr succeeds into libfcgi's buffer even after the client left;
 * only a flush reports the broken connection (see PLATFORM.md). */
static int sink_flush(void *ctx)
{
    front_response *r = ctx;
    if (r->ended)
        return -1;
    return FCGX_FFlush(r->fr->out) == 0 ? 0 : -1;
}

/*
 * Whether len more bytes fit in the connection's send buffer now, so that
 * writing and flushing them cannot block on a slow client. Checked, not
 * assumed: the socket must poll writable and its free space (SO_SNDBUF
 * minus what SIOCOUTQ says is queued) must hold twice the bytes, because
 * the kernel charges its per-packet overhead to the same buffer and
 * FastCGI frames each record with a header and padding.
 */
static int sink_ready(void *ctx, size_t len)
{
    front_response *r = ctx;
    int fd = r->ended ? -1 : r->fr->ipcFd;
    if (fd < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1 || p.revents != POLLOUT)
        return 0;
    int sndbuf = 0, queued = 0;
    socklen_t size = sizeof sndbuf;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &size) != 0 ||
        ioctl(fd, SIOCOUTQ, &queued) != 0 || queued < 0 || queued >= sndbuf)
        return 0;
    size_t framed = len + 16 * (len / 65535 + 1);
    return framed <= (size_t)(sndbuf - queued) / 2;
}

/* ---- the request body ---------------------------------------------------
 *
 * libfcgi reads a request's stdin with plain blocking read()s on the
 * connection, from inside FCGX_GetStr, and offers no timeout. Two ways
 * around it were possible: poll() the connection before each read, or give
 * the socket a receive timeout (SO_RCVTIMEO), which bounds every read()
 * libfcgi makes. poll() alone is not enough: libfcgi reads up to 8 KiB at a
 * time into a buffer of its own, so the next record may already be there
 * while the socket has nothing (poll would wait for nothing, or a slow
 * client's next byte), and one FCGX_GetStr may make several reads. So:
 *  - bytes of the current record that libfcgi holds (rdNext..stop of the
 *    public FCGX_Stream) are taken without any read;
 *  - otherwise one byte is asked for with SO_RCVTIMEO set to what is left
 *    of the wait (body.c: the body's deadline, or the reserve's grace), so
 *    that every read() libfcgi makes meanwhile is bounded. A read that times
 *    out fails with EAGAIN, which libfcgi keeps as the stream's error: the
 *    stream is closed for good, and FCGX_Finish_r then closes the
 *    connection rather than keep it.
 * A body not read to its end has one more hazard: FCGX_Finish_r's close
 * shuts the connection's write side and then reads until the front has
 * been silent for 2 s, which a client trickling its body through Caddy
 * never is. So the read side is shut first: reads return 0 at once, and on
 * a unix socket the front's next write fails, so it stops passing the body
 * on. None of the fronts passes Relay's answer on to such a client, though:
 * Caddy and mod_proxy_fcgi read the answer only once they have sent the
 * whole body (giving them time to read it was tried: they do not), so the
 * client gets the front's own error (Caddy's 504 at its read_body timeout,
 * Apache's 503). What matters here is that the thread is free again. */

typedef struct fcgi_body {
    FCGX_Request *fr;
    uint64_t timeout_set; /* ms in SO_RCVTIMEO now; 0: none */
} fcgi_body;

static uint64_t monotonic_ms(void *ctx)
{
    (void)ctx;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int set_read_timeout(fcgi_body *b, uint64_t ms)
{
    if (b->timeout_set == ms)
        return 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    if (setsockopt(b->fr->ipcFd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return -1;
    b->timeout_set = ms;
    return 0;
}

/* body_source.read over the request's stdin (see above). */
static long fcgi_body_read(void *ctx, char *buf, size_t cap, uint64_t wait_ms)
{
    fcgi_body *b = ctx;
    FCGX_Stream *in = b->fr->in;
    size_t held = in->stop > in->rdNext ? (size_t)(in->stop - in->rdNext) : 0;
    if (held > 0)
        return FCGX_GetStr(buf, (int)(held < cap ? held : cap), in);
    if (set_read_timeout(b, wait_ms) != 0)
        return BODY_SRC_ERROR;
    int got = FCGX_GetStr(buf, 1, in);
    if (got > 0)
        return got;
    int e = FCGX_GetError(in);
    if (e == 0)
        return 0; /* the end of the body */
    return e == EAGAIN || e == EWOULDBLOCK ? BODY_SRC_TIMEOUT : BODY_SRC_ERROR;
}

/* Fills req from the FastCGI parameters (params.h) and body (body.h).
 * Returns 0 when the engine should answer req (body_too_large or
 * body_error set when the body is not whole), -1 when out of memory, 1 when
 * the connection broke (nobody to answer). *at_end: 0 when the body was not
 * read to its end. */
static int parse_request(FCGX_Request *fr, const relay_config *cfg, engine_request *req,
                         int *at_end)
{
    *at_end = 1;
    if (params_parse(fr->envp, req) != 0)
        return -1;
    fcgi_body ctx = {fr, 0};
    body_source src = {&ctx, fcgi_body_read, monotonic_ms};
    body_limits lim = {(size_t)cfg->fcgi.max_body, (uint64_t)cfg->fcgi.body_timeout * 1000,
                       BODY_GRACE_MS};
    rl_buf body;
    rl_buf_init(&body, cfg->fcgi.max_body);
    body_result res = body_read(&src, &front_body_gate, &lim, &body, at_end);
    /* A kept connection's next request must not inherit the timeout; any
     * other connection is closed after this request (a syscall saved per
     * request). */
    if (*at_end && ctx.timeout_set && fr->keepConnection)
        set_read_timeout(&ctx, 0);
    switch (res) {
    case BODY_COMPLETE:
        break;
    case BODY_TOO_LARGE:
        req->body_too_large = 1;
        break;
    case BODY_TIMED_OUT:
        rl_info("the request body did not arrive within [fcgi] body_timeout (%ld s)",
                cfg->fcgi.body_timeout);
        req->body_error = RL_BODY_TIMEOUT;
        break;
    case BODY_OVERLOADED:
        rl_warn("refused a slow request body: %d threads already wait on bodies "
                "([fcgi] reserve_threads)",
                front_body_gate.slots);
        req->body_error = RL_OVERLOADED;
        break;
    case BODY_BROKEN:
        rl_info("the connection broke while reading the request body");
        rl_buf_release(&body);
        return 1;
    case BODY_NOMEM:
        rl_buf_release(&body);
        return -1;
    }
    req->body_len = body.len;
    char *data = rl_buf_steal(&body, NULL);
    if (!data || rl_pool_cleanup(req->pool, free, data) != 0) {
        free(data);
        return -1;
    }
    req->body = data;
    return 0;
}

/*
 * FCGX_Finish_r without libfcgi's lingering close where it serves nothing.
 * libfcgi closes a connection the front does not keep by shutting its
 * write side and then waiting (select, up to 2 s) until the front closes
 * its own end, so that bytes the front still sends never meet a closed
 * socket (TCP answers them with a reset, which can destroy the answer the
 * front has not read yet). The request thread slept there on every request
 * until the front ran again: behind nginx at one connection, 3.18
 * voluntary context switches per hit, and under wrk -c32 the threads
 * parked in that wait while the front was not scheduled made the crew
 * grow (45-158 threads a worker for 32 connections). Once the body was
 * read to its end a front sends nothing more on a connection it does not
 * keep, so when the kernel holds no unread byte of it the connection is
 * closed at once; otherwise (body not read to its end, a record nobody
 * read) libfcgi closes it as before. keepConnection = 1 makes libfcgi
 * flush and free the request but leave the descriptor open, unless a
 * stream failed (then it closes it itself, lingering, as before).
 */
static void finish_request(FCGX_Request *fr, int at_end)
{
    int front_keeps = fr->keepConnection;
    int unread = -1;
    if (!front_keeps && at_end && fr->ipcFd >= 0 && ioctl(fr->ipcFd, FIONREAD, &unread) == 0 &&
        unread == 0)
        fr->keepConnection = 1;
    FCGX_Finish_r(fr);
    if (!front_keeps && fr->ipcFd >= 0) {
        close(fr->ipcFd);
        fr->ipcFd = -1;
    }
}

/* Ends the request where it stands (engine_sink.end): the front sees the
 * answer complete while the thread goes on with the engine's work. */
static void end_request(front_response *r)
{
    if (r->ended)
        return;
    r->ended = 1;
    if (!r->at_end)
        shutdown(r->fr->ipcFd, SHUT_RD); /* see "the request body" above */
    finish_request(r->fr, r->at_end);
}

static int sink_end(void *ctx)
{
    end_request(ctx);
    return 0;
}

static void serve_one(const relay_config *cfg, engine_worker *w, FCGX_Request *fr)
{
    if (front_busy)
        atomic_fetch_add(front_busy, 1);
    engine_request req;
    memset(&req, 0, sizeof req);
    req.pool = rl_pool_new();
    char id[24];
    snprintf(id, sizeof id, "%lx-%x", front_pid, atomic_fetch_add(&request_counter, 1) + 1);
    req.id = id;
    rl_log_set_request_id(id);
    front_response resp = {fr, 1, 0};
    engine_sink sink = {&resp, sink_start, sink_write, sink_flush, sink_ready, sink_end};
    int parsed = req.pool ? parse_request(fr, cfg, &req, &resp.at_end) : -1;
    if (parsed > 0) {
        /* The connection broke: nobody to answer. */
    } else if (parsed < 0) {
        rl_error("out of memory while reading the request");
        static const char body[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                   "\"server_error\",\"param\":null,\"code\":\"out_of_memory\"}}";
        rl_header h = {"content-type", "application/json"};
        if (sink_start(&resp, 500, &h, 1) == 0)
            sink_write(&resp, body, sizeof body - 1);
    } else {
        engine_handle(w, &req, &sink);
    }
    end_request(&resp);
    rl_pool_free(req.pool);
    rl_log_set_request_id(NULL);
    if (front_busy)
        atomic_fetch_sub(front_busy, 1);
}

/* ---- the request threads (crew.h) -------------------------------------- */

typedef struct front_ctx {
    const relay_config *cfg;
    engine *e;
} front_ctx;

/* What each request thread keeps: its engine side (an upstream handle kept
 * alive across requests) and its libfcgi request. */
typedef struct front_thread {
    engine_worker *w;
    FCGX_Request fr;
} front_thread;

static void *thread_start(void *ctx)
{
    front_ctx *fc = ctx;
    front_thread *t = calloc(1, sizeof *t);
    if (t)
        t->w = engine_worker_new(fc->e);
    /* listen_sock -1: FCGX_Accept_r never accepts by itself (see serve). */
    if (!t || !t->w || FCGX_InitRequest(&t->fr, -1, 0) != 0) {
        rl_error("cannot start a request thread: out of memory");
        if (t)
            engine_worker_free(t->w);
        free(t);
        return NULL;
    }
    return t;
}

static void thread_end(void *ctx, void *state)
{
    (void)ctx;
    front_thread *t = state;
    FCGX_Free(&t->fr, 0);
    engine_worker_free(t->w);
    free(t);
}

/*
 * One request on connection fd (crew.h: serve). libfcgi reads a request
 * from the connection already in req->ipcFd and accepts one itself only
 * when there is none (libfcgi 2.4.2, fcgiapp.c FCGX_Accept_r), so the
 * crew's connection is put there. Two details of that function matter:
 *  - it first calls FCGX_Finish_r on the request, which closes ipcFd
 *    unless keepConnection is set, and keepConnection still holds the
 *    previous request's flag (0 on a fresh FCGX_Request): so it is set to
 *    1 here, and the connection's FCGI_BEGIN_REQUEST then sets it to what
 *    the front asked;
 *  - when the connection yields no request (the front closed a kept
 *    connection, or a protocol error) it closes it and accepts on
 *    listen_sock: -1 makes that fail at once (EBADF) instead of blocking.
 * After FCGX_Finish_r the connection is still open (ipcFd >= 0) only when
 * the front asked to keep it (FCGI_KEEP_CONN) and it is whole: the crew
 * then watches it for the next request.
 */
static int serve(void *ctx, void *state, int fd, int kept)
{
    front_ctx *fc = ctx;
    front_thread *t = state;
    FCGX_Request *fr = &t->fr;
    if (!kept) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, FIRST_RECORD_MS) != 1) {
            close(fd);
            return 0;
        }
    }
    fr->ipcFd = fd;
    fr->keepConnection = 1;
    if (FCGX_Accept_r(fr) < 0) {
        fr->ipcFd = -1; /* libfcgi closed it */
        return 0;
    }
    serve_one(fc->cfg, t->w, fr);
    if (fr->ipcFd < 0)
        return 0;
    fr->ipcFd = -1; /* the crew's now */
    return 1;
}

/* ---- serving ------------------------------------------------------------- */

int front_serve(const relay_config *cfg, engine *e, int listen_fd, int threads, int max_threads)
{
    front_pid = (unsigned long)getpid();
    if (FCGX_Init() != 0) {
        rl_error("FCGX_Init failed");
        return 1;
    }
    /* Threads inherit this mask: only this thread takes the stop signals. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The slots stay threads - reserve_threads whatever max_threads is:
     * slow bodies may hold as many threads as before, and the threads
     * started on demand serve everything else (body.h). */
    body_gate_init(&front_body_gate, threads, (int)cfg->fcgi.reserve_threads);
    front_ctx ctx = {cfg, e};
    crew_limits lim = {threads, max_threads, EXTRA_IDLE_MS, REQUEST_STACK_BYTES};
    crew_hooks hooks = {&ctx, thread_start, thread_end, serve};
    crew *c = NULL;
    if (crew_start(listen_fd, &lim, &hooks, &c) != RL_OK)
        return 1;

    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&stop_signals, NULL, &tick);
        if (sig > 0)
            break;
        if (engine_maintain(e, (uint64_t)time(NULL)))
            break; /* drain and exit: the supervisor starts a fresh worker */
    }

    /* Drain: requests in flight finish, up to the bound. */
    crew_stop(c);
    if (!crew_wait(c, (uint32_t)cfg->fcgi.drain_timeout * 1000)) {
        rl_warn("drain timed out after %ld s with requests still in flight",
                cfg->fcgi.drain_timeout);
        return 1; /* threads still use e and cfg: the caller must not free them */
    }
    crew_free(c);
    return 0;
}
