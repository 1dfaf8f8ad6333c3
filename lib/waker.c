// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The client side of the broker's sleep word: after committing a message,
 * a sender pokes the broker's control segment, which costs a load and
 * nothing else unless the broker announced that it sleeps (then a CAS and
 * one FUTEX_WAKE, or, when the control segment says so, one ring of the
 * broker's /dev/llmp bell through the segment's fd).  A waker whose client
 * has an id also claims a slot of the control segment's poker table, which
 * tells the loop it need not nap for that client.
 * Documentation/broker.rst has the ordering argument.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "ctl.h"
#include "llmp/bell.h"
#include "llmp/broker.h"

struct llmp_waker {
	struct llmp_shmem *m;
	struct llmp_ctl *c;
	bool bell;	/* ring the control segment instead of FUTEX_WAKE */
	uint64_t woken;
	bool table;		/* the segment has the poker table (a broker of 2026-12 or later) */
	uint32_t claimed;	/* the client id our slot holds, 0: none */
	unsigned slot;
};

/* Give our slot back (if it still holds our id: the loop clears stale ones). */
static void waker_unclaim(struct llmp_waker *w)
{
	uint32_t id = w->claimed;

	if (!id)
		return;
	w->claimed = 0;
	/* A free slot reads "not reading" (lossless mode); the id still guards it. */
	__atomic_store_n(&w->c->pokers[w->slot].pos, 0, __ATOMIC_RELAXED);
	/* Pairs with the loop's loads of the table after it read pokers_gen. */
	__atomic_compare_exchange_n(&w->c->pokers[w->slot].id, &id, 0, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_RELAXED);
	__atomic_fetch_add(&w->c->pokers_gen, 1, __ATOMIC_SEQ_CST);
}

int llmp_waker_claim(struct llmp_waker *w, uint32_t client_id)
{
	unsigned start;

	if (!w || !client_id)
		return llmp_err(-EINVAL, "waker_claim: NULL waker or client id 0");
	if (!w->table)
		return llmp_err(-EOPNOTSUPP, "waker_claim: the broker's control segment has no "
				"poker table (an older broker: it naps)");
	if (w->claimed == client_id &&
	    __atomic_load_n(&w->c->pokers[w->slot].id, __ATOMIC_RELAXED) == client_id)
		return 0;
	waker_unclaim(w);
	/* Start at a slot of our own so that many clients claiming at once rarely collide. */
	start = client_id % LLMP_CTL_POKERS;
	for (unsigned k = 0; k < LLMP_CTL_POKERS; k++) {
		unsigned i = (start + k) % LLMP_CTL_POKERS;
		uint32_t free_slot = 0;

		/* Pairs with the loop's loads of the table and its CAS of stale slots back to 0. */
		if (__atomic_compare_exchange_n(&w->c->pokers[i].id, &free_slot, client_id, false,
						__ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			/* Not reading yet (the position is for the lossless mode). */
			__atomic_store_n(&w->c->pokers[i].pos, 0, __ATOMIC_RELAXED);
			w->claimed = client_id;
			w->slot = i;
			/* After the claim: the loop that sees the new gen sees the slot. */
			__atomic_fetch_add(&w->c->pokers_gen, 1, __ATOMIC_SEQ_CST);
			return 0;
		}
	}
	return llmp_err(-ENOSPC, "waker_claim: all %u slots of the broker's poker table are taken",
			LLMP_CTL_POKERS);
}

int llmp_waker_attach(struct llmp_provider *p, const struct llmp_shmem_desc *ctl,
		      struct llmp_waker **out)
{
	struct llmp_waker *w;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "waker_attach: NULL out pointer");
	*out = NULL;
	if (!p || !ctl)
		return llmp_err(-EINVAL, "waker_attach: NULL argument");
	w = calloc(1, sizeof(*w));
	if (!w)
		return llmp_err(-ENOMEM, "waker_attach: out of memory");
	ret = llmp_shmem_attach(p, ctl, &w->m);
	if (ret < 0) {
		free(w);
		return ret;
	}
	w->c = llmp_shmem_addr(w->m);
	/* Written once by the broker before it told anyone the description. */
	if (llmp_shmem_size(w->m) < LLMP_CTL_HEADER_LEN || w->c->magic != LLMP_CTL_MAGIC ||
	    (w->c->version != LLMP_CTL_VERSION && w->c->version != LLMP_CTL_VERSION_WAKE)) {
		ret = llmp_err(-EPROTO, "waker_attach: not an llmp control segment of version %u "
			       "or %u", LLMP_CTL_VERSION, LLMP_CTL_VERSION_WAKE);
		goto fail;
	}
	w->table = llmp_shmem_size(w->m) >= sizeof(*w->c);
	if (w->c->version == LLMP_CTL_VERSION_WAKE) {
		uint32_t how = w->c->wake;

		if (how == LLMP_CTL_WAKE_BELL && llmp_provider_kind(p) != LLMP_SHMEM_KMOD) {
			ret = llmp_err(-EOPNOTSUPP, "waker_attach: the broker listens on a bell, "
				       "which needs the KMOD provider");
			goto fail;
		}
		if (how != LLMP_CTL_WAKE_FUTEX && how != LLMP_CTL_WAKE_BELL) {
			ret = llmp_err(-EPROTO, "waker_attach: unknown wake method %u", how);
			goto fail;
		}
		w->bell = how == LLMP_CTL_WAKE_BELL;
	}
	*out = w;
	return 0;
fail:
	llmp_shmem_put(w->m);
	free(w);
	return ret;
}

