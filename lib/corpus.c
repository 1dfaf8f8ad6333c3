// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The test-case message (include/llmp/corpus.h): encoding (the content
 * hash is lib/sha256.c's SHA-256), and a decoder that checks every length
 * and byte of a payload that came from anyone.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "llmp/corpus.h"
#include "sha256.h"

_Static_assert(LLMP_TC_HASH_LEN == LLMP_SHA256_LEN, "the test-case hash is a SHA-256");

/* ---- codec ------------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* A host or file name: printable bytes, no '/', no NUL, not "." or "..". */
static bool name_ok(const char *s, size_t len)
{
	if (len && !s)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f || ch == '/')
			return false;
	}
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	return true;
}

static size_t fixed_len(uint16_t flags)
{
	return LLMP_TC_FIXED_LEN + ((flags & LLMP_TC_F_STATS) ? LLMP_TC_STATS_LEN : 0);
}

size_t llmp_tc_encoded_len(const struct llmp_tc *t)
{
	return fixed_len(t->flags) + t->host_len + t->name_len + t->data_len;
}

int llmp_tc_encode(const struct llmp_tc *t, void *buf, size_t cap)
{
	uint8_t *p = buf;
	size_t hlen, total;

	if (!t || (!buf && cap) || t->flags & ~LLMP_TC_F_STATS || !t->host_len ||
	    t->host_len > LLMP_TC_HOST_MAX || t->name_len > LLMP_TC_NAME_MAX ||
	    !name_ok(t->host, t->host_len) || !name_ok(t->name, t->name_len) ||
	    t->data_len > LLMP_TC_DATA_MAX || (t->data_len && !t->data))
		return -EINVAL;
	hlen = fixed_len(t->flags) + t->host_len + t->name_len;
	total = hlen + t->data_len;
	if (cap < total)
		return -ENOSPC;
	memcpy(p, LLMP_TC_MAGIC, 4);
	p[4] = LLMP_TC_VERSION;
	p[5] = t->kind;
	put16(p + 6, t->flags);
	put16(p + 8, (uint16_t)hlen);
	p[10] = (uint8_t)t->host_len;
	p[11] = (uint8_t)t->name_len;
	put32(p + 12, t->instance);
	llmp_sha256(t->data_len ? t->data : "", t->data_len, p + 16); /* no NULL to memcpy */
	put64(p + 48, t->data_len);
	if (t->flags & LLMP_TC_F_STATS) {
		put64(p + 56, t->execs);
		put32(p + 64, t->edges);
		put32(p + 68, 0);
	}
	memcpy(p + fixed_len(t->flags), t->host, t->host_len);
	if (t->name_len)
		memcpy(p + fixed_len(t->flags) + t->host_len, t->name, t->name_len);
	if (t->data_len)
		memcpy(p + hlen, t->data, t->data_len);
	return (int)total;
}

int llmp_tc_decode(const void *buf, size_t len, struct llmp_tc *t)
{
	const uint8_t *p = buf;
	uint8_t hash[LLMP_TC_HASH_LEN];
	size_t fl, hlen, host_len, name_len;
	uint64_t data_len;
	uint16_t flags;

	if (!t || !buf || len < LLMP_TC_FIXED_LEN || memcmp(p, LLMP_TC_MAGIC, 4) ||
	    p[4] != LLMP_TC_VERSION)
		return -EBADMSG;
	flags = get16(p + 6);
	if (flags & ~LLMP_TC_F_STATS)
		return -EBADMSG;
	fl = fixed_len(flags);
	hlen = get16(p + 8);
	host_len = p[10];
	name_len = p[11];
	data_len = get64(p + 48);
	/* every length against the others and against len, without overflow */
	if (!host_len || host_len > LLMP_TC_HOST_MAX || name_len > LLMP_TC_NAME_MAX ||
	    hlen < fl + host_len + name_len || hlen > len || data_len != len - hlen ||
	    data_len > LLMP_TC_DATA_MAX)
		return -EBADMSG;
	memset(t, 0, sizeof(*t));
	t->kind = p[5];
	t->flags = flags;
	t->instance = get32(p + 12);
	memcpy(t->hash, p + 16, LLMP_TC_HASH_LEN);
	if (flags & LLMP_TC_F_STATS) {
		t->execs = get64(p + 56);
		t->edges = get32(p + 64);
	}
	t->host = (const char *)p + fl;
	t->host_len = host_len;
	t->name = (const char *)p + fl + host_len;
	t->name_len = name_len;
	t->data = p + hlen;
	t->data_len = (size_t)data_len;
	if (!name_ok(t->host, host_len) || !name_ok(t->name, name_len))
		return -EBADMSG;
	llmp_sha256(t->data_len ? t->data : "", t->data_len, hash);
	if (memcmp(hash, t->hash, sizeof(hash)))
		return -EBADMSG;
	return 0;
}

int llmp_tc_send(struct llmp_client *c, const struct llmp_tc *t)
{
	size_t n;
	void *buf;
	int ret;

	if (!c || !t)
		return llmp_err(-EINVAL, "test case send: NULL argument");
	n = llmp_tc_encoded_len(t);
	if (n > LLMP_TC_FIXED_LEN + LLMP_TC_STATS_LEN + LLMP_TC_HOST_MAX + LLMP_TC_NAME_MAX +
		    LLMP_TC_DATA_MAX)
		return llmp_err(-EINVAL, "test case send: %zu bytes is too large", n);
	ret = llmp_client_alloc(c, n, &buf);
	if (ret < 0)
		return ret;
	ret = llmp_tc_encode(t, buf, n);
	if (ret < 0) {
		llmp_client_cancel(c);
		return llmp_err(ret, "test case send: invalid test case (host, name or size)");
	}
	return llmp_client_commit(c, LLMP_TAG_TESTCASE, 0, n);
}
