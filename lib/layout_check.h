/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Compile-time proof that every structure another process reads has the
 * x86-64 layout (the wire contract, LibAFL's) in every build, 32-bit ones
 * included: sizes and field offsets as numbers, 8-byte alignment of the
 * 64-bit words shared memory updates atomically, and lock-free 8-byte
 * atomics.  Included by lib/page.c only (one place is enough: a mismatch
 * fails the library's build).  Not installed.
 */
#ifndef LLMP_LAYOUT_CHECK_H
#define LLMP_LAYOUT_CHECK_H

#include <stddef.h>

#include "ctl.h"
#include "llmp/broker.h"
#include "page.h"
#ifdef __linux__
#include "served_proto.h"
#include "uapi/linux/llmp.h"
#endif

#define LLMP_LAYOUT(type, field, off, size)                                         \
	_Static_assert(offsetof(type, field) == (off), #type "." #field " at " #off); \
	_Static_assert(sizeof(((type *)0)->field) == (size), #type "." #field " is " #size " bytes")
#define LLMP_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " is " #size " bytes")

/*
 * 64-bit words loaded and stored atomically in shared memory (current_msg_id,
 * magic, the END_OF_PAGE words) must be lock-free and 8-byte aligned, also
 * on i386 where a plain uint64_t member is only 4-byte aligned: those
 * structs declare theirs llmp_u64a (page.h), and the segment base and every
 * message start are 8-byte aligned (48 + multiples of 64).
 */
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0), "8-byte atomics are lock-free");
_Static_assert(__atomic_always_lock_free(sizeof(uint32_t), 0), "4-byte atomics are lock-free");
_Static_assert(__atomic_always_lock_free(sizeof(uint16_t), 0), "2-byte atomics are lock-free");

/* Page header (LlmpPage), at offset 0 of every segment. */
LLMP_SIZE(struct llmp_page, 48);
_Static_assert(_Alignof(struct llmp_page) == 8, "page header is 8-byte aligned");
LLMP_LAYOUT(struct llmp_page, magic, 0, 8);
LLMP_LAYOUT(struct llmp_page, sender_id, 8, 4);
LLMP_LAYOUT(struct llmp_page, receivers_joined, 12, 2);
LLMP_LAYOUT(struct llmp_page, receivers_left, 14, 2);
LLMP_LAYOUT(struct llmp_page, current_msg_id, 16, 8);
LLMP_LAYOUT(struct llmp_page, size_total, 24, 8);
LLMP_LAYOUT(struct llmp_page, size_used, 32, 8);
LLMP_LAYOUT(struct llmp_page, max_alloc_size, 40, 8);

/* Message header (LlmpMsg); the payload follows at +40. */
LLMP_SIZE(struct llmp_msg, 40);
_Static_assert(_Alignof(struct llmp_msg) == 8, "message header is 8-byte aligned");
LLMP_LAYOUT(struct llmp_msg, tag, 0, 4);
LLMP_LAYOUT(struct llmp_msg, sender, 4, 4);
LLMP_LAYOUT(struct llmp_msg, broker, 8, 4);
LLMP_LAYOUT(struct llmp_msg, flags, 12, 4);
LLMP_LAYOUT(struct llmp_msg, message_id, 16, 8);
LLMP_LAYOUT(struct llmp_msg, buf_len, 24, 8);
LLMP_LAYOUT(struct llmp_msg, buf_len_padded, 32, 8);
_Static_assert(offsetof(struct llmp_msg, buf) == 40, "payload at +40");

/* END_OF_PAGE / NEW_SHM_CLIENT payload (map_size, id). */
LLMP_SIZE(struct llmp_page_info, 32);
_Static_assert(_Alignof(struct llmp_page_info) == 8, "page info is 8-byte aligned");
LLMP_LAYOUT(struct llmp_page_info, map_size, 0, 8);
LLMP_LAYOUT(struct llmp_page_info, id, 8, 20);
LLMP_LAYOUT(struct llmp_page_info, pad, 28, 4);

/* Shared-memory description (public; the same bytes on 32 and 64 bits). */
LLMP_SIZE(struct llmp_shmem_desc, 40);
LLMP_LAYOUT(struct llmp_shmem_desc, kind, 0, 4);
LLMP_LAYOUT(struct llmp_shmem_desc, reserved, 4, 4);
LLMP_LAYOUT(struct llmp_shmem_desc, size, 8, 8);
LLMP_LAYOUT(struct llmp_shmem_desc, id, 16, 20);
LLMP_LAYOUT(struct llmp_shmem_desc, pad, 36, 4);

/* The loop's control segment (its broker and any waker map it). */
LLMP_SIZE(struct llmp_ctl, 32768);
_Static_assert(_Alignof(struct llmp_ctl) == 8, "control header is 8-byte aligned");
LLMP_LAYOUT(struct llmp_ctl, magic, 0, 8);
LLMP_LAYOUT(struct llmp_ctl, version, 8, 4);
LLMP_LAYOUT(struct llmp_ctl, sleep_word, 12, 4);
LLMP_LAYOUT(struct llmp_ctl, wake, 16, 4);
LLMP_LAYOUT(struct llmp_ctl, reserved, 20, 4);
LLMP_LAYOUT(struct llmp_ctl, pokers_gen, 24, 4);
LLMP_LAYOUT(struct llmp_ctl, reserved2, 28, 4);
LLMP_LAYOUT(struct llmp_ctl, pokers, 32, 2046 * 16);
LLMP_SIZE(struct llmp_ctl_slot, 16);
LLMP_LAYOUT(struct llmp_ctl_slot, id, 0, 4);
LLMP_LAYOUT(struct llmp_ctl_slot, reserved, 4, 4);
LLMP_LAYOUT(struct llmp_ctl_slot, pos, 8, 8);

#ifdef __linux__
/* The SERVED provider's socket protocol (a 32-bit client, a 64-bit server). */
LLMP_SIZE(struct served_hdr, 16);
LLMP_LAYOUT(struct served_hdr, magic, 0, 4);
LLMP_LAYOUT(struct served_hdr, version, 4, 2);
LLMP_LAYOUT(struct served_hdr, op, 6, 2);
LLMP_LAYOUT(struct served_hdr, length, 8, 4);
LLMP_LAYOUT(struct served_hdr, reserved, 12, 4);
LLMP_SIZE(struct served_hello, 8);
LLMP_LAYOUT(struct served_hello, min_version, 0, 2);
LLMP_LAYOUT(struct served_hello, max_version, 2, 2);
LLMP_LAYOUT(struct served_hello, reserved, 4, 4);
LLMP_SIZE(struct served_create, 8);
LLMP_LAYOUT(struct served_create, size, 0, 8);
LLMP_SIZE(struct served_adopt, 8);
LLMP_LAYOUT(struct served_adopt, hold, 0, 4);
LLMP_LAYOUT(struct served_adopt, reserved, 4, 4);
LLMP_SIZE(struct served_id, 20);
LLMP_SIZE(struct served_reply, 48);
LLMP_LAYOUT(struct served_reply, status, 0, 4);
LLMP_LAYOUT(struct served_reply, value, 4, 4);
LLMP_LAYOUT(struct served_reply, size, 8, 8);
LLMP_LAYOUT(struct served_reply, clients, 16, 4);
LLMP_LAYOUT(struct served_reply, pid, 20, 4);
LLMP_LAYOUT(struct served_reply, id, 24, 20);
LLMP_LAYOUT(struct served_reply, reserved, 44, 4);
#endif

/*
 * struct llmp_wire_desc (TCP) is written field by field (lib/postcard.c),
 * never as a struct, so its in-memory size may differ (28 on i386).
 */

#ifdef __linux__
/* /dev/llmp ioctls: the same sizes (and so command numbers) for compat callers. */
LLMP_SIZE(struct llmp_version, 16);
LLMP_LAYOUT(struct llmp_version, features, 8, 8);
LLMP_SIZE(struct llmp_seg_create, 48);
LLMP_LAYOUT(struct llmp_seg_create, size, 0, 8);
LLMP_LAYOUT(struct llmp_seg_create, key, 8, 8);
LLMP_LAYOUT(struct llmp_seg_create, flags, 16, 4);
LLMP_LAYOUT(struct llmp_seg_create, fd_flags, 20, 4);
LLMP_LAYOUT(struct llmp_seg_create, id, 24, 4);
LLMP_LAYOUT(struct llmp_seg_create, fd, 28, 4);
LLMP_LAYOUT(struct llmp_seg_create, reserved, 32, 16);
LLMP_SIZE(struct llmp_seg_open, 48);
LLMP_LAYOUT(struct llmp_seg_open, key, 0, 8);
LLMP_LAYOUT(struct llmp_seg_open, size, 8, 8);
LLMP_LAYOUT(struct llmp_seg_open, id, 16, 4);
LLMP_LAYOUT(struct llmp_seg_open, fd_flags, 20, 4);
LLMP_LAYOUT(struct llmp_seg_open, fd, 24, 4);
LLMP_LAYOUT(struct llmp_seg_open, flags, 28, 4);
LLMP_LAYOUT(struct llmp_seg_open, reserved, 32, 16);
LLMP_SIZE(struct llmp_bell_create, 24);
LLMP_LAYOUT(struct llmp_bell_create, fd_flags, 0, 4);
LLMP_LAYOUT(struct llmp_bell_create, fd, 4, 4);
LLMP_LAYOUT(struct llmp_bell_create, reserved, 8, 16);
LLMP_SIZE(struct llmp_stats, 128);
LLMP_LAYOUT(struct llmp_stats, segments_mapped_only, 56, 8);
LLMP_LAYOUT(struct llmp_stats, reserved, 64, 64);
LLMP_SIZE(struct llmp_seg_info, 56);
LLMP_LAYOUT(struct llmp_seg_info, size, 0, 8);
LLMP_LAYOUT(struct llmp_seg_info, key, 8, 8);
LLMP_LAYOUT(struct llmp_seg_info, id, 16, 4);
LLMP_LAYOUT(struct llmp_seg_info, flags, 20, 4);
LLMP_LAYOUT(struct llmp_seg_info, owner_uid, 24, 4);
LLMP_LAYOUT(struct llmp_seg_info, creator_pid, 28, 4);
LLMP_LAYOUT(struct llmp_seg_info, bound, 32, 4);
LLMP_LAYOUT(struct llmp_seg_info, cookie, 36, 4);
LLMP_LAYOUT(struct llmp_seg_info, reserved, 40, 16);
LLMP_SIZE(struct llmp_seg_bind, 24);
LLMP_LAYOUT(struct llmp_seg_bind, bell_fd, 0, 4);
LLMP_LAYOUT(struct llmp_seg_bind, cookie, 4, 4);
LLMP_LAYOUT(struct llmp_seg_bind, reserved, 8, 16);
#endif

#undef LLMP_LAYOUT
#undef LLMP_SIZE

#endif /* LLMP_LAYOUT_CHECK_H */