#if !defined(__linux__)
/* On Linux this lives with the TCP client side (lib/tcp_client.c). */
int llmp_waker_connect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			   struct llmp_waker **out)
{
	(void)p;
	(void)addr;
	(void)port;
	if (out)
		*out = NULL;
	return llmp_err(-EOPNOTSUPP, "waker_connect_tcp: TCP registration is Linux-only for now");
}
#endif

int llmp_waker_poke(struct llmp_waker *w)
{
	uint32_t sleeping = LLMP_CTL_SLEEPING;
	long n;

	if (LLMP_UNLIKELY(!w))
		return llmp_err(-EINVAL, "waker_poke: NULL waker");
	/*
	 * Orders the caller's commit (its release store of current_msg_id)
	 * before the load below; pairs with the broker's seq_cst store of
	 * SLEEPING and fence before its second look at the clients.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Pairs with the broker's seq_cst stores of the word. */
	if (LLMP_LIKELY(__atomic_load_n(&w->c->sleep_word, __ATOMIC_RELAXED) != LLMP_CTL_SLEEPING))
		return 0;
	/*
	 * Only one waker flips it (pairs with the broker's seq_cst exchange
	 * when it wakes); the broker's wait then returns even if it is not in
	 * it yet: the futex wait finds the word changed, the bell keeps the
	 * ring pending.
	 */
	if (!__atomic_compare_exchange_n(&w->c->sleep_word, &sleeping, LLMP_CTL_AWAKE, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
		return 0;
	if (w->bell) {
		n = llmp_bell_ring(w->m);
		if (n < 0)
			return (int)n;
		w->woken++;
		return 1;
	}
#if defined(__linux__)
	n = syscall(SYS_futex, &w->c->sleep_word, FUTEX_WAKE, 1, NULL, NULL, 0);
	if (n < 0)
		return llmp_err(-errno, "waker_poke: FUTEX_WAKE");
#else
	(void)n;
	return llmp_err(-EOPNOTSUPP, "waker_poke: no futex on this platform");
#endif
	w->woken++;
	return 1;
}

void llmp_waker_report(struct llmp_waker *w, uint64_t pos)
{
	if (w && w->claimed)
		/* Read by the loop before it drops a page; a stale value only keeps a page longer. */
		__atomic_store_n(&w->c->pokers[w->slot].pos, pos, __ATOMIC_RELAXED);
}

void llmp_waker_free(struct llmp_waker *w)
{
	if (!w)
		return;
	waker_unclaim(w);
	llmp_shmem_put(w->m);
	free(w);
}
