/*
 * cluster.c — the pool's cluster process (contract in cluster.h).
 */
#include "fcgi/cluster.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/cluster_host.h"
#include "store/base/rl_log.h"

#define OPEN_RETRY_SECONDS 2

static int run(const relay_config *cfg)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    cluster_host *h = NULL;
    for (;;) {
        if (!h)
            h = cluster_host_open(cfg); /* logged when it cannot */
        else
            cluster_host_maintain(h, (uint64_t)time(NULL));
        struct timespec tick = {h ? 1 : OPEN_RETRY_SECONDS, 0};
        int sig = sigtimedwait(&stop, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    cluster_host_close(h);
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
