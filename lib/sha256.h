/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the campaign secret.  Not installed. */
#ifndef LLMP_SHA256_H
#define LLMP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

LLMP_HIDDEN_BEGIN

#define LLMP_SHA256_LEN 32
#define LLMP_SHA256_BLOCK 64

struct llmp_sha256 {
	uint32_t h[8];
	uint64_t total;                  /* bytes hashed so far */
	uint8_t buf[LLMP_SHA256_BLOCK];  /* a partial block */
	size_t used;
};

void llmp_sha256_init(struct llmp_sha256 *s);
void llmp_sha256_update(struct llmp_sha256 *s, const void *data, size_t len);
void llmp_sha256_final(struct llmp_sha256 *s, uint8_t out[LLMP_SHA256_LEN]);
void llmp_sha256(const void *data, size_t len, uint8_t out[LLMP_SHA256_LEN]);

/* HMAC-SHA256 over the concatenation of n parts (part[i], len[i]). */
void llmp_hmac_sha256(const uint8_t *key, size_t key_len, unsigned n, const void *const part[],
		      const size_t len[], uint8_t out[LLMP_SHA256_LEN]);

/* Compare n bytes in time that does not depend on where they differ: 0 equal. */
int llmp_memeq_ct(const void *a, const void *b, size_t n);

LLMP_HIDDEN_END

#endif /* LLMP_SHA256_H */
