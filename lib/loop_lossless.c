// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Lossless mode (llmp_loop_set_lossless()): the broker drops a broadcast
 * page of its kept history only once every receiver that reports where it
 * reads (ours, through the position of its slot in the control segment's
 * poker table, lib/ctl.h) has left it.  While the history is over its bound
 * and such a receiver still reads the oldest page, the broker takes no
 * message from its clients, so their senders wait (back-pressure).  A
 * receiver (a client id) that keeps the oldest page for stuck_ms is no
 * longer waited for: it gets -ESTALE when it reads on, and is waited for
 * again only once it registers again (a new id), so a client that writes
 * garbage into its position holds the broker for stuck_ms once at most.
 * See Documentation/broker.rst, "Lossless mode".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loop_internal.h"

/* Is id one of the clients no longer waited for?  (ll_out is sorted.) */
static bool id_out(const struct llmp_loop *lp, uint32_t id)
{
	unsigned lo = 0, hi = lp->ll_nout;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (lp->ll_out[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < lp->ll_nout && lp->ll_out[lo] == id;
}

/* Add id to ll_out (sorted), first forgetting the ids of clients that left. */
static void id_put_out(struct llmp_loop *lp, uint32_t id)
{
	unsigned j = 0, k;

	for (unsigned i = 0; i < lp->ll_nout; i++)
		if (llmp_broker_client_live(lp->b, lp->ll_out[i]))
			lp->ll_out[j++] = lp->ll_out[i];
	lp->ll_nout = j;
	if (lp->ll_nout == lp->ll_capout) {
		unsigned ncap = lp->ll_capout ? lp->ll_capout * 2 : 16;
		uint32_t *n = realloc(lp->ll_out, ncap * sizeof(*n));

		if (!n)
			return; /* not remembered: it may hold the broker for stuck_ms once more */
		lp->ll_out = n;
		lp->ll_capout = ncap;
	}
	for (k = lp->ll_nout; k > 0 && lp->ll_out[k - 1] > id; k--)
		lp->ll_out[k] = lp->ll_out[k - 1];
	lp->ll_out[k] = id;
	lp->ll_nout++;
}

/* May the page at chain index idx go?  Asked by the broadcast sender before it drops one. */
static bool may_drop(void *ctx, uint64_t idx)
{
	struct llmp_loop *lp = ctx;
	int64_t now = llmp_now_ms();
	bool stuck, ok = true;

	if (idx != lp->ll_idx || !lp->ll_since) {
		/* a new oldest page: its own stuck clock */
		lp->ll_idx = idx;
		lp->ll_since = now;
	}
	stuck = now - lp->ll_since >= lp->ll_stuck_ms;
	for (unsigned i = 0; i < LLMP_CTL_POKERS; i++) {
		/* Written by clients at will (hostile ones too): every value is checked below. */
		uint32_t id = __atomic_load_n(&lp->ctl->pokers[i].id, __ATOMIC_RELAXED);
		uint64_t pos = __atomic_load_n(&lp->ctl->pokers[i].pos, __ATOMIC_RELAXED);

		/* pos: 1 + the chain index of the page it reads; 0: it does not read */
		if (!id || !pos || pos - 1 > idx)
			continue;
		if (!llmp_broker_client_live(lp->b, id) || id_out(lp, id))
			continue;
		if (!stuck) {
			ok = false;
			continue;
		}
		id_put_out(lp, id);
		lp->ll_dropped++;
		llmp_log(LLMP_LOG_WARN, "lossless: client %u still reads broadcast page %llu after "
			 "%d ms: no longer waited for (it gets -ESTALE when it reads on; "
			 "register again to be waited for)", id, (unsigned long long)idx,
			 lp->ll_stuck_ms);
	}
	return ok;
}

int llmp_loop_set_lossless(struct llmp_loop *lp, int stuck_ms)
{
	struct llmp_sender *out;

	if (!lp)
		return llmp_err(-EINVAL, "loop_set_lossless: NULL loop");
	if (stuck_ms < 0)
		return llmp_err(-EINVAL, "loop_set_lossless: stuck_ms %d < 0", stuck_ms);
	out = llmp_broker_bcast(lp->b);
	if (!stuck_ms) {
		llmp_loop_lossless_off(lp);
		return 0;
	}
	if (!lp->ctl)
		return llmp_err(-ENODEV, "loop_set_lossless: no control segment, receivers cannot "
				"say where they read");
	lp->ll_stuck_ms = stuck_ms;
	lp->ll_since = 0;
	out->may_drop = may_drop;
	out->may_drop_ctx = lp;
	return 0;
}

void llmp_loop_lossless_off(struct llmp_loop *lp)
{
	struct llmp_sender *out = llmp_broker_bcast(lp->b);

	if (out->may_drop_ctx == lp) {
		out->may_drop = NULL;
		out->may_drop_ctx = NULL;
		(void)llmp_sender_retrim(out); /* back under the bound at once */
	}
	free(lp->ll_out);
	lp->ll_out = NULL;
	lp->ll_nout = lp->ll_capout = 0;
	lp->ll_stuck_ms = 0;
}
