/*
 * front.h — the FastCGI side of a relay.fcgi process: serve requests from
 * a listening socket with a crew of threads (crew.h), turn each into an
 * engine_request, and write the engine's answer back.
 *
 * The only place that includes fcgiapp.h.
 */
#ifndef RELAY_FCGI_FRONT_H
#define RELAY_FCGI_FRONT_H

#include <stdatomic.h>

#include "engine/config.h"
#include "engine/engine.h"

/*
 * Serves requests arriving on listen_fd with `threads` request threads,
 * more on demand up to max_threads (crew.h), until a SIGTERM, SIGINT or
 * SIGHUP reaches the process, then drains: stops accepting, lets requests
 * in flight finish for up to [fcgi] drain_timeout seconds. Calls
 * engine_maintain about once a second meanwhile. Returns 0 when every
 * thread finished, 1 when the drain timed out (threads may still be
 * running: the caller should exit without freeing what they use).
 */
int front_serve(const relay_config *cfg, engine *e, int listen_fd, int threads, int max_threads);

/* Makes the threads of this process count their requests in flight in
 * *busy (a counter the supervisor reads, status.h); NULL: no counting.
 * Call before front_serve. */
void front_count_requests(atomic_int *busy);

/* Creates the listening socket for [fcgi] listen: a unix socket path
 * (a stale socket file is replaced; mode 0660) or HOST:PORT. Returns the
 * fd, or -1 after logging why. */
int front_listen(const char *listen);

#endif
