#include "engine/ckey.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

#include "store/base/rl_hex.h"

/*
 * SHA-256 fetched once per process. Handing EVP_sha256() or SHA256() to
 * OpenSSL 3 makes it look the algorithm up again on every call (a provider
 * query, ~2,300 instructions and a dozen allocations each; two per
 * request), measured with tests/bench/hit_instructions.mjs.
 */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_fetched;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_fetched ? sha256_fetched : EVP_sha256();
}

/*
 * The serialisation goes through a small buffer, so the short fields (all
 * but the body, as a rule) reach the digest in one update instead of two
 * each: an EVP_DigestUpdate costs ~150 instructions before it hashes a
 * byte, and a key had 16 of them. The digest is the same: SHA-256 does not
 * depend on how its input is cut.
 */
typedef struct key_writer {
    EVP_MD_CTX *md;
    size_t len;
    int failed;
    unsigned char buf[256];
} key_writer;

static void writer_flush(key_writer *w)
{
    if (w->len && !EVP_DigestUpdate(w->md, w->buf, w->len))
        w->failed = 1;
    w->len = 0;
}

static void writer_put(key_writer *w, const void *p, size_t len)
{
    if (w->len + len > sizeof w->buf) {
        writer_flush(w);
        if (len > sizeof w->buf) {
            if (!EVP_DigestUpdate(w->md, p, len))
                w->failed = 1;
            return;
        }
    }
    memcpy(w->buf + w->len, p, len);
    w->len += len;
}

static void put_field(key_writer *w, const void *p, size_t len)
{
    /* Fields are capped by max_body, far below 4 GiB. */
    uint32_t n = (uint32_t)len;
    unsigned char be[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                           (unsigned char)(n >> 8), (unsigned char)n};
    writer_put(w, be, sizeof be);
    writer_put(w, p, len);
}

static void put_str(key_writer *w, const char *s)
{
    put_field(w, s ? s : "", s ? strlen(s) : 0);
}

rl_err ckey_compute(const ckey_input *in, uint8_t key[STORE_KEY_LEN])
{
    key_writer w = {.md = EVP_MD_CTX_new()};
    if (!w.md || !EVP_DigestInit_ex(w.md, sha256(), NULL)) {
        EVP_MD_CTX_free(w.md);
        return RL_NOMEM;
    }
    put_str(&w, CKEY_VERSION);
    put_str(&w, in->format);
    put_str(&w, in->endpoint);
    put_str(&w, in->upstream);
    put_str(&w, in->path_parts);
    put_str(&w, in->scope);
    put_str(&w, in->ns);
    put_field(&w, in->body, in->body_len);
    writer_flush(&w);
    unsigned int n = 0;
    int done = !w.failed && EVP_DigestFinal_ex(w.md, key, &n);
    EVP_MD_CTX_free(w.md);
    return done ? RL_OK : RL_INTERNAL;
}

void ckey_hex16(const uint8_t key[STORE_KEY_LEN], char out[17])
{
    rl_hex_encode(key, 8, out);
}

void ckey_credential_scope(const char *credential, char out[5 + 32 + 1])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    if (!EVP_Digest(credential, strlen(credential), digest, NULL, sha256(), NULL))
        SHA256((const unsigned char *)credential, strlen(credential), digest);
    memcpy(out, "cred:", 5);
    rl_hex_encode(digest, 16, out + 5);
}
