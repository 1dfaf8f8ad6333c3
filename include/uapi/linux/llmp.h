/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/llmp: refcounted shared-memory segments and doorbells for LLMP
 * message passing.  See Documentation/kmod.rst in the llmp tree.
 *
 * Every object is a file descriptor.  ioctls on /dev/llmp create segments
 * and bells and open segments by (id, key); ioctls on a segment fd bind it
 * to a bell and ring it.  Structs have a fixed size and explicit padding,
 * and the same layout for 32-bit and 64-bit callers (no pointers, every
 * 64-bit field __aligned_u64 at a multiple of 8), so the module serves
 * 32-bit processes through compat_ioctl unchanged;
 * every reserved field must be zero (-EINVAL otherwise); unknown commands
 * fail with -ENOTTY.  New behaviour gets new command numbers and a new
 * feature bit, never a changed struct.
 */
#ifndef _UAPI_LINUX_LLMP_H
#define _UAPI_LINUX_LLMP_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define LLMP_DEVICE_PATH	"/dev/llmp"
#define LLMP_IOC_MAGIC		0xB8
#define LLMP_ABI_VERSION	1

/* Feature bits reported by LLMP_IOC_VERSION. */
#define LLMP_FEAT_SEGMENTS	(1ULL << 0)	/* SEG_CREATE, SEG_OPEN, SEG_INFO */
#define LLMP_FEAT_BELLS		(1ULL << 1)	/* BELL_CREATE, SEG_BIND, SEG_RING */
#define LLMP_FEAT_STATS		(1ULL << 2)	/* STATS */
/*
 * Behaviour bits (no new command): a segment stays charged, and counted in
 * bytes_live and segments_mapped_only, while it is mapped with no fd left;
 * SEG_BIND works only on the fd SEG_CREATE returned (-EPERM on others).
 */
#define LLMP_FEAT_CHARGE_MAPPED	(1ULL << 3)
#define LLMP_FEAT_BIND_OWNER	(1ULL << 4)

/* Largest segment the ABI describes (the module may enforce less). */
#define LLMP_SEG_MAX_SIZE	(1ULL << 40)

/* Segment flags (struct llmp_seg_create.flags). */
#define LLMP_SEG_ALLOW_OTHER_UIDS	(1U << 0)	/* any uid may open by id+key */
#define LLMP_SEG_FLAGS_ALL		LLMP_SEG_ALLOW_OTHER_UIDS

/* The only flag accepted in fd_flags fields: O_CLOEXEC (from fcntl.h). */

/* LLMP_IOC_VERSION (on /dev/llmp or any llmp fd). */
struct llmp_version {
	__u32 abi_version;		/* out: LLMP_ABI_VERSION */
	__u32 reserved;			/* out: 0 */
	__aligned_u64 features;		/* out: LLMP_FEAT_* */
};

/* LLMP_IOC_SEG_CREATE (on /dev/llmp). */
struct llmp_seg_create {
	__aligned_u64 size;		/* in: bytes (1..limit); out: page-rounded size */
	__aligned_u64 key;		/* out: random 64-bit key needed to open by id */
	__u32 flags;			/* in: LLMP_SEG_* */
	__u32 fd_flags;			/* in: 0 or O_CLOEXEC */
	__u32 id;			/* out: id, unique within the IPC namespace */
	__s32 fd;			/* out: the segment fd */
	__aligned_u64 reserved[2];	/* in: must be 0 */
};

/* LLMP_IOC_SEG_OPEN (on /dev/llmp). */
struct llmp_seg_open {
	__aligned_u64 key;		/* in */
	__aligned_u64 size;		/* out: segment size in bytes */
	__u32 id;			/* in */
	__u32 fd_flags;			/* in: 0 or O_CLOEXEC */
	__s32 fd;			/* out: a new fd for the segment */
	__u32 flags;			/* out: the creator's LLMP_SEG_* flags */
	__aligned_u64 reserved[2];	/* in: must be 0 */
};

/* LLMP_IOC_BELL_CREATE (on /dev/llmp). */
struct llmp_bell_create {
	__u32 fd_flags;			/* in: 0, O_CLOEXEC, O_NONBLOCK or both */
	__s32 fd;			/* out: the bell fd */
	__aligned_u64 reserved[2];	/* in: must be 0 */
};

/* LLMP_IOC_STATS (on /dev/llmp): module-wide counters. */
struct llmp_stats {
	__aligned_u64 segments_live;	/* segments with an fd open somewhere */
	__aligned_u64 bytes_live;	/* bytes charged: live and mapped-only segments */
	__aligned_u64 segments_created;
	__aligned_u64 segments_freed;	/* segments whose last fd was closed */
	__aligned_u64 bells_live;
	__aligned_u64 rings;		/* RING calls that marked a cookie pending */
	__aligned_u64 rings_coalesced;	/* RING calls on an already pending segment */
	__aligned_u64 segments_mapped_only; /* no fd left, still mapped (LLMP_FEAT_CHARGE_MAPPED) */
	__aligned_u64 reserved[8];	/* out: 0 */
};

/* LLMP_IOC_SEG_INFO (on a segment fd). */
struct llmp_seg_info {
	__aligned_u64 size;		/* out */
	__aligned_u64 key;		/* out */
	__u32 id;			/* out */
	__u32 flags;			/* out: LLMP_SEG_* */
	__u32 owner_uid;		/* out: creator's euid, in the caller's user ns */
	__u32 creator_pid;		/* out: creator's tgid in the caller's pid ns, or 0 */
	__u32 bound;			/* out: 1 if bound to a bell */
	__u32 cookie;			/* out: the bound cookie */
	__aligned_u64 reserved[2];	/* out: 0 */
};

/* LLMP_IOC_SEG_BIND (on the fd SEG_CREATE returned, see LLMP_FEAT_BIND_OWNER). */
struct llmp_seg_bind {
	__s32 bell_fd;			/* in: a bell fd, or -1 to unbind */
	__u32 cookie;			/* in: what the bell reports when this segment rings */
	__aligned_u64 reserved[2];	/* in: must be 0 */
};

#define LLMP_IOC_VERSION	_IOR(LLMP_IOC_MAGIC, 0x00, struct llmp_version)
#define LLMP_IOC_SEG_CREATE	_IOWR(LLMP_IOC_MAGIC, 0x01, struct llmp_seg_create)
#define LLMP_IOC_SEG_OPEN	_IOWR(LLMP_IOC_MAGIC, 0x02, struct llmp_seg_open)
#define LLMP_IOC_BELL_CREATE	_IOWR(LLMP_IOC_MAGIC, 0x03, struct llmp_bell_create)
#define LLMP_IOC_STATS		_IOR(LLMP_IOC_MAGIC, 0x04, struct llmp_stats)
#define LLMP_IOC_SEG_INFO	_IOR(LLMP_IOC_MAGIC, 0x10, struct llmp_seg_info)
#define LLMP_IOC_SEG_BIND	_IOW(LLMP_IOC_MAGIC, 0x11, struct llmp_seg_bind)
#define LLMP_IOC_SEG_RING	_IO(LLMP_IOC_MAGIC, 0x12)

#endif /* _UAPI_LINUX_LLMP_H */
