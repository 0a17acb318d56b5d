/*
 * rl_hex.h — hexadecimal text of bytes: cache keys, tokens, key files.
 *
 * The one place Relay turns bytes into hex digits and back. Pure functions
 * on caller memory: no allocation, no state, safe from any thread.
 */
#ifndef RELAY_STORE_BASE_RL_HEX_H
#define RELAY_STORE_BASE_RL_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes the lowercase hex of the n bytes at p into out, which must hold
 * 2n + 1 bytes; out is NUL-terminated. */
void rl_hex_encode(const void *p, size_t n, char *out);

/* The value (0-15) of the hex digit c, either case; -1 when c is not one. */
int rl_hex_digit(int c);

/* Decodes the first digits characters of text into out, high nibble first:
 * out receives (digits + 1) / 2 bytes, and an odd last digit fills the high
 * nibble of the last byte (its low nibble is 0), so that a key prefix such
 * as "3fa" decodes to 3f a0. Returns 0, or -1 when one of the characters is
 * not a hex digit (out is then partly written). */
int rl_hex_decode(const char *text, size_t digits, uint8_t *out);

#endif
