// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * SHA-256 as FIPS 180-4 defines it, HMAC-SHA256 as RFC 2104 builds it on
 * top, and a constant-time compare: the primitives the campaign secret's
 * challenge and proofs (lib/auth.c) are made of.  Portable C, no library.
 */
#include <string.h>

#include "sha256.h"

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One 64-byte block into the state (FIPS 180-4, 6.2.2). */
static void compress(uint32_t h[8], const uint8_t *blk)
{
	uint32_t w[64], a, b, c, d, e, f, g, hh;
	unsigned t;

	for (t = 0; t < 16; t++)
		w[t] = be32(blk + 4 * t);
	for (t = 16; t < 64; t++) {
		uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
		uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);

		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (t = 0; t < 64; t++) {
		uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) +
			      K[t] + w[t];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d;
	h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void llmp_sha256_init(struct llmp_sha256 *s)
{
	/* The first 32 bits of the fractional parts of the square roots of the first 8 primes. */
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

	memcpy(s->h, iv, sizeof(iv));
	s->total = 0;
	s->used = 0;
}

void llmp_sha256_update(struct llmp_sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->total += len;
	if (s->used) {
		size_t take = LLMP_SHA256_BLOCK - s->used;

		if (take > len)
			take = len;
		memcpy(s->buf + s->used, p, take);
		s->used += take;
		p += take;
		len -= take;
		if (s->used < LLMP_SHA256_BLOCK)
			return;
		compress(s->h, s->buf);
		s->used = 0;
	}
	for (; len >= LLMP_SHA256_BLOCK; p += LLMP_SHA256_BLOCK, len -= LLMP_SHA256_BLOCK)
		compress(s->h, p);
	memcpy(s->buf, p, len);
	s->used = len;
}

void llmp_sha256_final(struct llmp_sha256 *s, uint8_t out[LLMP_SHA256_LEN])
{
	uint64_t bits = s->total * 8;
	unsigned i;

	/* Padding: 0x80, zeros up to 56 mod 64, the length in bits as a big-endian u64. */
	s->buf[s->used++] = 0x80;
	if (s->used > 56) {
		memset(s->buf + s->used, 0, LLMP_SHA256_BLOCK - s->used);
		compress(s->h, s->buf);
		s->used = 0;
	}
	memset(s->buf + s->used, 0, 56 - s->used);
	put_be32(s->buf + 56, (uint32_t)(bits >> 32));
	put_be32(s->buf + 60, (uint32_t)bits);
	compress(s->h, s->buf);
	for (i = 0; i < 8; i++)
		put_be32(out + 4 * i, s->h[i]);
	memset(s, 0, sizeof(*s));
}

void llmp_sha256(const void *data, size_t len, uint8_t out[LLMP_SHA256_LEN])
{
	struct llmp_sha256 s;

	llmp_sha256_init(&s);
	llmp_sha256_update(&s, data, len);
	llmp_sha256_final(&s, out);
}

void llmp_hmac_sha256(const uint8_t *key, size_t key_len, unsigned n, const void *const part[],
		      const size_t len[], uint8_t out[LLMP_SHA256_LEN])
{
	uint8_t k[LLMP_SHA256_BLOCK] = { 0 }, pad[LLMP_SHA256_BLOCK], inner[LLMP_SHA256_LEN];
	struct llmp_sha256 s;
	unsigned i;

	/* A key longer than a block is hashed first; a shorter one is zero-padded. */
	if (key_len > LLMP_SHA256_BLOCK)
		llmp_sha256(key, key_len, k);
	else if (key_len)
		memcpy(k, key, key_len);
	for (i = 0; i < LLMP_SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	llmp_sha256_init(&s);
	llmp_sha256_update(&s, pad, sizeof(pad));
	for (i = 0; i < n; i++)
		llmp_sha256_update(&s, part[i], len[i]);
	llmp_sha256_final(&s, inner);
	for (i = 0; i < LLMP_SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	llmp_sha256_init(&s);
	llmp_sha256_update(&s, pad, sizeof(pad));
	llmp_sha256_update(&s, inner, sizeof(inner));
	llmp_sha256_final(&s, out);
	memset(k, 0, sizeof(k));
	memset(pad, 0, sizeof(pad));
}

int llmp_memeq_ct(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d != 0;
}
