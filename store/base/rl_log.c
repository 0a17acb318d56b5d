#include "store/base/rl_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static rl_log_level log_level = RL_LOG_INFO;

static _Thread_local rl_log_sink thread_sink;
static _Thread_local void *thread_sink_ctx;
static _Thread_local char thread_request_id[40];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void rl_log_set_level(rl_log_level level)
{
    log_level = level;
}

int rl_log_enabled(rl_log_level level)
{
    return level <= log_level;
}

int rl_log_level_parse(const char *s)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

void rl_log_set_thread_sink(rl_log_sink sink, void *ctx)
{
    thread_sink = sink;
    thread_sink_ctx = ctx;
}

void rl_log_set_request_id(const char *id)
{
    if (!id) {
        thread_request_id[0] = '\0';
        return;
    }
    snprintf(thread_request_id, sizeof thread_request_id, "%s", id);
}

void rl_log(rl_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char line[1200];
    if (thread_request_id[0])
        snprintf(line, sizeof line, "relay[%ld] %s: [%s] %s", (long)getpid(), level_names[level],
                 thread_request_id, msg);
    else
        snprintf(line, sizeof line, "relay[%ld] %s: %s", (long)getpid(), level_names[level], msg);

    if (thread_sink) {
        thread_sink(thread_sink_ctx, line);
        return;
    }
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s\n", stamp, line);
}
