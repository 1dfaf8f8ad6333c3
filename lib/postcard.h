/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Postcard primitives (LEB128 varints, length-prefixed byte strings, raw
 * arrays) over a bounds-checked cursor.  The message codecs on top of them
 * are public (include/llmp/broker.h); these stay inside the library.
 */
#ifndef LLMP_POSTCARD_H
#define LLMP_POSTCARD_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

LLMP_HIDDEN_BEGIN

/* Longest varint for a u32 / u64. */
#define LLMP_PC_VARINT32_MAX 5
#define LLMP_PC_VARINT64_MAX 10

struct llmp_pc_rd {
	const uint8_t *p;
	size_t len;
	size_t off;
};

struct llmp_pc_wr {
	uint8_t *p;
	size_t cap;
	size_t off;
	int err; /* sticky: -ENOSPC once the buffer ran out */
};

/* Readers return 0 or -EBADMSG (truncated, overlong, out of range). */
int llmp_pc_get_u64(struct llmp_pc_rd *r, uint64_t *v);
int llmp_pc_get_u32(struct llmp_pc_rd *r, uint32_t *v);
int llmp_pc_get_raw(struct llmp_pc_rd *r, void *dst, size_t n);
/* A varint length (≤ max) then that many bytes, returned in place. */
int llmp_pc_get_bytes(struct llmp_pc_rd *r, size_t max, const uint8_t **b, size_t *n);

/* Writers set w->err on overflow and keep going (no-op). */
void llmp_pc_put_u64(struct llmp_pc_wr *w, uint64_t v);
void llmp_pc_put_raw(struct llmp_pc_wr *w, const void *src, size_t n);
void llmp_pc_put_bytes(struct llmp_pc_wr *w, const void *src, size_t n);

/* Strict UTF-8 check (no overlongs, no surrogates, ≤ U+10FFFF). */
int llmp_pc_utf8_ok(const uint8_t *s, size_t n);

LLMP_HIDDEN_END

#endif /* LLMP_POSTCARD_H */
