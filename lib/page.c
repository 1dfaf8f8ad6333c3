// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP page layer, shared part: the page header (init and check, both
 * sides), the END_OF_PAGE payload as four atomic words, and the wait
 * helpers.  The writer is lib/page_send.c, the reader lib/page_recv.c;
 * lib/page.h is their interface.  Documentation/protocol.rst explains the
 * memory ordering; every atomic below names its pair.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "layout_check.h"
#include "page.h"

uint64_t llmp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

void llmp_backoff(unsigned *round)
{
	if (*round < 256) {
		cpu_relax();
	} else if (*round < 320) {
		sched_yield();
	} else {
		struct timespec ts = { 0, 50000 };

		nanosleep(&ts, NULL);
	}
	(*round)++;
}

int llmp_page_init(void *base, size_t map_size, uint32_t sender_id)
{
	struct llmp_page *pg = base;
	struct llmp_msg *first;

	if (!base || map_size < LLMP_PAGE_MIN_SIZE)
		return llmp_err(-EINVAL, "page init: segment of %zu bytes is too small (min %u)",
				map_size, LLMP_PAGE_MIN_SIZE);
	pg->magic = LLMP_PAGE_MAGIC;
	pg->sender_id = sender_id;
	/* published by the release store of the EOP (or registration) that names this page */
	__atomic_store_n(&pg->current_msg_id, 0, __ATOMIC_RELAXED);
	pg->size_total = map_size - LLMP_PAGE_HEADER_LEN;
	pg->size_used = 0;
	pg->max_alloc_size = 0;
	first = MSG_AT(base, LLMP_PAGE_HEADER_LEN);
	first->message_id = 0;
	first->tag = LLMP_TAG_UNSET;
	/* pairs with the sender's acquire loads of joined/left (retire, safe-to-unmap) */
	__atomic_store_n(&pg->receivers_joined, 0, __ATOMIC_RELEASE);
	/* same: part of the re-initialisation published above */
	__atomic_store_n(&pg->receivers_left, 0, __ATOMIC_RELAXED);
	return 0;
}

int llmp_page_check(const void *base, size_t map_size)
{
	const struct llmp_page *pg = base;
	uint64_t magic, total, used;

	if (map_size < LLMP_PAGE_MIN_SIZE)
		return llmp_err(-EBADMSG, "page: mapping of %zu bytes is too small", map_size);
	/* pairs with the release store of the DEINIT magic when a page is dropped */
	magic = __atomic_load_n(&pg->magic, __ATOMIC_ACQUIRE);
	total = pg->size_total;
	used = pg->size_used;
	if (magic != LLMP_PAGE_MAGIC)
		return llmp_err(magic == LLMP_PAGE_MAGIC_DEINIT ? -ESTALE : -EBADMSG,
				"page: bad magic 0x%016llx", (unsigned long long)magic);
	if (total > map_size - LLMP_PAGE_HEADER_LEN ||
	    total < LLMP_MSG_HEADER_LEN + LLMP_EOP_MSG_SIZE || used > total)
		return llmp_err(-EBADMSG, "page: size_total %llu / size_used %llu do not fit a "
				"%zu-byte mapping", (unsigned long long)total,
				(unsigned long long)used, map_size);
	return 0;
}

/* ---- EOP payload as four 64-bit words (the anchor's is rewritten live) ---- */

void llmp_eop_store(struct llmp_msg *e, const struct llmp_page_info *info)
{
	uint64_t w[4];
	uint64_t *dst = (uint64_t *)(void *)e->buf;

	memcpy(w, info, sizeof(w));
	for (int i = 0; i < 4; i++)
		/* read under the seqlock in recv_follow (relaxed; the seq word orders) */
		__atomic_store_n(&dst[i], w[i], __ATOMIC_RELAXED);
}

void llmp_eop_load(const struct llmp_msg *e, struct llmp_page_info *info)
{
	uint64_t w[4];
	const uint64_t *src = (const uint64_t *)(const void *)e->buf;

	for (int i = 0; i < 4; i++)
		/* written by llmp_eop_store; ordered by the seq word (broker field) */
		w[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	memcpy(info, w, sizeof(w));
}
