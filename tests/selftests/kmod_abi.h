/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The /dev/llmp ioctl structs' layout, asserted at compile time in every
 * build of the kmod tests (64-bit and the -m32 ones the VM runs): the same
 * sizes and offsets on i386 and x86-64 are what lets the module serve
 * 32-bit processes through compat_ptr_ioctl.  kmod/dev.c asserts the same
 * numbers in the module.
 */
#ifndef LLMP_KMOD_ABI_H
#define LLMP_KMOD_ABI_H

#include <stddef.h>

#include "uapi/linux/llmp.h"

_Static_assert(sizeof(struct llmp_version) == 16, "llmp_version size");
_Static_assert(offsetof(struct llmp_version, features) == 8, "llmp_version.features");
_Static_assert(sizeof(struct llmp_seg_create) == 48, "llmp_seg_create size");
_Static_assert(offsetof(struct llmp_seg_create, flags) == 16, "llmp_seg_create.flags");
_Static_assert(offsetof(struct llmp_seg_create, reserved) == 32, "llmp_seg_create.reserved");
_Static_assert(sizeof(struct llmp_seg_open) == 48, "llmp_seg_open size");
_Static_assert(offsetof(struct llmp_seg_open, id) == 16, "llmp_seg_open.id");
_Static_assert(offsetof(struct llmp_seg_open, reserved) == 32, "llmp_seg_open.reserved");
_Static_assert(sizeof(struct llmp_bell_create) == 24, "llmp_bell_create size");
_Static_assert(offsetof(struct llmp_bell_create, reserved) == 8, "llmp_bell_create.reserved");
_Static_assert(sizeof(struct llmp_stats) == 128, "llmp_stats size");
_Static_assert(offsetof(struct llmp_stats, reserved) == 64, "llmp_stats.reserved");
_Static_assert(sizeof(struct llmp_seg_info) == 56, "llmp_seg_info size");
_Static_assert(offsetof(struct llmp_seg_info, id) == 16, "llmp_seg_info.id");
_Static_assert(offsetof(struct llmp_seg_info, reserved) == 40, "llmp_seg_info.reserved");
_Static_assert(sizeof(struct llmp_seg_bind) == 24, "llmp_seg_bind size");
_Static_assert(offsetof(struct llmp_seg_bind, reserved) == 8, "llmp_seg_bind.reserved");
/* Also the alignment: a caller may embed them in its own structs. */
_Static_assert(_Alignof(struct llmp_seg_create) == 8, "llmp_seg_create alignment");

#endif /* LLMP_KMOD_ABI_H */
