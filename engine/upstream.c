#include "engine/upstream.h"

#include <ctype.h>
#include <stddef.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_log.h"

#define MAX_RESPONSE_HEADERS 64
#define MAX_HEADER_BYTES 32768

struct upstream_client {
    CURL *curl;
};

/* State of one call, shared by libcurl's callbacks. */
typedef struct call_state {
    const upstream_handler *h;
    long status;
    rl_buf header_bytes; /* "name\0value\0" pairs of the current response */
    int head_complete;   /* the blank line after the headers arrived */
    int head_sent;
    int aborted;
    CURL *curl;
    upstream_timeout_kind timed_out; /* set by the progress callback */
    upstream_timer timer;
} call_state;

/* Indexed by upstream_timeout_kind. */
#define UR(field) offsetof(upstream_request, field)
static const struct {
    const char *key, *label, *what;
    size_t limit; /* offset of the limit (a long) in upstream_request; 0: none */
} timeout_names[UPSTREAM_TIMEOUT_KINDS] = {
    [UPSTREAM_TIMEOUT_NONE] = {"", "", "", 0},
    [UPSTREAM_TIMEOUT_CONNECT] = {"connect_timeout", "connect", "no connection",
                                  UR(connect_timeout)},
    [UPSTREAM_TIMEOUT_FIRST_BYTE] = {"first_byte_timeout", "first_byte", "no response headers",
                                     UR(first_byte_timeout)},
    [UPSTREAM_TIMEOUT_IDLE] = {"idle_timeout", "idle", "no byte", UR(idle_timeout)},
    [UPSTREAM_TIMEOUT_TOTAL] = {"timeout", "total", "not finished", UR(timeout)},
};

const char *upstream_timeout_key(upstream_timeout_kind k)
{
    return k < UPSTREAM_TIMEOUT_KINDS ? timeout_names[k].key : "";
}

const char *upstream_timeout_label(upstream_timeout_kind k)
{
    return k < UPSTREAM_TIMEOUT_KINDS ? timeout_names[k].label : "";
}

rl_err upstream_global_init(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        rl_error("curl_global_init failed: %s", curl_easy_strerror(rc));
        return RL_INTERNAL;
    }
    return RL_OK;
}

void upstream_global_cleanup(void)
{
    curl_global_cleanup();
}

upstream_client *upstream_client_new(void)
{
    upstream_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return NULL;
    }
    return c;
}

void upstream_client_free(upstream_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

/* Collects response headers; a new status line (after a 1xx) starts over. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    call_state *st = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        rl_buf_reset(&st->header_bytes);
        st->head_complete = 0;
        return len;
    }
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        st->head_complete = 1; /* the blank line ending the headers */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return len; /* junk */
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    char name[128];
    if (nlen == 0 || nlen >= sizeof name)
        return len;
    for (size_t i = 0; i < nlen; i++)
        name[i] = (char)tolower((unsigned char)p[i]);
    if (rl_buf_append(&st->header_bytes, name, nlen) != RL_OK ||
        rl_buf_append(&st->header_bytes, "", 1) != RL_OK ||
        rl_buf_append(&st->header_bytes, v, vlen) != RL_OK ||
        rl_buf_append(&st->header_bytes, "", 1) != RL_OK)
        return 0; /* absurd headers: abort */
    return len;
}

/* Hands the status and headers to the handler, once. */
static int send_head(call_state *st, CURL *curl)
{
    if (st->head_sent)
        return 0;
    st->head_sent = 1;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &st->status);
    rl_header headers[MAX_RESPONSE_HEADERS];
    size_t n = 0;
    const char *p = st->header_bytes.data;
    const char *end = p + st->header_bytes.len;
    while (p && p < end && n < MAX_RESPONSE_HEADERS) {
        headers[n].name = p;
        p += strlen(p) + 1;
        headers[n].value = p;
        p += strlen(p) + 1;
        n++;
    }
    return st->h->on_head(st->h->ctx, (int)st->status, headers, n);
}

