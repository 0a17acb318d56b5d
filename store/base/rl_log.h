/*
 * rl_log.h — the one logging function.
 *
 * Lines go to stderr (the pool's log, the journal under systemd, or the
 * web server's error log under mod_fcgid), or to a sink the current thread
 * installed, prefixed with the level, the process id and the current
 * thread's request id. Log an error once,
 * where it happens, with the library's own text and what was being done.
 * Never log keys, credentials or bodies.
 */
#ifndef RELAY_STORE_BASE_RL_LOG_H
#define RELAY_STORE_BASE_RL_LOG_H

typedef enum { RL_LOG_ERROR, RL_LOG_WARN, RL_LOG_INFO, RL_LOG_DEBUG } rl_log_level;

/* Receives one formatted line without its newline. Called with no lock held;
 * must be safe to call from several threads. */
typedef void (*rl_log_sink)(void *ctx, const char *line);

void rl_log_set_level(rl_log_level level);
/* Whether lines of this level are written (to skip costly preparation). */
int rl_log_enabled(rl_log_level level);
/* Parses "error", "warn", "info" or "debug"; returns -1 if unknown. */
int rl_log_level_parse(const char *s);

/* Per-thread sink (NULL restores stderr), for a caller that wants what a
 * call logs rather than have it printed (relay-admin doctor shows the first
 * error of each check in its own line). */
void rl_log_set_thread_sink(rl_log_sink sink, void *ctx);
/* Per-thread request id shown in every line (copied; NULL clears). */
void rl_log_set_request_id(const char *id);

void rl_log(rl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rl_error(...) rl_log(RL_LOG_ERROR, __VA_ARGS__)
#define rl_warn(...) rl_log(RL_LOG_WARN, __VA_ARGS__)
#define rl_info(...) rl_log(RL_LOG_INFO, __VA_ARGS__)
#define rl_debug(...) rl_log(RL_LOG_DEBUG, __VA_ARGS__)

#endif
