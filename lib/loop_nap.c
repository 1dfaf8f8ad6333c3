// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Does the idle loop nap, or sleep until something wakes it?  It naps only
 * while a registered client cannot wake it: one whose id no waker claimed
 * in the control segment's poker table (lib/ctl.h), e.g. a LibAFL client.
 * The answer is cached until the client set or the table's generation
 * changes.  See Documentation/broker.rst, "Sleep and wake".
 */
#include <stdlib.h>

#include "loop_internal.h"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * How many live clients hold a slot; slots naming no live client (gone,
 * never issued, garbage) are cleared.  Runs on the broker's thread, so the
 * client set does not change meanwhile.
 */
static unsigned count_pokers(struct llmp_loop *lp)
{
	uint32_t ids[LLMP_CTL_POKERS];
	unsigned k = 0, u = 0;

	for (unsigned i = 0; i < LLMP_CTL_POKERS; i++) {
		/* Pairs with the waker's CAS of its claim (read after pokers_gen). */
		uint32_t v = __atomic_load_n(&lp->ctl->pokers[i].id, __ATOMIC_RELAXED);

		if (!v)
			continue;
		if (!llmp_broker_client_live(lp->b, v)) {
			/* Only if it still holds v: a claim that came since stays. */
			if (__atomic_compare_exchange_n(&lp->ctl->pokers[i].id, &v, 0, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
				__atomic_store_n(&lp->ctl->pokers[i].pos, 0, __ATOMIC_RELAXED);
			continue;
		}
		ids[k++] = v;
	}
	qsort(ids, k, sizeof(ids[0]), cmp_u32);
	/* Two slots with one id (a waker that claimed another's id) count once. */
	for (unsigned i = 0; i < k; i++)
		u += i == 0 || ids[i] != ids[i - 1];
	return u;
}

bool llmp_loop_needs_nap(struct llmp_loop *lp)
{
	unsigned n;
	uint32_t gen, next;

	/* Lossless mode holds the senders back: look again for receivers that moved on. */
	if (LLMP_UNLIKELY(llmp_broker_bcast(lp->b)->held))
		return true;
	if (lp->max_sleep_us < 0)
		return false;
	if (lp->wake == WAKE_NAP || !lp->ctl || lp->nap_policy == LLMP_LOOP_NAP_ALWAYS)
		return true;
	/* Pairs with the wakers' seq_cst increments after they claimed or gave back a slot. */
	gen = __atomic_load_n(&lp->ctl->pokers_gen, __ATOMIC_ACQUIRE);
	n = llmp_broker_nclients(lp->b);
	next = llmp_broker_next_id(lp->b);
	if (lp->pk_valid && gen == lp->pk_gen && n == lp->pk_clients && next == lp->pk_next)
		return lp->pk_nap;
	bool was = lp->pk_valid ? lp->pk_nap : false;

	lp->pk_valid = true;
	lp->pk_gen = gen;
	lp->pk_clients = n;
	lp->pk_next = next;
	lp->pk_silent = n - count_pokers(lp);
	lp->pk_nap = lp->pk_silent > 0;
	if (lp->pk_nap != was)
		llmp_log(LLMP_LOG_INFO, lp->pk_nap ? "loop: %u of %u clients cannot wake the broker: "
			 "it naps (up to %lld us) when idle" : "loop: every client (%u cannot "
			 "wake, of %u) wakes the broker: it sleeps until woken", lp->pk_silent, n,
			 (long long)lp->max_sleep_us);
	return lp->pk_nap;
}
