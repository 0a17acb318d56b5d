/*
 * t_probe.c — engine/probe.c against a forked loopback HTTP server: the
 * steps reported in order, a failed step ending the probe, TLS refused by a
 * server that does not speak it, and the authenticated model-list request
 * (path and key header per wire format, a refused key) that doctor will
 * make once Relay holds upstream keys.
 *
 * The server accepts one connection at a time, passes the request head it
 * read to the test through a pipe before answering, and answers 401 when
 * the head holds "bad-key", else 200. No sleeps: the test reads the pipe,
 * which the server wrote before the probe got its answer.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/probe.h"
#include "engine/upstream.h"
#include "tests/unit/tap.h"

static int heads[2]; /* server -> test: each request head, NUL-terminated */

static void serve(int lfd)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char head[8192];
        size_t n = 0;
        ssize_t r;
        while (n < sizeof head - 1 && (r = read(fd, head + n, sizeof head - 1 - n)) > 0) {
            n += (size_t)r;
            head[n] = '\0';
            if ((unsigned char)head[0] == 0x16 || strstr(head, "\r\n\r\n"))
                break;
        }
        if (n == 0 || (unsigned char)head[0] == 0x16) { /* a bare connect, or TLS */
            close(fd);
            continue;
        }
        head[n] = '\0';
        if (write(heads[1], head, n + 1) < 0)
            _exit(1);
        const char *answer = strstr(head, "bad-key")
                                 ? "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n"
                                   "Connection: close\r\n\r\nno"
                                 : "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 11\r\nConnection: close\r\n\r\n{\"data\":[]}";
        if (write(fd, answer, strlen(answer)) < 0)
            _exit(1);
        close(fd);
    }
}

/* The findings of one probe, as "name:status" words, and the last detail. */
typedef struct seen {
    char steps[256];
    char detail[1024];
    char fix[512];
} seen;

static void collect(void *ctx, const probe_finding *f)
{
    static const char *const st[] = {"OK", "WARN", "FAIL", "SKIP"};
    seen *s = ctx;
    size_t n = strlen(s->steps);
    snprintf(s->steps + n, sizeof s->steps - n, "%s%s:%s", n ? " " : "", f->name, st[f->status]);
    snprintf(s->detail, sizeof s->detail, "%s", f->detail);
    snprintf(s->fix, sizeof s->fix, "%s", f->fix ? f->fix : "");
}

static rl_err probe(const char *url, upstream_type type, const char *key, seen *s)
{
    upstream_config up = {.name = "t",
                          .type = type,
                          .base_url = (char *)url,
                          .mount = "",
                          .connect_timeout = 5,
                          .idle_timeout = 5,
                          .timeout = 10};
    memset(s, 0, sizeof *s);
    return probe_upstream(&up, key, collect, s);
}

