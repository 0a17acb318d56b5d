#include "engine/ckey.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "store/base/rl_hex.h"

static void put_field(EVP_MD_CTX *md, const void *p, size_t len)
{
    /* Fields are capped by max_body, far below 4 GiB. */
    uint32_t n = (uint32_t)len;
    unsigned char be[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                           (unsigned char)(n >> 8), (unsigned char)n};
    EVP_DigestUpdate(md, be, sizeof be);
    EVP_DigestUpdate(md, p, len);
}

static void put_str(EVP_MD_CTX *md, const char *s)
{
    put_field(md, s ? s : "", s ? strlen(s) : 0);
}

rl_err ckey_compute(const ckey_input *in, uint8_t key[STORE_KEY_LEN])
{
    /* Streaming digest: the one-shot SHA256() would need the fields copied
     * into one contiguous buffer first. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return RL_NOMEM;
    }
    put_str(md, CKEY_VERSION);
    put_str(md, in->format);
    put_str(md, in->endpoint);
    put_str(md, in->upstream);
    put_str(md, in->path_parts);
    put_str(md, in->scope);
    put_str(md, in->ns);
    put_field(md, in->body, in->body_len);
    unsigned int n = 0;
    int done = EVP_DigestFinal_ex(md, key, &n);
    EVP_MD_CTX_free(md);
    return done ? RL_OK : RL_INTERNAL;
}

void ckey_hex16(const uint8_t key[STORE_KEY_LEN], char out[17])
{
    rl_hex_encode(key, 8, out);
}

void ckey_credential_scope(const char *credential, char out[5 + 32 + 1])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)credential, strlen(credential), digest);
    memcpy(out, "cred:", 5);
    rl_hex_encode(digest, 16, out + 5);
}
