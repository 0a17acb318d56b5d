/*
 * t_ckey.c — canonical cache keys (engine/ckey.c).
 *
 * Keys must never change for the same request (every stored entry would
 * silently stop matching), whatever the code that computes them: the
 * expected values are frozen here, computed by the first implementation,
 * and recomputed independently from ckey.h's serialisation with OpenSSL's
 * one-shot SHA-256. Fields of every length around the sizes the code may
 * treat differently (SHA-256's 64-byte blocks, a staging buffer) are
 * checked the same way.
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ckey.h"
#include "store/base/rl_hex.h"
#include "tests/unit/tap.h"

/* Computed by the first implementation (EVP_DigestUpdate per field), again
 * for relay-key-v2 (the canonical form changed: prov_canon.h). */
#define FROZEN_KEY_1 "243350dc1c62c3dbd3c95668ccd35417164c6ceecd64355408f16fb88300700f"
#define FROZEN_KEY_2 "d8c574910c66806c0b60248abae65ab32295c4cfb26c94626bb0f6a6ba28c300"
#define FROZEN_SCOPE "cred:92545ede927ea3d891a3a1d3ad11f990"

/* Appends len as 4 bytes big-endian, then the bytes. */
static size_t put(unsigned char *out, size_t at, const char *p, size_t len)
{
    out[at] = (unsigned char)(len >> 24);
    out[at + 1] = (unsigned char)(len >> 16);
    out[at + 2] = (unsigned char)(len >> 8);
    out[at + 3] = (unsigned char)len;
    memcpy(out + at + 4, p, len);
    return at + 4 + len;
}

/* ckey.h's serialisation, hashed in one piece. */
static void reference_key(const ckey_input *in, uint8_t key[STORE_KEY_LEN])
{
    const char *fields[] = {CKEY_VERSION,   in->format, in->endpoint, in->upstream,
                            in->path_parts, in->scope,  in->ns};
    size_t total = in->body_len + 4;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        total += strlen(fields[i]) + 4;
    unsigned char *buf = malloc(total);
    size_t at = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        at = put(buf, at, fields[i], strlen(fields[i]));
    at = put(buf, at, in->body, in->body_len);
    SHA256(buf, at, key);
    free(buf);
}

static void key_hex(const ckey_input *in, char out[2 * STORE_KEY_LEN + 1])
{
    uint8_t key[STORE_KEY_LEN];
    memset(key, 0, sizeof key);
    is_int(ckey_compute(in, key), RL_OK, "ckey_compute");
    rl_hex_encode(key, STORE_KEY_LEN, out);
}

static void test_frozen(void)
{
    const char body[] = "{\"messages\":[{\"content\":\"Say hello\",\"role\":\"user\"}],"
                        "\"model\":\"gpt-4o-mini\",\"temperature\":0}";
    ckey_input in = {.format = "openai",
                     .endpoint = "chat.completions",
                     .upstream = "openai",
                     .path_parts = "",
                     .scope = "cred:0123456789abcdef0123456789abcdef",
                     .ns = "",
                     .body = body,
                     .body_len = sizeof body - 1};
    char hex[2 * STORE_KEY_LEN + 1];
    key_hex(&in, hex);
    is_str(hex, FROZEN_KEY_1, "the key of a chat request is what it always was");
    in.ns = "team-a";
    in.path_parts = "anthropic-version=2023-06-01";
    key_hex(&in, hex);
    is_str(hex, FROZEN_KEY_2, "with a namespace and path parts: what it always was");

    char scope[5 + 32 + 1];
    ckey_credential_scope("sk-test-credential", scope);
    is_str(scope, FROZEN_SCOPE, "a credential's scope is what it always was");
    ckey_credential_scope("abc", scope);
    /* SHA-256("abc"), FIPS 180-2's example, first 16 bytes. */
    is_str(scope, "cred:ba7816bf8f01cfea414140de5dae2223", "the scope is SHA-256's first half");
    ckey_credential_scope("", scope);
    is_str(scope, "cred:e3b0c44298fc1c149afbf4c8996fb924", "an empty credential");
}

/* Every field length from 0 to 300 bytes in each position, against the
 * one-piece reference. */
static void test_lengths(void)
{
    static char text[70000];
    for (size_t i = 0; i < sizeof text - 1; i++)
        text[i] = (char)('a' + i % 26);
    int mismatches = 0, checked = 0;
    for (int field = 0; field < 7; field++) {
        for (size_t n = 0; n <= 300; n++) {
            char part[301];
            memcpy(part, text, n);
            part[n] = '\0';
            ckey_input in = {"openai", "chat.completions", "openai", "", "shared", "", "{}", 2};
            const char **f[] = {&in.format,     &in.endpoint, &in.upstream,
                                &in.path_parts, &in.scope,    &in.ns};
            if (field < 6) {
                *f[field] = part;
            } else {
                in.body = part;
                in.body_len = n;
            }
            uint8_t got[STORE_KEY_LEN], want[STORE_KEY_LEN];
            reference_key(&in, want);
            mismatches += ckey_compute(&in, got) != RL_OK || memcmp(got, want, sizeof got) != 0;
            checked++;
        }
    }
    is_int(mismatches, 0, "every field length 0..300 in every field: the reference key");
    printf("# %d keys checked\n", checked);
    /* A large body, and every field long at once. */
    ckey_input big = {text + 100, text + 200, text + 300, text + 400,
                      text + 500, text + 600, text,       sizeof text - 1};
    uint8_t got[STORE_KEY_LEN], want[STORE_KEY_LEN];
    reference_key(&big, want);
    ok(ckey_compute(&big, got) == RL_OK && memcmp(got, want, sizeof got) == 0,
       "a 70 KB body with every other field long: the reference key");
}

int main(void)
{
    test_frozen();
    test_lengths();
    return tap_done();
}
