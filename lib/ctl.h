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
 */
#ifndef LLMP_CTL_H
#define LLMP_CTL_H

#include <stdint.h>

#include "internal.h"

LLMP_HIDDEN_BEGIN

#define LLMP_CTL_MAGIC 0x314C5443504D4C4CULL /* "LLMPCTL1" */
#define LLMP_CTL_VERSION 1u      /* futex wake */
#define LLMP_CTL_VERSION_WAKE 2u /* read the wake field */
#define LLMP_CTL_SIZE 4096u
/* sleep_word values */
#define LLMP_CTL_AWAKE 0u    /* a waker flipped SLEEPING to this (the broker is being woken) */
#define LLMP_CTL_SLEEPING 1u /* the broker announced sleep */
#define LLMP_CTL_RUNNING 2u  /* the broker is awake by itself (wakers see "not sleeping") */
/* wake values (version 2) */
#define LLMP_CTL_WAKE_FUTEX 0u /* FUTEX_WAKE the sleep word */
#define LLMP_CTL_WAKE_BELL 1u  /* llmp_bell_ring() the control segment (KMOD) */
/* The cookie the loop binds its control segment to its bell with. */
#define LLMP_CTL_BELL_COOKIE 1u

struct llmp_ctl {
	llmp_u64a magic;
	uint32_t version;
	uint32_t sleep_word; /* futex: SLEEPING while the broker announced sleep */
	uint32_t wake;       /* version 2: LLMP_CTL_WAKE_*; written before the description is handed out */
	uint32_t reserved;
};

LLMP_HIDDEN_END

#endif /* LLMP_CTL_H */
