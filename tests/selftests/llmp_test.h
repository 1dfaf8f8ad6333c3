/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Helpers shared by the llmp selftests (header-only; include after the harness). */
#ifndef LLMP_TEST_H
#define LLMP_TEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmp/llmp.h"
#include "llmp/shmem.h"

/* The provider kinds the userspace tests run on, unless LLMP_TEST_KINDS names others. */
static inline int llmp_test_kind_available(enum llmp_shmem_kind kind)
{
	struct llmp_provider *p;

	if (llmp_provider_new(kind, &p) < 0)
		return 0;
	llmp_provider_free(p);
	return 1;
}

/* xorshift64*: reproducible pseudo-random numbers for test data. */
static inline uint64_t llmp_test_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* FNV-1a over a buffer: payload checksums. */
static inline uint64_t llmp_test_fnv(const void *buf, size_t len)
{
	const unsigned char *b = buf;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

#endif /* LLMP_TEST_H */
