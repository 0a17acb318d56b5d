/*
 * cluster.c — the pool's cluster process (contract in cluster.h).
 */
#include "fcgi/cluster.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/base/rl_log.h"
#include "store/cluster.h"
#include "store/store.h"

#define OPEN_RETRY_SECONDS 2

static int run(const relay_config *cfg)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    store_options so;
    store_cluster sc;
    config_cluster_options(cfg, 1, &so, &sc);
    store *s = NULL;
    for (;;) {
        if (!s) {
            rl_err e = store_key_ensure(&so);
            if (e == RL_OK)
                e = store_open(&so, &s);
            if (e == RL_OK)
                rl_info("cluster %s: replicating %s with %s", cfg->cluster.site, so.home,
                        cfg->cluster.peers);
            else
                rl_error("cluster %s: the shared store at %s cannot be opened (%s); retrying "
                         "in %d s",
                         cfg->cluster.site, so.home, rl_err_text(e), OPEN_RETRY_SECONDS);
        } else {
            store_maintain(s, (uint64_t)time(NULL));
        }
        struct timespec tick = {s ? 1 : OPEN_RETRY_SECONDS, 0};
        int sig = sigtimedwait(&stop, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    store_close(s);
    return 0;
}

pid_t cluster_spawn(const relay_config *cfg)
{
    pid_t pid = fork();
    if (pid < 0) {
        rl_error("fork (cluster process): %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        _exit(run(cfg));
    }
    return pid;
}
