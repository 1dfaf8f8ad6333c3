// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Fleet-wide de-duplication of test cases by content hash: a broker hook
 * over a fixed-size table that forgets the oldest hash when full.
 *
 * The table is a ring of entries in insertion order (the oldest is the
 * next to be overwritten) plus hash buckets chaining the entries; both
 * are allocated once, so memory never grows past the budget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "llmp/corpus.h"

/* 16 of the 32 hash bytes identify content well enough for a table of millions. */
#define KEY_LEN 16
#define NIL UINT32_MAX

struct dedup_entry {
	uint8_t key[KEY_LEN];
	uint32_t next; /* next entry in the same bucket, or NIL */
};

struct llmp_dedup {
	struct dedup_entry *ring;
	uint32_t *bucket;
	uint32_t cap, nbuckets, head, used; /* head: the slot written next (the oldest once full) */
	struct llmp_dedup_stats st;
	unsigned logged;
};

static uint32_t key_bucket(const struct llmp_dedup *d, const uint8_t *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h)); /* SHA-256 bytes are uniform already */
	return h & (d->nbuckets - 1);
}

int llmp_dedup_new(size_t budget, struct llmp_dedup **out)
{
	struct llmp_dedup *d;
	size_t per, cap, nb;

	if (!out)
		return llmp_err(-EINVAL, "dedup: NULL argument");
	if (!budget)
		budget = LLMP_DEDUP_DEFAULT_BYTES;
	if (budget < 4096 || budget / 1024 > (1u << 30)) /* above 1 TiB (a 64-bit size_t) */
		return llmp_err(-EINVAL, "dedup: budget %zu bytes out of range (4 KiB .. 1 TiB)", budget);
	budget -= sizeof(*d);
	/* each entry, plus up to 2 bucket words per entry (buckets: power of two >= cap) */
	per = sizeof(struct dedup_entry) + 2 * sizeof(uint32_t);
	cap = budget / per;
	if (cap > NIL - 1)
		cap = NIL - 1;
	for (nb = 1; nb < cap; nb <<= 1)
		;
	d = calloc(1, sizeof(*d));
	if (!d)
		return llmp_err(-ENOMEM, "dedup: out of memory");
	d->ring = calloc(cap, sizeof(*d->ring));
	d->bucket = malloc(nb * sizeof(*d->bucket));
	if (!d->ring || !d->bucket) {
		llmp_dedup_free(d);
		return llmp_err(-ENOMEM, "dedup: out of memory for %zu entries", cap);
	}
	memset(d->bucket, 0xff, nb * sizeof(*d->bucket));
	d->cap = (uint32_t)cap;
	d->nbuckets = (uint32_t)nb;
	d->st.capacity = cap;
	d->st.bytes = sizeof(*d) + cap * sizeof(*d->ring) + nb * sizeof(*d->bucket);
	*out = d;
	return 0;
}

void llmp_dedup_free(struct llmp_dedup *d)
{
	if (!d)
		return;
	free(d->ring);
	free(d->bucket);
	free(d);
}

/* Unlink ring slot i from its bucket chain. */
static void unlink_slot(struct llmp_dedup *d, uint32_t i)
{
	uint32_t *pp = &d->bucket[key_bucket(d, d->ring[i].key)];

	while (*pp != NIL) {
		if (*pp == i) {
			*pp = d->ring[i].next;
			return;
		}
		pp = &d->ring[*pp].next;
	}
}

int llmp_dedup_check(struct llmp_dedup *d, const uint8_t hash[LLMP_TC_HASH_LEN])
{
	uint32_t b = key_bucket(d, hash), i;

	for (i = d->bucket[b]; i != NIL; i = d->ring[i].next)
		if (!memcmp(d->ring[i].key, hash, KEY_LEN))
			return 0;
	i = d->head;
	if (d->used == d->cap) {
		unlink_slot(d, i);
		d->st.evicted++;
	} else {
		d->used++;
	}
	memcpy(d->ring[i].key, hash, KEY_LEN);
	d->ring[i].next = d->bucket[b];
	d->bucket[b] = i;
	d->head = d->head + 1 == d->cap ? 0 : d->head + 1;
	d->st.entries = d->used;
	return 1;
}

enum llmp_hook_verdict llmp_dedup_hook(void *ctx, struct llmp_broker *b, uint32_t client_id,
				       uint32_t *tag, uint32_t *flags, const void **buf,
				       size_t *len)
{
	struct llmp_dedup *d = ctx;
	struct llmp_tc t;

	(void)b;
	(void)flags;
	if (*tag != LLMP_TAG_TESTCASE)
		return LLMP_HOOK_FORWARD;
	d->st.seen++;
	if (llmp_tc_decode(*buf, *len, &t) < 0) {
		d->st.invalid++;
		/* a flood of bad messages must not flood the log: the first 10, then every 1000th */
		if (d->logged < 10 || d->st.invalid % 1000 == 0) {
			d->logged++;
			llmp_log(LLMP_LOG_WARN, "dedup: malformed test case (%zu bytes) from client %u "
				 "dropped (%llu so far)", *len, client_id,
				 (unsigned long long)d->st.invalid);
		}
		return LLMP_HOOK_DROP;
	}
	if (!llmp_dedup_check(d, t.hash)) {
		d->st.dropped++;
		return LLMP_HOOK_DROP;
	}
	d->st.passed++;
	return LLMP_HOOK_FORWARD;
}

int llmp_dedup_attach(struct llmp_dedup *d, struct llmp_broker *b)
{
	if (!d || !b)
		return llmp_err(-EINVAL, "dedup attach: NULL argument");
	return llmp_broker_add_hook(b, llmp_dedup_hook, d);
}

void llmp_dedup_stats(const struct llmp_dedup *d, struct llmp_dedup_stats *st)
{
	*st = d->st;
}
