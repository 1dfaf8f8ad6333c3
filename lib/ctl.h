/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker's control segment: our extension, invisible to LibAFL peers.
 * The event loop creates it; our clients find it through the EXT_QUERY
 * TCP request and map it to wake a sleeping broker.  Not installed.
 *
 * Layout versions: 1 = wakers FUTEX_WAKE the sleep word; 2 = the wake
 * field says how to wake (a version-1 waker must not attach: it would
 * FUTEX_WAKE a broker that listens on a bell).  The loop writes the lowest
 * version that tells a waker what to do, so version-1 wakers keep working
 * with a futex broker.
 *
 * The poker table (both versions, in segments of LLMP_CTL_SIZE; an older
 * broker's 4 KiB segment has none, an older waker never writes it): a
 * waker whose client has an id claims one slot
 * with that id (CAS 0 -> id) and bumps pokers_gen, and gives the slot back
 * when it is freed.  The loop naps only while a registered client has no
 * slot (it cannot wake the loop: a LibAFL client, or one without a waker);
 * it clears slots that name no live client.  Any mapper can write anything
 * here: a false claim only makes the loop sleep through a non-poking
 * client's messages until its next timer (at most check_clients_ms).
 */
#ifndef LLMP_CTL_H
#define LLMP_CTL_H

#include <stdint.h>

#include "internal.h"

LLMP_HIDDEN_BEGIN

#define LLMP_CTL_MAGIC 0x314C5443504D4C4CULL /* "LLMPCTL1" */
#define LLMP_CTL_VERSION 1u      /* futex wake */
#define LLMP_CTL_VERSION_WAKE 2u /* read the wake field */
#define LLMP_CTL_SIZE 32768u /* 4096 before the poker table: wakers check the size */
/* sleep_word values */
#define LLMP_CTL_AWAKE 0u    /* a waker flipped SLEEPING to this (the broker is being woken) */
#define LLMP_CTL_SLEEPING 1u /* the broker announced sleep */
#define LLMP_CTL_RUNNING 2u  /* the broker is awake by itself (wakers see "not sleeping") */
/* wake values (version 2) */
#define LLMP_CTL_WAKE_FUTEX 0u /* FUTEX_WAKE the sleep word */
#define LLMP_CTL_WAKE_BELL 1u  /* llmp_bell_ring() the control segment (KMOD) */
/* The cookie the loop binds its control segment to its bell with. */
#define LLMP_CTL_BELL_COOKIE 1u
/* Slots of the poker table: what is left of the 32 KiB after the header. */
#define LLMP_CTL_POKERS 2046u

struct llmp_waker;

struct llmp_ctl {
	llmp_u64a magic;
	uint32_t version;
	uint32_t sleep_word; /* futex: SLEEPING while the broker announced sleep */
	uint32_t wake;       /* version 2: LLMP_CTL_WAKE_*; written before the description is handed out */
	uint32_t reserved;
	uint32_t pokers_gen; /* bumped by a waker after it claimed or gave back a slot */
	uint32_t reserved2;
	struct llmp_ctl_slot {
		uint32_t id;  /* client id whose waker pokes; 0: free */
		uint32_t reserved;
		/* lossless mode: chain position of the broadcast page the client reads, 0: none yet */
		llmp_u64a pos;
	} pokers[LLMP_CTL_POKERS];
};

/* What a segment must hold for its wakers to work; the table follows (newer brokers). */
#define LLMP_CTL_HEADER_LEN 24u
_Static_assert(sizeof(struct llmp_ctl) <= LLMP_CTL_SIZE, "the control segment holds the table");

/*
 * Claim a slot of the poker table for client_id (not 0): the loop may then
 * sleep without a nap while that client is registered.  A waker holds one
 * claim; a new id moves it.  0, or -ENOSPC when every slot is taken (the
 * loop then keeps napping for that client).
 */
int llmp_waker_claim(struct llmp_waker *w, uint32_t client_id);
/*
 * Lossless mode: the client now reads the broadcast page at chain index
 * pos - 1 (the loop keeps pages from there on).  Nothing without a claim.
 */
void llmp_waker_report(struct llmp_waker *w, uint64_t pos);

LLMP_HIDDEN_END

#endif /* LLMP_CTL_H */