/* The next request head the server saw. */
static void next_head(char *out, size_t cap)
{
    size_t n = 0;
    while (n < cap - 1 && read(heads[0], out + n, 1) == 1 && out[n] != '\0')
        n++;
    out[n] = '\0';
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (upstream_global_init() != RL_OK)
        return 1;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0 || pipe(heads) != 0) {
        perror("server");
        return 1;
    }
    pid_t server = fork();
    if (server == 0) {
        close(heads[0]);
        serve(lfd);
    }
    close(lfd);
    close(heads[1]);
    /* A port nobody listens on: bound and closed again without listen. */
    int closed = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in c = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t clen = sizeof c;
    bind(closed, (struct sockaddr *)&c, sizeof c);
    getsockname(closed, (struct sockaddr *)&c, &clen);

    char url[128], dead[128], tls[128], head[8192];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(tls, sizeof tls, "https://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", ntohs(c.sin_port));
    seen s;

    is_int(probe(url, UPSTREAM_TYPE_OPENAI, NULL, &s), RL_OK, "no key: no step fails");
    is_str(s.steps, "dns:OK tcp:OK tls:SKIP auth:SKIP", "no key: the steps, in order");
    is_str(s.detail, "no held key: skipped auth check", "no key: the auth step says why");

    /* Each wire format's model list and how it carries the key. */
    static const struct {
        const char *name;
        upstream_type type;
        const char *request_line; /* how the head starts */
        const char *header;       /* a header line it must hold */
        const char *also;         /* another one, or NULL */
    } formats[] = {
        {"openai", UPSTREAM_TYPE_OPENAI, "GET /v1/models HTTP/1.1\r\n",
         "\r\nAuthorization: Bearer good-key\r\n", NULL},
        {"openai-compatible", UPSTREAM_TYPE_OPENAI_COMPATIBLE, "GET /v1/models HTTP/1.1\r\n",
         "\r\nAuthorization: Bearer good-key\r\n", NULL},
        {"anthropic", UPSTREAM_TYPE_ANTHROPIC, "GET /v1/models HTTP/1.1\r\n",
         "\r\nx-api-key: good-key\r\n", "\r\nanthropic-version: "},
        {"gemini", UPSTREAM_TYPE_GEMINI, "GET /v1beta/models HTTP/1.1\r\n",
         "\r\nx-goog-api-key: good-key\r\n", NULL},
        {"azure", UPSTREAM_TYPE_AZURE,
         "GET /openai/models?api-version=", "\r\napi-key: good-key\r\n", NULL},
        {"ollama", UPSTREAM_TYPE_OLLAMA, "GET /api/tags HTTP/1.1\r\n",
         "\r\nAuthorization: Bearer good-key\r\n", NULL},
    };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s: the held key is accepted", formats[i].name);
        is_int(probe(url, formats[i].type, "good-key", &s), RL_OK, what);
        snprintf(what, sizeof what, "%s: every step", formats[i].name);
        is_str(s.steps, "dns:OK tcp:OK tls:SKIP auth:OK", what);
        next_head(head, sizeof head);
        snprintf(what, sizeof what, "%s: %.*s", formats[i].name,
                 (int)strcspn(formats[i].request_line, "\r?"), formats[i].request_line);
        ok(strncmp(head, formats[i].request_line, strlen(formats[i].request_line)) == 0, what);
        snprintf(what, sizeof what, "%s: the key header", formats[i].name);
        ok(strstr(head, formats[i].header) && (!formats[i].also || strstr(head, formats[i].also)),
           what);
    }

    is_int(probe(url, UPSTREAM_TYPE_OPENAI, "bad-key", &s), RL_FORBIDDEN, "a refused key");
    is_str(s.steps, "dns:OK tcp:OK tls:SKIP auth:FAIL", "a refused key fails the auth step");
    ok(strstr(s.detail, "401") && !strstr(s.detail, "bad-key"),
       "the finding tells the status, never the key");
    ok(strstr(s.fix, "replace the key") != NULL, "the fix for a refused key");
    next_head(head, sizeof head);

    is_int(probe(dead, UPSTREAM_TYPE_OPENAI, "good-key", &s), RL_UPSTREAM_UNREACHABLE,
           "a closed port is unreachable");
    is_str(s.steps, "dns:OK tcp:FAIL", "a failed connection ends the probe");
    ok(strstr(s.detail, "Connection refused") != NULL, "the finding says why");
    ok(s.fix[0] != '\0', "with a fix");

    is_int(probe(tls, UPSTREAM_TYPE_OPENAI, NULL, &s), RL_UPSTREAM_UNREACHABLE,
           "https to a server without TLS");
    is_str(s.steps, "dns:OK tcp:OK tls:FAIL", "the TLS step fails and ends the probe");

    is_int(probe("http://relay-doctor-test.invalid", UPSTREAM_TYPE_OPENAI, NULL, &s),
           RL_UPSTREAM_UNREACHABLE, "a name that cannot resolve (.invalid)");
    is_str(s.steps, "dns:FAIL", "the DNS step fails and ends the probe");

    is_int(probe("not a url", UPSTREAM_TYPE_OPENAI, NULL, &s), RL_CONFIG, "a base_url not a URL");

    close(closed);
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    upstream_global_cleanup();
    return tap_done();
}