typedef struct write_ctx {
    call_state *st;
    CURL *curl;
} write_ctx;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    write_ctx *w = ud;
    size_t len = size * n;
    if (send_head(w->st, w->curl) != 0 || w->st->h->on_data(w->st->h->ctx, p, len) != 0) {
        w->st->aborted = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    return len;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void upstream_timer_start(upstream_timer *t, const upstream_request *req, double now)
{
    *t = (upstream_timer){.start = now,
                          .last = now,
                          .first_byte = req->first_byte_timeout,
                          .idle = req->idle_timeout,
                          .total = req->timeout};
}

upstream_timeout_kind upstream_timer_check(upstream_timer *t, double now, int64_t moved,
                                           int connected, int got_head)
{
    if (connected && !t->connected) {
        t->connected = 1;
        t->sent = now;
    }
    if (moved != t->moved || got_head != t->got_head) {
        /* A byte, or the headers (which libcurl does not count): the idle
         * gap starts again. */
        t->moved = moved;
        t->got_head = got_head;
        t->last = now;
    }
    if (now - t->start > (double)t->total)
        return UPSTREAM_TIMEOUT_TOTAL;
    if (!t->connected)
        return UPSTREAM_TIMEOUT_NONE; /* connect_timeout's, libcurl's own */
    if (!got_head)
        return now - t->sent > (double)t->first_byte ? UPSTREAM_TIMEOUT_FIRST_BYTE
                                                     : UPSTREAM_TIMEOUT_NONE;
    return now - t->last > (double)t->idle ? UPSTREAM_TIMEOUT_IDLE : UPSTREAM_TIMEOUT_NONE;
}

/* libcurl's progress callback: the timers. Non-zero aborts the call. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    call_state *st = ud;
    double now = mono_now();
    if (st->h->on_tick && st->h->on_tick(st->h->ctx, now) != 0) {
        st->aborted = 1;
        return 1;
    }
    /* Connected: libcurl is past connecting (and TLS) and sends the
     * request; 0 until then, also on a reused connection's first check. */
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(st->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    st->timed_out = upstream_timer_check(&st->timer, now, (int64_t)dlnow + (int64_t)ulnow,
                                         pretransfer > 0, st->head_complete || st->head_sent);
    return st->timed_out != UPSTREAM_TIMEOUT_NONE;
}

/* The limit of timeout k in req, seconds (0 for NONE). */
static long timeout_limit(const upstream_request *req, upstream_timeout_kind k)
{
    if (k >= UPSTREAM_TIMEOUT_KINDS || !timeout_names[k].limit)
        return 0;
    return *(const long *)((const char *)req + timeout_names[k].limit);
}

static int has_header(const upstream_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return 1;
    return 0;
}

rl_err upstream_perform(upstream_client *c, const upstream_request *req, const upstream_handler *h,
                        int *got_head)
{
    CURL *curl = c->curl;
    struct curl_slist *hdrs = NULL;
    call_state st = {.h = h, .curl = curl};
    rl_buf_init(&st.header_bytes, MAX_HEADER_BYTES);
    write_ctx w = {&st, curl};
    rl_err err = RL_NOMEM;
    rl_buf line;
    rl_buf_init(&line, 0);
    *got_head = 0;

    /* reset keeps the connection cache: the next call reuses the socket. */
    curl_easy_reset(curl);
    for (size_t i = 0; i < req->nheaders; i++) {
        rl_buf_reset(&line);
        if (rl_buf_printf(&line, "%s: %s", req->headers[i].name, req->headers[i].value) != RL_OK)
            goto out;
        struct curl_slist *next = curl_slist_append(hdrs, line.data);
        if (!next)
            goto out;
        hdrs = next;
    }
    /* No "Expect: 100-continue" round trip for large bodies, and no
     * default "Accept" added by libcurl: only what the client sent. */
    static const char *const suppressed[][2] = {{"expect", "Expect:"}, {"accept", "Accept:"}};
    for (size_t i = 0; i < sizeof suppressed / sizeof suppressed[0]; i++) {
        if (has_header(req, suppressed[i][0]))
            continue;
        struct curl_slist *next = curl_slist_append(hdrs, suppressed[i][1]);
        if (!next)
            goto out;
        hdrs = next;
    }

    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    /* The path was checked as it is (route_target_refusal): libcurl must
     * not resolve "../" into something that was not. */
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &st);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &w);
    /* Threads: libcurl must not use signals for its timeouts. */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, req->connect_timeout);
    /* The whole call is timed by on_progress (so that each timeout is told
     * apart); libcurl's own bound is a backstop a little later. */
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, req->timeout + 2);
    upstream_timer_start(&st.timer, req, mono_now());
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &st);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* The body passes through untouched: no decoding, no redirects. */
    curl_easy_setopt(curl, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);

    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        /* An empty body never reached on_body. */
        if (send_head(&st, curl) != 0) {
            err = RL_CLIENT_GONE;
        } else {
            err = RL_OK;
        }
        goto out;
    }
    if (st.aborted) {
        err = RL_CLIENT_GONE;
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (st.head_complete && status >= 400) {
        /* An upstream that refuses a request often answers and closes at
         * once (Node's own 431 for headers too large, while the body was
         * still being sent): the transfer fails, but the error it sent is
         * the answer, not a bad gateway. Error answers are never cached. */
        rl_info("upstream %s %.*s: %ld, then %s", req->method, (int)strcspn(req->url, "?"),
                req->url, status, curl_easy_strerror(rc));
        err = send_head(&st, curl) != 0 ? RL_CLIENT_GONE : RL_OK;
        goto out;
    }
    switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK: /* the timers (aborts by on_body are handled above) */
        err = RL_UPSTREAM_TIMEOUT;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        /* libcurl's own: connecting, or the backstop on the whole call. */
        st.timed_out = mono_now() - st.timer.start >= (double)req->timeout
                           ? UPSTREAM_TIMEOUT_TOTAL
                           : UPSTREAM_TIMEOUT_CONNECT;
        err = RL_UPSTREAM_TIMEOUT;
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SEND_ERROR:
        err = st.head_sent ? RL_UPSTREAM_CUT : RL_UPSTREAM_UNREACHABLE;
        break;
    case CURLE_GOT_NOTHING:
        err = RL_UPSTREAM_UNREACHABLE;
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
        err = st.head_sent ? RL_UPSTREAM_CUT : RL_UPSTREAM_PROTOCOL;
        break;
    default:
        err = st.head_sent ? RL_UPSTREAM_CUT : RL_UPSTREAM_PROTOCOL;
        break;
    }
    /* The query is left out of the log: some APIs carry keys there. */
    if (err == RL_UPSTREAM_TIMEOUT)
        rl_warn("upstream %s %.*s: %s within %ld s (%s)", req->method, (int)strcspn(req->url, "?"),
                req->url, timeout_names[st.timed_out].what, timeout_limit(req, st.timed_out),
                timeout_names[st.timed_out].key);
    else
        rl_warn("upstream %s %.*s: %s", req->method, (int)strcspn(req->url, "?"), req->url,
                curl_easy_strerror(rc));
out:
    *got_head = st.head_sent;
    if (req->timed_out) {
        upstream_timeout_kind k = err == RL_UPSTREAM_TIMEOUT ? st.timed_out : UPSTREAM_TIMEOUT_NONE;
        *req->timed_out = (upstream_timed_out){k, timeout_limit(req, k)};
    }
    curl_slist_free_all(hdrs);
    rl_buf_release(&st.header_bytes);
    rl_buf_release(&line);
    return err;
}
