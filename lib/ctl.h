/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker's control segment: our extension, invisible to LibAFL peers.
 * The event loop creates it; our clients find it through the EXT_QUERY
 * TCP request and map it to wake a sleeping broker.  Not installed.
 */
#ifndef LLMP_CTL_H
#define LLMP_CTL_H

#include <stdint.h>

#include "internal.h"

LLMP_HIDDEN_BEGIN

#define LLMP_CTL_MAGIC 0x314C5443504D4C4CULL /* "LLMPCTL1" */
#define LLMP_CTL_VERSION 1u
#define LLMP_CTL_SIZE 4096u
#define LLMP_CTL_AWAKE 0u
#define LLMP_CTL_SLEEPING 1u

struct llmp_ctl {
	uint64_t magic;
	uint32_t version;
	uint32_t sleep_word; /* futex: SLEEPING while the broker announced sleep */
};

LLMP_HIDDEN_END

#endif /* LLMP_CTL_H */
