/*
 * baseline.c — bench-baseline: the smallest honest FastCGI responder, the
 * yardstick of make bench's throughput table (tests/bench/throughput.mjs).
 *
 *   bench-baseline -s SOCKET -n PROCS ANSWER_FILE
 *
 * Binds SOCKET (a unix socket, mode 0666 so a front running as www-data
 * reaches it), forks PROCS processes of one thread each, and answers every
 * request with ANSWER_FILE's bytes as they are: the CGI head (Status,
 * Content-Type, Content-Length, the other headers) and the body, which the
 * bench captured from Relay's own answer to the hit being measured. The
 * request body is read to its end first, as Relay reads it (a front may
 * not take the answer before it has sent the body). No store, no parsing:
 * what is left of a request's cost is libfcgi's and the front's, which is
 * what Relay's hit is compared against.
 *
 * One thread per process: the "20-line responder" of issue 14, run with as
 * many processes as Relay's pool so the ratio compares like with like.
 * FCGX_Accept_r in one thread per process needs no lock of libfcgi's: each
 * process blocks in accept(2) on the shared socket, and the kernel wakes one.
 *
 * SIGTERM or SIGINT to the parent stops the children and removes SOCKET.
 * A child that dies is not replaced (the bench would notice unanswered
 * requests). Exit status 2 on bad arguments or an unreadable file, 1 when
 * the socket cannot be bound.
 */
#include <errno.h>
#include <stdint.h>
#include <fcgiapp.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROCS 256

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* The whole file in a malloc'd buffer; NULL (said on stderr) on failure. */
static char *read_file(const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "bench-baseline: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *more = realloc(buf, cap);
            if (!more) {
                fprintf(stderr, "bench-baseline: %s: out of memory\n", file);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = more;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || *len == 0) {
        fprintf(stderr, "bench-baseline: %s: %s\n", file, bad ? "read error" : "empty");
        free(buf);
        return NULL;
    }
    return buf;
}

/* One process: accept, drain the body, answer, until the parent says stop
 * kills it with SIGTERM). */
static void serve(int fd, const char *answer, size_t len)
{
    /* The parent's handler would only set a flag while accept(2) blocks. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    FCGX_Request req;
    if (FCGX_InitRequest(&req, fd, 0) != 0)
        _exit(1);
    char sink[16384];
    while (!stopping && FCGX_Accept_r(&req) == 0) {
        while (FCGX_GetStr(sink, sizeof sink, req.in) > 0)
            ;
        FCGX_PutStr(answer, (int)len, req.out);
        FCGX_Finish_r(&req);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    const char *sock = NULL;
    long procs = 4;
    int opt;
    while ((opt = getopt(argc, argv, "s:n:")) != -1) {
        char *end = NULL;
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 'n':
            procs = strtol(optarg, &end, 10);
            if (*end || procs < 1 || procs > MAX_PROCS)
                procs = 0;
            break;
        default:
            procs = 0;
        }
    }
    if (!sock || procs == 0 || optind != argc - 1) {
        fprintf(stderr, "usage: bench-baseline -s SOCKET -n PROCS(1-%d) ANSWER_FILE\n", MAX_PROCS);
        return 2;
    }
    size_t len;
    char *answer = read_file(argv[optind], &len);
    if (!answer)
        return 2;
    if (len > INT32_MAX) {
        fprintf(stderr, "bench-baseline: %s: larger than one FCGX_PutStr\n", argv[optind]);
        return 2;
    }

    if (FCGX_Init() != 0)
        return 1;
    unlink(sock);
    /* The backlog Relay's pool uses is not ours to know; 1024 keeps a burst
     * of -c32 connects from being refused by either. */
    int fd = FCGX_OpenSocket(sock, 1024);
    if (fd < 0) {
        fprintf(stderr, "bench-baseline: cannot listen on %s\n", sock);
        return 1;
    }
    chmod(sock, 0666);

    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    pid_t kids[MAX_PROCS];
    for (long i = 0; i < procs; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            serve(fd, answer, len);
        if (kids[i] < 0) {
            fprintf(stderr, "bench-baseline: fork: %s\n", strerror(errno));
            procs = i;
            stopping = 1;
            break;
        }
    }
    while (!stopping)
        pause();
    for (long i = 0; i < procs; i++)
        kill(kids[i], SIGTERM);
    for (long i = 0; i < procs; i++)
        waitpid(kids[i], NULL, 0);
    unlink(sock);
    free(answer);
    return 0;
}
