#include "engine/probe.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store/base/rl_buf.h"
#include "store/base/rl_secure.h"

/* Where base_url points. */
typedef struct target {
    const upstream_config *up;
    char scheme[16];
    char host[256]; /* without IPv6 brackets */
    char port[8];
    int loopback; /* every address it resolved to is this machine's */
    probe_fn fn;
    void *ctx;
} target;

static const char *const step_names[] = {"dns", "tcp", "tls", "auth"};

static void say(const target *t, probe_step step, probe_status st, const char *fix, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static void say(const target *t, probe_step step, probe_status st, const char *fix, const char *fmt,
                ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    probe_finding f = {step, step_names[step], st, detail, fix};
    t->fn(t->ctx, &f);
}

/* Copies one part of the parsed URL into out; -1 when absent or too long. */
static int url_part(CURLU *u, CURLUPart part, unsigned flags, char *out, size_t cap)
{
    char *v = NULL;
    if (curl_url_get(u, part, &v, flags) != CURLUE_OK || !v)
        return -1;
    int n = snprintf(out, cap, "%s", v);
    curl_free(v);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int parse_base(target *t)
{
    CURLU *u = curl_url();
    if (!u)
        return -1;
    int bad = curl_url_set(u, CURLUPART_URL, t->up->base_url, 0) != CURLUE_OK ||
              url_part(u, CURLUPART_SCHEME, 0, t->scheme, sizeof t->scheme) != 0 ||
              url_part(u, CURLUPART_HOST, 0, t->host, sizeof t->host) != 0 ||
              url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, t->port, sizeof t->port) != 0;
    curl_url_cleanup(u);
    size_t n = strlen(t->host);
    if (!bad && n >= 2 && t->host[0] == '[' && t->host[n - 1] == ']') {
        memmove(t->host, t->host + 1, n - 2);
        t->host[n - 2] = '\0';
    }
    return bad ? -1 : 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

static void addr_text(const struct addrinfo *ai, char *out, size_t cap)
{
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST))
        snprintf(out, cap, "?");
}

static rl_err step_dns(target *t, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(t->host, t->port, &hints, res);
    if (rc != 0) {
        say(t, PROBE_DNS, PROBE_FAIL,
            "check the host in base_url and this machine's resolver (/etc/resolv.conf)",
            "%s does not resolve: %s", t->host,
            rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return RL_UPSTREAM_UNREACHABLE;
    }
    char first[INET6_ADDRSTRLEN + 8];
    unsigned n = 0;
    t->loopback = 1;
    for (const struct addrinfo *ai = *res; ai; ai = ai->ai_next, n++)
        t->loopback &= is_loopback(ai->ai_addr);
    addr_text(*res, first, sizeof first);
    if (n > 1)
        say(t, PROBE_DNS, PROBE_OK, NULL, "%s resolves to %s and %u more", t->host, first, n - 1);
    else
        say(t, PROBE_DNS, PROBE_OK, NULL, "%s resolves to %s", t->host, first);
    return RL_OK;
}

/* A non-blocking connect bounded by timeout_ms; 0, or an errno. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int r;
            while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
                ;
            socklen_t len = sizeof err;
            if (r == 0)
                err = ETIMEDOUT;
            else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
    }
    close(fd);
    return err;
}

static rl_err step_tcp(target *t, const struct addrinfo *res)
{
    int err = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN + 8];
        if ((err = connect_one(ai, (int)t->up->connect_timeout * 1000)) == 0) {
            addr_text(ai, addr, sizeof addr);
            say(t, PROBE_TCP, PROBE_OK, NULL, "connected to %s port %s", addr, t->port);
            return RL_OK;
        }
    }
    say(t, PROBE_TCP, PROBE_FAIL,
        "is the upstream running and listening there? check base_url's host and port, and any "
        "firewall or proxy between",
        "cannot connect to %s port %s: %s", t->host, t->port,
        err == ETIMEDOUT ? "no answer within connect_timeout" : strerror(err));
    return err == ETIMEDOUT ? RL_UPSTREAM_TIMEOUT : RL_UPSTREAM_UNREACHABLE;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* A libcurl handle for url with the probe's common options; errbuf gets
 * libcurl's text (CURL_ERROR_SIZE bytes). */
static CURL *easy_for(const target *t, const char *url, char *errbuf)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, t->up->connect_timeout);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, t->up->timeout);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    return c;
}

