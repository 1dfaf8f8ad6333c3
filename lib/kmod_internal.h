/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Shared by lib/shmem_kmod.c and lib/bell.c (Linux only).  Not installed. */
#ifndef LLMP_KMOD_INTERNAL_H
#define LLMP_KMOD_INTERNAL_H

#include <stdint.h>
#include "internal.h"

LLMP_HIDDEN_BEGIN

/* Open /dev/llmp and check its ABI version: an fd, or -ENODEV with a reason. */
int llmp_kmod_open_dev(void);
/* Parse a KMOD printable id ("k" + base64url(id32 LE, key64 LE)). */
int llmp_kmod_decode_id(const char *s, uint32_t *id, uint64_t *key);

LLMP_HIDDEN_END

#endif /* LLMP_KMOD_INTERNAL_H */
