/*
 * test_tokens.h — Relay client tokens for the unit tests, made as
 * relay-admin token create will make them: a new text, its hash, its
 * public id.
 */
#ifndef RELAY_TESTS_UNIT_TEST_TOKENS_H
#define RELAY_TESTS_UNIT_TEST_TOKENS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/auth.h"
#include "store/token.h"

/* A token named name, created at created, with no limit: its text in text
 * (shown once), its record returned for the caller to add limits to and
 * store. Aborts when the system has no random bytes. */
static inline store_token test_token(const char *name, uint64_t created,
                                     char text[AUTH_TOKEN_LEN + 1])
{
    store_token t;
    memset(&t, 0, sizeof t);
    if (auth_token_new(text) != RL_OK)
        abort();
    auth_token_hash(text, t.hash);
    store_token_id_of(t.hash, t.id);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.created = created;
    return t;
}

#endif
