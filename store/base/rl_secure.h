/*
 * rl_secure.h — handling secret bytes: comparing them without leaking where
 * they differ, wiping them, and drawing them from the kernel.
 *
 * libc only (getrandom(2), explicit_bzero(3)), so every layer can use it;
 * safe from any thread.
 */
#ifndef RELAY_STORE_BASE_RL_SECURE_H
#define RELAY_STORE_BASE_RL_SECURE_H

#include <stddef.h>

#include "store/base/rl_err.h"

/* 1 when the a_len bytes at a equal the b_len bytes at b, else 0. The time
 * taken depends on the lengths only, never on the contents or on where they
 * differ, so comparing a client's guess with a secret tells the client
 * nothing but whether it guessed the length. */
int rl_ct_equal(const void *a, size_t a_len, const void *b, size_t b_len);

/* Overwrites n bytes at p with zeros in a way the compiler may not remove
 * (the memory is about to be freed or to go out of scope). NULL is a no-op. */
void rl_secure_zero(void *p, size_t n);

/* rl_secure_zero(p, n), then free(p). NULL is a no-op. */
void rl_secure_free(void *p, size_t n);

/* Fills n bytes at p from the kernel's random source (getrandom(2), which
 * blocks only until the pool is first seeded). RL_IO when it fails (errno
 * is left set); p is then partly written. */
rl_err rl_random(void *p, size_t n);

#endif