static rl_err step_tls(target *t)
{
    if (strcmp(t->scheme, "https") != 0) {
        if (t->loopback)
            say(t, PROBE_TLS, PROBE_SKIP, NULL, "plain http on this machine: no TLS needed");
        else
            say(t, PROBE_TLS, PROBE_WARN, "use an https:// base_url",
                "plain http to another machine: keys and prompts cross the network unencrypted");
        return RL_OK;
    }
    char errbuf[CURL_ERROR_SIZE];
    CURL *c = easy_for(t, t->up->base_url, errbuf);
    if (!c)
        return RL_NOMEM;
    /* Connect (TCP and the TLS handshake, certificate checked) and stop. */
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        say(t, PROBE_TLS, PROBE_FAIL,
            "the certificate must be valid for the host and signed by a CA this machine trusts "
            "(ca-certificates); a clock far off breaks it too",
            "TLS with %s failed: %s", t->host, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return rc == CURLE_OPERATION_TIMEDOUT ? RL_UPSTREAM_TIMEOUT : RL_UPSTREAM_UNREACHABLE;
    }
    say(t, PROBE_TLS, PROBE_OK, NULL, "TLS with %s: handshake done, certificate verified", t->host);
    return RL_OK;
}

/* How each wire format lists its models, and sends a key (by upstream_type). */
static const struct {
    const char *path;
    const char *key_header; /* the key follows it */
    const char *extra;      /* another header the API requires, or NULL */
} model_lists[] = {
    [UPSTREAM_TYPE_OPENAI] = {"/v1/models", "Authorization: Bearer ", NULL},
    [UPSTREAM_TYPE_ANTHROPIC] = {"/v1/models", "x-api-key: ", "anthropic-version: 2023-06-01"},
    [UPSTREAM_TYPE_AZURE] = {"/openai/models?api-version=2024-10-21", "api-key: ", NULL},
    [UPSTREAM_TYPE_GEMINI] = {"/v1beta/models", "x-goog-api-key: ", NULL},
    [UPSTREAM_TYPE_OLLAMA] = {"/api/tags", "Authorization: Bearer ", NULL},
    [UPSTREAM_TYPE_OPENAI_COMPATIBLE] = {"/v1/models", "Authorization: Bearer ", NULL},
};

static rl_err step_auth(target *t, const char *key)
{
    if (!key) {
        say(t, PROBE_AUTH, PROBE_SKIP, NULL, "no held key: skipped auth check");
        return RL_OK;
    }
    rl_err e = RL_NOMEM;
    const char *path = model_lists[t->up->type].path;
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *h = NULL, *h2 = NULL;
    CURL *c = NULL;
    rl_buf url, header;
    rl_buf_init(&url, 0);
    rl_buf_init(&header, 0);
    if (rl_buf_printf(&url, "%s%s", t->up->base_url, path) != RL_OK ||
        rl_buf_printf(&header, "%s%s", model_lists[t->up->type].key_header, key) != RL_OK ||
        !(c = easy_for(t, url.data, errbuf)) || !(h = curl_slist_append(NULL, header.data)))
        goto out;
    if (model_lists[t->up->type].extra) {
        if (!(h2 = curl_slist_append(h, model_lists[t->up->type].extra)))
            goto out;
        h = h2;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        say(t, PROBE_AUTH, PROBE_FAIL, "see the steps above; retry when the upstream answers",
            "GET %s failed: %s", path, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        e = rc == CURLE_OPERATION_TIMEDOUT ? RL_UPSTREAM_TIMEOUT : RL_UPSTREAM_UNREACHABLE;
    } else if (status >= 200 && status < 300) {
        say(t, PROBE_AUTH, PROBE_OK, NULL, "GET %s with the held key: %ld", path, status);
        e = RL_OK;
    } else if (status == 401 || status == 403) {
        say(t, PROBE_AUTH, PROBE_FAIL, "replace the key Relay holds for this upstream",
            "GET %s: %ld: the upstream refused the held key", path, status);
        e = RL_FORBIDDEN;
    } else {
        say(t, PROBE_AUTH, PROBE_FAIL,
            "check base_url (without /v1) and type in this [upstream.NAME] section",
            "GET %s: %ld, not the model list", path, status);
        e = RL_UPSTREAM_PROTOCOL;
    }
out:
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    rl_secure_zero(header.data, header.len);
    rl_buf_release(&header);
    rl_buf_release(&url);
    return e;
}

rl_err probe_upstream(const upstream_config *up, const char *key, probe_fn fn, void *ctx)
{
    target t = {.up = up, .fn = fn, .ctx = ctx};
    if (parse_base(&t) != 0) {
        say(&t, PROBE_DNS, PROBE_FAIL, "give base_url as http(s)://HOST[:PORT][/PATH]",
            "base_url %s does not parse as a URL", up->base_url);
        return RL_CONFIG;
    }
    struct addrinfo *res = NULL;
    rl_err e = step_dns(&t, &res);
    if (e == RL_OK)
        e = step_tcp(&t, res);
    if (res)
        freeaddrinfo(res);
    if (e == RL_OK)
        e = step_tls(&t);
    if (e == RL_OK)
        e = step_auth(&t, key);
    return e;
}
