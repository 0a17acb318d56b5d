/*
 * probe.h — can Relay reach an upstream? For relay-admin doctor.
 *
 * Steps, in order: the host name resolves (DNS), a TCP connection opens
 * (to the first address that accepts one), TLS completes with a
 * certificate libcurl trusts (https only), and, given the key Relay holds
 * for the upstream, an authenticated GET of its model list (the provider's
 * equivalent of OpenAI's /v1/models) answers 2xx. Each step is reported
 * through a callback as it ends; a failed step ends the probe, since the
 * later ones cannot run.
 *
 * Blocking: each step is bounded by the upstream's connect_timeout, the
 * model list by its timeout too (name resolution by the system resolver's
 * own timeouts). Needs upstream_global_init; safe from any thread then.
 * Nothing is logged: every finding goes to the callback, and no key is
 * ever put into a finding.
 */
#ifndef RELAY_ENGINE_PROBE_H
#define RELAY_ENGINE_PROBE_H

#include "engine/config.h"
#include "store/base/rl_err.h"

typedef enum { PROBE_DNS, PROBE_TCP, PROBE_TLS, PROBE_AUTH } probe_step;
typedef enum { PROBE_OK, PROBE_WARN, PROBE_FAIL, PROBE_SKIP } probe_status;

typedef struct probe_finding {
    probe_step step;
    const char *name; /* "dns", "tcp", "tls", "auth" */
    probe_status status;
    const char *detail; /* what was found, one line */
    const char *fix;    /* what to do about it, or NULL */
} probe_finding;

/* Receives each finding; the strings are valid during the call only. */
typedef void (*probe_fn)(void *ctx, const probe_finding *f);

/* Probes up. key: the key Relay holds for it (NUL-terminated), or NULL:
 * the authenticated step is then reported as skipped ("no held key").
 * RL_OK when no step failed; RL_CONFIG when base_url does not parse;
 * RL_UPSTREAM_UNREACHABLE (name, connection or TLS), RL_UPSTREAM_TIMEOUT,
 * RL_FORBIDDEN (the key was refused) or RL_UPSTREAM_PROTOCOL (another
 * status) for the step that failed; RL_NOMEM. */
rl_err probe_upstream(const upstream_config *up, const char *key, probe_fn fn, void *ctx);

#endif
